"""Generated code for shapes and constructs beyond the examples: scalar inputs, permuted dims,
per-element outputs, unpacking a middle-rank input, every reduction, tensor params — each
compared with the direct translation (value and autograd gradient) on both backends."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import sympy

import lossdsl
from lossdsl import codegen, ir

torch = pytest.importorskip("torch")

CASES = {
    "scalar input": "loss f(x: Real[N], s: Positive) { return mean(x^2) * s }",
    "permuted dims": "loss f(a: Real[N, C], b: Real[C, N]) { return sum(a * b) }",
    "per-element output": "loss f(a: Real[N, C], b: Real[N]) { return sum[C](a) * b }",
    "unpack rank 3": (
        "loss f(box: Real[N, K, 4]) {\n x1, y1, x2, y2 = box\n return sum((x2 - x1) * (y2 - y1)) }"
    ),
    "gathered log-softmax": (
        "loss f(x: Real[N, C], t: Index[N] of C) { return -log_softmax[C](x)[t] }"
    ),
    "reductions": (
        "loss f(x: Real[N, C]) {\n"
        "  return (mean(max[C](x) - min[C](x)) + logsumexp(x)\n"
        "    + sum(prod[C](x)) + sum(softmax[C](x)^2))\n}"
    ),
    "norm with eps": "loss f(a: Real[N, D]) { return mean(norm[D](a, eps=1e-6)) }",
    "onehot and size": (
        "loss f(x: Real[N, C], t: Index[N] of C) { return sum(onehot(t) * x) / size(N) }"
    ),
    "clamp where sign": (
        "loss f(x: Real[N]) { return sum(clamp(x, -1, 1)^2 + where(x > 0, x, -x) + sign(x)) }"
    ),
    "helpers and erf": (
        "def g(u) = erf(u) * tanh(u)\n"
        "loss f(x: Real[N]) { return mean(g(x) + expm1(x) + log1p(x^2)) }"
    ),
}


def _inputs(spec: lossdsl.Spec, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    sizes = {"N": 3, "C": 4, "D": 5, "K": 2, "4": 4}
    out = []
    for info in spec.inputs:
        shape = tuple(sizes[d] for d in info.dims)
        if info.elem == "Index":
            out.append(torch.as_tensor(rng.integers(0, sizes[info.of], size=shape)))
        elif info.elem == "Positive":
            out.append(torch.as_tensor(rng.uniform(0.5, 2.0, size=shape)).requires_grad_())
        else:
            out.append(torch.as_tensor(rng.normal(size=shape) + 0.1).requires_grad_())
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_torch_matches_direct_translation(case: str) -> None:
    spec = lossdsl.parse(CASES[case], f"{case}.loss")
    inputs = _inputs(spec)
    got, want = spec.compile("torch")(*inputs), spec.reference("torch")(*inputs)
    torch.testing.assert_close(got, want)
    wrt = [x for x in inputs if x.requires_grad]
    for g, w in zip(
        torch.autograd.grad(got.sum(), wrt), torch.autograd.grad(want.sum(), wrt), strict=True
    ):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("case", sorted(CASES))
def test_jax_matches_direct_translation(case: str) -> None:
    jax = pytest.importorskip("jax")
    spec = lossdsl.parse(CASES[case], f"{case}.loss")
    arrays = [x.detach().numpy() for x in _inputs(spec)]
    f, ref = spec.compile("jax"), spec.reference("jax")
    np.testing.assert_allclose(f(*arrays), ref(*arrays), rtol=1e-10)
    argnums = tuple(i for i, info in enumerate(spec.inputs) if info.differentiated)
    total = lambda fn: lambda *xs: fn(*xs).sum()  # noqa: E731
    got = jax.grad(total(f), argnums=argnums)(*arrays)
    want = jax.grad(total(ref), argnums=argnums)(*arrays)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-8, atol=1e-12)


def test_guard_replaces_unsafe_arguments_of_unselected_branches() -> None:
    x = ir.leaf("x", ("N",))
    guarded = codegen.guard(sympy.Piecewise((sympy.log(x) / x, x > 0), (0, True)))
    safe = list(guarded.atoms(ir.Safe))
    assert safe and all(s.args[1] == (x > 0) for s in safe)
    assert not any(
        isinstance(a, sympy.log) and a.args[0] == x for a in sympy.preorder_traversal(guarded)
    )


def test_guard_keeps_subtrees_without_branches_as_they_are() -> None:
    # Rebuilding re-evaluates: a Max compares its arguments pairwise (GIoU: about 0.3 s).
    x, y = ir.leaf("x", ("N",)), ir.leaf("y", ("N",))
    corner = sympy.Max(x, y)
    expr = corner * sympy.Piecewise((sympy.log(x), x > 0), (0, True))
    guarded = codegen.guard(expr)
    assert codegen.guard(corner) is corner
    assert any(a is corner for a in guarded.args)
    assert guarded.atoms(ir.Safe)


def test_a_scaled_gradient_is_tidied_as_its_unit_gradient() -> None:
    # The backward function's gradients (cotangent times the unit gradient) reuse the forward
    # function's tidying of the unit gradient.
    x, t = ir.leaf("x", ("N",)), ir.leaf("t", ("N",))
    scale = ir.leaf("grad'", ())
    unit = 2 * x * t / (1 + x) + 2 * x**2.0
    tidied = codegen._tidy(unit, True)
    hits = codegen._tidy.cache_info().hits
    assert codegen._tidy_scaled(scale * unit, True, scale) == scale * tidied
    assert codegen._tidy.cache_info().hits == hits + 1


def test_py_name_never_shadows_generated_names() -> None:
    assert codegen.py_name("torch") == "torch_"
    assert codegen.py_name("lambda") == "lambda_"
    assert codegen.py_name("__import__") == "v__import__"
    assert codegen.py_name("logits") == "logits"


def _huber_plan(delta: float) -> codegen.Plan:
    spec = lossdsl.parse(
        "loss h(x: Real[N], t: Real[N]) { param delta: Positive = 1.0\n d = x - t\n"
        " return mean(if abs(d) < delta then 0.5 * d^2 else delta * (abs(d) - 0.5 * delta)) }"
    )
    return codegen.with_gradients(codegen.specialise(spec.stable_ir, {"delta": delta}))


@pytest.mark.parametrize("delta", [1.0, 2.5])
def test_huber_branches_become_one_shared_clamp(delta: float) -> None:
    plan = _huber_plan(delta)
    x, t = plan.loss.input_symbols.values()
    grad = plan.grads["x"].xreplace({codegen.cotangent(plan): sympy.Integer(1)})
    for before in (plan.value, grad):
        after = codegen._tidy(before)
        assert not after.has(sympy.Piecewise) and after.has(ir.Clamp)
        (region,) = before.atoms(sympy.Piecewise)  # the elementwise loss or slope
        for u in (-7.0, -delta, -0.9 * delta, 0.0, 0.3, delta, 40.0):  # both sides, the kinks
            point = {x: u + 3.0, t: 3.0}
            want = float(region.subs(point))
            got = float(codegen._tidy(region).subs(point))
            assert abs(want - got) <= 1e-12 * max(1.0, abs(want)), (u, want, got)


def test_branches_that_are_not_huber_shaped_stay() -> None:
    spec = lossdsl.parse(
        "loss f(x: Real[N]) { return mean(if abs(x) < 1 then x^2 else abs(x)) }"  # not C1
    )
    plan = codegen.specialise(spec.stable_ir, {})
    assert codegen._tidy(plan.value).has(sympy.Piecewise)


def test_fused_code_keeps_huber_branches() -> None:
    """The clamp saves eager kernels; torch.compile fuses the branches with less arithmetic,
    so compiled mode's source (plan.recompute) keeps them."""
    plan = _huber_plan(1.0)
    assert codegen._tidy(plan.value, clamp=False).has(sympy.Piecewise)
    spec = lossdsl.load(Path(__file__).resolve().parent.parent / "specs" / "huber.loss")
    assert "torch.clamp" in spec.emit("torch") and "torch.where" not in spec.emit("torch")
    compiled = spec.emit("torch", mode="compiled")
    assert "torch.clamp" not in compiled and "torch.where" in compiled


