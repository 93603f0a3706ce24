"""The torch backend against hand-written translations (tests/translations.py): values,
gradients vs autograd and finite differences, transforms, and call-time errors."""

from __future__ import annotations

import ast
import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lossdsl  # noqa: E402
from lossdsl.sampling import random_points  # noqa: E402
from tests.conftest import EXAMPLES  # noqa: E402
from tests.translations import EXAMPLES as TRANSLATIONS  # noqa: E402
from tests.translations import torch_ops  # noqa: E402

OPS = torch_ops()
SPECS = Path(__file__).resolve().parent.parent / "specs"


def load(example: str) -> lossdsl.Spec:
    name, _ = TRANSLATIONS[example]
    return lossdsl.load(EXAMPLES / f"{example}.loss", name)


def tensors(spec: lossdsl.Spec, arrays: tuple[np.ndarray, ...], dtype=torch.float64) -> list:
    out = []
    for info, x in zip(spec.inputs, arrays, strict=True):
        t = torch.as_tensor(x)
        out.append(t if info.elem == "Index" else t.to(dtype).requires_grad_(info.differentiated))
    return out


def grads(fn, inputs: list, spec: lossdsl.Spec) -> list:
    wrt = [x for x, info in zip(inputs, spec.inputs, strict=True) if info.differentiated]
    return list(torch.autograd.grad(fn(*inputs), wrt))


@pytest.mark.parametrize("example", sorted(TRANSLATIONS))
def test_value_and_gradient_match_translation(example: str) -> None:
    spec = load(example)
    compiled = spec.compile("torch")
    _, translation = TRANSLATIONS[example]
    for point in random_points(spec.inputs, 3, seed=7):
        inputs = tensors(spec, point.inputs)
        expected = translation(OPS, *inputs)
        torch.testing.assert_close(compiled(*inputs), expected, rtol=1e-10, atol=1e-12)
        for got, want in zip(
            grads(compiled, inputs, spec),
            grads(lambda *xs: translation(OPS, *xs), inputs, spec),
            strict=True,
        ):
            torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)
        wrt = [x for x, i in zip(inputs, spec.inputs, strict=True) if i.differentiated]
        assert torch.autograd.gradcheck(partial(_call, compiled, inputs, spec), wrt)


def _call(fn, inputs: list, spec: lossdsl.Spec, *new):
    return fn(*_replace(inputs, spec, new))


def _replace(inputs: list, spec: lossdsl.Spec, new: tuple) -> list:
    it = iter(new)
    return [
        next(it) if info.differentiated else x for x, info in zip(inputs, spec.inputs, strict=True)
    ]


# --- hard points (LANGUAGE.md section 6a) --------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_gradient_is_finite_at_saturated_logits(gamma: float) -> None:
    focal = load("focal").compile("torch", gamma=gamma)
    logits = torch.tensor([100.0, -100.0, 100.0, -100.0], requires_grad=True)
    target = torch.tensor([1.0, 0.0, 0.0, 1.0])
    value = focal(logits, target)
    (grad,) = torch.autograd.grad(value, logits)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    # The same formula through autograd: NaN (gamma < 1) or inf, which is what lossdsl prevents.
    naive = logits.detach().clone().requires_grad_()
    (naive_grad,) = torch.autograd.grad(TRANSLATIONS["focal"][1](OPS, naive, target, gamma), naive)
    assert not torch.isfinite(naive_grad).all() or gamma == 2.0


def test_unselected_branch_does_not_leak_nan() -> None:
    spec = lossdsl.parse("loss f(x: Real[N]) { return sum(if x > 0 then log(x) else 0) }")
    f = spec.compile("torch")
    x = torch.tensor([0.0, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    value = f(x)
    (grad,) = torch.autograd.grad(value, x, create_graph=True)
    torch.testing.assert_close(value, torch.log(torch.tensor(2.0, dtype=torch.float64)))
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64))
    (second,) = torch.autograd.grad(grad.sum(), x)
    assert torch.isfinite(second).all()


