"""The syntax tree of a .loss file: small frozen dataclasses, each with the span it came from.

Names line up with the grammar: rule ``call_expr`` <-> :class:`CallExpr`, and so on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from lossdsl.errors import Source, Span


@dataclass(frozen=True, slots=True)
class Ident:
    name: str
    span: Span


# --- expressions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NumberExpr:
    value: float
    text: str
    span: Span


@dataclass(frozen=True, slots=True)
class BoolExpr:
    value: bool
    span: Span


@dataclass(frozen=True, slots=True)
class NameExpr:
    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class NegExpr:
    operand: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class NotExpr:
    operand: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class BinaryExpr:
    """Arithmetic: ``+ - * / ^``."""

    op: str
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class LogicExpr:
    """``and`` / ``or``."""

    op: str
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class CompareExpr:
    """A comparison chain: ``0 <= alpha <= 1`` has three operands and two ops."""

    operands: tuple[Expr, ...]
    ops: tuple[str, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class IfExpr:
    cond: Expr
    then: Expr
    orelse: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class KeywordArg:
    name: Ident
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class CallExpr:
    """``name(args)`` or ``name[dims](args)``: builtins, reductions, helpers and losses alike."""

    name: Ident
    dims: tuple[Expr, ...] | None
    args: tuple[Expr, ...]
    kwargs: tuple[KeywordArg, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class SubscriptExpr:
    """``x[t]``: a gather by an `Index` (the only subscript the language has)."""

    base: Expr
    indices: tuple[Expr, ...]
    span: Span


Expr: TypeAlias = (
    NumberExpr
    | BoolExpr
    | NameExpr
    | NegExpr
    | NotExpr
    | BinaryExpr
    | LogicExpr
    | CompareExpr
    | IfExpr
    | CallExpr
    | SubscriptExpr
)


# --- declarations and statements -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DimRef:
    """A dim in a type: a name (``N``) or an integer literal (``4``)."""

    name: str
    literal: bool
    span: Span


@dataclass(frozen=True, slots=True)
class TypeRef:
    elem: Ident
    dims: tuple[DimRef, ...]
    of: DimRef | None
    span: Span


@dataclass(frozen=True, slots=True)
class Input:
    name: Ident
    type: TypeRef
    span: Span


@dataclass(frozen=True, slots=True)
class ParamStmt:
    name: Ident
    type: TypeRef
    default: Expr | None
    condition: Expr | None
    span: Span


@dataclass(frozen=True, slots=True)
class ConstStmt:
    name: Ident
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class BindStmt:
    """``name = expr``, or an unpacking ``a, b, c, d = box`` (several targets)."""

    targets: tuple[Ident, ...]
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class ReturnStmt:
    value: Expr
    span: Span


Stmt: TypeAlias = ParamStmt | ConstStmt | BindStmt | ReturnStmt


@dataclass(frozen=True, slots=True)
class LossDecl:
    name: Ident
    inputs: tuple[Input, ...]
    body: tuple[Stmt, ...]
    doc: str
    span: Span


@dataclass(frozen=True, slots=True)
class DefDecl:
    name: Ident
    params: tuple[Ident, ...]
    body: Expr
    doc: str
    span: Span


@dataclass(frozen=True, slots=True)
class UseDecl:
    path: str
    span: Span


Decl: TypeAlias = LossDecl | DefDecl | UseDecl


@dataclass(frozen=True, slots=True)
class Module:
    """One parsed .loss file."""

    source: Source
    decls: tuple[Decl, ...]
