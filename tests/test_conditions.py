"""Comparisons as conditions SymPy's Piecewise keeps as they are (lossdsl/conditions.py)."""

from __future__ import annotations

import itertools

import pytest
import sympy

from lossdsl import ir
from lossdsl.conditions import compare, settled

X = ir.leaf("x", ("N",))
T = ir.leaf("t", ())


def test_a_plain_relation_is_built_as_sympy_builds_it() -> None:
    for op in (sympy.Lt, sympy.Le, sympy.Gt, sympy.Ge, sympy.Eq, sympy.Ne):
        assert compare(op, X + 1, T) == op(X + 1, T)
    assert compare(sympy.Gt, sympy.exp(X), 0) is sympy.true  # decided by SymPy


def test_an_if_in_a_side_is_distributed_over_the_relation() -> None:
    value = 2 * sympy.Piecewise((X, T > 0), (-X, True)) + 1
    cond = compare(sympy.Gt, value, T)
    assert not cond.has(sympy.Piecewise, sympy.ITE)
    assert cond == sympy.Or(sympy.And(T > 0, 2 * X + 1 > T), sympy.And(T <= 0, 1 - 2 * X > T))
    # the same truth as the relation on the `if` value, evaluated as written
    for x, t in itertools.product((-1.5, -0.25, 0.0, 0.5, 2.0), repeat=2):
        want = bool(value.subs({X: x, T: t}) > t)
        assert bool(cond.subs({X: x, T: t})) is want, (x, t)


def test_ifs_in_both_sides_and_nested() -> None:
    a = sympy.Piecewise((X, X > 1), (sympy.Piecewise((1, T > 0), (2, True)), True))
    b = sympy.Piecewise((T, T < X), (X - 1, True))
    cond = compare(sympy.Ne, a, b)
    assert not cond.has(sympy.Piecewise, sympy.ITE)
    for x, t in itertools.product((-1.0, 0.0, 1.0, 1.5, 2.0, 3.0), repeat=2):
        want = a.subs({X: x, T: t}) != b.subs({X: x, T: t})
        assert bool(cond.subs({X: x, T: t})) is want, (x, t)


def test_an_if_inside_a_tensor_op_that_mixes_its_condition_stays_there() -> None:
    total = ir.ReduceSum.make(sympy.Piecewise((X, X > 0), (0, True)), ("N",))
    assert compare(sympy.Gt, total, 1) == sympy.Gt(total, 1)


def test_k6_relu_of_an_if_whose_condition_sympy_cannot_solve() -> None:
    """SymPy's own route (`ITE`, via `solveset`) raised AttributeError from `unrad` here."""
    r = ir.leaf("r", ("i",), "Positive")
    t = sympy.log(sympy.exp(sympy.Float(0.25) + r))
    u = sympy.Piecewise((r, compare(sympy.Eq, t, sympy.Float(1.25) + r)), (t, True))
    step = sympy.diff(ir.Relu(u), r)
    assert not step.has(sympy.ITE)
    assert float(step.subs(r, 0.5)) == pytest.approx(1.0)  # relu(t), t = 0.75


def test_k7_a_relation_canonical_flips_for_ever_is_written_against_0() -> None:
    grad, os = ir.leaf("grad", ("M",), "NonNegative"), ir.leaf("os", (), "Prob")
    norm = ir.Norm(grad, ir.dims_tuple(("M",)), sympy.Float(0.001))
    lhs, rhs = os - os * grad**2, os * norm + sympy.Float(0.1373)
    flipping = sympy.Gt(lhs, rhs)
    once = flipping.canonical
    assert once.canonical != once and once.canonical.canonical == once  # SymPy's two forms
    fixed = settled(flipping)
    assert fixed == sympy.Gt(lhs - rhs, 0)
    assert fixed.canonical.canonical == fixed.canonical
    assert compare(sympy.Gt, lhs, rhs) == fixed
    assert sympy.Piecewise((1, fixed), (0, True)).args[0].cond == fixed.canonical
    assert settled(sympy.Gt(lhs, 0)) == sympy.Gt(lhs, 0)  # 0 on the right already: as it is
