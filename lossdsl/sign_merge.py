"""The sign trick for Binary branches, applied to a loss specialised to its params.

After the Binary split a loss often reads ``where(t == 1, a(x), b(x))`` (or, as a spec may
write it, ``t * a(x) + (1 - t) * b(x)``, which is affine in ``t`` and so equals the ``where`` for
``t`` in {0, 1}) with ``b(x) = k * a(-x)`` for a number ``k`` (focal loss: ``a = alpha *
sigmoid(-x)^g * softplus(-x)``, ``k = (1 - alpha) / alpha``; BCE: ``k = 1``). Then, for ``t``
in {0, 1},

    where(t == 1, a(x), b(x)) = (k + (1 - k) t) * a((2t - 1) * x)

which evaluates ``a`` once instead of both branches: half the transcendental kernels in the value
and in the generated gradient. Value-preserving on the declared domain (``t`` is 0 or 1).
"""

from __future__ import annotations

import sympy

from lossdsl import ir


def merge(expr: sympy.Basic, loss: ir.LossIR) -> sympy.Basic:
    """Apply the sign trick to every Binary branch of ``expr`` where it holds."""
    binaries = {s for i in loss.inputs if i.elem == "Binary" for s in loss.leaves_of(i.name)}
    diffs = [s for i in loss.differentiated() for s in loss.leaves_of(i.name)]
    if not binaries or not diffs:
        return expr

    def fits(e: sympy.Basic) -> bool:
        return _branches(e, binaries) is not None

    return expr.replace(fits, lambda e: _merge_one(e, binaries, diffs))


def _branches(
    e: sympy.Basic, binaries: set[sympy.Symbol]
) -> tuple[sympy.Symbol, sympy.Expr, sympy.Expr] | None:
    if isinstance(e, sympy.Add):  # t * a + (1 - t) * b, as a spec may write the split itself
        ts = [t for t in e.free_symbols & binaries if e.diff(t).free_symbols.isdisjoint({t})]
        if len(ts) == 1 and not e.has(ir.TensorOp, sympy.Piecewise):
            (t,) = ts
            return t, e.xreplace({t: sympy.Integer(1)}), e.xreplace({t: sympy.Integer(0)})
        return None
    if not isinstance(e, sympy.Piecewise) or len(e.args) != 2 or e.args[1].cond is not sympy.true:
        return None
    (a, cond), (b, _) = e.args
    if isinstance(cond, sympy.Eq) and cond.rhs == 1 and cond.lhs in binaries:
        return cond.lhs, a, b
    return None


def _merge_one(
    e: sympy.Basic, binaries: set[sympy.Symbol], diffs: list[sympy.Symbol]
) -> sympy.Basic:
    found = _branches(e, binaries)
    assert found is not None
    t, a, b = found
    used = [x for x in diffs if x in a.free_symbols]
    if len(used) != 1 or a == 0 or a.has(ir.TensorOp) or b.has(ir.TensorOp):
        return e
    (x,) = used
    mirrored = a.xreplace({x: -x})
    ratio = b / mirrored
    if ratio.free_symbols or not ratio.is_number or ratio.has(sympy.zoo, sympy.nan):
        return e
    weight = ratio + (1 - ratio) * t  # 1 where t == 1, ratio where t == 0
    return weight * a.xreplace({x: (2 * t - 1) * x})
