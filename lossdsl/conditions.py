"""Comparisons built as conditions that SymPy's ``Piecewise`` keeps as they are (part of the IR).

Two things SymPy does to a condition go wrong on the expressions of a loss:

- A condition that contains a ``Piecewise`` (``where(c, a, b) < y``) is folded and rewritten as
  an ``ITE`` (``ExprCondPair``), which solves each condition for one of its symbols with
  ``solveset`` to see whether the pieces cover the reals. That solve can fail inside SymPy
  (an ``AttributeError`` from ``unrad`` for ``Eq(r + 1.25, log(1.28 * exp(r)))``), and the
  ``ITE`` it leaves is a node every later stage must know.
- ``Piecewise.eval`` rewrites each relation to ``Relational.canonical`` form until nothing
  changes. ``canonical`` orders the two sides by one key and their signs by another, and for
  some pairs flips between two forms for ever (``-g^2*s + s > s*norm(g) + 0.1373``): the
  construction recursed without end.

:func:`compare` builds a relation without either: folded over the pieces by hand into
``And``/``Or``, each relation in a form ``canonical`` settles on.
"""

from __future__ import annotations

import sympy
from sympy import And, Not, Or, Piecewise
from sympy.core.relational import Relational
from sympy.functions.elementary import piecewise as sympy_piecewise


def compare(op: type[Relational], lhs: sympy.Expr, rhs: sympy.Expr) -> sympy.Basic:
    """``op(lhs, rhs)`` as a condition, with no ``Piecewise`` or ``ITE`` in it.

    A ``Piecewise`` in either side is folded out (as SymPy would, through the elementwise
    functions around it) and the relation distributed over its pieces:
    ``where(c, a, b) < y`` is ``(c & (a < y)) | (~c & (b < y))``.

    Args:
        op: the relation, e.g. ``sympy.StrictLessThan``.
        lhs: its left side.
        rhs: its right side.

    Returns:
        The condition (``true`` or ``false`` where SymPy decides it).
    """
    relation = op(lhs, rhs)
    if not isinstance(relation, Relational):
        return relation
    if relation.has(Piecewise):
        # Looked up when called: lossdsl.ir installs a fold that holds the tensor ops it is
        # not an identity for.
        relation = as_condition(sympy_piecewise.piecewise_fold(relation))
    return relation.xreplace({r: settled(r) for r in relation.atoms(Relational)})


def as_condition(cond: sympy.Basic) -> sympy.Basic:
    """A folded condition ``Piecewise((b1, c1), (b2, c2), ...)`` as ``(c1 & b1) | (~c1 & c2 &
    b2) | ...`` (SymPy's own rewrite is the ``ITE`` this module avoids)."""
    if not isinstance(cond, Piecewise):
        return cond
    cases, earlier = [], []
    for value, when in cond.args:
        cases.append(And(*earlier, when, as_condition(value)))
        earlier.append(Not(when))
    return Or(*cases)


def settled(relation: Relational) -> Relational:
    """``relation``, or where ``canonical`` does not settle on one form of it, the same
    relation with everything on the left and 0 on the right: with a number on the right,
    ``canonical`` only chooses the sign of the left side, once."""
    once = relation.canonical
    if not isinstance(once, Relational) or once.canonical == once:
        return relation
    return relation.func(relation.lhs - relation.rhs, 0)


__all__ = ["as_condition", "compare", "settled"]
