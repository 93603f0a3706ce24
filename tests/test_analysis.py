"""`lossdsl check` (LANGUAGE.md section 5): certificates of the examples and of small specs
covering every class, error and hazard, their rendering, the JSON schema and the exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lossdsl
from lossdsl.analysis import Report
from lossdsl.cli import main
from tests.conftest import EXAMPLES, ROOT, SPECS


def check(source: str, name: str = "t.loss") -> Report:
    report: Report = lossdsl.parse(source, name).check()
    return report


def example(name: str, loss: str | None = None) -> Report:
    report: Report = lossdsl.load(EXAMPLES / f"{name}.loss", loss).check()
    return report


def classes(report: Report) -> dict[str, str]:
    return {c.input: c.klass for c in report.certificates}


def kinds(report: Report) -> list[str]:
    return [d.kind for d in report.diagnostics]


# --- the examples ----------------------------------------------------------------------------


def test_focal_is_smooth_after_rewrites() -> None:
    report = example("focal")
    assert classes(report) == {"logits": "smooth"}
    assert report.diagnostics == []
    where = {(r.rule, r.span.line, r.span.column) for r in report.rewrites if r.span}
    assert where == {
        ("binary_split", 10, 17),
        ("one_minus_sigmoid", 8, 44),
        ("log_sigmoid", 10, 46),
    }


def test_huber_is_c1_where_the_residual_reaches_delta() -> None:
    report = example("huber")
    for name in ("pred", "target"):
        cert = report.certificate(name)
        assert (cert.klass, cert.where) == ("C1", ("abs(pred - target) == delta",))
    (kink,) = report.certificate("pred").breaks
    assert (kink.kind, kink.span.line, kink.span.column, kink.span.text) == (
        "if",
        6,
        20,
        "r <= delta",
    )
    assert report.diagnostics == []


def test_iou_is_piecewise_at_coinciding_edges() -> None:
    report = example("iou")
    cert = report.certificate("pred")
    assert cert.klass == "piecewise"
    assert set(cert.where) == {
        "px1 == tx1",
        "px2 == tx2",
        "py1 == ty1",
        "py2 == ty2",
        "min(px2, tx2) == max(px1, tx1)",
        "min(py2, ty2) == max(py1, ty1)",
    }
    assert cert.subgradient == "max/min pass 1/2 of the gradient to each argument at a tie"
    assert report.certificate("target").klass == "piecewise"
    (division,) = report.diagnostics
    assert (division.kind, division.condition) == ("division", "union == -1e-07")
    assert (division.span.line, division.span.column, division.span.text) == (12, 30, "union + eps")


def test_contrastive_is_piecewise_with_the_norm_at_zero_warning() -> None:
    report = example("contrastive")
    for name in ("a", "b"):
        cert = report.certificate(name)
        assert (cert.klass, cert.where) == ("piecewise", ("a == b",))
        assert [(b.klass, b.condition) for b in cert.breaks] == [
            ("piecewise", "a == b"),
            ("C1", "norm[D](a - b) == margin"),
        ]
    (warning,) = report.diagnostics
    assert warning.render() == (
        "tests/examples/contrastive.loss:6:9: warning: `norm[D](a - b)` is not differentiable "
        "where `a == b`: its square root has an infinite derivative at 0\n"
        "        d = norm[D](a - b)\n"
        "            ^~~~~~~~~~~~~~\n"
        "help: add a small eps inside the root: `norm[D](a - b, eps=1e-12)`; the generated "
        "gradient there is 0"
    ).replace("tests/examples/", str(EXAMPLES) + "/")


def test_stock_is_c1() -> None:
    report = example("stock")
    assert report.certificate("pred").where == ("pred == demand", "pred == 0")
    assert report.certificate("demand").where == ("pred == demand",)
    assert classes(report) == {"pred": "C1", "demand": "C1"}


@pytest.mark.parametrize(
    ("name", "loss", "expected"),
    [
        ("dice", None, {"logits": "smooth"}),
        ("cross_entropy", None, {"logits": "smooth"}),
        ("detection", "bce", {"logits": "smooth"}),
        ("detection", "detection", {"logits": "smooth", "box": "piecewise", "box_gt": "piecewise"}),
    ],
)
def test_other_examples(name: str, loss: str | None, expected: dict[str, str]) -> None:
    report = example(name, loss)
    assert classes(report) == expected
    assert report.errors == []
    assert kinds(report) == (["division"] if loss == "detection" else [])


# --- small specs: every class ----------------------------------------------------------------

CLASS_CASES = [
    ("mean(x^2 + sin(x) + tanh(x) + erf(x))", "smooth", ()),
    ("mean(abs(x)^2)", "smooth", ()),
    ("mean(min(x, 1) + max(x, 1))", "smooth", ()),
    ("mean(abs(x)^3)", "C1", ("x == 0",)),
    ("mean(max(x, 0)^2)", "C1", ("x == 0",)),
    ("mean(if x > 0 then x^2 else 0)", "C1", ("x == 0",)),
    ("mean(relu(x))", "piecewise", ("x == 0",)),
    ("mean(clamp(x, 0, 1))", "piecewise", ("x == 0", "x == 1")),
    ("mean(if x > 0 then x else 0.5 * x)", "piecewise", ("x == 0",)),
    ("mean(sign(x) * x)", "piecewise", ("x == 0",)),
    ("mean(if x > 0 then 1 + x else x)", "discontinuous", ("x == 0",)),
    ("mean(x + round(x))", "discontinuous", ("x is an integer + 0.5",)),
    ("mean(x + floor(2 * x))", "discontinuous", ("2*x is an integer",)),
    ("mean(if x > 0 then log(x) else 0)", "discontinuous", ("x == 0",)),
]


@pytest.mark.parametrize(("body", "klass", "where"), CLASS_CASES)
def test_class_of_small_specs(body: str, klass: str, where: tuple[str, ...]) -> None:
    report = check(f"loss f(x: Real[N]) {{ return {body} }}")
    cert = report.certificate("x")
    assert (cert.klass, cert.where) == (klass, where)


def test_kink_in_two_inputs_and_subgradient() -> None:
    report = check("loss f(x: Real[N], y: Real[N]) { return mean(abs(x - y)) }")
    for name in ("x", "y"):
        cert = report.certificate(name)
        assert (cert.klass, cert.where) == ("piecewise", ("x == y",))
        assert cert.subgradient == "abs has derivative 0 at 0"


def test_max_reduction_ties() -> None:
    report = check("loss f(x: Real[N, C]) { return mean(max[C](x)) }")
    cert = report.certificate("x")
    assert (cert.klass, cert.where) == ("piecewise", ("max[C](x) is attained by two elements",))


def test_a_break_counts_only_for_the_inputs_that_cross_it() -> None:
    report = check("loss f(x: Real[N], y: Real[N]) { return mean(relu(x) * y) }")
    assert classes(report) == {"x": "piecewise", "y": "smooth"}


def test_kink_on_an_unselected_branch_is_not_a_break() -> None:
    # abs(x) only matters where |x| > 1, never at its own kink x == 0
    report = check("loss f(x: Real[N]) { return mean(if abs(x) <= 1 then x^2 else abs(x)^3) }")
    assert report.certificate("x").where == ("abs(x) == 1",)


def test_a_kink_outside_the_declared_domain_is_not_a_break() -> None:
    report = check("loss f(p: Prob[N]) { return mean(relu(p - 2) + p) }")
    assert classes(report) == {"p": "smooth"}


# --- errors: zero gradients ------------------------------------------------------------------


def test_floor_only_is_an_error() -> None:
    report = check("loss f(x: Real[N]) {\n    return mean(floor(x))\n}", "floor.loss")
    (error,) = report.errors
    assert (error.kind, error.span.line, error.span.column) == ("zero-gradient", 2, 17)
    assert error.render().splitlines()[:3] == [
        "floor.loss:2:17: error: the gradient w.r.t. `x` is zero almost everywhere: `x` reaches "
        "the loss only through `floor(x)`, which is piecewise constant",
        "        return mean(floor(x))",
        "                    ^~~~~~~~",
    ]
    assert error.render().splitlines()[3].startswith("help: floor, ceil, round, sign and")


def test_comparison_only_is_an_error() -> None:
    report = check("loss f(x: Real[N]) { return mean(where(x > 0, 1, 0)) }")
    (error,) = report.errors
    assert (error.span.line, error.span.column, error.condition) == (1, 40, "x > 0")
    assert "reaches the loss only through `x > 0`" in error.message


def test_sign_times_another_input() -> None:
    report = check("loss f(x: Real[N], y: Real[N]) { return mean(sign(x) * y) }")
    (error,) = report.errors
    assert "w.r.t. `x`" in error.message and (error.span.line, error.span.column) == (1, 46)
    assert classes(report) == {"x": "discontinuous", "y": "smooth"}


def test_unused_input_is_an_error() -> None:
    report = check("loss f(x: Real[N], y: Real[N]) { return mean(x^2) }", "u.loss")
    (error,) = report.errors
    assert error.render().splitlines()[0] == (
        "u.loss:1:20: error: `y` is not used: the gradient w.r.t. `y` is 0"
    )


def test_labels_are_not_certified() -> None:
    report = check("loss f(x: Real[N], t: Binary[N]) { return mean(t * x^2) }")
    assert classes(report) == {"x": "smooth"} and report.errors == []


# --- hazards ---------------------------------------------------------------------------------

HAZARDS = [
    ("p: Prob[N]", "mean(-log(p))", "log", "p == 0", "log(p)"),
    ("p: Prob[N]", "mean(-log(1 - p))", "log", "p == 1", "log(1 - p)"),
    ("x: Real[N], y: Real[N]", "mean(x / y)", "division", "y == 0", "x / y"),
    ("x: Real[N]", "mean(x^0.5)", "power", "x < 0", "x^0.5"),
    ("x: NonNegative[N]", "mean(sqrt(x))", "sqrt", "x == 0", "sqrt(x)"),
    ("x: Real[N]", "mean(exp(x))", "overflow", "x > 88.72", "exp(x)"),
    ("x: Real[N]", "mean(exp(x) - 1)", "overflow", "x > 88.72", "exp(x) - 1"),
    (  # the difference of two sums can be 0 (and negative) when the sums are of anything
        "x: Real[N, P], y: Real[N, P]",
        "mean(1 / (sum[P](x) - sum[P](y)))",
        "division",
        "sum[P](x) == sum[P](y)",
        "sum[P](x) - sum[P](y)",
    ),
    ("a: Real[N, D], b: Real[N, D]", "mean(norm[D](a - b))", "norm", "a == b", "norm[D](a - b)"),
    (
        "a: Real[N, D], b: Real[N, D]",
        "mean(sqrt(sum[D]((a - b)^2)))",
        "norm",
        "a == b",
        "sqrt(sum[D]((a - b)^2))",
    ),
]


@pytest.mark.parametrize(("decl", "body", "kind", "where", "text"), HAZARDS)
def test_hazard(decl: str, body: str, kind: str, where: str, text: str) -> None:
    source = f"loss f({decl}) {{ return {body} }}"
    (warning,) = check(source).warnings
    assert (warning.kind, warning.condition) == (kind, where)
    assert (warning.span.line, warning.span.column) == (1, source.index(text) + 1)
    assert warning.span.text == text
    assert warning.help and f"`{where}`" in warning.message


SAFE = [
    ("x: Real[N]", "mean(-log(sigmoid(x)))"),
    ("x: Real[N]", "mean(log(1 - sigmoid(x)))"),
    ("x: Real[N]", "mean(log(1 + exp(x)))"),
    ("x: Real[N]", "mean(exp(-softplus(x)))"),
    ("x: Real[N], y: Real[N]", "mean(x / (y^2 + 1))"),
    ("p: Prob[N]", "mean(where(p > 0, p * log(p), 0))"),
    ("p: Prob[N]", "mean(log(max(p, 1e-12)))"),
    ("a: Real[N, D], b: Real[N, D]", "mean(norm[D](a - b, eps=1e-12))"),
    ("a: Real[N, D], b: Real[N, D]", "mean(norm[D](a - b)^2)"),
    ("x: Real[N, C]", "mean(log(sum[C](exp(x))))"),
    ("x: Real[N, C]", "mean(-log(softmax[C](x)))"),
    # a difference of sums over one dim is the sum of the difference: sum(p * (1 - t)) >= 0
    (
        "x: Real[N, P], t: Binary[N, P]",
        "mean(1 / (sum[P](sigmoid(x)) - sum[P](sigmoid(x) * t) + 1))",
    ),
]


@pytest.mark.parametrize(("decl", "body"), SAFE)
def test_no_hazard(decl: str, body: str) -> None:
    report = check(f"loss f({decl}) {{ return {body} }}")
    assert report.diagnostics == []


def test_a_log_of_an_interval_open_at_zero_is_bounded_below_by_minus_inf() -> None:
    """log_softmax of a constant row takes a log of a bound open at 0: -inf there, not a
    math domain error (found by tests/test_fuzz.py). Only the unused input is reported."""
    body = "mean((0.25 + softplus(size(N) + log_softmax[N](where(2 < y + 2.1373, 2, 2)))) ^ 0.5)"
    report = check(f"loss b(y: Positive[N]) {{ return {body} }}")
    assert [d.kind for d in report.diagnostics] == ["unused"]


def test_naive_bce_on_probabilities_warns_at_both_ends() -> None:
    text = "loss f(p: Prob[N], t: Binary[N]) { return mean(-log(t * p + (1 - t) * (1 - p))) }"
    report = check(text)
    assert [(w.kind, w.condition) for w in report.warnings] == [
        ("log", "p == 0"),
        ("log", "p == 1"),
    ]
    assert classes(report) == {"p": "smooth"}


# --- output: rendering, JSON, exit codes ------------------------------------------------------


def test_render_lists_certificates_then_diagnostics() -> None:
    lines = example("contrastive").render().splitlines()
    assert lines[0].endswith("loss `contrastive`: 0 error(s), 1 warning(s)")
    assert lines[1] == (
        "  a: piecewise where a == b (subgradient: norm has gradient 0 at 0); "
        "C1 where norm[D](a - b) == margin"
    )
    assert ": warning: `norm[D](a - b)`" in lines[3]


def test_explain_shows_rewrites_with_spans(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--explain", str(EXAMPLES / "focal.loss")]) == 0
    out = capsys.readouterr().out
    assert "focal.loss:10:46: rewrite: `log_sigmoid`: `log(sigmoid(logits))` -> " in out
    assert "        return mean(alpha_t * (1 - p_t)^gamma * -log(p_t))" in out
    assert "identity: log(sigmoid(x)) = -softplus(-x)" in out


def test_json_is_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--json", str(EXAMPLES / "huber.loss")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["schema"] == 1 and data["exit_code"] == 0
    assert data["summary"] == {"losses": 1, "errors": 0, "warnings": 0}
    (entry,) = data["files"]
    assert entry["losses"] == [lossdsl.load(EXAMPLES / "huber.loss").check().to_dict()]
    cert = entry["losses"][0]["certificates"][0]
    assert set(cert) == {"input", "class", "where", "subgradient", "breaks"}
    assert set(cert["breaks"][0]) >= {"condition", "class", "kind", "line", "column"}


def test_json_diagnostic_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--json", str(EXAMPLES / "contrastive.loss")]) == 0
    (diag,) = json.loads(capsys.readouterr().out)["files"][0]["losses"][0]["diagnostics"]
    assert {k: diag[k] for k in ("severity", "kind", "condition", "line", "column")} == {
        "severity": "warning",
        "kind": "norm",
        "condition": "a == b",
        "line": 6,
        "column": 9,
    }


def test_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.loss"
    bad.write_text("loss f(x: Real[N]) { return mean(round(x)) }\n")
    broken = tmp_path / "broken.loss"
    broken.write_text("loss f(x: Real[N]) { return mean(x +) }\n")
    contrastive = str(EXAMPLES / "contrastive.loss")
    assert main(["check", str(EXAMPLES / "dice.loss")]) == 0
    assert main(["check", contrastive]) == 0
    assert main(["check", "--strict", contrastive]) == 1
    assert main(["check", str(bad)]) == 1
    assert main(["check", str(broken)]) == 1
    assert main(["check", str(tmp_path / "missing.loss")]) == 2
    with pytest.raises(SystemExit) as usage:
        main(["check", "--no-such-flag", contrastive])
    assert usage.value.code == 2
    capsys.readouterr()


def test_report_is_deterministic() -> None:
    first = example("iou").to_dict()
    assert example("iou").to_dict() == first


# --- the library -----------------------------------------------------------------------------

LIBRARY = sorted(SPECS.glob("*.loss"))


@pytest.mark.parametrize("path", LIBRARY, ids=[p.stem for p in LIBRARY])
def test_library_spec_checks_clean_of_errors(path: Path) -> None:
    for spec in lossdsl.load_all(path):
        report = spec.check()
        assert report.errors == []
        assert [c.input for c in report.certificates] == [
            i.name for i in spec.inputs if i.differentiated
        ]


@pytest.mark.skipif(not LIBRARY, reason="no library specs yet")
def test_checking_the_whole_library_takes_under_5_seconds() -> None:
    command = [sys.executable, "-m", "lossdsl.cli", "check", *map(str, LIBRARY)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    assert f"checked {len(LIBRARY)} loss(es)" in done.stdout
    assert elapsed < 5.0


# --- the pieces the certificate is built from -------------------------------------------------


def test_break_order_of_one_sided_series() -> None:
    import sympy

    from lossdsl.ir import Relu
    from lossdsl.jets import break_order, line

    x, y = sympy.symbols("x y", real=True)
    through_zero = line({x: 0.0, y: 0.0}, {x: 0.6, y: 0.8}, 0.0)
    cases = {
        sympy.Max(x, 0) ** 2: 2,
        Relu(x): 1,
        sympy.Piecewise((1 + x, x > 0), (x, True)): 0,
        sympy.Piecewise((sympy.log(x), x > 0), (0, True)): 0,
        sympy.Piecewise((sympy.sqrt(x), x > 0), (0, True)): 1,
        sympy.exp(x) * sympy.sin(y): None,
        sympy.sqrt(x**2 + y**2): 1,
        (1 - sympy.sqrt(x**2 + y**2)) ** 2: 1,
        sympy.sqrt(x**2 + y**2) ** 2: None,
    }
    for expr, order in cases.items():
        assert break_order(expr, through_zero) == order, expr


def test_jets_decide_an_ite_condition() -> None:
    """SymPy's form of a condition on an `if` value (once K4: no rule for it)."""
    import sympy

    from lossdsl.jets import Evaluator, break_order, line

    x, y = sympy.symbols("x y", real=True)
    cond = sympy.ITE(y > 0, x > 0, x < -1)
    assert Evaluator({x: 0.5, y: 1.0}).truth(cond)
    assert not Evaluator({x: 0.5, y: -1.0}).truth(cond)
    jump = sympy.Piecewise((1 + x, cond), (x, True))
    assert break_order(jump, line({x: 0.0, y: 1.0}, {x: 1.0}, 0.0)) == 0
    assert break_order(jump, line({x: 0.0, y: -1.0}, {x: 1.0}, 0.0)) is None


