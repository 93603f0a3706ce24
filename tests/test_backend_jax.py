"""The JAX backend against hand-written translations (tests/translations.py): values,
gradients vs jax.grad and finite differences, and the function transforms."""

from __future__ import annotations

import ast
import re

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import lossdsl  # noqa: E402
from lossdsl.sampling import random_points  # noqa: E402
from tests.conftest import EXAMPLES, SPECS  # noqa: E402
from tests.references import REFERENCES  # noqa: E402
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


# Scalar losses: the jvp rule computes the value and the closed-form gradient G of each input
# together and returns the tangent sum(G * d_x), which JAX transposes into G * cotangent.
SCALAR_SPECS = ["cross_entropy", "giou", "softmax_focal", "tversky"]


def _library_point(name: str) -> tuple[lossdsl.Spec, list, tuple[int, ...]]:
    ref = REFERENCES[name]
    data = [jnp.asarray(x) for x in ref.make_inputs(np.random.default_rng(7), "float64", 0)]
    argnums = tuple(i for i, n in enumerate(ref.inputs) if n in ref.grad_inputs)
    return lossdsl.load(SPECS / f"{name}.loss"), data, argnums


@pytest.mark.parametrize("name", SCALAR_SPECS)
def test_scalar_loss_jit_value_and_grad_match_reference_translation(name: str) -> None:
    spec, data, argnums = _library_point(name)
    f, ref = spec.compile("jax"), spec.reference("jax")
    got, got_grads = jax.jit(jax.value_and_grad(f, argnums=argnums))(*data)
    want, want_grads = jax.value_and_grad(ref, argnums=argnums)(*data)
    assert got.dtype == jnp.float64 and got.shape == ()
    np.testing.assert_allclose(got, want, rtol=1e-12)
    for g, w in zip(got_grads, want_grads, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


# Second derivatives of the rule on two of them (giou's and tversky's take 6-7 s each, and
# test_jit_vmap_grad_jacfwd_jacrev_hessian covers iou's hessian already).
@pytest.mark.parametrize("name", ["cross_entropy", "softmax_focal"])
def test_scalar_loss_second_derivatives_match_reference_translation(name: str) -> None:
    spec, data, _ = _library_point(name)
    f, ref = spec.compile("jax"), spec.reference("jax")
    x, rest = data[0], data[1:]
    first = lambda x0: f(x0, *rest)  # noqa: E731
    first_ref = lambda x0: ref(x0, *rest)  # noqa: E731
    np.testing.assert_allclose(
        jax.hessian(first)(x), jax.hessian(first_ref)(x), rtol=1e-7, atol=1e-10
    )
    np.testing.assert_allclose(
        jax.jit(jax.jacrev(jax.grad(first)))(x), jax.hessian(first_ref)(x), rtol=1e-7, atol=1e-10
    )
    np.testing.assert_allclose(
        jax.jacfwd(first)(x), jax.jacfwd(first_ref)(x), rtol=1e-10, atol=1e-12
    )
    square = lambda g: lambda x0: jnp.sum(jax.grad(g)(x0) ** 2)  # noqa: E731
    np.testing.assert_allclose(
        jax.grad(square(first))(x), jax.grad(square(first_ref))(x), rtol=1e-7, atol=1e-10
    )


def _jvp_rule(source: str) -> ast.FunctionDef:
    tree = ast.parse(source)
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.endswith("_jvp"))


def _tangent_names(node: ast.AST) -> list[str]:
    return [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id.startswith("d_")]


@pytest.mark.parametrize("name", SCALAR_SPECS)
def test_scalar_loss_tangent_is_gradient_times_tangent(name: str) -> None:
    rule = _jvp_rule(lossdsl.load(SPECS / f"{name}.loss").emit("jax"))
    assigned = {ast.unparse(s.targets[0]): s for s in rule.body if isinstance(s, ast.Assign)}
    tangent = assigned["tangent"].value
    products = [
        c.args[0]
        for c in ast.walk(tangent)
        if isinstance(c, ast.Call) and ast.unparse(c.func) == "jnp.sum"
    ]
    assert products
    for p in products:  # jnp.sum(grad_x * d_x), grad_x assigned by the straight line above
        assert isinstance(p, ast.BinOp) and isinstance(p.op, ast.Mult)
        gradient, tangent_name = ast.unparse(p.left), ast.unparse(p.right)
        assert gradient == "grad_" + tangent_name.removeprefix("d_") and gradient in assigned
    assert sorted(_tangent_names(tangent)) == sorted(p.right.id for p in products)
    # Nothing else touches a tangent (no take_along_axis of one, which transposes to a
    # scatter): only the unpacking of `tangents` and the slicing of components out of them.
    for statement in rule.body:
        if statement is assigned["tangent"] or not _tangent_names(statement):
            continue
        source = ast.unparse(statement)
        assert source.endswith("= tangents") or re.fullmatch(r"d_\w+ = d_\w+\[[:, 0-9]+\]", source)