def test_contrastive_at_identical_embeddings_uses_subgradient_zero() -> None:
    f = load("contrastive").compile("torch")
    a = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    b = a.detach().clone().requires_grad_()
    same = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    ga, gb = torch.autograd.grad(f(a, b, same), (a, b))
    assert torch.equal(ga, torch.zeros_like(ga)) and torch.equal(gb, torch.zeros_like(gb))


def test_iou_with_zero_area_boxes_is_finite_and_matches_documented_subgradient() -> None:
    f = load("iou").compile("torch")
    pred = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 2.0, 2.0]], dtype=torch.float64)
    target = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 2.0, 2.0]], dtype=torch.float64)
    pred.requires_grad_()
    (got,) = torch.autograd.grad(f(pred, target), pred)
    twin = pred.detach().clone().requires_grad_()
    # torch.maximum/minimum split ties 1/2-1/2, the subgradient lossdsl documents for max/min.
    (want,) = torch.autograd.grad(TRANSLATIONS["iou"][1](OPS, twin, target), twin)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want)


def test_huber_at_the_kink() -> None:
    f = load("huber").compile("torch", delta=1.0)
    pred = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64, requires_grad=True)
    target = torch.zeros(3, dtype=torch.float64)
    (grad,) = torch.autograd.grad(f(pred, target), pred)
    torch.testing.assert_close(grad, torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64) / 3)


def test_a_scalar_loss_adds_one_node_to_the_autograd_graph() -> None:
    """Inputs that already have every dim of the loss are passed as they are, and the value
    gets its shape () inside the Function: no view nodes around it in the graph (each costs
    a node to run in backward), and an incoming gradient that is not 1 still scales it."""
    f = load("focal").compile("torch")
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    loss = f(x, target)
    assert loss.shape == () and "View" not in type(loss.grad_fn).__name__
    assert [type(n).__name__ for n, _ in loss.grad_fn.next_functions if n] == ["AccumulateGrad"]
    (3 * loss).backward()
    expected = torch.func.grad(lambda z: 3 * load("focal").compile("torch")(z, target))(x.detach())
    torch.testing.assert_close(x.grad, expected)


# --- transforms ----------------------------------------------------------------------------

TRANSFORM_EXAMPLES = ["focal", "cross_entropy", "iou"]


def _point(example: str, dtype=torch.float64) -> tuple[lossdsl.Spec, list]:
    spec = load(example)
    return spec, tensors(spec, random_points(spec.inputs, 1, seed=3)[0].inputs, dtype)


@pytest.mark.parametrize("example", TRANSFORM_EXAMPLES)
def test_double_backward(example: str) -> None:
    spec, inputs = _point(example)
    f = spec.compile("torch")
    x = inputs[0]
    assert torch.autograd.gradgradcheck(lambda x0: f(x0, *inputs[1:]), (x,))


@pytest.mark.parametrize("example", TRANSFORM_EXAMPLES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes(example: str, dtype: torch.dtype) -> None:
    spec, inputs = _point(example, dtype)
    f = spec.compile("torch")
    value = f(*inputs)
    (grad,) = torch.autograd.grad(value, inputs[0])
    assert value.dtype == dtype and grad.dtype == dtype
    ref = TRANSLATIONS[example][1](OPS, *inputs)
    torch.testing.assert_close(value, ref)


@pytest.mark.parametrize("example", TRANSFORM_EXAMPLES)
def test_torch_func_grad_and_vmap(example: str) -> None:
    spec, inputs = _point(example)
    f = spec.compile("torch")
    rest = [x.detach() for x in inputs[1:]]
    x = inputs[0].detach()
    g = torch.func.grad(lambda x0: f(x0, *rest))(x)
    (want,) = torch.autograd.grad(TRANSLATIONS[example][1](OPS, inputs[0], *rest), inputs[0])
    torch.testing.assert_close(g, want)
    batch = torch.stack([x, 2 * x])
    values = torch.func.vmap(lambda x0: f(x0, *rest))(batch)
    torch.testing.assert_close(values[1], f(2 * x, *rest))
    per_example = torch.func.vmap(torch.func.grad(lambda x0: f(x0, *rest)))(batch)
    torch.testing.assert_close(per_example[0], g)


@pytest.mark.parametrize("example", TRANSFORM_EXAMPLES)
def test_torch_compile_fullgraph(example: str) -> None:
    torch._dynamo.reset()
    spec, inputs = _point(example)
    f = spec.compile("torch")
    compiled = torch.compile(lambda *xs: f(*xs), fullgraph=True, backend="aot_eager")
    value = compiled(*inputs)
    (grad,) = torch.autograd.grad(value, inputs[0])
    (want,) = torch.autograd.grad(f(*inputs), inputs[0])
    torch.testing.assert_close(grad, want)


def test_only_requested_gradients_are_computed() -> None:
    f = load("contrastive").compile("torch")
    a = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 3, dtype=torch.float64)
    f(a, b, torch.tensor([1.0, 0.0], dtype=torch.float64)).backward()
    assert a.grad is not None and b.grad is None


