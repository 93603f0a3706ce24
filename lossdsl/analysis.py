"""The `lossdsl check` report: differentiability certificate, domain hazards and the stability
rewrites applied (LANGUAGE.md sections 5 and 6), and its rendering for humans and as JSON
(the schema is documented in docs/check.md).
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
EXIT_CLEAN, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Differentiability classes, best first.
CLASSES = ("smooth", "C1", "piecewise", "discontinuous")


@dataclass(frozen=True)
class Diagnostic:
    """A warning or error about a loss, with the span it is about.

    Attributes:
        severity: ``"error"`` or ``"warning"``.
        kind: ``zero-gradient``, ``unused``, ``log``, ``sqrt``, ``norm``, ``division``,
            ``power`` or ``overflow``.
        condition: where the problem occurs, in the spec's names (``a == b``).
    """

    severity: str
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
        data.update(location(self.span))
        return data


@dataclass(frozen=True)
class Break:
    """A set where the loss is less than smooth in some inputs.

    Attributes:
        condition: the set, in the spec's names (``abs(pred - target) == delta``).
        klass: the class across it: C1, piecewise or discontinuous.
        kind: what makes it: abs, max, min, relu, clamp, if, sign, step, tie or norm.
        subgradient: what the generated gradient is on the set ("" where it is continuous).
        inputs: the differentiated inputs whose change crosses the set.
    """

    condition: str
    klass: str
    kind: str
    span: Span | None
    subgradient: str = ""
    inputs: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "condition": self.condition,
            "class": self.klass,
            "kind": self.kind,
            "subgradient": self.subgradient,
        }
        data.update(location(self.span))
        return data


@dataclass(frozen=True)
class Certificate:
    """The differentiability class of the loss w.r.t. one input.

    Attributes:
        klass: smooth | C1 | piecewise | discontinuous: the worst over ``breaks``.
        where: the conditions of the breaks of that class (empty for smooth).
        subgradient: what the generated gradient uses on them.
        breaks: every break in this input, worst first.
    """

    input: str
    klass: str
    where: tuple[str, ...] = ()
    subgradient: str = ""
    breaks: tuple[Break, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "input": self.input,
            "class": self.klass,
            "where": list(self.where),
            "subgradient": self.subgradient,
            "breaks": [b.to_dict() for b in self.breaks],
        }

    def render(self) -> str:
        text = f"  {self.input}: {self.klass}"
        if self.where:
            text += f" where {' or '.join(self.where)}"
        if self.subgradient:
            text += f" (subgradient: {self.subgradient})"
        milder = [b for b in self.breaks if b.klass != self.klass]
        for klass in CLASSES:
            conditions = [b.condition for b in milder if b.klass == klass]
            if conditions:
                text += f"; {klass} where {' or '.join(conditions)}"
        return text


@dataclass
class Report:
    """What `lossdsl check` says about one loss; ``spec.check()`` returns it."""

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

    def certificate(self, input_name: str) -> Certificate:
        """The certificate of one input, by name."""
        return next(c for c in self.certificates if c.input == input_name)

    def to_dict(self) -> dict[str, object]:
        return {
            "loss": self.loss,
            **location(self.span),
            "certificates": [c.to_dict() for c in self.certificates],
            "diagnostics": [d.to_dict() for d in self.diagnostics],
            "rewrites": [
                {
                    "rule": r.rule,
                    "identity": r.identity,
                    "before": r.before,
                    "after": r.after,
                    **location(r.span),
                }
                for r in self.rewrites
            ],
        }

    def render(self, explain: bool = False) -> str:
        head = self.span.location + ": " if self.span else ""
        counts = f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)"
        lines = [f"{head}loss `{self.loss}`: {counts}"]
        lines.extend(cert.render() for cert in self.certificates)
        lines.extend(d.render() for d in self.diagnostics)
        if explain:
            lines.extend(_explain_rewrite(r) for r in self.rewrites)
            lines.extend(_explain_break(b) for b in _unique_breaks(self.certificates))
        return "\n".join(lines)


def _explain_rewrite(r: Rewrite) -> str:
    text = render("rewrite", r.span, f"`{r.rule}`: `{r.before}` -> `{r.after}`")
    return text + (f"\n  identity: {r.identity}" if r.identity else "")


def _explain_break(b: Break) -> str:
    sub = f"; the gradient there: {b.subgradient}" if b.subgradient else ""
    inputs = ", ".join(f"`{name}`" for name in b.inputs)
    message = f"{b.klass} in {inputs} where `{b.condition}` ({b.kind}){sub}"
    return render("note", b.span, message)


def _unique_breaks(certificates: list[Certificate]) -> list[Break]:
    seen: dict[tuple[str, str], Break] = {}
    for cert in certificates:
        for b in cert.breaks:
            seen.setdefault((b.condition, b.kind), b)
    return list(seen.values())


def location(span: Span | None) -> dict[str, object]:
    """A span as JSON fields (empty for none)."""
    if span is None:
        return {}
    return {
        "file": span.source.name,
        "line": span.line,
        "column": span.column,
        "end_line": span.end_line,
        "end_column": span.end_column,
    }


def analyse(loss: LossIR, stable: LossIR, rewrites: list[Rewrite]) -> Report:
    """The report for one loss: ``loss`` as written, ``stable`` after rewrites."""
    from lossdsl.certify import certify

    report = Report(loss.name, loss.span, rewrites=list(rewrites))
    certify(loss, stable, report)
    return report


def check_files(paths: list[Path], as_json: bool, strict: bool, explain: bool) -> int:
    """Run `lossdsl check` over files.

    Returns:
        The exit code: 0 clean, 1 errors (or warnings with ``strict``), 2 a missing file.
    """
    missing = [p for p in paths if not p.is_file()]
    if missing or not paths:
        name = missing[0] if missing else "(none given)"
        print(f"lossdsl check: no such file: {name}", file=sys.stderr)
        return EXIT_USAGE
    totals = {"losses": 0, "errors": 0, "warnings": 0}
    results = [_check_file(path, totals, as_json, explain) for path in paths]
    failed = totals["errors"] > 0 or (strict and totals["warnings"] > 0)
    code = EXIT_FAILED if failed else EXIT_CLEAN
    if as_json:
        data = {"schema": SCHEMA_VERSION, "files": results, "summary": totals, "exit_code": code}
        print(json.dumps(data, indent=2))
    else:
        print(
            f"checked {totals['losses']} loss(es) in {len(paths)} file(s): "
            f"{totals['errors']} error(s), {totals['warnings']} warning(s)"
        )
    return code


def _check_file(path: Path, totals: dict[str, int], as_json: bool, explain: bool) -> dict:
    """One file's entry of the JSON output; prints its reports unless ``as_json``."""
    from lossdsl.api import load_all

    try:
        reports = [spec.check() for spec in load_all(path)]
    except LossDSLError as exc:
        totals["errors"] += 1
        if not as_json:
            print(exc.render(), file=sys.stderr)
        return {"file": str(path), "errors": [exc.to_dict()], "losses": []}
    for report in reports:
        totals["losses"] += 1
        totals["errors"] += len(report.errors)
        totals["warnings"] += len(report.warnings)
        if not as_json:
            print(report.render(explain))
    return {"file": str(path), "errors": [], "losses": [r.to_dict() for r in reports]}