def test_sums_over_full_size_tensors_are_collected_on_the_inputs() -> None:
    """`b*(1 - t) + a*t - b*t`, with `a` and `b` per row and `t` an input of the full size,
    becomes `b + (a - 2*b)*t`: the per-row coefficients are combined first, one full-size
    product and one sum remain. A sum collecting would not shorten stays as it is."""
    t, x = sympy.Symbol("t|N,P", real=True), sympy.Symbol("x|N,P", real=True)
    a, b = sympy.Symbol("a|N", real=True), sympy.Symbol("b|N", real=True)
    got = codegen._collect_leaves(b * (1 - t) + a * t - b * t)
    assert sympy.expand(got - (b * (1 - t) + a * t - b * t)) == 0
    assert got == b + t * (a - 2 * b)
    kept = sympy.exp(x) * t + sympy.sin(x)  # nothing per row to combine
    assert codegen._collect_leaves(kept) == kept
    # nothing smaller than full size but numbers: left as it is, without expanding its terms
    u, v = sympy.Symbol("u|N", real=True), sympy.Symbol("v|N", real=True)
    rank_one = (u + 1) * (v - 2) + u * v * sympy.Symbol("n_N", positive=True)
    assert codegen._collect_leaves(rank_one) is rank_one


def test_a_comparison_the_params_decide_folds_its_branches() -> None:
    """`(a + p) >= (a + p) + 0.1373` is false whatever `x` once `a` is a number; SymPy leaves
    it standing, and it reached `torch.where` as a Python bool (a TypeError). Now the branch
    folds: the loss is sum(c), with no gradient through `p`. The same with the number written
    in the spec."""
    jnp = pytest.importorskip("jax.numpy")
    for head, a in (("    param a: Real = 1.5\n", "a"), ("", "1.5")):
        spec = lossdsl.parse(
            "loss f(x: Real[N], c: Binary) {\n"
            f"{head}"
            "    p = sqrt(2 + tanh(x))\n"
            f"    return sum[N](where(({a} + p) >= ({a} + p) + 0.1373, p, c))\n"
            "}"
        )
        x = torch.randn(3, dtype=torch.float64, requires_grad=True)
        one = torch.tensor(1.0, dtype=torch.float64)
        value = spec.compile("torch")(x, one)
        (grad,) = torch.autograd.grad(value, x)
        assert float(value) == 3.0 and torch.equal(grad, torch.zeros(3, dtype=torch.float64))
        assert float(spec.compile("jax")(jnp.ones(3), jnp.asarray(1.0))) == 3.0


