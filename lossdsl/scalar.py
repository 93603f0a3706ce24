"""A loss's IR as one plain scalar SymPy expression over explicit elements, and its kinks.

Tensor ops are spelled out over small dims: a dim that an op mixes elements along (softmax,
max, norm, gather, ...) gets 2 elements, every other named dim 1 (a plain sum of one element is
the element: smoothness does not depend on how many are summed). Index inputs take fixed
valid values. What remains is ordinary SymPy that :mod:`lossdsl.jets` can evaluate.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import sympy

from lossdsl import ir

Env = tuple[tuple[str, int], ...]  # (dim, position) pairs, sorted


@dataclass(frozen=True)
class Kink:
    """A place where a loss may not be smooth.

    Attributes:
        kind: abs | max | min | relu | clamp | if | sign | step | tie | norm.
        node: the IR node (its span and printed form are the diagnostic's).
        switch: the IR expression whose zero set is the kink (for `norm`: the vector that is 0).
        scalar: the same in the scalar expression, at the first element.
    """

    kind: str
    node: sympy.Basic
    switch: sympy.Expr
    scalar: tuple[sympy.Expr, ...]


@dataclass
class Scalar:
    """The scalar form of a loss: ``output`` over ``elements`` (element -> (leaf, index))."""

    output: sympy.Expr
    elements: dict[sympy.Symbol, tuple[sympy.Symbol, tuple[int, ...]]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)


_MIXING = (ir.Softmax, ir.LogSoftmax, ir.LogSumExp, ir.ReduceMax, ir.ReduceMin, ir.Norm)


def mixed_dims(expr: sympy.Basic) -> set[str]:
    """The dims some op combines elements along non-additively."""
    found: set[str] = set()
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, (*_MIXING, ir.ReduceProd)):
            found.update(ir.dim_names(node.args[1]))
        elif isinstance(node, (ir.Gather, ir.OneHot)):
            found.add(str(node.args[-1].name))
    return found


class Scalarizer:
    """Spells out the tensor ops of one loss over explicit elements.

    Args:
        loss: the loss (its inputs say which leaves are Index inputs and over which dim).
        sizes: dim -> number of elements; defaults to 2 for mixed dims and 1 otherwise.
    """

    def __init__(self, loss: ir.LossIR, sizes: dict[str, int] | None = None) -> None:
        self.loss = loss
        mixed = mixed_dims(loss.output)
        # a literal dim keeps at most 2 elements too: unpacked components are their own leaves
        self.sizes = sizes or {
            d: min(int(d) if d.isdigit() else 2, 2 if d in mixed else 1) for d in loss.order
        }
        self.index_of = {
            s: info.of or ""
            for info in loss.inputs
            if info.elem == "Index"
            for s in loss.leaves_of(info.name)
        }
        self.result = Scalar(sympy.S.Zero, sizes=self.sizes)
        self.memo: dict[tuple[sympy.Basic, Env], sympy.Basic] = {}

    def run(self) -> Scalar:
        dims = sorted(ir.dims_of(self.loss.output))
        total = [self.at(self.loss.output, env) for env in self.envs(dims)]
        self.result.output = sympy.Add(*total)
        return self.result

    def envs(self, dims: list[str] | tuple[str, ...], base: Env = ()) -> list[Env]:
        ranges = [range(self.sizes[d]) for d in dims]
        return [
            tuple(sorted({**dict(base), **dict(zip(dims, idx, strict=True))}.items()))
            for idx in itertools.product(*ranges)
        ]

    def at(self, expr: sympy.Basic, env: Env) -> sympy.Basic:
        """``expr`` at the element ``env`` (dims it does not have are ignored)."""
        dims = ir.dims_of(expr)
        key = (expr, tuple(sorted((d, i) for d, i in env if d in dims)))
        if key not in self.memo:
            self.memo[key] = self._at(expr, key[1])
        return self.memo[key]

    def _at(self, e: sympy.Basic, env: Env) -> sympy.Basic:
        if isinstance(e, sympy.Symbol):
            return self.leaf(e, env)
        if isinstance(e, ir.TensorOp):
            return self.tensor(e, env)
        if not e.args or type(e) is sympy.Tuple:
            return e
        args = [self.at(a, env) for a in e.args]
        if isinstance(e, (sympy.Max, sympy.Min)):
            return e.func(*args, evaluate=False)
        return e.func(*args)

    def leaf(self, symbol: sympy.Symbol, env: Env) -> sympy.Basic:
        name = ir.leaf_name(symbol)
        if "|" not in symbol.name and name.startswith("n_") and name[2:] in self.sizes:
            return sympy.Integer(self.sizes[name[2:]])
        if symbol in self.index_of:  # an Index input: a fixed, valid class
            return sympy.Integer(sum(i for _, i in env) % self.sizes[self.index_of[symbol]])
        if not env:
            self.result.elements.setdefault(symbol, (symbol, ()))
            return symbol
        index = tuple(i for _, i in env)
        element = sympy.Symbol(f"{symbol.name}{list(index)}", **_assumptions(symbol))
        self.result.elements.setdefault(element, (symbol, index))
        return element

    def tensor(self, e: ir.TensorOp, env: Env) -> sympy.Basic:
        if isinstance(e, ir.Gather):
            k = int(self.at(e.args[1], env))
            return self.at(e.args[0], (*env, (e.dim, k)))
        if isinstance(e, ir.OneHot):
            k = int(self.at(e.args[0], env))
            return sympy.Integer(int(dict(env).get(str(e.args[1].name)) == k))
        dims = ir.dim_names(e.args[1])
        parts = [self.at(e.args[0], inner) for inner in self.envs(dims, env)]
        if isinstance(e, (ir.Softmax, ir.LogSoftmax)):
            total = sympy.Add(*(sympy.exp(p) for p in parts))
            own = self.at(e.args[0], env)
            if isinstance(e, ir.Softmax):
                return sympy.exp(own) / total
            return own - sympy.log(total)
        return _reduce(e, parts, self.at(e.args[2], env) if isinstance(e, ir.Norm) else None)

    def kinks(self, expr: sympy.Basic) -> list[Kink]:
        """The kinks of ``expr`` (an IR expression of this loss), with scalar instances."""
        found: list[Kink] = []
        for node in _unique_nodes(expr):
            for kind, switch, tie, reported in _switches(node):
                env = tuple((d, 0) for d in sorted(ir.dims_of(switch)))
                if kind == "norm":
                    scalar = tuple(self.at(switch, e) for e in self.envs(tie, env))
                elif tie:
                    first, second = self.envs(tie, env)[:2]
                    scalar = (self.at(switch, first) - self.at(switch, second),)
                else:
                    scalar = (self.at(switch, env),)
                found.append(Kink(kind, reported, switch, scalar))
        return found


def structural_kinks(expr: sympy.Basic) -> list[Kink]:
    """The kinks of ``expr`` without scalar instances (when the scalar form is unavailable)."""
    return [
        Kink(kind, reported, switch, ())
        for node in _unique_nodes(expr)
        for kind, switch, _, reported in _switches(node)
    ]


def _assumptions(symbol: sympy.Symbol) -> dict[str, bool]:
    keys = ("real", "positive", "nonnegative", "integer")
    return {k: v for k in keys if (v := symbol.assumptions0.get(k)) is not None}


def _reduce(e: ir.TensorOp, parts: list[sympy.Basic], eps: sympy.Basic | None) -> sympy.Basic:
    if isinstance(e, ir.ReduceSum):
        return sympy.Add(*parts)
    if isinstance(e, ir.ReduceProd):
        return sympy.Mul(*parts)
    if isinstance(e, ir.ReduceMax):
        cls = sympy.Min if isinstance(e, ir.ReduceMin) else sympy.Max
        return cls(*parts, evaluate=False) if len(parts) > 1 else parts[0]
    if isinstance(e, ir.LogSumExp):
        return sympy.log(sympy.Add(*(sympy.exp(p) for p in parts)))
    if isinstance(e, ir.Norm):
        return sympy.sqrt(sympy.Add(*(p**2 for p in parts)) + eps)
    raise NotImplementedError(f"no scalar form for `{type(e).__name__}`")


def _unique_nodes(expr: sympy.Basic) -> list[sympy.Basic]:
    seen: set[sympy.Basic] = set()
    order = []
    for node in sympy.preorder_traversal(expr):
        if node not in seen:
            seen.add(node)
            order.append(node)
    return order


def _switches(node: sympy.Basic) -> list[tuple[str, sympy.Expr, tuple[str, ...], sympy.Basic]]:
    """(kind, switching expression, tie/norm dims, node to report) per kink of one node."""
    one = {sympy.Abs: "abs", ir.Relu: "relu", ir.Sign: "sign", sympy.sign: "sign"}
    for cls, kind in one.items():
        if isinstance(node, cls):
            return [(kind, node.args[0], (), node)]
    if isinstance(node, (ir.Floor, ir.Ceil, ir.Round)):
        return [("step", node.args[0], (), node)]
    if isinstance(node, (sympy.Max, sympy.Min)):
        kind = "max" if isinstance(node, sympy.Max) else "min"
        pairs = itertools.combinations(node.args, 2)
        return [(kind, _difference(a, b), (), node) for a, b in pairs]
    if isinstance(node, ir.Clamp):
        x, lo, hi = node.args
        return [("clamp", x - lo, (), node), ("clamp", x - hi, (), node)]
    if isinstance(node, sympy.Piecewise):
        relations: set[sympy.Basic] = set()
        for _, cond in node.args:
            relations |= cond.atoms(sympy.core.relational.Relational)
        ordered = sorted(relations, key=sympy.default_sort_key)
        return [("if", r.lhs - r.rhs, (), r) for r in ordered]
    if isinstance(node, (ir.ReduceMax, ir.ReduceMin)):
        return [("tie", node.args[0], ir.dim_names(node.args[1]), node)]
    norm = norm_like(node)
    if norm is not None:
        return [("norm", norm[0], norm[1], node)]
    return []


def _difference(a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    """``a - b``, written as the other argument when one is 0 (`max(u, 0)` kinks at `u == 0`)."""
    return b if a == 0 else (a if b == 0 else a - b)


def norm_like(node: sympy.Basic) -> tuple[sympy.Expr, tuple[str, ...]] | None:
    """``(u, dims)`` if ``node`` is the Euclidean norm of ``u`` with no eps: `norm[D](u)` or
    `sqrt(sum[D](u^2))`."""
    if isinstance(node, ir.Norm) and node.args[2] == 0:
        return node.args[0], ir.dim_names(node.args[1])
    if isinstance(node, sympy.Pow) and node.exp == sympy.S.Half:
        inner = node.base
        square = inner.args[0] if isinstance(inner, ir.ReduceSum) else None
        if isinstance(square, sympy.Pow) and square.exp == 2:
            return square.base, ir.dim_names(inner.args[1])
    return None


def scalarize(loss: ir.LossIR) -> tuple[Scalarizer, Scalar]:
    scalarizer = Scalarizer(loss)
    return scalarizer, scalarizer.run()


__all__ = [
    "Kink",
    "Scalar",
    "Scalarizer",
    "mixed_dims",
    "norm_like",
    "scalarize",
    "structural_kinks",
]
