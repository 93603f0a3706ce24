"""Lowering: every example's IR, evaluated at a few numeric points, equals a hand computation of
the loss in NumPy; leaves carry their dims and their type's assumptions; the documented
subgradients at kinks hold in the IR."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import sympy

import lossdsl
from lossdsl import ir
from tests.conftest import EXAMPLES
from tests.ireval import Evaluator, evaluate

Inputs = dict[str, np.ndarray]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def softplus(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.exp(x))


# --- hand computations: each loss written out in NumPy from its formula ----------------------


def contrastive(a: np.ndarray, b: np.ndarray, same: np.ndarray, margin: float = 1.0) -> float:
    d = np.sqrt(((a - b) ** 2).sum(axis=1))
    return float(np.mean(same * d**2 + (1 - same) * np.maximum(margin - d, 0) ** 2))


def cross_entropy(
    logits: np.ndarray, target: np.ndarray, weight: Any = 1.0, smoothing: float = 0.0
) -> float:
    n, c = logits.shape
    weight = np.broadcast_to(np.asarray(weight, float), (c,))
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    rows = np.arange(n)
    w = weight[target]
    nll = -logp[rows, target]
    soft = -(weight * logp).sum(axis=1) / c
    return float((w * (1 - smoothing) * nll + smoothing * soft).sum() / w.sum())


def bce(logits: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(target * softplus(-logits) + (1 - target) * softplus(logits)))


def iou(pred: np.ndarray, target: np.ndarray) -> float:
    px1, py1, px2, py2 = pred.T
    tx1, ty1, tx2, ty2 = target.T
    iw = np.maximum(np.minimum(px2, tx2) - np.maximum(px1, tx1), 0)
    ih = np.maximum(np.minimum(py2, ty2) - np.maximum(py1, ty1), 0)
    inter = iw * ih
    union = (px2 - px1) * (py2 - py1) + (tx2 - tx1) * (ty2 - ty1) - inter
    return float(np.mean(1 - inter / (union + 1e-7)))


def detection(logits, target, box, box_gt, box_weight: float = 2.0) -> float:  # type: ignore[no-untyped-def]
    return bce(logits, target) + box_weight * iou(box, box_gt)


def dice(logits: np.ndarray, target: np.ndarray, smooth: float = 1.0) -> float:
    p = sigmoid(logits)
    inter = (p * target).sum(axis=1)
    return float(np.mean(1 - (2 * inter + smooth) / (p.sum(axis=1) + target.sum(axis=1) + smooth)))


def focal(logits: np.ndarray, target: np.ndarray, gamma: float = 2.0, alpha: float = 0.25) -> float:
    p = sigmoid(logits)
    p_t = target * p + (1 - target) * (1 - p)
    alpha_t = target * alpha + (1 - target) * (1 - alpha)
    return float(np.mean(alpha_t * (1 - p_t) ** gamma * -np.log(p_t)))


def huber(pred: np.ndarray, target: np.ndarray, delta: float = 1.0) -> float:
    r = np.abs(pred - target)
    return float(np.mean(np.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta))))


def stock(pred, demand, under: float = 3.0, over: float = 1.0, barrier: float = 10.0) -> float:  # type: ignore[no-untyped-def]
    r = pred - demand
    asym = np.where(r < 0, under * r**2, over * r**2)
    return float(np.mean(asym) + barrier * np.mean(np.maximum(-pred, 0) ** 2))


# --- random points of the right types ---------------------------------------------------------


def boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    corner = rng.normal(size=(n, 2))
    size = rng.uniform(0.2, 2.0, size=(n, 2))
    return np.concatenate([corner, corner + size], axis=1)


def binary(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(0, 2, size=shape).astype(float)


POINTS: dict[str, Callable[[np.random.Generator], Inputs]] = {
    "contrastive": lambda r: {
        "a": r.normal(size=(5, 3)),
        "b": r.normal(size=(5, 3)) * 0.3,
        "same": binary(r, 5),
    },
    "cross_entropy": lambda r: {"logits": r.normal(size=(6, 4)) * 3, "target": r.integers(0, 4, 6)},
    "bce": lambda r: {"logits": r.normal(size=7) * 4, "target": binary(r, 7)},
    "detection": lambda r: {
        "logits": r.normal(size=5),
        "target": binary(r, 5),
        "box": boxes(r, 5),
        "box_gt": boxes(r, 5),
    },
    "dice": lambda r: {"logits": r.normal(size=(3, 8)) * 2, "target": binary(r, 3, 8)},
    "focal": lambda r: {"logits": r.normal(size=9) * 3, "target": binary(r, 9)},
    "huber": lambda r: {"pred": r.normal(size=10) * 2, "target": r.normal(size=10)},
    "iou": lambda r: {"pred": boxes(r, 6), "target": boxes(r, 6)},
    "stock": lambda r: {"pred": r.normal(size=8) * 2, "demand": r.uniform(0, 3, 8)},
}
HAND: dict[str, Callable[..., float]] = {
    "contrastive": contrastive,
    "cross_entropy": cross_entropy,
    "bce": bce,
    "detection": detection,
    "dice": dice,
    "focal": focal,
    "huber": huber,
    "iou": iou,
    "stock": stock,
}
# Non-default params, so the params flow through the IR too.
PARAMS: dict[str, dict[str, Any]] = {
    "contrastive": {"margin": 2.5},
    "cross_entropy": {"weight": np.array([0.5, 1.0, 2.0, 3.0]), "smoothing": 0.1},
    "detection": {"box_weight": 0.7},
    "dice": {"smooth": 0.0},
    "focal": {"gamma": 0.5, "alpha": 0.6},
    "huber": {"delta": 0.3},
    "stock": {"under": 5.0, "over": 0.5, "barrier": 1.0},
}


def all_losses() -> list[tuple[str, str]]:
    return [(f.name, s.name) for f in sorted(EXAMPLES.glob("*.loss")) for s in lossdsl.load_all(f)]


def spec_of(filename: str, name: str) -> lossdsl.Spec:
    return lossdsl.load(EXAMPLES / filename, name)


def test_every_example_loss_has_a_hand_computation() -> None:
    assert sorted(name for _, name in all_losses()) == sorted(HAND)


@pytest.mark.parametrize(("filename", "name"), all_losses())
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ir_matches_hand_computation_at_defaults(filename: str, name: str, seed: int) -> None:
    spec = spec_of(filename, name)
    inputs = POINTS[name](np.random.default_rng(seed))
    got = evaluate(spec.ir, inputs)
    assert got == pytest.approx(HAND[name](**inputs), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize(("filename", "name"), [a for a in all_losses() if a[1] in PARAMS])
def test_ir_matches_hand_computation_with_params(filename: str, name: str) -> None:
    spec = spec_of(filename, name)
    inputs = POINTS[name](np.random.default_rng(7))
    params = PARAMS[name]
    got = evaluate(spec.ir, inputs, **params)
    assert got == pytest.approx(HAND[name](**inputs, **params), rel=1e-10, abs=1e-12)


def test_huber_summand_evaluated_with_sympy() -> None:
    """The elementwise part of a loss, evaluated by SymPy itself at numeric points."""
    loss = spec_of("huber.loss", "huber").ir
    summand = loss.output.atoms(ir.ReduceSum).pop().args[0]
    pred, target = loss.input_symbols["pred"], loss.input_symbols["target"]
    delta = loss.param_symbols["delta"]
    for p, t, d, want in [(0.5, 0.0, 1.0, 0.125), (3.0, 1.0, 1.0, 1.5), (-2.0, 0.0, 0.5, 0.875)]:
        value = summand.subs({pred: p, target: t, delta: d})
        assert float(value) == pytest.approx(want)


def test_focal_summand_evaluated_with_sympy() -> None:
    loss = spec_of("focal.loss", "focal").ir
    summand = loss.output.atoms(ir.ReduceSum).pop().args[0]
    symbols = {**loss.input_symbols, **loss.param_symbols}
    for x, t in [(0.3, 1.0), (-1.2, 0.0), (2.0, 0.0)]:
        value = summand.subs({symbols["logits"]: x, symbols["target"]: t})
        value = value.subs({symbols["gamma"]: 2, symbols["alpha"]: sympy.Rational(1, 4)})
        want = focal(np.array([x]), np.array([t]))
        # ir.Sigmoid has no numeric evaluation of its own: spell it out for evalf.
        value = value.replace(ir.Sigmoid, lambda u: 1 / (1 + sympy.exp(-u)))
        assert float(value) == pytest.approx(want, rel=1e-12)


def test_stock_uses_its_helper_inlined() -> None:
    loss = spec_of("stock.loss", "stock").ir
    pred, demand = loss.input_symbols["pred"], loss.input_symbols["demand"]
    piecewise = next(iter(loss.output.atoms(sympy.Piecewise)))
    params = dict(zip(loss.param_symbols.values(), (3, 1, 10), strict=True))
    at = {pred: 1.0, demand: 3.0, **params}
    assert float(piecewise.subs(at)) == pytest.approx(12.0)  # under * r^2 with r = -2


# --- leaves ----------------------------------------------------------------------------------


def test_leaf_names_carry_dims() -> None:
    loss = spec_of("cross_entropy.loss", "cross_entropy").ir
    assert loss.input_symbols["logits"].name == "logits|N,C"
    assert loss.input_symbols["target"].name == "target|N"
    assert loss.param_symbols["weight"].name == "weight|C"
    assert loss.param_symbols["smoothing"].name == "smoothing"
    assert ir.dims_of(loss.input_symbols["logits"]) == {"N", "C"}
    assert loss.order == ("N", "C")


def test_unpacked_components_are_their_own_leaves() -> None:
    loss = spec_of("iou.loss", "iou").ir
    names = sorted(s.name for s in loss.components)
    assert names[:4] == ["pred__0|N", "pred__1|N", "pred__2|N", "pred__3|N"]
    assert loss.components[ir.leaf("pred__2", ("N",))] == ("pred", "4", 2)


@pytest.mark.parametrize(
    ("elem", "facts"),
    [
        ("Real", {"real": True}),
        ("Positive", {"positive": True, "real": True}),
        ("NonNegative", {"nonnegative": True, "real": True}),
        ("Prob", {"nonnegative": True, "real": True}),
        ("Binary", {"integer": True, "nonnegative": True}),
    ],
)
def test_element_types_carry_sympy_assumptions(elem: str, facts: dict[str, bool]) -> None:
    spec = lossdsl.parse(f"loss f(x: {elem}[N]) {{ return sum(x) }}")
    symbol = spec.ir.input_symbols["x"]
    for fact, value in facts.items():
        assert getattr(symbol, f"is_{fact}") is value, fact


def test_index_is_a_nonnegative_integer() -> None:
    spec = lossdsl.parse("loss f(x: Real[N, C], t: Index[N] of C) { return sum(x[t]) }")
    t = spec.ir.input_symbols["t"]
    assert t.is_integer and t.is_nonnegative


def test_integers_stay_exact_so_squares_are_squares() -> None:
    spec = lossdsl.parse("loss f(x: Real) { return x^2 + 0.5 * x }")
    x = spec.ir.input_symbols["x"]
    assert spec.ir.output == x**2 + sympy.Float(0.5) * x
    assert spec.ir.output.has(sympy.Pow(x, 2))


def test_comparisons_used_as_numbers_are_one_or_zero() -> None:
    spec = lossdsl.parse("loss f(x: Real) { return (x > 0) + 2 * (x > 0 > -1) }")
    x = spec.ir.input_symbols["x"]
    assert float(spec.ir.output.subs(x, 0.5)) == 3.0
    assert float(spec.ir.output.subs(x, -0.5)) == 0.0


def test_mean_divides_by_the_size_of_its_dims() -> None:
    spec = lossdsl.parse("loss f(x: Real[N, C]) { return mean[C](x) }")
    loss = spec.ir
    assert loss.output == ir.ReduceSum.make(loss.input_symbols["x"], ("C",)) / ir.size("C")
    x = np.arange(6.0).reshape(2, 3)
    assert np.allclose(evaluate(loss, {"x": x}), x.mean(axis=1))


def test_reductions_and_normalisations_evaluate_like_numpy() -> None:
    text = """loss f(x: Real[N, C]) {
        return (sum[C](softmax[C](x)) + logsumexp[C](x) + max[C](x) - min[C](x)
            + norm[C](x, eps=1e-12) + prod[C](x) + sum[C](exp(log_softmax[C](x))))
    }"""
    x = np.random.default_rng(3).normal(size=(4, 5))
    got = evaluate(lossdsl.parse(text).ir, {"x": x})
    lse = np.log(np.exp(x).sum(axis=1))
    want = 2 + lse + x.max(1) - x.min(1) + np.sqrt((x**2).sum(1) + 1e-12) + x.prod(1)
    assert np.allclose(got, want)


def test_gather_and_onehot_pick_the_target_class() -> None:
    text = "loss f(x: Real[N, C], t: Index[N] of C) { return x[t] + 10 * sum[C](onehot(t) * x) }"
    x = np.arange(12.0).reshape(3, 4)
    t = np.array([3, 0, 2])
    got = evaluate(lossdsl.parse(text).ir, {"x": x, "t": t})
    assert np.allclose(got, 11 * x[np.arange(3), t])


# --- documented subgradients at kinks (docs/language.md) ---------------------------------------


def derivative_at(text: str, wrt: str, at: dict[str, float]) -> float:
    loss = lossdsl.parse(text).ir
    symbols = {**loss.input_symbols, **loss.param_symbols}
    value = sympy.diff(loss.output, symbols[wrt]).subs({symbols[k]: v for k, v in at.items()})
    return float(value)


def test_abs_has_subgradient_zero_at_zero() -> None:
    assert derivative_at("loss f(x: Real) { return abs(x) }", "x", {"x": 0}) == 0.0


def test_relu_has_subgradient_zero_at_zero() -> None:
    assert derivative_at("loss f(x: Real) { return relu(x) }", "x", {"x": 0}) == 0.0
    assert derivative_at("loss f(x: Real) { return relu(x) }", "x", {"x": 1}) == 1.0


def test_max_and_min_split_a_tie_evenly() -> None:
    for op in ("max", "min"):
        text = f"loss f(a: Real, b: Real) {{ return {op}(a, b) }}"
        assert derivative_at(text, "a", {"a": 1, "b": 1}) == 0.5
        assert derivative_at(text, "b", {"a": 1, "b": 1}) == 0.5


def test_clamp_has_derivative_one_at_its_bounds() -> None:
    text = "loss f(x: Real) { return clamp(x, -1, 2) }"
    assert derivative_at(text, "x", {"x": -1}) == 1.0
    assert derivative_at(text, "x", {"x": 2}) == 1.0
    assert derivative_at(text, "x", {"x": 3}) == 0.0


def test_norm_has_subgradient_zero_at_zero() -> None:
    loss = lossdsl.parse("loss f(x: Real[D]) { return norm[D](x) }").ir
    (norm,) = loss.output.atoms(ir.Norm)
    cotangent = norm.vjp(sympy.S.One)
    x = loss.input_symbols["x"]
    assert cotangent.subs(norm, 0) == 0
    assert cotangent.subs(norm, 2).subs(x, 1) == sympy.Rational(1, 2)


def test_max_reduction_splits_ties_evenly() -> None:
    loss = lossdsl.parse("loss f(x: Real[N]) { return max[N](x) }").ir
    (top,) = loss.output.atoms(ir.ReduceMax)
    mask = Evaluator(loss, {"x": np.array([3.0, 1.0, 3.0, 2.0])}).eval(top.mask())
    assert np.allclose(np.ravel(mask), [0.5, 0.0, 0.5, 0.0])


# --- constants of the IR's own functions ----------------------------------------------------


def test_custom_functions_of_numbers_evaluate() -> None:
    spec = lossdsl.parse(
        "loss f(x: Real) { return max(x, relu(2)) + sigmoid(0) + softplus(0) + clamp(3, 0, 1)"
        " + floor(2.5) + round(2.5) + sign(-2) }"
    )
    x = next(iter(spec.ir.output.free_symbols))
    assert float(spec.ir.output.subs(x, 5)) == pytest.approx(5 + 0.5 + math.log(2) + 1 + 2 + 2 - 1)


def test_undefined_constant_is_an_error_at_its_span() -> None:
    with pytest.raises(lossdsl.LossDSLError) as info:
        lossdsl.parse("loss f(x: Real) { return x + log(0) }", "c.loss").ir  # noqa: B018
    assert info.value.message == "`log(0)` is undefined"
    assert (info.value.span.line, info.value.span.column) == (1, 30)


def test_sympy_may_differentiate_an_expression_holding_tensor_ops() -> None:
    x = ir.leaf("x", ("N",))
    piecewise = sympy.Piecewise((ir.ReduceSum.make(x, ("N",)), x > 0), (0, True))
    assert piecewise.diff(ir.leaf("y", ("N",))) == 0


def test_a_condition_folds_no_where_out_of_an_op_that_mixes_its_condition() -> None:
    """SymPy folds a Piecewise in a condition out of the functions around it (K5). Out of
    `sum[S]` that is right only where the where's condition is constant along `S`."""
    x, t = ir.leaf("x", ("S",)), ir.leaf("t", ())
    mixed = ir.ReduceSum.make(sympy.Piecewise((t, x > 0), (1, True)), ("S",))
    assert sympy.Piecewise((t, mixed > 0), (0, True)).args[0].cond == (mixed > 0)
    # a where outside the op is folded, into `&` and `|`: an ITE rewrite would reach inside
    outside = sympy.Piecewise((1, t > 0), (2, True)) * mixed > 0
    cond = sympy.Piecewise((t, outside), (0, True)).args[0].cond
    assert cond.atoms(ir.ReduceSum) == {mixed} and not cond.atoms(sympy.ITE)
    assert cond.subs(mixed, 1) is sympy.true and cond.subs(mixed, -1) is sympy.false
    spec = "loss f(x: Real[S], t: Real) {{ return if sum[S]({}) > 0 then t else 0 }}"
    assert lossdsl.parse(spec.format("where(x > 0, t, 1)")).ir.output.args[0].cond == (mixed > 0)
    total = ir.ReduceSum.make(x, ("S",))
    folded = lossdsl.parse(spec.format("where(t > 0, x, 1)")).ir.output.args[0].cond
    assert not folded.has(sympy.Piecewise) and (total > 0) in folded.atoms(sympy.Rel)


def test_the_ir_keeps_the_declared_output_dims_that_sympy_cancels() -> None:
    """`x - x` is 0 to SymPy; the output's dims come from its type, not from the expression."""
    spec = lossdsl.parse("loss f(x: Real[N, C], y: Real[C]) { return sum[C](x - x) + 0 * sum(y) }")
    assert spec.ir.output == 0
    assert spec.ir.output_dims == ("N",)
    assert lossdsl.parse("loss f(x: Real[N]) { return mean(x - x) }").ir.output_dims == ()