def test_a_sum_the_gradient_does_not_need_is_tied_to_it() -> None:
    """Compiled mode: the argument of the value's sum reads a gradient of its shape, so that
    inductor computes both in one loop. Not where the gradient needs that sum (one loop could
    not do both), nor to a gradient of other dims, nor a sum of a sum."""
    x, t = sympy.Symbol("x|N,C", real=True), sympy.Symbol("t|N,C", real=True)
    dims = ir.dims_tuple(("N", "C"))
    total = ir.ReduceSum((x - t) ** 2, dims)
    grad = 2 * (x - t)
    tied = codegen.tie_reductions(total / 7, [grad])
    assert tied == ir.ReduceSum(ir.Tied((x - t) ** 2, grad), dims) / 7
    needs_it = 2 * (x - t) * total
    assert codegen.tie_reductions(total, [needs_it]) == total
    per_row = ir.ReduceSum(x, ir.dims_tuple(("C",)))
    assert codegen.tie_reductions(total, [per_row]) == total
    nested = ir.ReduceSum(x * ir.ReduceSum(t**2, ir.dims_tuple(("C",))), dims)
    inner = ir.ReduceSum(ir.Tied(t**2, grad), ir.dims_tuple(("C",)))
    assert codegen.tie_reductions(nested, [grad]) == ir.ReduceSum(x * inner, dims)


