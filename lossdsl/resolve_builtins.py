"""Checking calls of the builtin functions (:mod:`lossdsl.builtins`): arity, keyword
arguments, and the dims reductions and normalisations name. Part of the resolve stage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lossdsl import ast, builtins
from lossdsl.checked import (
    SCALAR,
    Apply,
    Kind,
    Node,
    Normalize,
    NotConstant,
    OneHot,
    Reduce,
    SizeRef,
    Type,
    evaluate_constant,
)
from lossdsl.errors import ArityError, ElementTypeError, ResolveError, ShapeError

if TYPE_CHECKING:
    from lossdsl.resolve_expr import ExprChecker, Scope


def dim_names(c: ExprChecker, e: ast.CallExpr, scope: Scope, operand: Node) -> tuple[str, ...]:
    """The dims in `op[...]`, as this loss names them; without brackets, all of them."""
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
        if dim in names:
            raise ShapeError(
                d.span,
                f"`{e.name.name}` lists dim `{written}` twice",
                "name each dim once",
            )
        names.append(dim)
    return tuple(names)


def builtin(c: ExprChecker, e: ast.CallExpr, scope: Scope) -> Node:
    """A call of a builtin function, checked against its signature."""
    name = e.name.name
    nargs = len(e.args)
    elementwise_minmax = name in ("max", "min") and nargs == 2 and e.dims is None
    if name in builtins.REDUCTIONS and not elementwise_minmax:
        return reduction(c, e, scope)
    if name in builtins.NORMALIZATIONS:
        return normalization(c, e, scope)
    c.no_dims_or_kwargs(e, f"`{name}`")
    want = 2 if elementwise_minmax else builtins.SPECIAL_ARITY.get(name, 1)
    if nargs != want:
        raise ArityError(
            e.span,
            f"`{name}` takes {want} argument{'s' if want > 1 else ''}, got {nargs}",
            f"call it as {builtins.signature(name)}",
        )
    if name == "where":
        return c.select(e.args[0], e.args[1], e.args[2], e.span, scope)
    if name == "size":
        return size(c, e, scope)
    if name == "onehot":
        index = c.expr(e.args[0], scope)
        if index.type.kind is not Kind.INDEX or index.type.of is None:
            raise ElementTypeError(
                e.args[0].span, "`onehot` needs an `Index`", builtins.signature("onehot")
            )
        dims = c.union(index.type.dims, (index.type.of,))
        return OneHot(index, index.type.of, Type(Kind.VALUE, dims, "Binary"), e.span)
    args = tuple(c.value(c.expr(a, scope), a) for a in e.args)
    if name == "clamp":
        check_bounds(c, e, args[1], args[2])
    dims = c.union(*(a.type.dims for a in args))
    return Apply(name, args, Type(Kind.VALUE, dims), e.span)


def check_bounds(c: ExprChecker, e: ast.CallExpr, lo: Node, hi: Node) -> None:
    """`clamp` bounds that are numbers must be in order."""
    try:
        low, high = evaluate_constant(lo), evaluate_constant(hi)
    except (NotConstant, ArithmeticError, ValueError):
        return  # known only when the loss is called
    if low > high:
        raise ResolveError(
            e.span,
            f"`clamp` has lower bound {low:g} above its upper bound {high:g}",
            "write `clamp(x, lo, hi)` with `lo <= hi`",
        )


def size(c: ExprChecker, e: ast.CallExpr, scope: Scope) -> Node:
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


def reduction(c: ExprChecker, e: ast.CallExpr, scope: Scope) -> Node:
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
        eps = c.value(c.expr(kwarg.value, scope), kwarg.value)
        if eps.type.dims:
            raise ShapeError(kwarg.value.span, "`eps` must be a scalar", "e.g. `eps=1e-12`")
    arg = c.value(c.expr(e.args[0], scope), e.args[0])
    dims = dim_names(c, e, scope, arg)
    rest = tuple(d for d in arg.type.dims if d not in dims)
    return Reduce(name, dims, arg, Type(Kind.VALUE, rest), e.span, eps)


def normalization(c: ExprChecker, e: ast.CallExpr, scope: Scope) -> Node:
    name = e.name.name
    if e.kwargs:
        raise ResolveError(
            e.kwargs[0].span,
            f"`{name}` takes no keyword arguments",
            f"call it as {builtins.signature(name)}",
        )
    if len(e.args) != 1:
        raise ArityError(e.span, f"`{name}` takes one argument", builtins.signature(name))
    arg = c.value(c.expr(e.args[0], scope), e.args[0])
    if e.dims is None or len(e.dims) != 1:
        raise ShapeError(
            e.span,
            f"`{name}` normalises over exactly one dim",
            f"name it: `{name}[C]({e.args[0].span.text})`",
        )
    (dim,) = dim_names(c, e, scope, arg)
    return Normalize(name, dim, arg, arg.type, e.span)
