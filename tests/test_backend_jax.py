"""The JAX backend against hand-written translations (tests/translations.py): values,
gradients vs jax.grad and finite differences, and the function transforms."""

from __future__ import annotations

import ast

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import lossdsl  # noqa: E402
from lossdsl.sampling import random_points  # noqa: E402
from tests.conftest import EXAMPLES  # noqa: E402
from tests.translations import EXAMPLES as TRANSLATIONS  # noqa: E402
from tests.translations import jax_ops  # noqa: E402

OPS = jax_ops()


def load(example: str) -> lossdsl.Spec:
    return lossdsl.load(EXAMPLES / f"{example}.loss", TRANSLATIONS[example][0])


def wrt(spec: lossdsl.Spec) -> tuple[int, ...]:
    return tuple(i for i, info in enumerate(spec.inputs) if info.differentiated)


def central_differences(f, args: list, index: int, h: float = 1e-6) -> np.ndarray:
    x = np.asarray(args[index], dtype=np.float64)
    grad = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[k] += h
        down[k] -= h
        grad[k] = (
            f(*args[:index], up, *args[index + 1 :]) - f(*args[:index], down, *args[index + 1 :])
        ) / (2 * h)
    return grad


@pytest.mark.parametrize("example", sorted(TRANSLATIONS))
def test_value_and_gradient_match_translation(example: str) -> None:
    spec = load(example)
    f = jax.jit(spec.compile("jax"))
    translation = TRANSLATIONS[example][1]
    ref = jax.jit(lambda *xs: translation(OPS, *xs))
    argnums = wrt(spec)
    for point in random_points(spec.inputs, 2, seed=11):
        args = [jnp.asarray(x) for x in point.inputs]
        np.testing.assert_allclose(f(*args), ref(*args), rtol=1e-10, atol=1e-12)
        got = jax.grad(f, argnums=argnums)(*args)
        want = jax.grad(ref, argnums=argnums)(*args)
        for g, w, i in zip(got, want, argnums, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-8, atol=1e-10)
            fd = central_differences(f, args, i)
            np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-6)


TRANSFORM_EXAMPLES = ["focal", "cross_entropy", "iou"]


def _point(example: str) -> tuple[lossdsl.Spec, list]:
    spec = load(example)
    return spec, [jnp.asarray(x) for x in random_points(spec.inputs, 1, seed=5)[0].inputs]


@pytest.mark.parametrize("example", TRANSFORM_EXAMPLES)
def test_jit_vmap_grad_jacfwd_jacrev_hessian(example: str) -> None:
    spec, args = _point(example)
    f = spec.compile("jax")
    ref = lambda *xs: TRANSLATIONS[example][1](OPS, *xs)  # noqa: E731
    x, rest = args[0], args[1:]
    first = lambda x0: f(x0, *rest)  # noqa: E731
    first_ref = lambda x0: ref(x0, *rest)  # noqa: E731
    np.testing.assert_allclose(jax.jit(first)(x), first_ref(x), rtol=1e-10)
    np.testing.assert_allclose(
        jax.jit(jax.grad(first))(x), jax.grad(first_ref)(x), rtol=1e-8, atol=1e-12
    )
    np.testing.assert_allclose(
        jax.jacfwd(first)(x), jax.jacfwd(first_ref)(x), rtol=1e-8, atol=1e-12
    )
    np.testing.assert_allclose(
        jax.jacrev(first)(x), jax.jacrev(first_ref)(x), rtol=1e-8, atol=1e-12
    )
    np.testing.assert_allclose(
        jax.hessian(first)(x), jax.hessian(first_ref)(x), rtol=1e-6, atol=1e-10
    )
    batch = jnp.stack([x, 2 * x])
    np.testing.assert_allclose(
        jax.vmap(first)(batch), jnp.stack([first(x), first(2 * x)]), rtol=1e-10
    )
    per_example = jax.vmap(jax.grad(first))(batch)
    np.testing.assert_allclose(per_example[0], jax.grad(first_ref)(x), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_focal_gradient_is_finite_at_saturated_logits(gamma: float) -> None:
    focal = load("focal").compile("jax", gamma=gamma)
    logits = jnp.array([100.0, -100.0, 100.0, -100.0], dtype=jnp.float32)
    target = jnp.array([1.0, 0.0, 0.0, 1.0], dtype=jnp.float32)
    grad = jax.grad(focal)(logits, target)
    assert np.isfinite(np.asarray(grad)).all()
    naive = jax.grad(lambda x: TRANSLATIONS["focal"][1](OPS, x, target, gamma))(logits)
    assert not np.isfinite(np.asarray(naive)).all()


def test_unselected_branch_does_not_leak_nan() -> None:
    f = lossdsl.parse("loss f(x: Real[N]) { return sum(if x > 0 then log(x) else 0) }").compile(
        "jax"
    )
    x = jnp.array([0.0, -1.0, 2.0])
    np.testing.assert_allclose(jax.grad(f)(x), [0.0, 0.0, 0.5])
    assert np.isfinite(np.asarray(jax.hessian(f)(x))).all()


def test_contrastive_at_identical_embeddings_uses_subgradient_zero() -> None:
    f = load("contrastive").compile("jax")
    a = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)))
    same = jnp.array([1.0, 0.0, 1.0])
    ga, gb = jax.grad(f, argnums=(0, 1))(a, a, same)
    assert not np.any(np.asarray(ga)) and not np.any(np.asarray(gb))


def test_call_errors_are_lossdsl_errors() -> None:
    f = load("focal").compile("jax")
    with pytest.raises(lossdsl.CallError, match="dim `N` is 4 in `logits` but 5 in `target`"):
        f(jnp.zeros(4), jnp.zeros(5))
    ce = load("cross_entropy").compile("jax")
    with pytest.raises(lossdsl.CallError, match="class index -1"):
        ce(jnp.zeros((2, 3)), jnp.array([0, -1]))


@pytest.mark.parametrize("example", sorted(TRANSLATIONS))
def test_emitted_module_imports_only_jax(example: str) -> None:
    tree = ast.parse(load(example).emit("jax"))
    imports = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imports <= {"jax", "jax.numpy", "jax.scipy.special"}
