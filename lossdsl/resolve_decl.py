"""Checking declarations: names, element types, a loss's inputs, and param values against their
type and `where` condition. Part of the resolve stage (:mod:`lossdsl.resolve`).
"""

from __future__ import annotations

import math

from lossdsl import ast, builtins
from lossdsl.checked import (
    ELEMENT_TYPES,
    Apply,
    InputInfo,
    InputRef,
    Node,
    NotConstant,
    ParamInfo,
    ParamRef,
    evaluate_constant,
)
from lossdsl.errors import ElementTypeError, Note, ParamError, ResolveError, ShapeError, Span
from lossdsl.resolve_expr import close_matches


def check_name(ident: ast.Ident) -> None:
    if ident.name in builtins.RESERVED:
        raise ResolveError(ident.span, f"`{ident.name}` is a reserved word", "choose another name")


def check_elem(type_ref: ast.TypeRef) -> str:
    elem = type_ref.elem.name
    if elem not in ELEMENT_TYPES:
        hint = close_matches(elem, ELEMENT_TYPES)
        raise ElementTypeError(
            type_ref.elem.span,
            f"unknown element type `{elem}`",
            hint or f"use one of: {', '.join(ELEMENT_TYPES)}",
        )
    return elem


def declare_inputs(decl: ast.LossDecl) -> tuple[InputInfo, ...]:
    """A loss's inputs: unique names, known element types, `of` only on an `Index`."""
    seen: dict[str, Span] = {}
    infos = []
    for item in decl.inputs:
        check_name(item.name)
        if item.name.name in seen:
            raise ResolveError(
                item.name.span,
                f"input `{item.name.name}` is declared twice",
                "rename one of them",
                (Note(seen[item.name.name], "first declared here"),),
            )
        seen[item.name.name] = item.name.span
        infos.append(_input(item))
    known = {d for info in infos for d in info.dims}
    for info, item in zip(infos, decl.inputs, strict=True):
        if info.of is not None and info.of not in known and item.type.of is not None:
            raise ShapeError(
                item.type.of.span,
                f"dim `{info.of}` is not a dim of any input, so its size is unknown",
                f"declare an input with dim `{info.of}` (e.g. `logits: Real[N, {info.of}]`)",
            )
    return tuple(infos)


def _input(item: ast.Input) -> InputInfo:
    elem = check_elem(item.type)
    if elem == "Index" and item.type.of is None:
        raise ElementTypeError(
            item.type.span,
            f"`Index` input `{item.name.name}` needs the dim it indexes",
            f"write e.g. `{item.name.name}: Index[N] of C`",
        )
    if elem != "Index" and item.type.of is not None:
        raise ElementTypeError(item.type.of.span, "only an `Index` takes `of`", "remove `of ...`")
    if item.type.of is not None and item.type.of.literal:
        raise ShapeError(item.type.of.span, "`of` needs a dim name", "e.g. `of C`")
    names = [d.name for d in item.type.dims]
    for dim in item.type.dims:
        if names.count(dim.name) > 1:
            raise ShapeError(
                dim.span,
                f"dim `{dim.name}` appears twice in `{item.name.name}`",
                "give each axis its own dim name",
            )
    of = item.type.of.name if item.type.of else None
    return InputInfo(item.name.name, elem, tuple(names), of, item.span)


def check_condition(name: str, condition: Node, expr: ast.Expr) -> None:
    """A param's `where` condition may mention only the param itself, numbers and consts, so
    that any value of the param can be checked without the loss's inputs."""
    try:
        evaluate_constant(condition, {name: 1.0})
    except NotConstant as exc:
        node = exc.node
        notes: tuple[Note, ...] = ()
        if isinstance(node, (InputRef, ParamRef)):
            kind = "an input" if isinstance(node, InputRef) else "another param"
            what = f"`{node.name}` is {kind}"
            notes = (Note(node.span, f"`{node.name}` is declared here"),)
        elif isinstance(node, Apply):
            what = f"`{node.op}` cannot be evaluated here"
        else:
            what = f"`{node.span.text}` is not a number"
        raise ResolveError(
            expr.span,
            f"the `where` condition of param `{name}` can only use `{name}`, numbers and "
            f"consts, but {what}",
            "use arithmetic, comparisons, `and`/`or`/`not`, `abs`, `exp`, `log`, `sqrt`, "
            "`max` and `min`",
            notes,
        ) from None
    except (ArithmeticError, ValueError):
        pass  # depends on the value; validate_param reports it for a bad one


def arithmetic_problem(exc: Exception) -> str:
    """Python's arithmetic exceptions in words."""
    if isinstance(exc, OverflowError):
        return "overflows a 64-bit float"
    if isinstance(exc, ZeroDivisionError):
        return "divides by zero"
    return "leaves a function's domain (e.g. `log` or `sqrt` of a negative number)"


def validate_param(info: ParamInfo, value: float, span: Span | None) -> None:
    """Check a param value against its element type and its `where` condition.

    Raises:
        ParamError: naming the param, the value and the type or condition it violates.
    """
    bounds = {
        "Positive": (value > 0, "> 0"),
        "NonNegative": (value >= 0, ">= 0"),
        "Prob": (0 <= value <= 1, "in [0, 1]"),
    }
    ok, rule = bounds.get(info.elem, (not math.isnan(value), "a number"))
    if not ok:
        raise ParamError(
            span,
            f"param `{info.name}` = {value:g} is not {rule} (its type is `{info.elem}`)",
            f"give `{info.name}` a value {rule}",
        )
    if info.condition is None:
        return
    try:
        holds = evaluate_constant(info.condition, {info.name: value})
    except (NotConstant, ArithmeticError, ValueError) as exc:
        problem = arithmetic_problem(exc) if not isinstance(exc, NotConstant) else "fails"
        raise ParamError(
            span,
            f"param `{info.name}` = {value:g}: `where {info.condition_text}` {problem}",
            f"give `{info.name}` a value for which `{info.condition_text}` can be evaluated",
        ) from None
    if not holds:
        raise ParamError(
            span,
            f"param `{info.name}` = {value:g} violates `where {info.condition_text}`",
            f"give `{info.name}` a value with `{info.condition_text}`",
        )


def constant_value(node: Node, what: str, span: Span) -> float:
    """Evaluate a checked node that must be a number (a `const`, a param default)."""
    try:
        return evaluate_constant(node)
    except NotConstant as exc:
        inner = exc.node.span.text
        raise ResolveError(
            span,
            f"{what} must be a number, but `{inner}` is not",
            "use only numbers, consts and arithmetic; inputs and params are not known until "
            "the loss is called",
        ) from None
    except (ArithmeticError, ValueError) as exc:
        problem = arithmetic_problem(exc)
        raise ResolveError(span, f"{what} {problem}", "fix the arithmetic") from None


__all__ = [
    "check_condition",
    "check_elem",
    "check_name",
    "constant_value",
    "declare_inputs",
    "validate_param",
]
