"""Symbolic differentiation of the IR, in reverse mode (gradients, for PyTorch's backward) and
forward mode (tangents, for JAX's custom_jvp).

The IR is first cut into a *tape*: every tensor op becomes a fresh symbol defined by the op
applied to an elementwise expression. Elementwise parts are differentiated by ``sympy.diff``
(cancelling factors such as ``(1-p)^(g-1) * (1-p)`` as SymPy multiplies them), tensor ops by
their own rules (:meth:`lossdsl.ir.TensorOp.vjp` / ``jvp``), and broadcasting's adjoint is a
sum over the dims a use added. The results are expressions over the loss's own leaves again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy
from sympy import Symbol

from lossdsl import ir


@dataclass
class Tape:
    """The IR with its tensor ops named: ``defs[r] = op`` in evaluation order."""

    output: sympy.Expr
    defs: dict[Symbol, ir.TensorOp] = field(default_factory=dict)

    def expand(self, expr: sympy.Expr) -> sympy.Expr:
        """Substitute the op symbols back: an expression over the loss's leaves only."""
        for symbol, op in reversed(list(self.defs.items())):
            if symbol in expr.free_symbols:
                expr = expr.xreplace({symbol: op})
        return expr


def tape(output: sympy.Expr) -> Tape:
    result = Tape(output)
    named: dict[sympy.Basic, Symbol] = {}
    for node in sympy.postorder_traversal(output):
        if isinstance(node, ir.TensorOp) and node not in named:
            op = node.xreplace(named)
            symbol = ir.leaf(f"_r{len(named)}", tuple(sorted(ir.dims_of(node))))
            named[node] = symbol
            result.defs[symbol] = op
    result.output = output.xreplace(named)
    return result


_TIDY_LIMIT = 60  # SymPy operations
_TIDY_NODES = 1000  # tree nodes, counted before count_ops is asked


def _tree_size(expr: sympy.Basic, limit: int) -> int:
    """Nodes of ``expr`` as a tree, counted up to ``limit + 1`` and no further: O(limit) even
    where the tree is exponentially larger than the shared graph (count_ops walks it all)."""
    count, stack = 0, [expr]
    while stack and count <= limit:
        count += 1
        stack.extend(stack.pop().args)
    return count


def tidy(expr: sympy.Expr) -> sympy.Expr:
    """Cheap, predictable simplification: combine powers of equal bases and pull out common
    factors, so that e.g. ``p^(g-1) * p`` prints as ``p^g`` and ``0 * inf`` never arises.

    SymPy's simplifiers are superlinear and pure Python (no thread can interrupt them), so the
    time budget is structural: an expression over ``_TIDY_NODES`` tree nodes or
    ``_TIDY_LIMIT`` operations is returned as it is, unsimplified but equal. The size check
    itself stops counting at the budget, so it costs O(budget) on any input.
    """
    if _tree_size(expr, _TIDY_NODES) > _TIDY_NODES or sympy.count_ops(expr) > _TIDY_LIMIT:
        return expr
    return sympy.factor_terms(sympy.powsimp(expr, combine="exp"))


def _sum_to(expr: sympy.Expr, dims: frozenset[str]) -> sympy.Expr:
    """Adjoint of broadcasting: sum ``expr`` over the dims it has beyond ``dims``."""
    extra = ir.dims_of(expr) - dims
    return ir.ReduceSum.make(expr, tuple(sorted(extra))) if extra else expr


def _depends(t: Tape, wrt: set[Symbol]) -> set[Symbol]:
    """The leaves in ``wrt`` and the op symbols whose value depends on them."""
    live = set(wrt)
    for symbol, op in t.defs.items():
        if op.free_symbols & live:
            live.add(symbol)
    return live


def vjp(output: sympy.Expr, wrt: list[Symbol], cotangent: Symbol) -> dict[Symbol, sympy.Expr]:
    """Reverse mode: the gradient of ``sum(cotangent * output)`` w.r.t. each leaf in ``wrt``,
    each with (at most) the dims of its leaf."""
    t = tape(output)
    live = _depends(t, set(wrt))
    adjoint: dict[Symbol, sympy.Expr] = {}

    def propagate(expr: sympy.Expr, cot: sympy.Expr) -> None:
        for symbol in sorted(expr.free_symbols & live, key=sympy.default_sort_key):
            local = tidy(cot * sympy.diff(expr, symbol))
            if local != 0:
                # Sum over every dim `expr` broadcast `symbol` along, even those along which
                # `local` is constant (`sum[C](a + x)` for a scalar `a` gives `size(C) * cot`).
                extra = ir.dims_of(expr) - ir.dims_of(local) - ir.dims_of(symbol)
                local = ir.ReduceSum.make(local, tuple(sorted(extra))) if extra else local
                part = _sum_to(local, ir.dims_of(symbol))
                adjoint[symbol] = adjoint.get(symbol, sympy.S.Zero) + part

    propagate(t.output, cotangent)
    for symbol, op in reversed(list(t.defs.items())):
        if symbol in adjoint:
            propagate(op.args[0], op.vjp(adjoint[symbol]))
    return {leaf: tidy(t.expand(adjoint.get(leaf, sympy.S.Zero))) for leaf in wrt}


def jvp(output: sympy.Expr, tangents: dict[Symbol, Symbol]) -> sympy.Expr:
    """Forward mode: the directional derivative of ``output`` along ``tangents`` (leaf ->
    its tangent symbol)."""
    t = tape(output)
    tangent: dict[Symbol, sympy.Expr] = dict(tangents)

    def push(expr: sympy.Expr) -> sympy.Expr:
        total = sympy.S.Zero
        for symbol in sorted(expr.free_symbols & tangent.keys(), key=sympy.default_sort_key):
            total += tidy(sympy.diff(expr, symbol) * tangent[symbol])
        return total

    for symbol, op in t.defs.items():
        inner = push(op.args[0])
        if inner != 0:
            tangent[symbol] = op.jvp(inner)
    return tidy(t.expand(push(t.output)))
