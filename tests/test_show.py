"""`lossdsl show`: the loss in the language's own notation, LaTeX, and the 1-D plot."""

from __future__ import annotations

from pathlib import Path

import pytest

import lossdsl
from lossdsl.cli import main
from lossdsl.show import LossLatexPrinter, as_text, describe
from tests.conftest import EXAMPLES


def test_text_uses_the_language_notation() -> None:
    spec = lossdsl.load(EXAMPLES / "cross_entropy.loss")
    text = as_text(spec.ir.output)
    assert "log_softmax[C](logits)[target]" in text
    assert "sum[N](" in text and "mean[C](" in text


def test_describe_lists_inputs_params_and_stable_form() -> None:
    text = describe(lossdsl.load(EXAMPLES / "focal.loss"))
    assert "input target: Binary[N]  (data)" in text
    assert "param alpha: Real = 0.25 where 0 <= alpha <= 1" in text
    assert "stable form:" in text and "softplus(-logits)" in text


def test_latex_has_sums_norms_and_sigmoids() -> None:
    latex = LossLatexPrinter().doprint(lossdsl.load(EXAMPLES / "contrastive.loss").ir.output)
    assert r"\sum_{N}" in latex and r"\right\rVert_{D}" in latex


def test_cli_show_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    out = tmp_path / "huber.png"
    assert main(["show", str(EXAMPLES / "huber.loss"), "--plot", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    assert "loss huber" in capsys.readouterr().out
