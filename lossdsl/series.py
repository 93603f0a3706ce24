"""Truncated Taylor series ("jets") and their arithmetic, for :mod:`lossdsl.jets`.

A jet is a ``float`` (a constant) or a tuple of coefficients ``(c0, c1, ..., cK)`` of a power
series in ``t``. Branch points are explicit: :class:`Singular` where no power series exists
(log or a pole at 0, a root at its branch point), :class:`Invalid` outside the real domain.
"""

from __future__ import annotations

import math

Jet = float | tuple[float, ...]
TOL = 1e-9


class Singular(ArithmeticError):
    """Not a power series here: a log or pole at 0, a root at its branch point."""


class Invalid(ArithmeticError):
    """Outside the real domain (log of a negative number, a root of one)."""


def coeffs(a: Jet, n: int) -> tuple[float, ...]:
    return a if isinstance(a, tuple) else (a,) + (0.0,) * (n - 1)


def add(a: Jet, b: Jet) -> Jet:
    if isinstance(a, float) and isinstance(b, float):
        return a + b
    n = min(_len(a), _len(b))
    return tuple(x + y for x, y in zip(coeffs(a, n), coeffs(b, n), strict=False))[:n]


def scale(a: Jet, k: float) -> Jet:
    return a * k if isinstance(a, float) else tuple(x * k for x in a)


def mul(a: Jet, b: Jet) -> Jet:
    if isinstance(a, float):
        return scale(b, a)
    if isinstance(b, float):
        return scale(a, b)
    n = min(len(a), len(b))
    return tuple(sum(a[j] * b[k - j] for j in range(k + 1)) for k in range(n))


def _len(a: Jet) -> int:
    return len(a) if isinstance(a, tuple) else 1 << 30


def lead(a: Jet) -> int | None:
    """The index of the first coefficient that is not (numerically) zero."""
    cs = coeffs(a, 1)
    size = 1.0 + max((abs(c) for c in cs if math.isfinite(c)), default=0.0)
    return next((k for k, c in enumerate(cs) if not abs(c) <= TOL * size), None)


def sign(a: Jet, side: int) -> int:
    """The sign of ``a(t)`` as ``t -> 0`` from ``side``."""
    k = lead(a)
    if k is None:
        return 0
    c = coeffs(a, 1)[k]
    return int(math.copysign(1, c)) * (side**k)


def shift(a: tuple[float, ...], k: int, n: int) -> tuple[float, ...]:
    """``t^k * a`` truncated to ``n`` coefficients."""
    return ((0.0,) * k + a)[:n]


def divide(a: Jet, b: Jet) -> Jet:
    if isinstance(b, float):
        if abs(b) <= TOL:
            raise Singular("division by zero")
        return scale(a, 1.0 / b)
    p = lead(b)
    if p is None:
        raise Singular("division by zero")
    a_t = coeffs(a, len(b))
    if p and lead(a_t[:p]) is not None:
        raise Singular("a pole")
    num, den = a_t[p:], b[p:]
    out: list[float] = []
    for k in range(min(len(num), len(den))):
        acc = num[k] - sum(out[j] * den[k - j] for j in range(k))
        out.append(acc / den[0])
    return tuple(out)


def power(b: Jet, p: float, side: int) -> Jet:
    if float(p).is_integer():
        return _integer_power(b, int(p))
    if isinstance(b, float):
        if b < -TOL:
            raise Invalid("a fractional power of a negative number")
        if abs(b) <= TOL:
            if p < 0:
                raise Singular("a negative power of 0")
            return 0.0
        return b**p
    q = lead(b)
    if q is None:
        if p < 0:
            raise Singular("a negative power of 0")
        return 0.0
    # b = (side*t)^q * r near 0 from this side, with r(0) > 0 inside the domain
    r = tuple(c * float(side**q) for c in b[q:])
    if r[0] < 0:
        raise Invalid("a fractional power of a negative number")
    m = q * p
    if not float(m).is_integer() or m < 0:
        raise Singular("a root at its branch point")
    body = _real_power(r, p)
    return scale(shift(body, int(m), len(b)), float(side ** int(m)))


def _real_power(b: tuple[float, ...], p: float) -> tuple[float, ...]:
    # c = b^p: k*b0*c_k = sum_j ((p + 1)*j - k) * b_j * c_(k-j)
    out = [b[0] ** p]
    for k in range(1, len(b)):
        acc = sum(((p + 1) * j - k) * b[j] * out[k - j] for j in range(1, k + 1))
        out.append(acc / (k * b[0]))
    return tuple(out)


def _integer_power(b: Jet, n: int) -> Jet:
    if n < 0:
        return divide(1.0, _integer_power(b, -n))
    result: Jet = 1.0
    base = b
    while n:
        if n & 1:
            result = mul(result, base)
        base = mul(base, base)
        n >>= 1
    return result


def _integrate(a: tuple[float, ...], f0: float, d: Jet) -> tuple[float, ...]:
    """The series of ``f(a(t))`` from ``f(a0)`` and the series ``d`` of ``f'(a(t))``."""
    dc = coeffs(d, len(a))
    out = [f0]
    for k in range(1, len(a)):
        out.append(sum(j * a[j] * dc[k - j] for j in range(1, k + 1)) / k)
    return tuple(out)


def exp(a: Jet) -> Jet:
    try:
        if isinstance(a, float):
            return math.exp(a)
        out = [math.exp(a[0])]
    except OverflowError:
        raise Invalid("exp overflows") from None
    for k in range(1, len(a)):
        out.append(sum(j * a[j] * out[k - j] for j in range(1, k + 1)) / k)
    return tuple(out)


def log(a: Jet) -> Jet:
    a0 = coeffs(a, 1)[0]
    if abs(a0) <= TOL:
        raise Singular("log at 0")
    if a0 < 0:
        raise Invalid("log of a negative number")
    if isinstance(a, float):
        return math.log(a)
    return _integrate(a, math.log(a0), divide(1.0, a))


def sigmoid(a: Jet) -> Jet:
    if coeffs(a, 1)[0] >= 0:
        return divide(1.0, add(1.0, exp(scale(a, -1.0))))
    e = exp(a)
    return divide(e, add(1.0, e))


def softplus(a: Jet) -> Jet:
    a0 = coeffs(a, 1)[0]
    f0 = max(a0, 0.0) + math.log1p(math.exp(-abs(a0)))
    return f0 if isinstance(a, float) else _integrate(a, f0, sigmoid(a))


def sin_cos(a: Jet) -> tuple[Jet, Jet]:
    if isinstance(a, float):
        return math.sin(a), math.cos(a)
    s, c = [math.sin(a[0])], [math.cos(a[0])]
    for k in range(1, len(a)):
        s.append(sum(j * a[j] * c[k - j] for j in range(1, k + 1)) / k)
        c.append(-sum(j * a[j] * s[k - j] for j in range(1, k + 1)) / k)
    return tuple(s), tuple(c)


def erf(a: Jet) -> Jet:
    f0 = math.erf(coeffs(a, 1)[0])
    if isinstance(a, float):
        return f0
    return _integrate(a, f0, scale(exp(scale(mul(a, a), -1.0)), 2 / math.sqrt(math.pi)))


__all__ = ["TOL", "Invalid", "Jet", "Singular", "add", "coeffs", "divide", "exp", "lead", "log"]
