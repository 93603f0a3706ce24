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
