"""Elementwise functions SymPy lacks, each with its derivative next to it (part of the IR,
re-exported by :mod:`lossdsl.ir`)."""

from __future__ import annotations

import math

import sympy
from sympy import Function, Piecewise, S
from sympy.codegen.cfunctions import log1p

from lossdsl.conditions import compare


def _number(*args: sympy.Basic) -> bool:
    """All arguments are real numbers: the function is evaluated at construction. Numeric
    expressions count too (`log(2)`, `sqrt(3)`): they have no code of their own to print."""
    return all(a.is_number and a.is_comparable and a.is_finite for a in args)


def _stable_softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


class Sigmoid(Function):
    """``1 / (1 + exp(-x))``; its derivative is written ``sigmoid(x) * sigmoid(-x)`` so that
    neither factor is computed as ``1 - sigmoid(x)`` (which cancels to 0 for large x)."""

    is_real = True

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        x = self.args[0]
        return Sigmoid(x) * Sigmoid(-x)

    def _eval_is_positive(self) -> bool | None:
        return True if self.args[0].is_real else None

    @classmethod
    def eval(cls, x: sympy.Expr) -> sympy.Expr | None:
        if x == 0:
            return S.Half
        if _number(x):
            return sympy.Float(math.exp(-_stable_softplus(-float(x))))
        return None


class Softplus(Function):
    """``log(1 + exp(x))``, computed without overflow."""

    @classmethod
    def eval(cls, x: sympy.Expr) -> sympy.Expr | None:
        return sympy.Float(_stable_softplus(float(x))) if _number(x) else None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return Sigmoid(self.args[0])

    def _eval_is_positive(self) -> bool | None:
        return True if self.args[0].is_real else None

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real


class Relu(Function):
    """``max(x, 0)``; derivative 0 at 0 (like ``torch.relu``)."""

    @classmethod
    def eval(cls, x: sympy.Expr) -> sympy.Expr | None:
        return sympy.Max(x, 0) if _number(x) else None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return Piecewise((S.One, compare(sympy.Gt, self.args[0], S.Zero)), (S.Zero, True))

    def _eval_is_nonnegative(self) -> bool | None:
        return True if self.args[0].is_real else None

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real


class Clamp(Function):
    """``clamp(x, lo, hi)``; derivative 1 on the closed interval (like ``torch.clamp``)."""

    nargs = 3

    @classmethod
    def eval(cls, x: sympy.Expr, lo: sympy.Expr, hi: sympy.Expr) -> sympy.Expr | None:
        return sympy.Min(sympy.Max(x, lo), hi) if _number(x, lo, hi) else None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        x, lo, hi = self.args
        if argindex == 1:
            inside = sympy.And(compare(sympy.Ge, x, lo), compare(sympy.Le, x, hi))
            return Piecewise((S.One, inside), (S.Zero, True))
        if argindex == 2:
            return Piecewise((S.One, compare(sympy.Lt, x, lo)), (S.Zero, True))
        above = sympy.And(compare(sympy.Gt, x, hi), compare(sympy.Ge, x, lo))
        return Piecewise((S.One, above), (S.Zero, True))

    def _eval_is_real(self) -> bool | None:
        return all(a.is_real for a in self.args) or None


class Safe(Function):
    """``Safe(u, c)``: ``u`` where ``c`` holds, else 1 — the inner `where` of the "double
    where": it keeps log, division and roots of an unselected branch away from NaN. Opaque to
    SymPy, which would otherwise fold it into the enclosing Piecewise."""

    nargs = 2

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return Piecewise((S.One, self.args[1]), (S.Zero, True)) if argindex == 1 else S.Zero

    def _eval_is_positive(self) -> bool | None:
        return self.args[0].is_positive

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real


