"""Real intervals with open or closed ends, and the arithmetic :mod:`lossdsl.bounds` needs."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

INF = math.inf


@dataclass(frozen=True, slots=True)
class Interval:
    """A real interval; an infinite endpoint is always open."""

    lo: float = -INF
    hi: float = INF
    lo_open: bool = True
    hi_open: bool = True

    @property
    def positive(self) -> bool:
        return self.lo > 0 or (self.lo == 0 and self.lo_open)

    @property
    def negative(self) -> bool:
        return self.hi < 0 or (self.hi == 0 and self.hi_open)

    @property
    def nonnegative(self) -> bool:
        return self.lo >= 0

    @property
    def nonzero(self) -> bool:
        return self.positive or self.negative


REAL = Interval()
POSITIVE = Interval(0.0, INF, True, True)
NONNEGATIVE = Interval(0.0, INF, False, True)
UNIT = Interval(0.0, 1.0, False, False)
ELEMENT_TYPES = {
    "Real": REAL,
    "Positive": POSITIVE,
    "NonNegative": NONNEGATIVE,
    "Prob": UNIT,
    "Binary": UNIT,
    "Index": NONNEGATIVE,
}


def point(value: float) -> Interval:
    return Interval(value, value, False, False)


def hull(a: Interval, b: Interval) -> Interval:
    lo, lo_open = _pick(min, (a.lo, a.lo_open), (b.lo, b.lo_open))
    hi, hi_open = _pick(max, (a.hi, a.hi_open), (b.hi, b.hi_open))
    return Interval(lo, hi, lo_open, hi_open)


def meet(a: Interval, b: Interval) -> Interval:
    lo, lo_open = _pick(max, (a.lo, not a.lo_open), (b.lo, not b.lo_open))
    hi, hi_open = _pick(min, (a.hi, not a.hi_open), (b.hi, not b.hi_open))
    return Interval(lo, hi, not lo_open, not hi_open)


def _pick(which: Callable[..., float], *ends: tuple[float, bool]) -> tuple[float, bool]:
    """The extreme endpoint; open only if every endpoint reaching it is open."""
    value = which(e[0] for e in ends)
    return value, all(is_open for v, is_open in ends if v == value)


def add(a: Interval, b: Interval) -> Interval:
    return Interval(a.lo + b.lo, a.hi + b.hi, a.lo_open or b.lo_open, a.hi_open or b.hi_open)


def neg(a: Interval) -> Interval:
    return Interval(-a.hi, -a.lo, a.hi_open, a.lo_open)


def mul(a: Interval, b: Interval) -> Interval:
    corners = [
        _times(x, y)
        for x in ((a.lo, a.lo_open), (a.hi, a.hi_open))
        for y in ((b.lo, b.lo_open), (b.hi, b.hi_open))
    ]
    lo, lo_open = _pick(min, *corners)
    hi, hi_open = _pick(max, *corners)
    return Interval(lo, hi, lo_open, hi_open)


def _times(x: tuple[float, bool], y: tuple[float, bool]) -> tuple[float, bool]:
    if (x[0] == 0 and not x[1]) or (y[0] == 0 and not y[1]):
        return 0.0, False
    if x[0] == 0 or y[0] == 0:  # an open 0 times anything: 0, not attained
        return 0.0, True
    return x[0] * y[0], x[1] or y[1]


def reciprocal(a: Interval) -> Interval:
    if not a.nonzero:
        return REAL
    lo = 0.0 if a.hi in (INF, -INF) else 1 / a.hi
    hi = (INF if a.positive else -INF) if a.lo == 0 or a.hi == 0 else 1 / a.lo
    if a.negative:
        lo, hi = (-INF if a.hi == 0 else 1 / a.hi), (0.0 if a.lo == -INF else 1 / a.lo)
        return Interval(lo, hi, a.hi_open or a.hi == 0, a.lo_open)
    return Interval(lo, hi, a.hi_open, a.lo_open)


def monotone(f: Callable[[float], float], a: Interval, low: float, high: float) -> Interval:
    """An increasing function with range (low, high) applied to an interval."""

    def end(x: float, is_open: bool) -> tuple[float, bool]:
        if x == -INF:
            return low, True
        if x == INF:
            return high, True
        value = f(x)
        return value, is_open or value in (low, high)

    lo, lo_open = end(a.lo, a.lo_open)
    hi, hi_open = end(a.hi, a.hi_open)
    return Interval(lo, hi, lo_open, hi_open)


def power(a: Interval, n: int) -> Interval:
    """``a^n`` for an integer ``n``."""
    if n == 0:
        return point(1.0)
    if n < 0:
        return reciprocal(power(a, -n))
    if n % 2 == 1 or a.nonnegative:
        return monotone(lambda x: real_power(x, n), a, -INF if n % 2 else 0.0, INF)
    if a.hi <= 0:
        return monotone(lambda x: real_power(x, n), neg(a), 0.0, INF)
    top, top_open = _pick(max, (real_power(a.lo, n), a.lo_open), (real_power(a.hi, n), a.hi_open))
    return Interval(0.0, top, False, top_open)


def real_power(x: float, p: float) -> float:
    try:
        return math.copysign(abs(x) ** p, x) if x < 0 else x**p
    except OverflowError:
        return INF if x > 0 or p % 2 else -INF


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def no_overflow(f: Callable[[float], float]) -> Callable[[float], float]:
    def call(x: float) -> float:
        try:
            return f(x)
        except OverflowError:
            return INF

    return call


def maximum(a: Interval, b: Interval) -> Interval:
    lo, lo_open = _pick(max, (a.lo, a.lo_open), (b.lo, b.lo_open))
    hi, hi_open = _pick(max, (a.hi, a.hi_open), (b.hi, b.hi_open))
    return Interval(lo, hi, lo_open, hi_open)


def absolute(a: Interval) -> Interval:
    if a.nonnegative:
        return a
    if a.hi <= 0:
        return neg(a)
    top, top_open = _pick(max, (-a.lo, a.lo_open), (a.hi, a.hi_open))
    return Interval(0.0, top, False, top_open)


def fold(op: Callable[[Interval, Interval], Interval], items: list[Interval]) -> Interval:
    result = items[0]
    for item in items[1:]:
        result = op(result, item)
    return result


__all__ = [
    "ELEMENT_TYPES",
    "INF",
    "NONNEGATIVE",
    "POSITIVE",
    "REAL",
    "UNIT",
    "Interval",
    "add",
    "fold",
    "hull",
    "meet",
    "monotone",
    "mul",
    "neg",
    "no_overflow",
    "point",
    "power",
    "real_power",
    "reciprocal",
    "sigmoid",
    "softplus",
]
