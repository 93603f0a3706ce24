"""Every library spec (specs/*.loss) equals its independent reference (tests/references.py:
torch.nn.functional, optax, transcriptions of torchvision) in value and gradient, on both
backends, in float64 and float32, for several shapes and param values."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest

import lossdsl
from tests.references import N_SHAPE_CASES, REFERENCES, Reference

SPECS = Path(__file__).resolve().parent.parent / "specs"
TOLERANCE = {"float64": (1e-5, 1e-8), "float32": (1e-4, 1e-5)}


def cases(dtypes: tuple[str, ...], shapes: range) -> list:
    return [
        pytest.param(ref, i, shape, dtype, id=f"{name}-p{i}-s{shape}-{dtype}")
        for name, ref in REFERENCES.items()
        for i in range(len(ref.param_cases))
        for shape in shapes
        for dtype in dtypes
    ]


@cache
def spec(name: str) -> lossdsl.Spec:
    return lossdsl.load(SPECS / f"{name}.loss")


def arrays(ref: Reference, shape: int, dtype: str) -> tuple[np.ndarray, ...]:
    seed = sum(map(ord, ref.name)) * 10 + shape
    return ref.make_inputs(np.random.default_rng(seed), dtype, shape)


def test_every_spec_file_has_a_reference() -> None:
    assert {p.stem for p in SPECS.glob("*.loss")} == set(REFERENCES)
    assert len(REFERENCES) == 23


@pytest.mark.parametrize(
    ("ref", "case", "shape", "dtype"), cases(("float64", "float32"), range(N_SHAPE_CASES))
)
def test_torch_matches_reference(ref: Reference, case: int, shape: int, dtype: str) -> None:
    torch = pytest.importorskip("torch")
    params = ref.param_cases[case]
    tensor_dtype = getattr(torch, dtype)
    compiled_params = {
        k: torch.tensor(v, dtype=tensor_dtype) if k in ref.tensor_params else v
        for k, v in params.items()
    }
    loss = spec(ref.name).compile("torch", **compiled_params)
    data = arrays(ref, shape, dtype)

    def leaves() -> list:
        out = []
        for name, x in zip(ref.inputs, data, strict=True):
            t = torch.as_tensor(x)
            out.append(t.clone().requires_grad_() if name in ref.grad_inputs else t)
        return out

    ours, theirs = leaves(), leaves()
    got, want = loss(*ours), ref.torch_fn(*theirs, **params)
    rtol, atol = TOLERANCE[dtype]
    torch.testing.assert_close(got, want.to(got.dtype), rtol=rtol, atol=atol)
    wrt_ours = [x for x, n in zip(ours, ref.inputs, strict=True) if n in ref.grad_inputs]
    wrt_theirs = [x for x, n in zip(theirs, ref.inputs, strict=True) if n in ref.grad_inputs]
    for g, w in zip(
        torch.autograd.grad(got, wrt_ours), torch.autograd.grad(want, wrt_theirs), strict=True
    ):
        torch.testing.assert_close(g, w.to(g.dtype), rtol=rtol, atol=atol)


@pytest.mark.parametrize(("ref", "case", "shape", "dtype"), cases(("float64", "float32"), range(1)))
def test_jax_matches_reference(ref: Reference, case: int, shape: int, dtype: str) -> None:
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    params = ref.param_cases[case]
    compiled_params = {
        k: jnp.asarray(v, dtype=dtype) if k in ref.tensor_params else v for k, v in params.items()
    }
    loss = spec(ref.name).compile("jax", **compiled_params)
    data = [jnp.asarray(x) for x in arrays(ref, shape, dtype)]
    argnums = tuple(i for i, n in enumerate(ref.inputs) if n in ref.grad_inputs)
    rtol, atol = TOLERANCE[dtype]
    got, got_grads = jax.value_and_grad(loss, argnums=argnums)(*data)
    reference = lambda *xs: ref.jax_fn(*xs, **params)  # noqa: E731
    want, want_grads = jax.value_and_grad(reference, argnums=argnums)(*data)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    for g, w in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


@pytest.mark.parametrize(("alpha", "beta"), [(0.5, 0.5), (0.7, 0.7), (0.0, 1.0)])
def test_tversky_float32_where_its_sums_cancel(alpha: float, beta: float) -> None:
    """The spec computes FP and FN as sum(p) - TP and sum(target) - TP, which cancel where the
    predictions are good (logits far on the right side): in float32 the loss stays within an
    ulp or two of 1 of the float64 value (the loss is 1 - score, which cancels there in every
    formulation) and the gradient is accurate to a few ulps, also for a loss of 1e-7."""
    torch = pytest.importorskip("torch")
    from tests.references import tversky_torch

    loss = spec("tversky").compile("torch", alpha=alpha, beta=beta)
    eps = torch.finfo(torch.float32).eps
    gen = torch.Generator().manual_seed(0)
    for shift in (0.0, 4.0, 16.0):
        target = (torch.rand(8, 20000, generator=gen) > 0.5).double()
        logits = torch.randn(8, 20000, generator=gen, dtype=torch.float64)
        logits = (logits + shift * (2 * target - 1)).requires_grad_(True)
        want = tversky_torch(logits, target, alpha=alpha, beta=beta)
        (want_grad,) = torch.autograd.grad(want, logits)
        low = logits.detach().float().requires_grad_(True)
        got = loss(low, target.float())
        (got_grad,) = torch.autograd.grad(got, low)
        assert abs(got.double() - want).item() <= 2 * eps, shift
        moved = want_grad != 0  # (with alpha = 0 a background pixel's gradient is 0)
        relative = (got_grad.double() - want_grad)[moved].abs() / want_grad[moved].abs()
        assert relative.median().item() <= 4 * eps, shift
        assert (got_grad[~moved] == 0).all(), shift