class Same(Function):
    """``Same(a, b)``: 1 where ``a == b`` exactly, else 0 (the tie mask of a max or min). Not a
    ``Piecewise`` on ``Eq(a, b)``: SymPy would rewrite ``Eq(2 + t, m)`` as ``Eq(t, m - 2)``,
    which rounds otherwise, so that no element matches the max it is the max of."""

    nargs = 2
    is_real = True

    @classmethod
    def eval(cls, a: sympy.Expr, b: sympy.Expr) -> sympy.Expr | None:
        if a == b:
            return S.One
        if _number(a) and _number(b):
            return S.Zero  # two different numbers
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return S.Zero

    def _eval_is_nonnegative(self) -> bool:
        return True


class Tied(Function):
    """``Tied(a, g)``: ``a`` itself, printed so that computing it reads ``g``
    (``where(g == g, a, a)``). Compiled mode ties the argument of a loss's sum to a gradient
    of the same shape that does not need the sum: a fusing compiler then evaluates the sum and
    the gradient in one loop over the inputs, not two (see ``codegen.tie_reductions``)."""

    nargs = 2

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return S.One if argindex == 1 else S.Zero

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real


class ExpSigmoid(Function):
    """``ExpSigmoid(u, s)``: sigmoid(s * u) for s = 1 or -1, written from e = exp(-|u|) as
    where(u >= 0, 1 / (1 + e), e / (1 + e)) (the sides swapped for s = -1), each side the
    stable form. Compiled mode writes sigmoid and softplus of one argument this way when
    several of them occur, so that a fusing compiler's kernel computes one exp for all of
    them (``codegen._share_exp``). A function, not the ``Piecewise`` itself: SymPy would
    distribute a power over the pieces (sigmoid(u)**2 -> exp(-2|u|) / (1 + e)**2, a second
    exp)."""

    nargs = 2
    is_real = True

    def written(self) -> sympy.Expr:
        """The form printed: ``where(u >= 0, r, e * r)``, r = 1 / (1 + e)."""
        u, s = self.args
        e = sympy.exp(-sympy.Abs(u))
        near, far = 1 / (1 + e), e / (1 + e)
        if s < 0:
            near, far = far, near
        return Piecewise((near, u >= 0), (far, True), evaluate=False)


class ExpSigmoidPair(Function):
    """``ExpSigmoidPair(u)``: sigmoid(u) * sigmoid(-u), the derivative of sigmoid, written
    e / (1 + e)**2 from e = exp(-|u|): the same on both sides of 0, so a kernel computing it
    needs neither the sign of ``u`` nor a select (see :class:`ExpSigmoid`)."""

    nargs = 1
    is_real = True

    def written(self) -> sympy.Expr:
        """The form printed."""
        e = sympy.exp(-sympy.Abs(self.args[0]))
        return e / (1 + e) ** 2


class ExpSoftplus(Function):
    """``ExpSoftplus(u, s)``: softplus(s * u) for s = 1 or -1, written relu(s * u) +
    log1p(exp(-|u|)) (see :class:`ExpSigmoid`)."""

    nargs = 2
    is_real = True

    def written(self) -> sympy.Expr:
        """The form printed."""
        u, s = self.args
        return Relu(s * u) + log1p(sympy.exp(-sympy.Abs(u)))


class _Step(Function):
    """A piecewise-constant function: derivative zero almost everywhere."""

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return S.Zero

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real

    def _eval_is_integer(self) -> bool | None:
        return True if self.args[0].is_real else None


class Sign(_Step):
    @classmethod
    def eval(cls, x: sympy.Expr) -> sympy.Expr | None:
        return sympy.sign(x) if _number(x) else None


class Floor(_Step):
    @classmethod
    def eval(cls, x: sympy.Expr) -> sympy.Expr | None:
        return sympy.floor(x) if _number(x) else None


class Ceil(_Step):
    @classmethod
    def eval(cls, x: sympy.Expr) -> sympy.Expr | None:
        return sympy.ceiling(x) if _number(x) else None


class Round(_Step):
    """Round half to even, as torch.round and jnp.round do."""

    @classmethod
    def eval(cls, x: sympy.Expr) -> sympy.Expr | None:
        return sympy.Integer(round(float(x))) if _number(x) else None  # Python rounds half-even
