"""Differentiability certificate and domain hazards (placeholder-free minimal version: records
nothing until the analysis of issue 4 lands)."""

from __future__ import annotations

from typing import Any

from lossdsl.ir import LossIR


def certify(loss: LossIR, stable: LossIR, report: Any) -> None:
    """Fill ``report`` with certificates and hazard diagnostics."""
    del loss, stable, report
