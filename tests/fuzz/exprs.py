"""Generated expressions: their .loss text, dims, and an independent NumPy evaluation
(:mod:`tests.fuzz.reference`), with what the generator knows about them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tests.fuzz import reference as ref
from tests.fuzz.reference import Conditioning, Env


@dataclass(frozen=True)
class Expr:
    text: str
    dims: frozenset[str]
    fn: ref.Fn
    smooth: bool = True
    positive: bool = False
    atom: bool = False  # a name or a call: takes `[t]` and `^` without parentheses
    const: bool = False  # independent of the inputs (numbers, params, consts, sizes)


def name_leaf(name: str, dims: frozenset[str], positive: bool = False) -> Expr:
    return Expr(name, dims, lambda env: env.values[name], positive=positive, atom=True)


def const_leaf(name: str, dims: frozenset[str], value: float) -> Expr:
    return Expr(name, dims, const_fn(value, dims), True, value > 0, True, const=True)


def compared(fn: Callable[[Any, Any], Any], x: Any, y: Any) -> Any:
    Conditioning.near(x, y)
    return fn(x, y)


def greater(x: Any, y: float) -> Any:
    return compared(np.greater, x, y)


def maximum(x: Any, y: Any) -> Any:
    return compared(np.maximum, x, y)


def minimum(x: Any, y: Any) -> Any:
    return compared(np.minimum, x, y)


def clip(x: Any, lo: float, hi: float) -> Any:
    Conditioning.near(x, lo)
    Conditioning.near(x, hi)
    return np.clip(x, lo, hi)


def atom(e: Expr) -> str:
    return e.text if e.atom or e.text.startswith("(") else f"({e.text})"


def combine(
    text: str,
    args: list[Expr],
    fn: Callable[..., Any],
    smooth: bool = True,
    positive: bool = False,
    atom: bool = False,
) -> Expr:
    dims = frozenset().union(*(a.dims for a in args))
    smooth = smooth and all(a.smooth for a in args)

    def evaluate(env: Env) -> Any:
        return fn(*(a.fn(env) for a in args))

    return Expr(text, dims, evaluate, smooth, positive, atom, all(a.const for a in args))


def const_fn(value: float, dims: frozenset[str]) -> ref.Fn:
    return lambda env: env.full(value, dims)


def component(name: str, literal: str, k: int) -> ref.Fn:
    return lambda env: np.take(env.values[name], [k], axis=env.axis(literal))
