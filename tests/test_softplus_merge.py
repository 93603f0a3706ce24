"""One softplus for a ``softplus(-u)``/``softplus(u)`` pair: value-preserving, BCE's form."""

from __future__ import annotations

import sympy

import lossdsl
from lossdsl import codegen, softplus_merge
from lossdsl.functions import Sigmoid, Softplus
from tests.conftest import ROOT


def _plan(source: str, **params: float) -> codegen.Plan:
    spec = lossdsl.parse(source)
    return codegen.specialise(spec.stable_ir, params)


def test_bce_becomes_softplus_minus_target_times_logit() -> None:
    spec = lossdsl.load(ROOT / "specs" / "bce_with_logits.loss")
    plan = codegen.specialise(spec.stable_ir, {})
    merged = softplus_merge.merge(plan.value)
    assert len(plan.value.atoms(Softplus)) == 2
    (sp,) = merged.atoms(Softplus)
    logits, target = spec.stable_ir.input_symbols.values()
    assert sp == Softplus(logits)
    # and its gradient is sigmoid(x) - t: one sigmoid where there were two
    (element,) = [a for a in merged.atoms(sympy.Add) if a.has(Softplus)]
    assert element == Softplus(logits) - logits * target
    assert sympy.expand(element.diff(logits) - (Sigmoid(logits) - target)) == 0


def test_the_merge_is_value_preserving_with_a_weight() -> None:
    plan = _plan(
        "loss f(x: Real[N], t: Prob[N]) { param w: Positive = 1\n"
        "return mean(w * t * softplus(-x) + (1 - t) * softplus(x) + x^2) }",
        w=3.0,
    )
    (region,) = [a for a in plan.value.atoms(sympy.Add) if a.has(Softplus)]
    merged = softplus_merge.merge(region)
    assert len(merged.atoms(Softplus)) == 1
    x, t = sorted(region.free_symbols, key=str)
    for xv in (-30.0, -1.5, 0.0, 0.25, 4.0, 30.0):
        for tv in (0.0, 0.3, 1.0):
            point = {x: xv, t: tv}
            want = float(region.subs(point).evalf(30))
            got = float(merged.subs(point).evalf(30))
            # a few ulps of |x| where the terms cancel: what ATen's BCE kernel also gives
            assert abs(want - got) <= 1e-13 * max(1.0, abs(xv))
            slope = float(region.diff(x).subs(point).evalf(30))
            assert abs(slope - float(merged.diff(x).subs(point).evalf(30))) <= 1e-13


def test_coefficients_that_do_not_simplify_stay() -> None:
    """A focal-like pair, whose coefficients hold sigmoids: merging would add work."""
    plan = _plan(
        "loss f(x: Real[N], t: Prob[N]) {\n"
        "return mean(t * sigmoid(-x)^2 * softplus(-x) + (1 - t) * sigmoid(x)^2 * softplus(x)) }"
    )
    assert softplus_merge.merge(plan.value) == plan.value


def test_a_lone_softplus_stays() -> None:
    plan = _plan("loss f(x: Real[N], t: Prob[N]) { return mean(t * softplus(x) + x) }")
    assert softplus_merge.merge(plan.value) == plan.value


def test_generated_torch_code_uses_one_transcendental_per_pass() -> None:
    source = lossdsl.load(ROOT / "specs" / "bce_with_logits.loss").emit("torch")
    body = source.split("def _value_and_grad", 1)[1].split("\ndef ", 1)[0]
    assert body.count("softplus(") == 1
    # run by blocks of rows: the gradient's one sigmoid is written once for one block (the
    # block's result is the output) and once into the rows of the output
    assert body.count("sigmoid(") == 2
    # a subtraction, not a negation and an add (in place in eager mode)
    assert body.count("torch.sigmoid(logits[_rows]).sub_(target[_rows])") == 2
