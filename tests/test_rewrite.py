"""Stability rewrites (LANGUAGE.md section 6): each rule fires where it should, preserves the
value on the declared domain, and is recorded once with the span of the source it rewrote."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import sympy

import lossdsl
from lossdsl.domain import Sampler
from lossdsl.jets import Evaluator
from lossdsl.rewrite import BINARY_SPLIT, RULES
from lossdsl.scalar import Scalarizer
from tests.conftest import EXAMPLES

# rule -> (declarations, body, the source text the rewrite is reported at)
FIRES = {
    "one_minus_sigmoid": ("x: Real[N]", "mean(log(1 - sigmoid(x)))", "1 - sigmoid(x)"),
    "sigmoid": ("x: Real[N]", "mean(log(1 / (1 + exp(-x))))", "1 / (1 + exp(-x))"),
    "log_sigmoid": ("x: Real[N]", "mean(-log(sigmoid(x)))", "log(sigmoid(x))"),
    "log_softmax": ("x: Real[N, C]", "mean(-log(softmax[C](x)))", "log(softmax[C](x))"),
    "logsumexp": ("x: Real[N, C]", "mean(log(sum[C](exp(x))))", "log(sum[C](exp(x)))"),
    "softplus": ("x: Real[N]", "mean(log(1 + exp(x)))", "log(1 + exp(x))"),
    "log1p": ("x: Positive[N]", "mean(log(1 + x))", "log(1 + x)"),
    "expm1": ("x: Real[N]", "mean(x * (exp(x) - 1))", "exp(x) - 1"),
    "binary_split": (
        "p: Prob[N], t: Binary[N]",
        "mean(-log(t * p + (1 - t) * (1 - p)))",
        "-log(t * p + (1 - t) * (1 - p))",
    ),
}


def spec_of(decl: str, body: str) -> lossdsl.Spec:
    return lossdsl.parse(f"loss f({decl}) {{\n    return {body}\n}}", "r.loss")


def test_every_rule_is_a_named_entry_with_its_identity() -> None:
    names = [rule.name for rule in RULES]
    assert len(set(names)) == len(names)
    assert set(FIRES) == {*names, "binary_split"}
    for rule in RULES:
        assert "=" in rule.identity and rule.name.replace("_", "") != ""
    assert "t in {0, 1}" in BINARY_SPLIT


@pytest.mark.parametrize("rule", sorted(FIRES))
def test_rule_fires_once_at_its_source_span(rule: str) -> None:
    decl, body, text = FIRES[rule]
    spec = spec_of(decl, body)
    mine = [r for r in spec.rewrites if r.rule == rule]
    assert len(mine) == 1, spec.rewrites
    (applied,) = mine
    assert (applied.span.line, applied.span.text) == (2, text)
    assert applied.identity and applied.before != applied.after


def same_value(spec: lossdsl.Spec, sizes: dict[str, int], seeds: int) -> None:
    """The IR as written and the stable IR agree at points of the declared domain."""
    before = Scalarizer(spec.ir, sizes).run()
    after = Scalarizer(spec.stable_ir, sizes).run()
    sampler = Sampler(spec.ir, before, random.Random(0))
    for seed in range(seeds):
        point = sampler.point(first=seed == 0)
        want, got = Evaluator(point)(before.output), Evaluator(point)(after.output)
        assert isinstance(want, float) and isinstance(got, float)
        assert math.isclose(want, got, rel_tol=1e-10, abs_tol=1e-12), (seed, point)


@pytest.mark.parametrize("rule", sorted(FIRES))
def test_rule_preserves_the_value(rule: str) -> None:
    decl, body, _ = FIRES[rule]
    same_value(spec_of(decl, body), {"N": 3, "C": 4}, seeds=8)


@pytest.mark.parametrize(
    ("body", "after"),
    [
        ("mean(4 / (0.25 + exp(x)))", "4.0*sigmoid(-1.3862943611198906 - x)"),
        ("mean((2 + 3 * exp(-x))^-2)", "(0.25)*sigmoid(x + log(2/3))^2"),
        ("mean(1 / sqrt(1 + exp(x)))", "sqrt(sigmoid(-x))"),
        # a product of sums, multiplied out (`exp(6 + log(0.25 + exp(x)))` once SymPy is done)
        (
            "mean(1 / ((exp(x) + 0.25) * exp(6) + 0.25))",
            "0.009890492626539097*sigmoid(-1.3838186759821602 - x)",
        ),
    ],
)
def test_sigmoid_of_a_scaled_exp_sum(body: str, after: str) -> None:
    """(a + b*exp(u))^-k with numbers a, b, k > 0 is a power of a shifted sigmoid, with the
    same value (and a finite derivative where exp(u) overflows)."""
    spec = spec_of("x: Real[N]", body)
    (applied,) = spec.rewrites
    assert applied.rule == "sigmoid" and applied.after == after
    same_value(spec, {"N": 3}, seeds=8)


@pytest.mark.parametrize(
    ("body", "after"),
    [
        ("mean(log(0.25 + exp(x)))", "softplus(x + 1.3862943611198906) - 1.3862943611198906"),
        ("mean(log(2 + 3 * exp(-x)))", "softplus(log(1.5) - x) + log(2)"),
    ],
)
def test_softplus_of_a_scaled_exp_sum(body: str, after: str) -> None:
    """log(a + b*exp(u)) with numbers a, b > 0 is log(a) plus a shifted softplus."""
    spec = spec_of("x: Real[N]", body)
    (applied,) = spec.rewrites
    assert applied.rule == "softplus" and applied.after == after
    same_value(spec, {"N": 3}, seeds=8)


@pytest.mark.parametrize(
    "body", ["mean(1 / (exp(x) - 1))", "mean(1 / (x + exp(x)))", "mean((1 + exp(x))^2)"]
)
def test_no_sigmoid_where_the_sum_can_vanish_or_the_power_is_positive(body: str) -> None:
    assert "sigmoid" not in [r.rule for r in spec_of("x: Real[N]", body).rewrites]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.loss")), ids=lambda p: p.stem)
def test_examples_keep_their_value(path: Path) -> None:
    for spec in lossdsl.load_all(path):
        sizes = {d: int(d) if d.isdigit() else 3 for d in spec.ir.order}
        same_value(spec, sizes, seeds=4)


def test_focal_rewrites_point_at_the_spec_not_the_loss() -> None:
    spec = lossdsl.load(EXAMPLES / "focal.loss")
    shown = [(r.rule, r.span.line, r.span.column, r.before, r.after) for r in spec.rewrites]
    assert shown == [
        (
            "binary_split",
            10,
            17,
            "-(1 - p_t)^gamma*alpha_t*log(p_t)",
            "where(target == 1, -alpha*(1 - p)^gamma*log(p), -p^gamma*(1 - alpha)*log(1 - p))",
        ),
        ("one_minus_sigmoid", 8, 44, "1 - sigmoid(logits)", "sigmoid(-logits)"),
        ("log_sigmoid", 10, 46, "log(sigmoid(logits))", "-softplus(-logits)"),
        ("log_sigmoid", 10, 46, "log(sigmoid(-logits))", "-softplus(logits)"),
    ]


def test_stable_ir_keeps_spans_for_new_nodes() -> None:
    spec = lossdsl.load(EXAMPLES / "focal.loss")
    softplus = [
        n for n in sympy.preorder_traversal(spec.stable_ir.output) if n.func.__name__ == "Softplus"
    ]
    assert softplus and all(spec.stable_ir.spans[n].line == 10 for n in softplus)
    assert len(spec.ir.spans) < len(spec.stable_ir.spans)


def test_binary_split_is_a_select() -> None:
    spec = spec_of("p: Prob[N], t: Binary[N]", "mean(-log(t * p + (1 - t) * (1 - p)))")
    (split,) = [n for n in sympy.preorder_traversal(spec.stable_ir.output) if n.is_Piecewise]
    (_, cond), _ = split.args
    assert cond == sympy.Eq(spec.ir.input_symbols["t"], 1)


def test_binary_split_of_a_product_that_can_be_infinite() -> None:
    # t*log(p) is NaN at t = 0, p = 0; the select is finite
    spec = spec_of("p: Prob[N], t: Binary[N]", "mean(-(t * log(p) + (1 - t) * log(1 - p)))")
    assert [r.rule for r in spec.rewrites] == ["binary_split", "log1p"]


def test_no_split_where_the_label_enters_linearly_and_safely() -> None:
    spec = spec_of("x: Real[N], t: Binary[N]", "mean(t * softplus(-x) + (1 - t) * softplus(x))")
    assert spec.rewrites == []
    assert spec.stable_ir.output == spec.ir.output


def test_binary_split_inside_a_reduction_splits_that_region_only() -> None:
    spec = spec_of(
        "x: Real[N, P], t: Binary[N, P]",
        "mean(1 + sum[P](log(t * sigmoid(x) + (1 - t) * (1 - sigmoid(x)))))",
    )
    (split,) = [r for r in spec.rewrites if r.rule == "binary_split"]
    assert split.before.startswith("log(")
    assert split.span.text == "log(t * sigmoid(x) + (1 - t) * (1 - sigmoid(x)))"


def test_two_binary_inputs_nest() -> None:
    spec = spec_of(
        "x: Real[N], s: Binary[N], t: Binary[N]",
        "mean(log(s * t * sigmoid(x) + (1 - s * t) * sigmoid(-x)))",
    )
    assert [r.rule for r in spec.rewrites].count("binary_split") == 2
    assert "log" not in str(spec.stable_ir.output)


def test_rules_do_not_fire_elsewhere() -> None:
    spec = spec_of("x: Positive[N]", "mean(log(2 + x) + exp(x) - 2 + log(sigmoid(x) + 2))")
    assert [r.rule for r in spec.rewrites] == []


def test_rewrites_chain_to_a_fixed_point() -> None:
    spec = spec_of("x: Real[N]", "mean(log(1 - 1 / (1 + exp(-x))))")
    assert [r.rule for r in spec.rewrites] == ["sigmoid", "one_minus_sigmoid", "log_sigmoid"]
    assert str(spec.stable_ir.output).count("Softplus") == 1
