"""One softplus where a loss has both ``softplus(u)`` and ``softplus(-u)``.

Since ``softplus(-u) = softplus(u) - u``,

    a * softplus(-u) + b * softplus(u) = (a + b) * softplus(u) - a * u

Binary cross-entropy on logits, ``t * softplus(-x) + (1 - t) * softplus(x)``, becomes
``softplus(x) - t * x`` and its generated gradient ``sigmoid(x) - t`` instead of
``(1 - t) * sigmoid(x) - t * sigmoid(-x)``: one transcendental kernel instead of four. This is
the form of ATen's own ``binary_cross_entropy_with_logits`` and of optax's
``sigmoid_binary_cross_entropy``, with the same accuracy: an error of a few ulps of ``|u|``
per element where the two terms cancel (a confident, correct logit), against a few ulps of the
element's own (tiny) loss before. A mean over elements sees no difference.

Applied only where ``a + b`` is polynomial in its symbols (it simplifies, as ``t + (1 - t) = 1``
does); a focal loss's coefficients hold sigmoids and are left alone (the sign trick in
``sign_merge`` serves it).
"""

from __future__ import annotations

import sympy

from lossdsl.functions import Softplus


def merge(expr: sympy.Basic) -> sympy.Basic:
    """Merge every pair ``a * softplus(-u) + b * softplus(u)`` of a sum in ``expr``."""
    return expr.replace(lambda e: _pairs(e) is not None, _merge_one)


def _pairs(e: sympy.Basic) -> dict[sympy.Expr, tuple[sympy.Expr, sympy.Expr]] | None:
    """For a sum, ``u -> (a, b)`` of its terms ``a * softplus(-u) + b * softplus(u)`` where
    ``a + b`` is polynomial; ``None`` where there is no such pair."""
    if not isinstance(e, sympy.Add):
        return None
    coeffs: dict[sympy.Expr, list[sympy.Expr]] = {}
    for term in e.args:
        coeff, sp = _softplus_term(term)
        if sp is None:
            continue
        arg = sp.args[0]
        u, at = (-arg, 0) if arg.could_extract_minus_sign() else (arg, 1)
        coeffs.setdefault(u, [sympy.S.Zero, sympy.S.Zero])[at] += coeff
    pairs = {u: (a, b) for u, (a, b) in coeffs.items() if a != 0 and b != 0 and _polynomial(a + b)}
    return pairs or None


def _softplus_term(term: sympy.Expr) -> tuple[sympy.Expr, Softplus | None]:
    """``(coeff, softplus(v))`` for a term ``coeff * softplus(v)`` with one softplus factor."""
    factors = sympy.Mul.make_args(term)
    sps = [f for f in factors if isinstance(f, Softplus)]
    if len(sps) != 1:
        return term, None
    rest = [f for f in factors if f is not sps[0]]
    return sympy.Mul(*rest), sps[0]


def _polynomial(e: sympy.Expr) -> bool:
    return not e.atoms(sympy.Function) and all(
        p.exp.is_Integer and p.exp >= 0 for p in e.atoms(sympy.Pow)
    )


def _merge_one(e: sympy.Add) -> sympy.Expr:
    pairs = _pairs(e)
    assert pairs is not None
    kept = []
    for term in e.args:
        _, sp = _softplus_term(term)
        arg = sp.args[0] if sp is not None else None
        if arg is None or (arg not in pairs and -arg not in pairs):
            kept.append(term)
    merged = [(a + b) * Softplus(u) - a * u for u, (a, b) in pairs.items()]
    return sympy.Add(*kept, *merged)
