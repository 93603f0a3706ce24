"""`lossdsl verify`: passes on correct losses, and catches a wrong generated gradient."""

from __future__ import annotations

from pathlib import Path

import pytest

from lossdsl import cache, codegen
from lossdsl.cli import main
from lossdsl.sampling import hard_points, random_points
from tests.conftest import EXAMPLES

pytest.importorskip("torch")


def test_verify_passes_on_examples(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(EXAMPLES / "focal.loss"), str(EXAMPLES / "iou.loss")]
    assert main(["verify", *files, "--backend", "torch", "--points", "3"]) == 0
    out = capsys.readouterr().out
    assert "focal" in out and "iou" in out and "2 passed, 0 failed" in out


def test_verify_catches_a_wrong_gradient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOSSDSL_CACHE_DIR", str(tmp_path))
    cache.clear_memory()
    honest = codegen.with_gradients

    def doubled(plan: codegen.Plan) -> codegen.Plan:
        plan = honest(plan)
        plan.grads = {k: 2 * g for k, g in plan.grads.items()}
        return plan

    spec = tmp_path / "sq.loss"
    spec.write_text("loss sq(x: Real[N]) { return mean(x^2) }\n")
    from lossdsl.backends import torch as torch_backend

    monkeypatch.setattr(torch_backend, "with_gradients", doubled)
    assert main(["verify", str(spec), "--backend", "torch", "--points", "2"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "vs autodiff" in out
    cache.clear_memory()


def test_verify_passes_on_constant_losses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A loss SymPy folds to a constant (`x - x`) has a zero gradient, though torch autograd of
    the reference has no graph to walk."""
    spec = tmp_path / "zero.loss"
    spec.write_text(
        "loss per_element(x: Real[N]) { return x - x }\n"
        "loss total(x: Real[N, C]) { return mean(x - x) + 1 }\n"
    )
    assert main(["verify", str(spec), "--points", "2"]) == 0
    assert "4 passed, 0 failed" in capsys.readouterr().out


def test_sampled_points_respect_declared_types() -> None:
    import lossdsl

    spec = lossdsl.load(EXAMPLES / "cross_entropy.loss")
    for point in random_points(spec.inputs, 3) + hard_points(spec.inputs):
        logits, target = point.inputs
        assert target.dtype.kind == "i" and (target >= 0).all()
        assert (target < logits.shape[1]).all()