def test_a_tied_argument_is_named_and_keeps_its_value() -> None:
    """`where(g == g, a, a)` is `a` whatever `g` holds (NaN included), and prints names, not
    the argument's expression twice."""
    spec = lossdsl.parse(
        "loss f(x: Real[N], t: Real[N]) { return mean(log1p(exp(x - t)) * x) }", "tied.loss"
    )
    source = spec.emit("torch", mode="compiled")
    body = source.split("def _value_and_grad", 1)[1].split("\ndef ", 1)[0]
    (call,) = re.findall(r"torch\.where\((\w+) == (\w+), (\w+), (\w+)\)", body)
    assert call[0] == call[1] and call[2] == call[3]
    assert re.search(rf"grad_x = {call[0]} if needs\[0\] else None", body)  # no expanded view
    a = torch.tensor([1.0, 2.0])
    for g in (torch.tensor([0.5, float("nan")]), torch.tensor([float("inf"), -1.0])):
        torch.testing.assert_close(torch.where(g == g, a, a), a)


def test_sigmoid_pairs_become_one_sign_free_factor() -> None:
    """sigmoid(u)**a * sigmoid(-u)**b keeps min(a, b) pairs as e / (1 + e)**2 and the rest as
    they were; a lone sigmoid, or one of another argument, is left alone."""
    u, v = sympy.symbols("u v", real=True)
    plus, minus = ir.ExpSigmoid(u, 1), ir.ExpSigmoid(u, -1)
    pair = ir.ExpSigmoidPair(u)
    assert codegen._pair_sigmoids(3 * plus * minus) == 3 * pair
    assert codegen._pair_sigmoids(plus**2 * minus * v) == pair * plus * v
    assert codegen._pair_sigmoids(plus * ir.ExpSigmoid(v, -1)) == plus * ir.ExpSigmoid(v, -1)
    assert codegen._pair_sigmoids(plus + minus) == plus + minus
    e = sympy.exp(-sympy.Abs(u))
    for point in (-30.0, -1.5, 0.0, 2.0, 40.0):
        want = 1 / (1 + math.exp(-point)) / (1 + math.exp(point))
        got = float(pair.written().subs(u, point))
        assert math.isclose(got, want, rel_tol=1e-12)
    assert pair.written() == e / (1 + e) ** 2


def test_a_number_met_twice_stays_a_number() -> None:
    """`0.25 + 0.25*exp(6)` twice: common subexpressions named it, and `log` of the name
    reached `torch.log` as a Python float (a TypeError at call time). Numbers stay inline."""
    c = 0.25 + 0.25 * math.exp(6)
    spec = lossdsl.parse(
        "loss f(x: Real[N]) {\n"
        "    return sum(x * log(0.25 + 0.25*exp(6))) / (0.25 + 0.25*exp(6))"
        " + sum(x*x) * (0.25 + 0.25*exp(6))\n}"
    )
    for mode in ("eager", "compiled"):
        x = torch.ones(3, dtype=torch.float64, requires_grad=True)
        value = spec.compile("torch", mode=mode)(x)
        value.backward()
        assert math.isclose(value.item(), 3 * math.log(c) / c + 3 * c, rel_tol=1e-12)
        torch.testing.assert_close(x.grad, torch.full((3,), math.log(c) / c + 2 * c).double())