def _focal_inputs(n: int = 6):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(n, dtype=torch.float64, generator=gen, requires_grad=True)
    t = (torch.rand(n, generator=gen) < 0.5).to(torch.float64)
    return x, t


def _reference_grad(x: torch.Tensor, t: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """The gradient of lossdsl's focal (specs/focal.loss, defaults) through autograd."""
    spec = lossdsl.load(SPECS / "focal.loss")
    ref = spec.reference("torch")
    y = x.detach().clone().requires_grad_()
    (ref(y, t) * scale).backward()
    return y.grad


def test_scalar_loss_forward_computes_gradients_backward_scales_them() -> None:
    """A scalar loss computes value and gradient in forward; backward by a unit gradient
    returns them as they are, any other gradient scales them, create_graph recomputes."""
    f = lossdsl.load(SPECS / "focal.loss").compile("torch")
    x, t = _focal_inputs()
    f(x, t).backward()
    torch.testing.assert_close(x.grad, _reference_grad(x, t))
    x.grad = None
    (f(x, t) * -2.5).backward()
    torch.testing.assert_close(x.grad, _reference_grad(x, t, -2.5))
    x.grad = None
    loss = f(x, t)
    for k in (1, 2, 3):  # retain_graph: every backward adds the same gradient again
        loss.backward(retain_graph=True)
        torch.testing.assert_close(x.grad, k * _reference_grad(x, t))
    x.grad = None
    (g,) = torch.autograd.grad(f(x, t), x, create_graph=True)
    assert g.requires_grad
    torch.testing.assert_close(g, _reference_grad(x, t))


def test_scalar_loss_under_no_grad_and_detached_inputs_computes_value_only() -> None:
    f = lossdsl.load(SPECS / "focal.loss").compile("torch")
    x, t = _focal_inputs()
    with torch.no_grad():
        value = f(x, t)
    assert not value.requires_grad
    torch.testing.assert_close(value, f(x.detach(), t))
    module = f.module
    calls = []
    original = module._value_and_grad
    module._value_and_grad = lambda *a: calls.append(a) or original(*a)
    try:
        f(x.detach(), t)
        assert not calls
        f(x, t)
        assert len(calls) == 1 and calls[0][-1] == (True, False)
    finally:
        module._value_and_grad = original


@pytest.mark.parametrize("spec_name", ["focal", "cross_entropy"])
def test_plain_call_does_not_bind_arguments_by_signature(
    spec_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside torch.func transforms and tracing the Function runs in the form without
    `setup_context`, whose `apply` skips `inspect.signature` (a third of the per-call cost at
    small sizes); the results are those of the `setup_context` form."""
    import inspect

    spec = lossdsl.load(SPECS / f"{spec_name}.loss")
    f = spec.compile("torch")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, dtype=torch.float64, generator=gen)
    other = torch.tensor([0, 2, 1, 1, 0]) if spec_name == "cross_entropy" else (x > 0).double()
    if spec_name == "focal":
        x, other = x.reshape(-1), other.reshape(-1)
    x.requires_grad_()
    want = spec.reference("torch")(x, other)
    (want_grad,) = torch.autograd.grad(want, x)

    def no_signature(*args, **kwargs):
        raise AssertionError("inspect.signature called on the eager path")

    monkeypatch.setattr(inspect, "signature", no_signature)
    value = f(x, other)
    value.backward()
    monkeypatch.undo()
    torch.testing.assert_close(value, want)
    torch.testing.assert_close(x.grad, want_grad)
    assert f.module._function().__name__.endswith("Plain")


def test_nn_module_with_tensor_param_buffer() -> None:
    spec = load("cross_entropy")
    weight = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    module = spec.torch_module(weight=weight, smoothing=0.1)
    assert torch.equal(module.weight, weight)
    logits = torch.randn(4, 3, dtype=torch.float64)
    target = torch.tensor([0, 2, 1, 2])
    expected = TRANSLATIONS["cross_entropy"][1](OPS, logits, target, weight, 0.1)
    torch.testing.assert_close(module(logits, target), expected)
    reference = torch.nn.functional.cross_entropy(
        logits, target, weight=weight, label_smoothing=0.1
    )
    torch.testing.assert_close(module(logits, target), reference)


# --- call-time errors ----------------------------------------------------------------------


def test_dim_mismatch_names_input_dim_and_sizes() -> None:
    f = load("focal").compile("torch")
    with pytest.raises(lossdsl.CallError) as info:
        f(torch.zeros(4), torch.zeros(5))
    assert "dim `N` is 4 in `logits` but 5 in `target`" in info.value.message
    assert info.value.span is not None and info.value.span.line == 3


def test_wrong_rank_and_dtype_and_index_range() -> None:
    ce = load("cross_entropy").compile("torch")
    with pytest.raises(lossdsl.CallError, match="must have 2 dims"):
        ce(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(lossdsl.CallError, match="must hold integers"):
        ce(torch.zeros(4, 3), torch.zeros(4))
    with pytest.raises(lossdsl.CallError, match="class index 3, outside"):
        ce(torch.zeros(4, 3), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(lossdsl.CallError, match="takes 2 inputs"):
        ce(torch.zeros(4, 3))


def test_bad_param_values() -> None:
    spec = load("focal")
    with pytest.raises(lossdsl.ParamError, match=r"`gamma` = -1 violates `where gamma >= 0`"):
        spec.compile("torch", gamma=-1.0)
    with pytest.raises(lossdsl.ParamError, match="has no param `beta`"):
        spec.compile("torch", beta=1.0)
    weighted = lossdsl.parse(
        "loss f(x: Real[N, C]) {\n    param w: Positive[C]\n    return sum(w * x)\n}"
    )
    with pytest.raises(
        lossdsl.ParamError, match=r"`w` has dims \[C\]: it takes a tensor or an array, got list"
    ):
        weighted.compile("torch", w=[1.0, 2.0])
    assert weighted.compile("torch", w=torch.tensor([1.0, 2.0]))(torch.ones(3, 2)) == 9.0


# --- emitted source ------------------------------------------------------------------------


@pytest.mark.parametrize("example", sorted(TRANSLATIONS))
def test_emitted_module_imports_only_torch_and_is_deterministic(example: str) -> None:
    spec = load(example)
    source = spec.emit("torch")
    tree = ast.parse(source)
    imports = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imports == {"torch"}
    assert not any(isinstance(n, ast.ImportFrom) for n in ast.walk(tree))
    assert ast.get_docstring(tree).startswith(spec.doc.splitlines()[0] if spec.doc else "The")
    from lossdsl import cache

    cache.clear_memory()
    assert lossdsl.load(EXAMPLES / f"{example}.loss", spec.name).emit("torch") == source


# --- compiled mode -------------------------------------------------------------------------


def test_compiled_mode_falls_back_to_eager_without_a_compiler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken_compile(fn, *args, **kwargs):
        def fail(*a, **k):
            raise RuntimeError("no C++ compiler")

        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)
    spec = lossdsl.parse("loss sq(x: Real[N]) { return mean(x^2) + 0 * sum(x) }", "fallback.loss")
    f = spec.compile("torch", mode="compiled")
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    with pytest.warns(UserWarning, match="torch.compile failed"):
        value = f(x)
    value.backward()
    torch.testing.assert_close(x.grad, torch.tensor([1.0, 2.0]))


@pytest.mark.slow
def test_compiled_mode_with_inductor_matches_eager() -> None:
    spec, inputs = _point("focal", torch.float32)
    compiled = spec.compile("torch", mode="compiled")
    eager = spec.compile("torch")
    (got,) = torch.autograd.grad(compiled(*inputs), inputs[0])
    (want,) = torch.autograd.grad(eager(*inputs), inputs[0])
    torch.testing.assert_close(got, want)


def _joint_body(source: str) -> str:
    """The body of `_value_and_grad` in an emitted module."""
    return source.split("def _value_and_grad", 1)[1].split("\ndef ", 1)[0]


def _fused_and_eager(spec: lossdsl.Spec, monkeypatch: pytest.MonkeyPatch) -> tuple:
    """Compiled mode's source run as it is (no torch.compile), and eager mode."""
    monkeypatch.setattr(torch, "compile", lambda fn, *args, **kwargs: fn)
    return spec.compile("torch", mode="compiled"), spec.compile("torch")


def _assert_matches_at_a_random_point(
    spec: lossdsl.Spec, fused, eager, value_rtol: float, grad_rtol: float
) -> None:
    inputs = tensors(spec, random_points(spec.inputs, 1, seed=3)[0].inputs)
    torch.testing.assert_close(fused(*inputs), eager(*inputs), rtol=value_rtol, atol=0)
    for got, want in zip(grads(fused, inputs, spec), grads(eager, inputs, spec), strict=True):
        torch.testing.assert_close(got, want, rtol=grad_rtol, atol=1e-16)


MIRRORED_TVERSKY = """
loss tversky(logits: Real[N, P], target: Binary[N, P]) {
    p  = sigmoid(logits)
    tp = sum[P](p * target)
    fp = sum[P](p * (1 - target))
    fn = sum[P](sigmoid(-logits) * target)
    return mean(1 - (tp + 1) / (tp + 0.5 * fp + 0.5 * fn + 1))
}
"""


def test_compiled_mode_source_recomputes_transcendentals_functionally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """mode="compiled" compiles its own source: no in-place updates, and each full-size
    sigmoid written where it is used (inductor would otherwise write a shared one to memory
    and read it back), sigmoid(x) and sigmoid(-x) both from exp(-|x|) (one exp for both in a
    kernel), their product in the gradient as e / (1 + e)**2 (no select on the sign); the
    small per-row temporaries stay shared. Same values as eager. (Tversky with FP and FN as
    direct sums, as the library spec had it before it wrote them from sum(p) and TP.)"""
    spec = lossdsl.parse(MIRRORED_TVERSKY, "fused_tversky.loss")
    source = spec.emit("torch", mode="compiled")
    assert source != spec.emit("torch")
    body = _joint_body(source)
    # tp, fp and fn, each where(logits >= 0, ...); the gradient's sigmoid(x) * sigmoid(-x)
    flat = re.sub(r"\s+", " ", body)
    assert len(re.findall(r"torch\.where\(\(logits >= 0\), ", flat)) == 3
    grad = body.split("grad_logits = ", 1)[1]
    flat_grad = re.sub(r"\s+", " ", grad)
    assert "torch.where" not in flat_grad
    e = r"torch\.exp\(-torch\.abs\(logits\)\)"
    assert re.search(rf"{e}/\(1 \+\s+{e}\)\*\*2", grad)
    assert "torch.sigmoid(" not in body and "= torch.exp(" not in body
    assert not re.search(r"\.[a-z]\w*_\(", body)  # functional
    assert re.search(r"\n    \w+ = [\s(]*torch\.sum\(", body)  # a row sum, shared
    fused, eager = _fused_and_eager(spec, monkeypatch)
    logits = torch.randn(3, 50, dtype=torch.float64, requires_grad=True)
    target = (torch.rand(3, 50) < 0.4).double()
    (want,) = torch.autograd.grad(eager(logits, target), logits)
    (got,) = torch.autograd.grad(fused(logits, target), logits)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(fused(logits, target), eager(logits, target))
    # far out on both sides, in float32: the mirrored sigmoids neither overflow nor cancel
    wide = torch.tensor([[-1000.0, -90.0, -20.0, 0.0, 20.0, 90.0, 1000.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0]])
    (want,) = torch.autograd.grad(eager(wide, mask), wide)
    (got,) = torch.autograd.grad(fused(wide, mask), wide)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=1e-6, atol=torch.finfo(torch.float32).tiny)


@pytest.mark.parametrize("name", ["bce_with_logits", "focal", "log_cosh"])
def test_compiled_mode_writes_sigmoid_and_softplus_of_one_argument_from_one_exp(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where sigmoid and softplus of one argument (or of its negation, which CSE may name
    apart: focal's t and -t) both occur, compiled mode writes each from exp(-|u|): the
    kernel then computes one exp for all of them (the slow test below). Values and
    gradients are eager mode's, far out on both sides too (no overflow, no cancellation)."""
    spec = lossdsl.load(SPECS / f"{name}.loss")
    body = _joint_body(spec.emit("torch", mode="compiled"))
    assert "torch.sigmoid(" not in body and "softplus(" not in body
    # exp(-|u|): one u for all of them, and no other exp
    flat = re.sub(r"\s+", " ", body)
    arguments = re.findall(r"torch\.exp\(-torch\.abs\((-?\w+)\)\)", flat)
    assert len(set(arguments)) == 1 and len(arguments) == flat.count("torch.exp("), arguments
    read = "\n".join(line for line in body.splitlines() if not line.strip().startswith("del "))
    for temp in re.findall(r"^    (t\d+) = ", body, flags=re.M):  # none left unread (-t)
        assert len(re.findall(rf"\b{temp}\b", read)) > 1, temp
    fused, eager = _fused_and_eager(spec, monkeypatch)
    _assert_matches_at_a_random_point(spec, fused, eager, value_rtol=1e-13, grad_rtol=1e-12)
    wide = torch.tensor([-1000.0, -90.0, -20.0, -1e-3, 0.0, 1e-3, 20.0, 90.0, 1000.0])
    other = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    if name == "bce_with_logits":
        wide, other = wide.reshape(1, -1), other.reshape(1, -1)
    wide.requires_grad_(True)
    for fn in (fused, eager):
        assert torch.isfinite(fn(wide, other))
    (got,), (want,) = (torch.autograd.grad(fn(wide, other), wide) for fn in (fused, eager))
    exact = wide.detach().double().requires_grad_(True)
    (truth,) = torch.autograd.grad(eager(exact, other.double()), exact)
    assert torch.isfinite(got).all()
    # within float32 rounding of the largest term (log_cosh's 2 sigmoid(2r) - 1 cancels near
    # r = 0 in either form), as eager is
    eps = torch.finfo(torch.float32).eps
    for result in (got, want):
        torch.testing.assert_close(
            result.double(), truth, rtol=4 * eps, atol=eps * truth.abs().max()
        )
    torch.testing.assert_close(fused(wide, other), eager(wide, other), rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", ["focal", "tversky", "dice"])
def test_compiled_mode_double_backward_is_exact_at_zero(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """create_graph=True differentiates compiled mode's `_grad`, which therefore keeps
    torch.sigmoid and softplus. Written from exp(-|u|) with abs and relu (derivative 0 at 0
    in torch), sigmoid's derivative at u = 0 exactly (a zero-initialised last layer) came
    out 0, not 1/4. Second derivatives against finite differences, and against eager
    mode's."""
    spec = lossdsl.load(SPECS / f"{name}.loss")
    fused, eager = _fused_and_eager(spec, monkeypatch)
    logits = torch.tensor([[0.0, 0.7, -1.3, 0.0, 2.0]], dtype=torch.float64)
    target = torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0]], dtype=torch.float64)
    if name == "focal":
        logits, target = logits.reshape(-1), target.reshape(-1)
    logits.requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda x: fused(x, target), (logits,))

    def hessian(fn):
        (g,) = torch.autograd.grad(fn(logits, target), logits, create_graph=True)
        rows = [
            torch.autograd.grad(g.reshape(-1)[i], logits, retain_graph=True)[0] for i in range(5)
        ]
        return torch.stack(rows)

    torch.testing.assert_close(hessian(fused), hessian(eager), rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_inductor_computes_one_exp_for_focal_s_sigmoids_and_softplus() -> None:
    """What writing them from exp(-|u|) is for (torch 2.13's CPU inductor): focal's kernel
    evaluates exp once per element, where sigmoid(t), sigmoid(-t) and softplus(-t) took
    three (and log1p once, as before)."""
    from torch._inductor.utils import run_and_get_code

    source = lossdsl.load(SPECS / "focal.loss").emit("torch", mode="compiled")
    namespace: dict = {}
    exec(compile(source, "focal_compiled", "exec"), namespace)
    x, t = torch.randn(4096), (torch.rand(4096) < 0.3).float()
    torch._dynamo.reset()
    _, (code, *_) = run_and_get_code(torch.compile(namespace["_value_and_grad"]), x, t, (True,) * 2)
    (loop,) = re.findall(r"for\(int64_t x0=.*?\n\s*}\n", code, flags=re.S)[:1]
    vectorized = loop.split("Vectorized<float>::loadu", 1)[1]
    assert vectorized.count(".exp()") == 1 and vectorized.count(".log1p()") == 1


@pytest.mark.parametrize("name", ["huber", "mse", "bce_with_logits", "focal"])
def test_compiled_mode_ties_the_sum_to_the_gradient(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An elementwise loss's sum reads its gradient (`where(g == g, a, a)`, which is `a`),
    and the gradient is returned as computed, not as an expanded view: inductor then
    evaluates both in one loop over the inputs (the slow test below). Values and gradients
    are eager mode's."""
    spec = lossdsl.load(SPECS / f"{name}.loss")
    body = _joint_body(spec.emit("torch", mode="compiled"))
    assert re.search(r"torch\.sum\(torch\.where\((\w+) == \1, (\w+), \2\)", body)
    assert "broadcast_to" not in body
    fused, eager = _fused_and_eager(spec, monkeypatch)
    _assert_matches_at_a_random_point(spec, fused, eager, value_rtol=1e-14, grad_rtol=1e-13)


@pytest.mark.slow
def test_inductor_computes_a_tied_sum_and_its_gradient_in_one_loop() -> None:
    """What the tie is for (torch 2.13's CPU inductor): one loop over the elements, storing
    the gradient and accumulating the sum, where the untied source had two."""
    from torch._inductor.utils import run_and_get_code

    source = lossdsl.load(SPECS / "huber.loss").emit("torch", mode="compiled")
    namespace: dict = {}
    exec(compile(source, "huber_compiled", "exec"), namespace)
    x, t = torch.randn(4096), torch.randn(4096)
    torch._dynamo.reset()
    _, (code, *_) = run_and_get_code(torch.compile(namespace["_value_and_grad"]), x, t, (True,) * 2)
    assert len(re.findall(r"for\(int64_t x0=", code)) == 1


def test_unknown_mode_is_an_error() -> None:
    with pytest.raises(lossdsl.BackendError, match="unknown mode"):
        load("focal").compile("torch", mode="fast")


@pytest.mark.parametrize("mode", ["eager", "compiled"])
@pytest.mark.parametrize(
    "bad", [[0.0, 0.3, 1.0], [0.0, -1.0, 1.0], [2.0, 0.0, 1.0], [0.0, float("nan"), 1.0]]
)
def test_binary_inputs_must_hold_zeros_and_ones(mode: str, bad: list) -> None:
    f = load("focal").compile("torch", mode=mode)
    with pytest.raises(lossdsl.CallError, match="Binary but holds values other than 0 and 1"):
        f(torch.zeros(3), torch.tensor(bad))
    with pytest.raises(lossdsl.CallError, match="Binary") as caught:  # value and gradient
        f(torch.zeros(3, requires_grad=True), torch.tensor(bad))
    assert caught.value.span is not None and caught.value.span.line > 0  # names `target`
    big = torch.zeros(600_000)  # more than one chunk of the eager check
    big[-1] = 1.0 if bad[1] != bad[1] else bad[1]
    if big[-1] not in (0.0, 1.0):
        with pytest.raises(lossdsl.CallError, match="Binary"):
            f(torch.zeros(600_000), big)
    for good in (
        torch.tensor([0.0, 1.0, 1.0]),
        torch.tensor([0, 1, 1]),
        torch.tensor([0, 1, 1]).bool(),
    ):
        f(torch.zeros(3), good)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_binary_check_is_exact_at_every_size(dtype: torch.dtype) -> None:
    """x - x*x is 0 only at 0 and 1 (the sum of its magnitudes, a chunk at a time for a
    tensor of more than one chunk): the check refuses values one ulp away from 0 and 1,
    denormals, negatives, infinities and NaN in the first chunk or the last, and residuals
    that cancel (eight 0.5s, +0.25 each, and one 2.0, -2), and accepts -0.0."""
    from lossdsl.runtime import _CHUNK, _is_binary

    info = torch.finfo(dtype)
    bad = [0.5, 1 - info.eps / 2, 1 + info.eps, info.tiny * info.eps, -info.tiny, 2.0, 1e-30]
    bad += [info.max, float("inf"), -float("inf"), float("nan")]
    for n in (16, _CHUNK + 16):
        good = (torch.arange(n) % 3 == 0).to(dtype)
        good[1] = -0.0
        assert _is_binary(good)
        for value in bad:
            for at in (0, -2):
                x = good.clone()
                x[at] = value
                assert not _is_binary(x), (n, value, at)
        for at in (0, n // _CHUNK * _CHUNK):  # in the first chunk, in the last
            cancelling = good.clone()
            cancelling[at : at + 8] = 0.5
            cancelling[at + 8] = 2.0
            assert not _is_binary(cancelling), (n, at)


def test_the_binary_check_of_integers_is_their_range() -> None:
    from lossdsl.runtime import _is_binary

    assert _is_binary(torch.tensor([0, 1, 1])) and _is_binary(torch.tensor([True, False]))
    assert not _is_binary(torch.tensor([0, 2, 1])) and not _is_binary(torch.tensor([-1, 0]))


def test_cross_entropy_gradient_reuses_the_forward_log_softmax() -> None:
    """The forward's log_softmax is reused for the gradient (exp, not a second softmax); the
    gradient is F.cross_entropy's."""
    spec = lossdsl.load(SPECS / "cross_entropy.loss")
    source = spec.emit("torch")
    joint = source.split("def _value_and_grad")[1].split("\ndef ")[0]
    assert joint.count("softmax(") == 1 and ("torch.exp(" in joint or ".exp_()" in joint)
    f = spec.compile("torch")
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(7, 11, dtype=torch.float64, generator=gen, requires_grad=True)
    target = torch.randint(0, 11, (7,), generator=gen)
    f(logits, target).backward()
    want = logits.detach().clone().requires_grad_()
    torch.nn.functional.cross_entropy(want, target).backward()
    torch.testing.assert_close(logits.grad, want.grad, rtol=1e-12, atol=1e-14)
