"""Checking expressions: names, dims broadcast by name, element kinds, builtins and helpers.

Part of the resolve stage (:mod:`lossdsl.resolve` checks declarations and statements).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lossdsl import ast, builtins, resolve_builtins
from lossdsl.checked import (
    BOOL,
    SCALAR,
    Apply,
    Constant,
    Gather,
    Kind,
    Node,
    Type,
    children,
)
from lossdsl.errors import (
    ArityError,
    ElementTypeError,
    LimitError,
    LossDSLError,
    Note,
    ResolveError,
    ShapeError,
    Span,
)
from lossdsl.parser import MAX_DEPTH

if TYPE_CHECKING:
    from lossdsl.loader import ModuleScope

_ARITHMETIC = {"+": "add", "-": "sub", "*": "mul", "/": "div", "^": "pow"}
_COMPARE = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne"}

# Inlining helpers and loss calls can multiply a spec's size (a helper that calls another
# twice, thirty times over); past these bounds a loss is refused rather than expanded.
MAX_NODES = 100_000
# The loss as one tree, every binding and helper substituted: what SymPy's stages walk (its
# differentiation, CSE and printing grow with this size, not with the shared graph's).
MAX_TREE = 5_000
MAX_INLINE_DEPTH = 32  # helpers and losses calling each other


@dataclass
class Scope:
    """Names visible at one point of a loss body or helper body."""

    values: dict[str, tuple[Node, Span]]
    dims: dict[str, str]  # dim names as written here -> dims of the loss being compiled
    module: ModuleScope
    stack: tuple[str, ...] = ()  # helpers and losses being inlined, for recursion errors
    call_sites: tuple[Span, ...] = field(default_factory=tuple)


def check_inline_depth(call: ast.CallExpr, scope: Scope) -> None:
    if len(scope.stack) > MAX_INLINE_DEPTH:
        raise LimitError(
            call.span,
            f"helpers and losses call each other more than {MAX_INLINE_DEPTH} levels deep",
            "call the helpers you need directly, not through long chains",
            tuple(Note(span, "called from here") for span in scope.call_sites[-3:]),
        )


def close_matches(name: str, candidates: Iterable[str]) -> str:
    found = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return "did you mean " + " or ".join(f"`{f}`" for f in found) + "?" if found else ""


class ExprChecker:
    """Elaborates AST expressions into checked nodes (:mod:`lossdsl.checked`)."""

    def __init__(self, order: list[str]) -> None:
        self.order = order
        self.count = 0  # expressions elaborated, against MAX_NODES
        self.active = 0  # expressions being elaborated, one inside another (Python recursion)
        # id -> (nesting depth, size as a tree, node kept alive)
        self.depths: dict[int, tuple[int, int, Node]] = {}
        # (helper, argument nodes, dims) -> inlined result: `h(x) + h(x)` elaborates `h` once
        self.inlined: dict[tuple[object, ...], tuple[tuple[Node, ...], Node]] = {}

    # Provided by LossChecker.
    def inline_loss(self, call: ast.CallExpr, decl, owner, scope: Scope) -> Node:  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def union(self, *dim_sets: tuple[str, ...]) -> tuple[str, ...]:
        dims = {d for ds in dim_sets for d in ds}
        for d in sorted(dims - set(self.order)):
            self.order.append(d)
        return tuple(d for d in self.order if d in dims)

    # -- kinds -------------------------------------------------------------------------------

    def value(self, node: Node, expr: ast.Expr) -> Node:
        """``node`` as a number: an Index is refused, a comparison becomes 1.0 / 0.0."""
        if node.type.kind is Kind.INDEX:
            raise ElementTypeError(
                expr.span,
                f"`{expr.span.text}` is an `Index` and cannot be used as a number",
                "use it to pick a class, `x[t]`, or as a one-hot vector, `onehot(t)`",
            )
        if node.type.kind is Kind.BOOL:
            one, zero = Constant(1.0, SCALAR, node.span), Constant(0.0, SCALAR, node.span)
            return Apply("if", (node, one, zero), Type(Kind.VALUE, node.type.dims), node.span)
        return node

    def condition(self, node: Node, expr: ast.Expr) -> Node:
        if node.type.kind is not Kind.BOOL:
            raise ElementTypeError(
                expr.span,
                f"`{expr.span.text}` is a number, not a condition",
                f"compare it, e.g. `{expr.span.text} != 0`",
            )
        return node

    # -- expressions -------------------------------------------------------------------------

    def expr(self, e: ast.Expr, scope: Scope) -> Node:
        self.count += 1
        if self.count > MAX_NODES:
            raise LimitError(
                e.span,
                f"the loss grows past {MAX_NODES} operations as helpers and losses are inlined",
                "call big helpers less often: bind a helper's result to a name and reuse it",
                self.call_notes(scope),
            )
        self.active += 1
        try:
            if self.active > MAX_DEPTH + MAX_INLINE_DEPTH:
                raise self.too_deep(e, scope)
            method = getattr(self, "check_" + type(e).__name__)
            node: Node = method(e, scope)
        finally:
            self.active -= 1
        if self.measure(node)[0] > MAX_DEPTH:
            raise self.too_deep(e, scope)
        return node

    def check_size(self, node: Node, span: Span) -> None:
        """The loss as one tree (what SymPy walks) must stay small enough to differentiate."""
        if self.measure(node)[1] > MAX_TREE:
            raise LimitError(
                span,
                f"the loss grows past {MAX_TREE} operations once bindings and helpers are "
                "substituted (a name used twice counts twice)",
                "simplify the loss: differentiating it symbolically would take too long",
            )

    def too_deep(self, e: ast.Expr, scope: Scope) -> LimitError:
        return LimitError(
            e.span,
            f"the expression is nested more than {MAX_DEPTH} levels deep once bindings "
            "and helpers are substituted",
            "simplify the loss: a chain of this many operations cannot be compiled",
            self.call_notes(scope),
        )

    def measure(self, node: Node) -> tuple[int, int]:
        """Nesting depth and size as a tree (capped), memoised over the shared graph."""
        known = self.depths.get(id(node))
        if known is not None:
            return known[0], known[1]
        measured = [self.measure(c) for c in children(node)]
        depth = 1 + max((d for d, _ in measured), default=0)
        size = min(MAX_TREE + 1, 1 + sum(n for _, n in measured))
        self.depths[id(node)] = (depth, size, node)
        return depth, size

    def check_NumberExpr(self, e: ast.NumberExpr, scope: Scope) -> Node:
        return Constant(e.value, SCALAR, e.span)

    def check_BoolExpr(self, e: ast.BoolExpr, scope: Scope) -> Node:
        return Constant(1.0 if e.value else 0.0, BOOL, e.span)

    def check_NameExpr(self, e: ast.NameExpr, scope: Scope) -> Node:
        if e.name in scope.values:
            return scope.values[e.name][0]
        if e.name in scope.dims:
            raise ResolveError(
                e.span, f"`{e.name}` is a dim, not a value", f"use `size({e.name})` for its size"
            )
        hint = close_matches(e.name, scope.values)
        raise ResolveError(
            e.span,
            f"undefined name `{e.name}`",
            hint or "bind it first (`name = ...`) or declare it as an input or param",
            self.call_notes(scope),
        )

    def check_NegExpr(self, e: ast.NegExpr, scope: Scope) -> Node:
        arg = self.value(self.expr(e.operand, scope), e.operand)
        return Apply("neg", (arg,), Type(Kind.VALUE, arg.type.dims), e.span)

    def check_NotExpr(self, e: ast.NotExpr, scope: Scope) -> Node:
        arg = self.condition(self.expr(e.operand, scope), e.operand)
        return Apply("not", (arg,), arg.type, e.span)

    def check_BinaryExpr(self, e: ast.BinaryExpr, scope: Scope) -> Node:
        left = self.value(self.expr(e.left, scope), e.left)
        right = self.value(self.expr(e.right, scope), e.right)
        dims = self.union(left.type.dims, right.type.dims)
        return Apply(_ARITHMETIC[e.op], (left, right), Type(Kind.VALUE, dims), e.span)

    def check_LogicExpr(self, e: ast.LogicExpr, scope: Scope) -> Node:
        left = self.condition(self.expr(e.left, scope), e.left)
        right = self.condition(self.expr(e.right, scope), e.right)
        dims = self.union(left.type.dims, right.type.dims)
        return Apply(e.op, (left, right), Type(Kind.BOOL, dims, "Bool"), e.span)

    def check_CompareExpr(self, e: ast.CompareExpr, scope: Scope) -> Node:
        operands = [self.expr(o, scope) for o in e.operands]
        # A comparison compared again is its 1/0 value; an Index compares as an integer.
        operands = [
            self.value(node, expr) if node.type.kind is Kind.BOOL else node
            for node, expr in zip(operands, e.operands, strict=True)
        ]
        result: Node | None = None
        for i, op in enumerate(e.ops):
            left, right = operands[i], operands[i + 1]
            dims = self.union(left.type.dims, right.type.dims)
            pair = Apply(_COMPARE[op], (left, right), Type(Kind.BOOL, dims, "Bool"), e.span)
            if result is None:
                result = pair
            else:
                dims = self.union(result.type.dims, dims)
                result = Apply("and", (result, pair), Type(Kind.BOOL, dims, "Bool"), e.span)
        assert result is not None
        return result

    def check_IfExpr(self, e: ast.IfExpr, scope: Scope) -> Node:
        return self.select(e.cond, e.then, e.orelse, e.span, scope)

    def select(self, c: ast.Expr, a: ast.Expr, b: ast.Expr, span: Span, scope: Scope) -> Node:
        cond = self.condition(self.expr(c, scope), c)
        then = self.value(self.expr(a, scope), a)
        orelse = self.value(self.expr(b, scope), b)
        dims = self.union(cond.type.dims, then.type.dims, orelse.type.dims)
        return Apply("if", (cond, then, orelse), Type(Kind.VALUE, dims), span)

    def check_SubscriptExpr(self, e: ast.SubscriptExpr, scope: Scope) -> Node:
        base = self.value(self.expr(e.base, scope), e.base)
        if len(e.indices) != 1 or isinstance(e.indices[0], ast.KeywordArg):
            raise ShapeError(
                e.span,
                "a subscript takes exactly one `Index`",
                "write `x[t]` for `t: Index[N] of C`",
            )
        index = self.expr(e.indices[0], scope)
        if index.type.kind is not Kind.INDEX or index.type.of is None:
            raise ElementTypeError(
                e.indices[0].span,
                f"`x[...]` needs an `Index`, but `{e.indices[0].span.text}` is "
                f"{index.type.describe()}",
                "declare the subscript as `t: Index[N] of C`; to take one component of a "
                "literal dim, unpack it instead: `x1, y1, x2, y2 = box`",
            )
        dim = index.type.of
        if dim not in base.type.dims:
            raise ShapeError(
                e.span,
                f"`{e.base.span.text}` has no dim `{dim}` for `{e.indices[0].span.text}` to index",
                f"the subscripted value needs dim `{dim}`; it is {base.type.describe()}",
            )
        rest = tuple(d for d in base.type.dims if d != dim)
        dims = self.union(rest, index.type.dims)
        return Gather(base, index, dim, Type(Kind.VALUE, dims), e.span)

    # -- calls -------------------------------------------------------------------------------

    def check_CallExpr(self, e: ast.CallExpr, scope: Scope) -> Node:
        name = e.name.name
        if name in scope.module.defs:
            self.no_dims_or_kwargs(e, f"helper `{name}`")
            return self.inline_def(e, *scope.module.defs[name], scope)
        if name in scope.module.losses:
            if e.dims is not None:
                raise ShapeError(e.span, f"loss `{name}` takes no `[dims]`", "remove them")
            return self.inline_loss(e, *scope.module.losses[name], scope)
        if name in builtins.ALL:
            return resolve_builtins.builtin(self, e, scope)
        if name in scope.values:
            raise ResolveError(
                e.name.span,
                f"`{name}` is a value, not a function",
                "only builtins, `def` helpers and losses can be called",
            )
        known = [*builtins.ALL, *scope.module.defs, *scope.module.losses]
        raise ResolveError(
            e.name.span,
            f"unknown function `{name}`",
            close_matches(name, known) or "see the builtin functions in docs/language.md",
        )

    def no_dims_or_kwargs(self, e: ast.CallExpr, what: str) -> None:
        if e.dims is not None:
            raise ShapeError(e.span, f"{what} takes no `[dims]`", "remove the `[...]`")
        if e.kwargs:
            raise ResolveError(
                e.kwargs[0].span, f"{what} takes no keyword arguments", "pass values positionally"
            )

    def arity(
        self, e: ast.CallExpr, what: str, want: int, decl: Span | None = None
    ) -> LossDSLError:
        notes = (Note(decl, "declared here"),) if decl is not None else ()
        return ArityError(
            e.span,
            f"{what} takes {want} argument{'s' if want != 1 else ''}, got {len(e.args)}",
            "pass exactly the declared arguments",
            notes,
        )

    def call_notes(self, scope: Scope) -> tuple[Note, ...]:
        return tuple(Note(span, "inlined from here") for span in scope.call_sites[-1:])

    def inline_def(
        self, e: ast.CallExpr, decl: ast.DefDecl, owner: ModuleScope, scope: Scope
    ) -> Node:
        name = decl.name.name
        if name in scope.stack:
            raise ResolveError(e.span, f"helper `{name}` calls itself", "helpers cannot recurse")
        check_inline_depth(e, scope)
        if len(e.args) != len(decl.params):
            raise self.arity(e, f"helper `{name}`", len(decl.params), decl.name.span)
        values: dict[str, tuple[Node, Span]] = {}
        for param, arg in zip(decl.params, e.args, strict=True):
            if param.name in values:
                raise ResolveError(
                    param.span, f"helper parameter `{param.name}` repeats", "rename it"
                )
            values[param.name] = (self.expr(arg, scope), param.span)
        args = tuple(node for node, _ in values.values())
        key = (id(decl), *map(id, args), *sorted(scope.dims.items()))
        if key in self.inlined:
            return self.inlined[key][1]
        inner = Scope(values, scope.dims, owner, (*scope.stack, name), (*scope.call_sites, e.span))
        result = self.expr(decl.body, inner)
        self.inlined[key] = (args, result)  # holding the args keeps their ids unique
        return result
