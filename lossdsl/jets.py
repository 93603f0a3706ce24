"""Truncated Taylor series ("jets") of scalar SymPy expressions along a line, one-sided.

Along ``x(t) = x0 + t * dx`` every smooth piece of a loss is a power series in ``t``. At a point
on a kink or an `if` boundary, evaluating with ``side=+1`` follows the pieces selected just
after the point and ``side=-1`` those just before: two series, whose first differing coefficient
is the order of the break (0: a jump, 1: a kink, 2: a jump in the second derivative, ...).
Branch choices (max, abs, relu, `if` conditions, ...) are made by the sign of a series as
``t -> 0`` from that side, so several kinks meeting at the point are handled alike.

Jets and their arithmetic are in :mod:`lossdsl.series`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import sympy
from sympy.codegen.cfunctions import expm1, log1p

from lossdsl import ir
from lossdsl.series import (
    TOL,
    Invalid,
    Jet,
    Singular,
    add,
    coeffs,
    erf,
    exp,
    log,
    mul,
    power,
    scale,
    sigmoid,
    sign,
    sin_cos,
    softplus,
)

DEGREE = 4


class Unsupported(ValueError):
    """A node this evaluator has no rule for."""


# --- evaluation of SymPy expressions -------------------------------------------------------

_UNARY: dict[type, Callable[[Jet], Jet]] = {
    sympy.exp: exp,
    sympy.log: log,
    log1p: lambda a: log(add(a, 1.0)),
    expm1: lambda a: add(exp(a), -1.0),
    ir.Sigmoid: sigmoid,
    ir.Softplus: softplus,
    sympy.sin: lambda a: sin_cos(a)[0],
    sympy.cos: lambda a: sin_cos(a)[1],
    sympy.tanh: lambda a: add(scale(sigmoid(scale(a, 2.0)), 2.0), -1.0),
    sympy.erf: erf,
}


class Evaluator:
    """Evaluates scalar SymPy expressions to jets.

    Args:
        env: every free symbol's jet (a float for a symbol that does not move).
        side: +1 to follow the pieces selected just after ``t = 0``, -1 just before.
    """

    def __init__(self, env: dict[sympy.Symbol, Jet], side: int = 1) -> None:
        self.env = env
        self.side = side
        self.memo: dict[sympy.Basic, Jet] = {}

    def __call__(self, expr: sympy.Basic) -> Jet:
        found = self.memo.get(expr)
        if found is None:
            found = self.memo[expr] = self._eval(expr)
        return found

    def _eval(self, e: sympy.Basic) -> Jet:
        if e.is_Number or isinstance(e, sympy.NumberSymbol):
            return float(e)
        if isinstance(e, sympy.Symbol):
            if e not in self.env:
                raise Unsupported(f"no value for `{e}`")
            return self.env[e]
        if isinstance(e, sympy.Add):
            return _fold(add, [self(a) for a in e.args])
        if isinstance(e, sympy.Mul):
            return _fold(mul, [self(a) for a in e.args])
        if isinstance(e, sympy.Pow):
            return self._pow(e)
        rule = _UNARY.get(type(e))
        if rule is not None:
            return rule(self(e.args[0]))
        method = getattr(self, "_eval_" + type(e).__name__, None)
        if method is None:
            raise Unsupported(f"no series rule for `{type(e).__name__}`")
        return method(e)  # type: ignore[no-any-return]

    def _pow(self, e: sympy.Pow) -> Jet:
        exponent = self(e.exp)
        if isinstance(exponent, float):
            return power(self(e.base), exponent, self.side)
        return exp(mul(exponent, log(self(e.base))))

    # Branch choices: by the sign of a series as t -> 0 from this side.
    def _pick(self, args: tuple[sympy.Basic, ...], sense: int) -> Jet:
        best = self(args[0])
        for arg in args[1:]:
            value = self(arg)
            if sign(add(value, scale(best, -1.0)), self.side) == sense:
                best = value
        return best

    def _eval_Max(self, e: sympy.Basic) -> Jet:
        return self._pick(e.args, 1)

    def _eval_Min(self, e: sympy.Basic) -> Jet:
        return self._pick(e.args, -1)

    def _eval_Abs(self, e: sympy.Basic) -> Jet:
        u = self(e.args[0])
        return u if sign(u, self.side) >= 0 else scale(u, -1.0)

    def _eval_Relu(self, e: sympy.Basic) -> Jet:
        u = self(e.args[0])
        return u if sign(u, self.side) > 0 else 0.0

    def _eval_Clamp(self, e: sympy.Basic) -> Jet:
        return self._pick((sympy.Max(*e.args[:2], evaluate=False), e.args[2]), -1)

    def _eval_Sign(self, e: sympy.Basic) -> Jet:
        return float(sign(self(e.args[0]), self.side))

    _eval_sign = _eval_Sign

    def _eval_Heaviside(self, e: sympy.Basic) -> Jet:
        s = sign(self(e.args[0]), self.side)
        return 1.0 if s > 0 else (0.0 if s < 0 else 0.5)

    def _eval_Floor(self, e: sympy.Basic) -> Jet:
        return self._step(e.args[0], math.floor, 0.0)

    def _eval_Ceil(self, e: sympy.Basic) -> Jet:
        return self._step(e.args[0], math.ceil, 0.0)

    def _eval_Round(self, e: sympy.Basic) -> Jet:
        return self._step(e.args[0], round, 0.5)

    _eval_floor, _eval_ceiling = _eval_Floor, _eval_Ceil

    def _step(self, arg: sympy.Basic, f: Callable[[float], int], offset: float) -> Jet:
        """A step function jumping where ``arg - offset`` is an integer."""
        u = self(arg)
        u0 = coeffs(u, 1)[0]
        edge = math.floor(u0 - offset + 0.5) + offset
        if abs(u0 - edge) > TOL * (1 + abs(u0)):
            return float(f(u0))
        s = sign(add(u, -edge), self.side)
        return float(f(edge + 0.25 * s) if s else f(edge))

    def _eval_Piecewise(self, e: sympy.Piecewise) -> Jet:
        for value, cond in e.args:
            if self.truth(cond):
                return self(value)
        raise Invalid("no branch of an `if` applies")

    def truth(self, cond: sympy.Basic) -> bool:
        if cond is sympy.true or cond is sympy.false:
            return bool(cond)
        if isinstance(cond, sympy.And):
            return all(self.truth(c) for c in cond.args)
        if isinstance(cond, sympy.Or):
            return any(self.truth(c) for c in cond.args)
        if isinstance(cond, sympy.Not):
            return not self.truth(cond.args[0])
        if isinstance(cond, sympy.ITE):  # SymPy's form of a condition on a Piecewise
            test, then, orelse = cond.args
            return self.truth(then if self.truth(test) else orelse)
        if isinstance(cond, sympy.core.relational.Relational):
            s = sign(add(self(cond.lhs), scale(self(cond.rhs), -1.0)), self.side)
            return {"<": s < 0, "<=": s <= 0, ">": s > 0, ">=": s >= 0, "==": s == 0}.get(
                cond.rel_op, s != 0
            )
        raise Unsupported(f"no rule for the condition `{cond}`")


def _fold(op: Callable[[Jet, Jet], Jet], items: list[Jet]) -> Jet:
    result = items[0]
    for item in items[1:]:
        result = op(result, item)
    return result


def line(
    point: dict[sympy.Symbol, float],
    direction: dict[sympy.Symbol, float],
    t: float,
    degree: int = DEGREE,
) -> dict[sympy.Symbol, Jet]:
    """The jets of every symbol on the line ``point + t * direction`` at ``t``."""
    env: dict[sympy.Symbol, Jet] = dict(point)
    for symbol, d in direction.items():
        start = point[symbol] + t * d
        env[symbol] = (start, d) + (0.0,) * (degree - 1) if degree else start
    return env


def break_order(expr: sympy.Basic, env: dict[sympy.Symbol, Jet]) -> int | None:
    """The order of the break of ``expr`` at ``t = 0`` (None: none up to DEGREE)."""
    try:
        after, before = Evaluator(env, 1)(expr), Evaluator(env, -1)(expr)
    except (Singular, Invalid):
        return _value_break(expr, env)
    a, b = coeffs(after, DEGREE + 1), coeffs(before, DEGREE + 1)
    for k in range(min(len(a), len(b))):
        if abs(a[k] - b[k]) > 1e-7 * (1.0 + abs(a[k]) + abs(b[k])):
            return k
    return None


def _value_break(expr: sympy.Basic, env: dict[sympy.Symbol, Jet]) -> int:
    """Where the series do not exist: 0 if the values jump or blow up, else 1 (continuous,
    judged by the gap between the two sides shrinking as they approach the point)."""
    gaps = []
    for h in (1e-3, 1e-6):
        try:
            after = Evaluator(_at(env, h), 1)(expr)
            before = Evaluator(_at(env, -h), -1)(expr)
        except (Singular, Invalid):
            return 0
        gaps.append(abs(coeffs(after, 1)[0] - coeffs(before, 1)[0]))
    return 1 if gaps[1] < 1e-7 or gaps[1] < 0.5 * gaps[0] else 0


def _at(env: dict[sympy.Symbol, Jet], t: float) -> dict[sympy.Symbol, Jet]:
    return {s: j if isinstance(j, float) else j[0] + t * j[1] for s, j in env.items()}


__all__ = ["DEGREE", "Evaluator", "Invalid", "Singular", "Unsupported", "break_order", "line"]
