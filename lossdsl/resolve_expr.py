"""Checking expressions: names, dims broadcast by name, element kinds, builtins and helpers.

Part of the resolve stage (:mod:`lossdsl.resolve` checks declarations and statements).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lossdsl import ast, builtins
from lossdsl.checked import (
    BOOL,
    SCALAR,
    Apply,
    Constant,
    Gather,
    Kind,
    Node,
    Normalize,
    OneHot,
    Reduce,
    SizeRef,
    Type,
)
from lossdsl.errors import ArityError, ElementTypeError, LossDSLError, Note, ResolveError
from lossdsl.errors import ShapeError, Span

if TYPE_CHECKING:
    from lossdsl.loader import ModuleScope

_ARITHMETIC = {"+": "add", "-": "sub", "*": "mul", "/": "div", "^": "pow"}
_COMPARE = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne"}


@dataclass
class Scope:
    """Names visible at one point of a loss body or helper body."""

    values: dict[str, tuple[Node, Span]]
    dims: dict[str, str]  # dim names as written here -> dims of the loss being compiled
    module: ModuleScope
    stack: tuple[str, ...] = ()  # helpers and losses being inlined, for recursion errors
    call_sites: tuple[Span, ...] = field(default_factory=tuple)


def close_matches(name: str, candidates: Iterable[str]) -> str:
    found = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return "did you mean " + " or ".join(f"`{f}`" for f in found) + "?" if found else ""


class ExprChecker:
    """Elaborates AST expressions into checked nodes (:mod:`lossdsl.checked`)."""

    def __init__(self, order: list[str]) -> None:
        self.order = order

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
        method = getattr(self, "check_" + type(e).__name__)
        return method(e, scope)  # type: ignore[no-any-return]

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
        for node, expr in zip(operands, e.operands, strict=True):
            if node.type.kind is Kind.BOOL:
                self.value(node, expr)
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
                e.span, "a subscript takes exactly one `Index`", "write `x[t]` for `t: Index[N] of C`"
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
            return self.builtin(e, scope)
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

    def arity(self, e: ast.CallExpr, what: str, want: int, decl: Span | None = None) -> LossDSLError:
        notes = (Note(decl, "declared here"),) if decl is not None else ()
        return ArityError(
            e.span,
            f"{what} takes {want} argument{'s' if want != 1 else ''}, got {len(e.args)}",
            "pass exactly the declared arguments",
            notes,
        )

    def call_notes(self, scope: Scope) -> tuple[Note, ...]:
        return tuple(Note(span, "inlined from here") for span in scope.call_sites[-1:])

    def inline_def(self, e: ast.CallExpr, decl: ast.DefDecl, owner: ModuleScope, scope: Scope) -> Node:
        name = decl.name.name
        if name in scope.stack:
            raise ResolveError(e.span, f"helper `{name}` calls itself", "helpers cannot recurse")
        if len(e.args) != len(decl.params):
            raise self.arity(e, f"helper `{name}`", len(decl.params), decl.name.span)
        values: dict[str, tuple[Node, Span]] = {}
        for param, arg in zip(decl.params, e.args, strict=True):
            if param.name in values:
                raise ResolveError(param.span, f"helper parameter `{param.name}` repeats", "rename it")
            values[param.name] = (self.expr(arg, scope), param.span)
        inner = Scope(values, scope.dims, owner, (*scope.stack, name), (*scope.call_sites, e.span))
        return self.expr(decl.body, inner)

    def dim_names(self, e: ast.CallExpr, scope: Scope, operand: Node) -> tuple[str, ...]:
        if e.dims is None:
            return operand.type.dims
        names = []
        for d in e.dims:
            if isinstance(d, ast.NameExpr):
                written = d.name
            elif isinstance(d, ast.NumberExpr) and d.text.isdigit():
                written = d.text
            else:
                raise ShapeError(d.span, "`[...]` after a function lists dims", "e.g. `sum[C](x)`")
            dim = scope.dims.get(written, written)
            if dim not in operand.type.dims:
                raise ShapeError(
                    d.span,
                    f"`{e.name.name}[{written}]` reduces over `{written}`, but "
                    f"`{e.args[0].span.text}` is {operand.type.describe()}",
                    f"reduce over one of its dims: {', '.join(operand.type.dims) or '(none)'}",
                )
            names.append(dim)
        return tuple(names)

    def builtin(self, e: ast.CallExpr, scope: Scope) -> Node:
        name = e.name.name
        nargs = len(e.args)
        elementwise_minmax = name in ("max", "min") and nargs == 2 and e.dims is None
        if name in builtins.REDUCTIONS and not elementwise_minmax:
            return self.reduction(e, scope)
        if name in builtins.NORMALIZATIONS:
            return self.normalization(e, scope)
        self.no_dims_or_kwargs(e, f"`{name}`")
        want = 2 if elementwise_minmax else builtins.SPECIAL_ARITY.get(name, 1)
        if nargs != want:
            raise ArityError(
                e.span,
                f"`{name}` takes {want} argument{'s' if want > 1 else ''}, got {nargs}",
                f"call it as {builtins.signature(name)}",
            )
        if name == "where":
            return self.select(e.args[0], e.args[1], e.args[2], e.span, scope)
        if name == "size":
            return self.size(e, scope)
        if name == "onehot":
            index = self.expr(e.args[0], scope)
            if index.type.kind is not Kind.INDEX or index.type.of is None:
                raise ElementTypeError(
                    e.args[0].span, "`onehot` needs an `Index`", builtins.signature("onehot")
                )
            dims = self.union(index.type.dims, (index.type.of,))
            return OneHot(index, index.type.of, Type(Kind.VALUE, dims, "Binary"), e.span)
        args = tuple(self.value(self.expr(a, scope), a) for a in e.args)
        dims = self.union(*(a.type.dims for a in args))
        return Apply(name, args, Type(Kind.VALUE, dims), e.span)

    def size(self, e: ast.CallExpr, scope: Scope) -> Node:
        arg = e.args[0]
        written = arg.name if isinstance(arg, ast.NameExpr) else getattr(arg, "text", "")
        dim = scope.dims.get(written)
        if dim is None:
            raise ShapeError(
                arg.span,
                f"`size` needs a dim name, and `{arg.span.text}` is not a dim of this loss",
                f"dims here: {', '.join(scope.dims) or '(none)'}",
            )
        return SizeRef(dim, SCALAR, e.span)

    def reduction(self, e: ast.CallExpr, scope: Scope) -> Node:
        name = e.name.name
        if len(e.args) != 1:
            raise ArityError(
                e.span,
                f"`{name}` takes one argument here, got {len(e.args)}",
                f"call it as {builtins.signature(name)}",
            )
        eps: Node | None = None
        for kwarg in e.kwargs:
            if name != "norm" or kwarg.name.name != "eps":
                raise ResolveError(
                    kwarg.span,
                    f"`{name}` has no keyword argument `{kwarg.name.name}`",
                    f"call it as {builtins.signature(name)}",
                )
            eps = self.value(self.expr(kwarg.value, scope), kwarg.value)
            if eps.type.dims:
                raise ShapeError(kwarg.value.span, "`eps` must be a scalar", "e.g. `eps=1e-12`")
        arg = self.value(self.expr(e.args[0], scope), e.args[0])
        dims = self.dim_names(e, scope, arg)
        rest = tuple(d for d in arg.type.dims if d not in dims)
        return Reduce(name, dims, arg, Type(Kind.VALUE, rest), e.span, eps)

    def normalization(self, e: ast.CallExpr, scope: Scope) -> Node:
        name = e.name.name
        if e.kwargs:
            raise ResolveError(e.kwargs[0].span, f"`{name}` takes no keyword arguments", "")
        if len(e.args) != 1:
            raise ArityError(e.span, f"`{name}` takes one argument", builtins.signature(name))
        arg = self.value(self.expr(e.args[0], scope), e.args[0])
        if e.dims is None or len(e.dims) != 1:
            raise ShapeError(
                e.span,
                f"`{name}` normalises over exactly one dim",
                f"name it: `{name}[C]({e.args[0].span.text})`",
            )
        (dim,) = self.dim_names(e, scope, arg)
        return Normalize(name, dim, arg, arg.type, e.span)