def test_a_kink_the_jets_cannot_evaluate_gets_the_worst_class_of_its_kind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lossdsl import jets

    def unsupported(self: jets.Evaluator, e: object) -> jets.Jet:
        raise jets.Unsupported("no series rule for `Relu`")

    monkeypatch.setattr(jets.Evaluator, "_eval_Relu", unsupported)
    report = check("loss f(x: Real[N], y: Real[N]) {\n    return sum(relu(x) * y)\n}")
    assert classes(report) == {"x": "piecewise", "y": "smooth"}


def test_the_zero_of_a_norm_is_not_solved_for_from_a_singular_system() -> None:
    """An unknown no element depends on (through `ceil`, in the valid-spec fuzz's seed 125):
    mpmath's LU raised TypeError, not ZeroDivisionError, for the zero column."""
    import sympy

    from lossdsl.certify import _solve_linear

    x, y = sympy.symbols("x y", real=True)
    assert _solve_linear([y - 1, 2 * y + 1], [x, y], {}) is None
    assert _solve_linear([sympy.log(x), y], [x, y], {}) is None  # log(0): not finite
    assert _solve_linear([x - 1, x + y], [x, y], {}) == {x: 1.0, y: -1.0}


def test_bounds_know_what_assumptions_do_not() -> None:
    import sympy

    from lossdsl.bounds import loss_bounds

    spec = lossdsl.parse(
        "loss f(p: Prob[N], x: Real[N]) {\n    return mean(log(1 - p) + log(1 - sigmoid(x)))\n}"
    )
    bounds = loss_bounds(spec.ir)
    p, x = spec.ir.input_symbols["p"], spec.ir.input_symbols["x"]
    sigmoid = next(
        n for n in sympy.preorder_traversal(spec.ir.output) if n.func.__name__ == "Sigmoid"
    )
    assert bounds.nonnegative(1 - p) and not bounds.positive(1 - p)
    assert bounds.positive(1 - sigmoid) and not bounds.positive(x)
    assert bounds.assuming(p > 0).positive(p)
    assert bounds.positive(x**2 + 1) and not bounds.nonzero(x)


def test_notation_prints_the_language() -> None:
    spec = lossdsl.load(EXAMPLES / "contrastive.loss")
    from lossdsl.notation import Namer

    namer = Namer(spec.ir)
    assert namer.show(spec.ir.output, short=1000) == (
        "mean[N](same*norm[D](a - b)^2 + max(margin - norm[D](a - b), 0)^2*(1 - same))"
    )
    assert namer.show(spec.ir.output) == "mean[N](same*d^2 + max(margin - d, 0)^2*(1 - same))"
