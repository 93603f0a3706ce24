"""The `lossdsl check` report: differentiability certificate, domain hazards and the stability
rewrites applied (LANGUAGE.md sections 5 and 6), and its rendering for humans and as JSON.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lossdsl.errors import LossDSLError, Span, render
from lossdsl.ir import LossIR
from lossdsl.rewrite import Rewrite

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Diagnostic:
    """A warning or error about a loss, with the span it is about."""

    severity: str  # "error" | "warning"
    kind: str
    span: Span | None
    message: str
    help: str = ""
    condition: str = ""

    def render(self) -> str:
        return render(self.severity, self.span, self.message, self.help)

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "severity": self.severity,
            "kind": self.kind,
            "message": self.message,
            "help": self.help,
            "condition": self.condition,
        }
        data.update(_location(self.span))
        return data


@dataclass(frozen=True)
class Certificate:
    """The differentiability class of the loss w.r.t. one input."""

    input: str
    klass: str  # smooth | C1 | piecewise | discontinuous
    where: tuple[str, ...] = ()  # conditions (in the spec's names) where the class applies
    subgradient: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "input": self.input,
            "class": self.klass,
            "where": list(self.where),
            "subgradient": self.subgradient,
        }


@dataclass
class Report:
    loss: str
    span: Span | None
    certificates: list[Certificate] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    rewrites: list[Rewrite] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    def to_dict(self) -> dict[str, object]:
        return {
            "loss": self.loss,
            **_location(self.span),
            "certificates": [c.to_dict() for c in self.certificates],
            "diagnostics": [d.to_dict() for d in self.diagnostics],
            "rewrites": [
                {"rule": r.rule, "before": r.before, "after": r.after, **_location(r.span)}
                for r in self.rewrites
            ],
        }

    def render(self, explain: bool = False) -> str:
        head = self.span.location + ": " if self.span else ""
        lines = [f"{head}loss `{self.loss}`"]
        for cert in self.certificates:
            where = f" where {' or '.join(cert.where)}" if cert.where else ""
            sub = f" (subgradient: {cert.subgradient})" if cert.subgradient else ""
            lines.append(f"  {cert.input}: {cert.klass}{where}{sub}")
        lines.extend(d.render() for d in self.diagnostics)
        if explain:
            for r in self.rewrites:
                at = r.span.location + ": " if r.span else ""
                lines.append(f"{at}rewrite {r.rule}: {r.before}  ->  {r.after}")
        return "\n".join(lines)


def _location(span: Span | None) -> dict[str, object]:
    if span is None:
        return {}
    return {"file": span.source.name, "line": span.line, "column": span.column}


def analyse(loss: LossIR, stable: LossIR, rewrites: list[Rewrite]) -> Report:
    """The report for one loss: ``loss`` as written, ``stable`` after rewrites."""
    from lossdsl.certify import certify

    report = Report(loss.name, loss.span, rewrites=list(rewrites))
    certify(loss, stable, report)
    return report


def check_files(paths: list[Path], as_json: bool, strict: bool, explain: bool) -> int:
    """Run `lossdsl check` over files; returns the exit code (0 clean, 1 errors)."""
    from lossdsl.api import load_all

    results: list[dict[str, object]] = []
    failed = False
    for path in paths:
        try:
            reports = [spec.check() for spec in load_all(path)]
        except LossDSLError as exc:
            failed = True
            results.append({"file": str(path), "errors": [exc.to_dict()], "losses": []})
            if not as_json:
                print(exc.render(), file=sys.stderr)
            continue
        for report in reports:
            failed |= bool(report.errors) or (strict and bool(report.warnings))
            if not as_json:
                print(report.render(explain))
        results.append(
            {"file": str(path), "errors": [], "losses": [r.to_dict() for r in reports]}
        )
    if as_json:
        print(json.dumps({"schema": SCHEMA_VERSION, "files": results}, indent=2))
    return 1 if failed else 0
