"""The sign trick on Binary branches: value-preserving for 0/1 targets, and applied to focal."""

from __future__ import annotations

import sympy

import lossdsl
from lossdsl import codegen, ir, sign_merge
from tests.conftest import EXAMPLES


def test_focal_branches_merge_into_one_evaluation() -> None:
    spec = lossdsl.load(EXAMPLES / "focal.loss")
    plan = codegen.specialise(spec.stable_ir, {})
    (region,) = plan.value.atoms(sympy.Piecewise)  # the elementwise loss under mean[N]
    merged = sign_merge.merge(region, plan.loss)
    assert not merged.has(sympy.Piecewise)
    assert len(merged.atoms(ir.Softplus)) == 1
    logits, target = spec.stable_ir.input_symbols.values()
    for x in (-3.0, 0.5, 40.0):
        for t in (0, 1):
            point = {logits: x, target: t}
            before = region.subs(point)
            after = merged.subs(point)
            assert abs(float(before.evalf()) - float(after.evalf())) < 1e-12


def test_branches_that_are_not_mirror_images_stay() -> None:
    spec = lossdsl.parse(
        "loss f(x: Real[N], t: Binary[N]) { return mean(if t == 1 then x^2 else x^3) }"
    )
    plan = codegen.specialise(spec.stable_ir, {})
    assert sign_merge.merge(plan.value, plan.loss) == plan.value


def test_affine_split_as_a_spec_writes_it_merges_too() -> None:
    """specs/focal.loss writes `target * pos + (1 - target) * neg`: affine in the target, so
    the same trick applies, and the value and gradient keep matching the unmerged loss."""
    spec = lossdsl.load(EXAMPLES.parent.parent / "specs" / "focal.loss")
    plan = codegen.specialise(spec.stable_ir, {})
    merged = sign_merge.merge(plan.value, plan.loss)
    assert merged != plan.value
    assert sympy.count_ops(merged) < sympy.count_ops(plan.value)  # one evaluation, not two
    logits, target = spec.stable_ir.input_symbols.values()
    (region,) = [a for a in plan.value.atoms(sympy.Add) if a.has(target) and a.has(logits)][:1]
    done = sign_merge.merge(region, plan.loss)
    for x in (-30.0, -0.7, 0.0, 2.5, 30.0):
        for t in (0, 1):
            point = {logits: x, target: t}
            want = float(region.subs(point).evalf())
            assert abs(want - float(done.subs(point).evalf())) <= 1e-12 * max(1.0, abs(want))
            slope = float(region.diff(logits).subs(point).evalf())
            got = float(done.diff(logits).subs(point).evalf())
            assert abs(slope - got) <= 1e-12 * max(1.0, abs(slope))


def test_an_affine_sum_that_is_not_a_mirror_image_stays() -> None:
    spec = lossdsl.parse(
        "loss f(x: Real[N], t: Binary[N]) { return mean(t * x^2 + (1 - t) * x^3) }"
    )
    plan = codegen.specialise(spec.stable_ir, {})
    assert sign_merge.merge(plan.value, plan.loss) == plan.value