def test_giou_tangents_come_from_components_only() -> None:
    rule = _jvp_rule(lossdsl.load(SPECS / "giou.loss").emit("jax"))
    source = ast.unparse(rule)
    assert "d_pred, d_target = tangents" in source
    assert "jnp.sum(grad_pred__0 * d_pred__0)" in source
    assert "grad_pred =" not in source  # `pred` itself, used only through its components


def test_loss_with_output_dims_keeps_forward_mode_tangent() -> None:
    spec = lossdsl.parse("loss f(x: Real[N, C], t: Index[N] of C) { return -log_softmax[C](x)[t] }")
    rule = ast.unparse(_jvp_rule(spec.emit("jax")))
    assert "grad_" not in rule and "take_along_axis(d_x" in rule
    f = spec.compile("jax")
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4)))
    t = jnp.array([0, 3, 1])

    def want(x0: jax.Array) -> jax.Array:
        return -jnp.take_along_axis(jax.nn.log_softmax(x0, axis=1), t[:, None], axis=1)[:, 0]

    np.testing.assert_allclose(jax.jacrev(f)(x, t), jax.jacrev(want)(x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jax.jacfwd(f)(x, t), jax.jacfwd(want)(x), rtol=1e-10, atol=1e-12)


# Trimmed layout: the JAX backend drops the trailing size-1 axes of every value (a per-row
# value of a [N, D] loss is [N], not [N, 1]) and pads with `[..., None]` where a lower-rank
# value meets a higher-rank one. XLA:CPU reduces an elementwise chain over [N, 1] more than ten
# times slower than over [N].
_ELEMENTWISE_N1 = re.compile(
    r"= f(32|64)\[7,1\]\{1,0\} (add|subtract|multiply|divide|maximum|minimum|select|compare|"
    r"negate|exponential|log|sqrt|rsqrt|sign)\("
)


@pytest.mark.parametrize(
    ("name", "shapes", "argnums"),
    [
        ("giou", [(7, 4), (7, 4)], (0, 1)),
        ("triplet", [(7, 5)] * 3, (0, 1, 2)),
        ("contrastive", [(7, 5), (7, 5), (7,)], (0, 1)),
        ("cosine_embedding", [(7, 5), (7, 5), (7,)], (0, 1)),
    ],
)
def test_per_row_values_are_one_dimensional_in_the_compiled_step(
    name: str, shapes: list[tuple[int, ...]], argnums: tuple[int, ...]
) -> None:
    f = lossdsl.load(SPECS / f"{name}.loss").compile("jax")
    rng = np.random.default_rng(3)
    args = [jnp.asarray(rng.uniform(0.5, 2.0, size=s)) for s in shapes]
    step = jax.jit(jax.value_and_grad(f, argnums=argnums))
    hlo = step.lower(*args).compile().as_text()
    assert "[7]" in hlo
    assert not _ELEMENTWISE_N1.search(hlo), _ELEMENTWISE_N1.search(hlo)
    value, grads = step(*args)
    assert value.shape == () and [g.shape for g in grads] == [shapes[i] for i in argnums]


def test_giou_components_and_reductions_are_trimmed() -> None:
    source = lossdsl.load(SPECS / "giou.loss").emit("jax")
    rule = ast.unparse(_jvp_rule(source))
    assert "pred__0 = pred[:, 0]" in rule and "d_target__3 = d_target[:, 3]" in rule
    assert "keepdims" not in source and "0:1" not in source
    assert re.search(r"jnp\.sum\([^;]*, axis=\(0,\)\)", rule)


def test_triplet_row_norms_are_vectors_padded_where_they_meet_rows() -> None:
    rule = ast.unparse(_jvp_rule(lossdsl.load(SPECS / "triplet.loss").emit("jax")))
    assert "d_pos = jnp.sqrt(jnp.sum(t2 * t2, axis=(1,)))" in rule
    assert "t8[..., None]" in rule and "keepdims" not in rule


# Reductions over a middle dim keep it (size 1); trailing ones go. Each loss against the same
# formula written in jax.numpy, value and gradient.
_TRIMMED = [
    (
        "loss f(x: Real[N, C, K]) { return sum(sum[C](x) * sum[K](x) * x) }",
        lambda x: jnp.sum(x.sum(1)[:, None, :] * x.sum(2)[:, :, None] * x),
        [(3, 4, 5)],
        "jnp.sum(x, axis=(1,), keepdims=True)",
    ),
    (
        "loss g(x: Real[N, C], w: Real[C]) { return sum(max[N](x) * w) + sum(norm[C](x)) }",
        lambda x, w: jnp.sum(x.max(0) * w) + jnp.sum(jnp.sqrt(jnp.sum(x * x, 1))),
        [(3, 4), (4,)],
        "jnp.max(x, axis=(0,), keepdims=True)",
    ),
    (
        "loss k(b: Real[4, N]) {\n p, q, r, s = b\n return sum(p * q + r * s * s) }",
        lambda b: jnp.sum(b[0] * b[1] + b[2] * b[3] ** 2),
        [(4, 6)],
        "b__0 = b[0:1]",
    ),
    (
        "loss h(x: Real[N, C], w: Real[N]) { return sum(w * logsumexp[C](x)) }",
        lambda x, w: jnp.sum(w * jax.nn.logsumexp(x, axis=1)),
        [(3, 4), (3,)],
        "w = w[:, 0]",
    ),
    (
        "loss m(x: Real[N, C, K], t: Index[N] of C) { return sum(log_softmax[C](x)[t]) }",
        None,  # below: needs the index
        [(3, 4, 5)],
        "t = t[:, 0, 0]",
    ),
]


@pytest.mark.parametrize("case", range(len(_TRIMMED)))
def test_trimmed_layout_values_and_gradients(case: int) -> None:
    text, want, shapes, snippet = _TRIMMED[case]
    spec = lossdsl.parse(text)
    assert snippet in spec.emit("jax")
    f = spec.compile("jax")
    rng = np.random.default_rng(case)
    args = [jnp.asarray(rng.normal(size=s)) for s in shapes]
    if want is None:
        t = jnp.array([0, 3, 1])
        args.append(t)
        want = lambda x, t0=t: jnp.sum(  # noqa: E731
            jnp.take_along_axis(jax.nn.log_softmax(x, axis=1), t0[:, None, None], axis=1)
        )
        argnums: tuple[int, ...] = (0,)
    else:
        argnums = tuple(range(len(shapes)))
    got, got_grads = jax.jit(jax.value_and_grad(f, argnums=argnums))(*args)
    ref, ref_grads = jax.value_and_grad(want, argnums=argnums)(*args[: len(shapes)])
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    for g, r in zip(got_grads, ref_grads, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)


def test_trimmed_tensor_param() -> None:
    spec = lossdsl.parse(
        "loss f(x: Real[N, C]) {\n    param w: Real[N] = 1\n    return sum(w * logsumexp[C](x))\n}"
    )
    w = jnp.asarray([1.0, 2.0, 3.0])
    assert "w = w[:, 0]" in spec.emit("jax", w=w)
    f = spec.compile("jax", w=w)
    x = jnp.asarray(np.random.default_rng(5).normal(size=(3, 4)))
    want = lambda x0: jnp.sum(w * jax.nn.logsumexp(x0, axis=1))  # noqa: E731
    np.testing.assert_allclose(f(x), want(x), rtol=1e-12)
    np.testing.assert_allclose(jax.jit(jax.grad(f))(x), jax.grad(want)(x), rtol=1e-10)


def test_a_padded_product_pads_its_own_lower_rank_factors() -> None:
    """In the trimmed layout a product of a per-row factor and a `[i, d]` component, itself
    padded to meet a `[i, d, 2]` operand, must pad the per-row factor to its own rank
    (`(a[..., None]*u)[..., None]*t`); it was printed `(a*u)[..., None]*t`, which
    broadcasts `(3,)` against `(3, 2)` and fails (found by the valid-spec fuzz, seed 5466)."""
    spec = lossdsl.parse(
        "loss f(os: Prob[i], out: Real[i, d, 2]) {\n"
        "    w, u = out\n"
        "    return mean(u / (1.5 + tanh(os)) * cos(out))\n"
        "}"
    )
    f = spec.compile("jax")

    def direct(os, out):
        u = out[..., 1]
        return jnp.mean(u[..., None] / (1.5 + jnp.tanh(os))[:, None, None] * jnp.cos(out))

    rng = np.random.default_rng(0)
    os_ = jnp.asarray(rng.uniform(0.0, 1.0, 3), dtype=jnp.float32)
    out = jnp.asarray(rng.normal(size=(3, 2, 2)), dtype=jnp.float32)
    np.testing.assert_allclose(f(os_, out), direct(os_, out), rtol=1e-5)
    got, want = jax.grad(f, (0, 1))(os_, out), jax.grad(direct, (0, 1))(os_, out)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
