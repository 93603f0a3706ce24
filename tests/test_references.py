"""Self-check of tests/references.py: the torch and JAX references of every library spec agree
in value and gradient (float64) on the generated inputs, for every param case and shape case,
and the table matches the specs' signatures."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.references import N_SHAPE_CASES, NUM_CLASSES, REFERENCES, Reference

SPECS = Path(__file__).resolve().parent.parent / "specs"
# The first shape case runs by default; the others (the all-ones edge case, a larger one) with
# `pytest -m slow`: the references are checked against each other, not against lossdsl.
CASES = [
    pytest.param(
        ref, params, shape, id=f"{name}-p{i}-s{shape}", marks=[pytest.mark.slow] if shape else []
    )
    for name, ref in REFERENCES.items()
    for i, params in enumerate(ref.param_cases)
    for shape in range(N_SHAPE_CASES)
]
RTOL, ATOL = 1e-9, 1e-12


def _inputs(ref: Reference, shape: int, dtype: str = "float64") -> tuple[np.ndarray, ...]:
    seed = sum(map(ord, ref.name)) * 10 + shape
    return ref.make_inputs(np.random.default_rng(seed), dtype, shape)


def _signature(ref: Reference) -> tuple[list[tuple[str, str]], list[str]]:
    """(input name, element type) pairs and param names, read from the spec's text."""
    text = (SPECS / ref.spec).read_text()
    header = re.search(rf"^loss\s+{ref.name}\s*\((.*?)\)\s*\{{", text, re.M | re.S)
    assert header, f"{ref.spec} declares no `loss {ref.name}`"
    inputs = re.findall(r"(\w+)\s*:\s*(\w+)", header.group(1))
    params = re.findall(r"^\s*param\s+(\w+)", text, re.M)
    return inputs, params


def test_every_spec_has_a_reference() -> None:
    assert sorted(p.stem for p in SPECS.glob("*.loss")) == sorted(REFERENCES)
    assert len(REFERENCES) == 23


@pytest.mark.parametrize("ref", REFERENCES.values(), ids=list(REFERENCES))
def test_table_matches_spec(ref: Reference) -> None:
    inputs, params = _signature(ref)
    assert tuple(name for name, _ in inputs) == ref.inputs
    undifferentiated = tuple(n for n, elem in inputs if elem in ("Binary", "Index"))
    assert undifferentiated == ref.no_grad
    assert ref.param_cases[0] == {}
    for case in ref.param_cases:
        assert set(case) <= set(params), f"unknown param in {case}"
    assert set(ref.tensor_params) <= set(params)


@pytest.mark.parametrize("ref", REFERENCES.values(), ids=list(REFERENCES))
@pytest.mark.parametrize("shape", range(N_SHAPE_CASES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_inputs_are_valid(ref: Reference, shape: int, dtype: str) -> None:
    arrays = _inputs(ref, shape, dtype)
    inputs, _ = _signature(ref)
    assert len(arrays) == len(inputs)
    for (name, elem), x in zip(inputs, arrays, strict=True):
        assert np.isfinite(x).all(), name
        if elem == "Index":
            assert x.dtype == np.int64 and ((x >= 0) & (x < NUM_CLASSES)).all(), name
            continue
        assert x.dtype == np.dtype(dtype), name
        if elem == "Binary":
            assert set(np.unique(x)) <= {0.0, 1.0}, name
        elif elem == "Prob":
            assert ((x > 0) & (x < 1)).all(), name
        elif elem == "Positive":
            assert (x > 0).all(), name
        elif elem == "NonNegative":
            assert (x >= 0).all(), name
    if ref.name in ("iou", "giou", "diou"):
        for boxes in arrays:
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


@pytest.mark.parametrize(("ref", "params", "shape"), CASES)
def test_torch_and_jax_references_agree(ref: Reference, params: dict, shape: int) -> None:
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    pytest.importorskip("optax")
    jax.config.update("jax_enable_x64", True)
    arrays = _inputs(ref, shape)
    grad_at = [i for i, name in enumerate(ref.inputs) if name in ref.grad_inputs]

    tensors = [torch.tensor(x, requires_grad=i in grad_at) for i, x in enumerate(arrays)]
    value_t = ref.torch_fn(*tensors, **params)
    assert value_t.dtype == torch.float64 and value_t.ndim == 0
    grads_t = torch.autograd.grad(value_t, [tensors[i] for i in grad_at])

    jarrays = [jax.numpy.asarray(x) for x in arrays]
    value_j = ref.jax_fn(*jarrays, **params)
    assert value_j.dtype == np.float64 and value_j.ndim == 0
    grads_j = jax.grad(lambda *xs: ref.jax_fn(*xs, **params), argnums=tuple(grad_at))(*jarrays)

    np.testing.assert_allclose(float(value_t.detach()), float(value_j), rtol=RTOL, atol=ATOL)
    for i, g_t, g_j in zip(grad_at, grads_t, grads_j, strict=True):
        np.testing.assert_allclose(
            g_t.numpy(), np.asarray(g_j), rtol=1e-8, atol=1e-11, err_msg=ref.inputs[i]
        )


@pytest.mark.parametrize("ref", REFERENCES.values(), ids=list(REFERENCES))
def test_references_accept_numpy_and_float32(ref: Reference) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("jax")
    pytest.importorskip("optax")
    arrays = _inputs(ref, 0, "float32")
    value_t = ref.torch_fn(*arrays)
    value_j = ref.jax_fn(*arrays)
    assert value_t.dtype == torch.float32
    assert np.isfinite(float(value_t)) and np.isfinite(float(value_j))
    np.testing.assert_allclose(float(value_t), float(value_j), rtol=1e-4, atol=1e-5)
