"""The checked AST: what :mod:`lossdsl.resolve` produces and :mod:`lossdsl.lower` consumes.

Names, helpers, loss calls and bindings are resolved away: a loss is one expression tree (a DAG,
since bindings are shared) over its inputs, params and dim sizes, and every node carries its
:class:`Type` (element kind and dims) and the span it came from.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeAlias

from lossdsl.errors import Span


class Kind(Enum):
    VALUE = "value"
    INDEX = "index"
    BOOL = "bool"


# Element types a declaration may name, and whether the loss is differentiated by them.
ELEMENT_TYPES = ("Real", "Positive", "NonNegative", "Prob", "Binary", "Index")
DIFFERENTIATED = frozenset({"Real", "Positive", "NonNegative", "Prob"})


@dataclass(frozen=True, slots=True)
class Type:
    kind: Kind
    dims: tuple[str, ...] = ()
    elem: str = "Real"
    of: str | None = None  # for an Index: the dim whose positions it names

    def describe(self) -> str:
        dims = f"[{', '.join(self.dims)}]" if self.dims else ""
        of = f" of {self.of}" if self.of else ""
        return f"{self.elem}{dims}{of}"


SCALAR = Type(Kind.VALUE)
BOOL = Type(Kind.BOOL, elem="Bool")


@dataclass(frozen=True, slots=True, eq=False)
class InputRef:
    name: str
    type: Type
    span: Span


@dataclass(frozen=True, slots=True, eq=False)
class ParamRef:
    name: str
    type: Type
    span: Span


@dataclass(frozen=True, slots=True, eq=False)
class SizeRef:
    """``size(C)``: the size of a dim in this call."""

    dim: str
    type: Type
    span: Span


@dataclass(frozen=True, slots=True, eq=False)
class Constant:
    value: float
    type: Type
    span: Span


@dataclass(frozen=True, slots=True, eq=False)
class Apply:
    """An elementwise operation: arithmetic (``add sub mul div pow neg``), comparisons
    (``lt le gt ge eq ne``), logic (``and or not``), ``if``, and elementwise builtins."""

    op: str
    args: tuple[Node, ...]
    type: Type
    span: Span


@dataclass(frozen=True, slots=True, eq=False)
class Reduce:
    op: str
    dims: tuple[str, ...]
    arg: Node
    type: Type
    span: Span
    eps: Node | None = None  # norm's eps=


@dataclass(frozen=True, slots=True, eq=False)
class Normalize:
    op: str  # softmax | log_softmax
    dim: str
    arg: Node
    type: Type
    span: Span


@dataclass(frozen=True, slots=True, eq=False)
class Gather:
    base: Node
    index: Node
    dim: str
    type: Type
    span: Span


@dataclass(frozen=True, slots=True, eq=False)
class OneHot:
    index: Node
    dim: str
    type: Type
    span: Span


@dataclass(frozen=True, slots=True, eq=False)
class Component:
    """One slice of an unpacking along a literal dim: ``x1`` of ``x1, y1, x2, y2 = box``."""

    base: Node
    dim: str
    position: int
    type: Type
    span: Span


Node: TypeAlias = (
    InputRef
    | ParamRef
    | SizeRef
    | Constant
    | Apply
    | Reduce
    | Normalize
    | Gather
    | OneHot
    | Component
)


@dataclass(frozen=True, slots=True)
class InputInfo:
    name: str
    elem: str
    dims: tuple[str, ...]
    of: str | None
    span: Span

    @property
    def differentiated(self) -> bool:
        return self.elem in DIFFERENTIATED


@dataclass(frozen=True, slots=True)
class ParamInfo:
    name: str
    elem: str
    dims: tuple[str, ...]
    default: float | None
    condition: Node | None
    condition_text: str
    span: Span


@dataclass(frozen=True, slots=True)
class CheckedLoss:
    name: str
    doc: str
    inputs: tuple[InputInfo, ...]
    params: tuple[ParamInfo, ...]
    dims: tuple[str, ...]  # every dim of the loss, in canonical (first-appearance) order
    output: Node
    span: Span
    names: dict[int, str] = field(default_factory=dict)  # id(node) -> binding name


def children(node: Node) -> tuple[Node, ...]:
    """The nodes a node is computed from."""
    if isinstance(node, Apply):
        return node.args
    if isinstance(node, Reduce):
        return (node.arg,) if node.eps is None else (node.arg, node.eps)
    if isinstance(node, Normalize):
        return (node.arg,)
    if isinstance(node, Gather):
        return (node.base, node.index)
    if isinstance(node, OneHot):
        return (node.index,)
    if isinstance(node, Component):
        return (node.base,)
    return ()


# --- constant evaluation (param defaults, `where` conditions, consts) ----------------------

_BINARY: dict[str, Callable[[float, float], float]] = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
    "pow": operator.pow,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "eq": operator.eq,
    "ne": operator.ne,
    "and": lambda a, b: bool(a) and bool(b),
    "or": lambda a, b: bool(a) or bool(b),
    "max": max,
    "min": min,
}
_UNARY: dict[str, Callable[[float], float]] = {
    "neg": operator.neg,
    "not": lambda a: not a,
    "abs": abs,
    "exp": math.exp,
    "log": math.log,
    "sqrt": math.sqrt,
    "log1p": math.log1p,
    "expm1": math.expm1,
}


class NotConstant(Exception):
    """The expression depends on something other than numbers and the given names."""

    def __init__(self, node: Node) -> None:
        self.node = node


def evaluate_constant(node: Node, params: dict[str, float] | None = None) -> float:
    """Evaluate a scalar expression of numbers (and the given params) with Python floats.

    Raises:
        NotConstant: the expression involves inputs, dims or functions not evaluated here.
        ArithmeticError / ValueError: e.g. division by zero, log of a negative number.
    """
    params = params or {}
    if isinstance(node, Constant):
        return node.value
    if isinstance(node, ParamRef) and node.name in params:
        return params[node.name]
    if isinstance(node, Apply):
        values = [evaluate_constant(arg, params) for arg in node.args]
        if node.op == "if":
            return values[1] if values[0] else values[2]
        if len(values) == 2 and node.op in _BINARY:
            return float(_BINARY[node.op](values[0], values[1]))
        if len(values) == 1 and node.op in _UNARY:
            return float(_UNARY[node.op](values[0]))
    raise NotConstant(node)
