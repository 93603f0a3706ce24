"""Extreme inputs (LANGUAGE.md section 6a): for every example and library spec, at logits of
+-1e3, exact 0/1 probabilities, identical embeddings and zero-area boxes in float32, the compiled
value and gradient (torch and jax) are finite wherever the mathematics is, judged by evaluating
the spec as written with mpmath (high precision, so `1 - sigmoid(1000)` is not 0). The same
formulas run through plain autograd fail at these points, which is why the rewrites matter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mpmath
import numpy as np
import pytest
import sympy

import lossdsl
from lossdsl import ir
from lossdsl.checked import InputInfo
from lossdsl.sampling import draw
from lossdsl.scalar import Scalarizer
from tests.conftest import EXAMPLES, SPECS

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

FILES = sorted(EXAMPLES.glob("*.loss")) + sorted(SPECS.glob("*.loss"))
SATURATED = 1e3
FLOAT32_MAX = float(np.finfo(np.float32).max) / 16

# --- the extreme points ----------------------------------------------------------------------


def sizes_of(spec: lossdsl.Spec) -> dict[str, int]:
    return {d: int(d) if d.isdigit() else (4 if d == "N" else 3) for d in spec.ir.order}


def index_array(info: InputInfo, sizes: dict[str, int]) -> np.ndarray:
    """Class indices as the scalar form fixes them: the sum of the position, modulo C (the
    dims of the position taken in sorted order, as :mod:`lossdsl.scalar` does)."""
    shape = tuple(sizes[d] for d in info.dims)
    grid = np.indices(shape).sum(axis=0) if shape else np.array(0)
    return (grid % sizes[info.of or ""]).astype(np.int64)


def box_like(info: InputInfo) -> bool:
    return bool(info.dims) and info.dims[-1] == "4"


def scenarios(spec: lossdsl.Spec, sizes: dict[str, int]) -> list[tuple[str, list[np.ndarray]]]:
    rng = np.random.default_rng(3)
    base = [_base(i, sizes, rng) for i in spec.inputs]
    saturated = [_saturate(i, x, rng) for i, x in zip(spec.inputs, base, strict=True)]
    edges = [_edge(i, x) for i, x in zip(spec.inputs, base, strict=True)]
    found = [
        ("saturated logits", saturated),
        ("exact 0/1 probabilities", edges),
        (
            "saturated logits, exact probabilities",
            [_edge(i, x) for i, x in zip(spec.inputs, saturated, strict=True)],
        ),
        ("identical embeddings", _identical(spec.inputs, base)),
        ("zero-area boxes", [_degenerate(i, x) for i, x in zip(spec.inputs, base, strict=True)]),
    ]
    kept: list[tuple[str, list[np.ndarray]]] = []
    for label, xs in found:
        seen = [base] + [ys for _, ys in kept]
        if not any(all(np.array_equal(a, b) for a, b in zip(xs, ys, strict=True)) for ys in seen):
            kept.append((label, xs))
    return kept


def _base(info: InputInfo, sizes: dict[str, int], rng: np.random.Generator) -> np.ndarray:
    if info.elem == "Index":
        return index_array(info, sizes)
    x = draw(info, sizes, rng)
    if info.elem == "Binary":  # 0, 1, 1, 0, ...: against alternating logits, every pairing
        k = np.arange(x.size)
        return ((k + k // 2) % 2).reshape(x.shape).astype(np.float64)
    return x


def _saturate(info: InputInfo, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if info.elem != "Real" or box_like(info):
        return x
    signs = np.where(np.arange(x.size) % 2 == 0, 1.0, -1.0).reshape(x.shape)
    return signs * SATURATED * rng.uniform(0.5, 1.0, size=x.shape)


def _edge(info: InputInfo, x: np.ndarray) -> np.ndarray:
    if info.elem == "Prob":
        return (np.arange(x.size).reshape(x.shape) % 2).astype(np.float64)
    if info.elem == "NonNegative":
        return np.zeros_like(x)
    return x


def _identical(inputs: tuple[InputInfo, ...], base: list[np.ndarray]) -> list[np.ndarray]:
    same = list(base)
    for j, info in enumerate(inputs):
        for k in range(j):
            if inputs[k].elem == info.elem and inputs[k].dims == info.dims and info.elem != "Index":
                same[j] = same[k].copy()
    return same


def _degenerate(info: InputInfo, x: np.ndarray) -> np.ndarray:
    """Boxes with zero width, zero height, or both (a point)."""
    if not box_like(info):
        return x
    x = x.copy()
    x[..., 2] = x[..., 0]  # every box has zero width
    x[..., -1::2, 3] = x[..., -1::2, 1]  # and every other one zero height too
    return x


# --- the mathematics, with mpmath -------------------------------------------------------------

_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "Sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)),
    "Softplus": lambda x: mpmath.log(1 + mpmath.exp(x)),
    "Relu": lambda x: max(x, 0),
    "Clamp": lambda x, lo, hi: min(max(x, lo), hi),
    "Sign": mpmath.sign,
    "Floor": mpmath.floor,
    "Ceil": mpmath.ceil,
    "Round": mpmath.nint,
}


class Mathematics:
    """The spec as written (its IR before rewrites), over explicit elements, in mpmath."""

    def __init__(self, spec: lossdsl.Spec, sizes: dict[str, int]) -> None:
        self.spec = spec
        self.scalar = Scalarizer(spec.ir, sizes).run()
        self.symbols = list(self.scalar.elements)
        self.fn = sympy.lambdify(self.symbols, self.scalar.output, modules=[_FUNCTIONS, "mpmath"])

    def point(self, arrays: list[np.ndarray]) -> list[Any]:
        """Each element symbol's value, and where it lives: (input, array index) or None."""
        loss = self.spec.ir
        by_name = {i.name: (i, a) for i, a in zip(self.spec.inputs, arrays, strict=True)}
        defaults = {p.name: p.default for p in loss.params}
        out = []
        for symbol in self.symbols:
            leaf, index = self.scalar.elements[symbol]
            where = dict(zip(sorted(ir.dims_of(leaf)), index, strict=True))
            name = ir.leaf_name(leaf)
            if leaf in loss.components:
                name, dim, position = loss.components[leaf]
                where[dim] = position
            if name in by_name:
                info, array = by_name[name]
                place = tuple(where[d] for d in info.dims)
                out.append((mpmath.mpf(float(array[place])), (name, place)))
            else:
                out.append((mpmath.mpf(float(defaults[name])), None))
        return out

    def evaluate(self, values: list[Any]) -> Any:
        try:
            return self.fn(*values)
        except (ZeroDivisionError, ValueError, OverflowError):
            return mpmath.nan

    def value_and_grad(self, arrays: list[np.ndarray]) -> tuple[bool, dict[tuple, bool]]:
        """Whether the value is finite, and per element of a differentiated input whether its
        derivative is (first at 50 digits, again at 800 where that says no)."""
        point = self.point(arrays)
        trained = {i.name for i in self.spec.inputs if i.differentiated}
        value_ok, grads = False, {}
        for digits in (50, 800):
            with mpmath.workdps(digits):
                value_ok = value_ok or _finite(self.evaluate([v for v, _ in point]))
                for k, (_, place) in enumerate(point):
                    if place and place[0] in trained and not grads.get(place):
                        grads[place] = self.derivative_is_finite(point, k)
        return value_ok, grads

    def derivative_is_finite(self, point: list[Any], k: int) -> bool:
        """A central difference that converges as the step shrinks."""
        values = [v for v, _ in point]
        x = values[k]
        estimates = []
        for h in (mpmath.mpf(10) ** (-mpmath.mp.dps // 3), mpmath.mpf(10) ** (-mpmath.mp.dps // 2)):
            step = h * max(1, abs(x))
            up = self.evaluate([*values[:k], x + step, *values[k + 1 :]])
            down = self.evaluate([*values[:k], x - step, *values[k + 1 :]])
            if not (_finite(up) and _finite(down)):
                return False
            estimates.append((up - down) / (2 * step))
        a, b = estimates
        return bool(abs(a - b) <= mpmath.mpf(10) ** -8 * (1 + abs(a)))


def _finite(value: Any) -> bool:
    """Finite, and within what float32 can hold (`exp(1000)` is finite but not representable:
    no float32 computation can return it)."""
    return isinstance(value, (mpmath.mpf, int, float)) and bool(abs(value) < FLOAT32_MAX)


# --- the compiled losses, in float32 ----------------------------------------------------------


def run_torch(fn: Any, spec: lossdsl.Spec, arrays: list[np.ndarray]) -> tuple[Any, dict]:
    tensors = [
        torch.tensor(a, dtype=torch.int64)
        if i.elem == "Index"
        else torch.tensor(a, dtype=torch.float32, requires_grad=i.differentiated)
        for i, a in zip(spec.inputs, arrays, strict=True)
    ]
    value = fn(*tensors)
    wrt = [(i.name, t) for i, t in zip(spec.inputs, tensors, strict=True) if i.differentiated]
    grads = torch.autograd.grad(value.sum(), [t for _, t in wrt], allow_unused=True)
    found = {
        n: (np.zeros(t.shape) if g is None else g.numpy())
        for (n, t), g in zip(wrt, grads, strict=True)
    }
    return value.detach().numpy(), found


def jax_value_and_grad(fn: Any, spec: lossdsl.Spec) -> Any:
    wrt = [k for k, i in enumerate(spec.inputs) if i.differentiated]
    return jax.jit(jax.value_and_grad(lambda *xs: fn(*xs).sum(), argnums=wrt))


def run_jax(fn: Any, spec: lossdsl.Spec, arrays: list[np.ndarray]) -> tuple[Any, dict]:
    """``fn``: from :func:`jax_value_and_grad` (jitted once, reused for every point)."""
    args = [
        jnp.asarray(a, dtype=jnp.int64 if i.elem == "Index" else jnp.float32)
        for i, a in zip(spec.inputs, arrays, strict=True)
    ]
    wrt = [k for k, i in enumerate(spec.inputs) if i.differentiated]
    value, grads = fn(*args)
    names = [spec.inputs[k].name for k in wrt]
    return np.asarray(value), {n: np.asarray(g) for n, g in zip(names, grads, strict=True)}


def failures(label: str, expected: tuple[bool, dict], got: tuple[Any, dict]) -> list[str]:
    value_ok, grads_ok = expected
    value, grads = got
    found = []
    if value_ok and not np.isfinite(value).all():
        found.append(f"{label}: value {value}")
    for (name, place), ok in grads_ok.items():
        if ok and not np.isfinite(grads[name][place]):
            found.append(f"{label}: d/d{name}{list(place)} = {grads[name][place]}")
    return found


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_finite_wherever_the_mathematics_is(path: Path) -> None:
    problems: list[str] = []
    checked = 0
    for spec in lossdsl.load_all(path):
        sizes = sizes_of(spec)
        maths = Mathematics(spec, sizes)
        compiled = {
            "torch": spec.compile("torch"),
            "jax": jax_value_and_grad(spec.compile("jax"), spec),
        }
        for label, arrays in scenarios(spec, sizes):
            expected = maths.value_and_grad(arrays)
            checked += sum(expected[1].values()) + expected[0]
            problems += failures(
                f"{spec.name} torch {label}", expected, run_torch(compiled["torch"], spec, arrays)
            )
            problems += failures(
                f"{spec.name} jax {label}", expected, run_jax(compiled["jax"], spec, arrays)
            )
    assert not problems, "\n".join(problems)
    assert checked > 0


# --- plain autograd of the same formulas fails -------------------------------------------------

NAIVE = {
    "log_sigmoid": ("x: Real[N]", "mean(-log(sigmoid(x)))"),
    "one_minus_sigmoid": ("x: Real[N]", "mean(-log(1 - sigmoid(x)))"),
    "sigmoid": ("x: Real[N]", "mean(-log(1 / (1 + exp(-x))))"),
    "softplus": ("x: Real[N]", "mean(log(1 + exp(x)))"),
    "logsumexp": ("x: Real[N, C]", "mean(log(sum[C](exp(x))))"),
    "log_softmax": ("x: Real[N, C]", "mean(-log(softmax[C](x)))"),
}


def naive_specs() -> list[tuple[str, lossdsl.Spec]]:
    found = [
        (rule, lossdsl.parse(f"loss f({d}) {{ return {b} }}", f"{rule}.loss"))
        for rule, (d, b) in NAIVE.items()
    ]
    found.append(("binary_split", lossdsl.load(EXAMPLES / "focal.loss")))
    return found


@pytest.mark.parametrize(("rule", "spec"), naive_specs(), ids=[r for r, _ in naive_specs()])
def test_plain_autograd_fails_where_the_rewrite_does_not(rule: str, spec: lossdsl.Spec) -> None:
    sizes = sizes_of(spec)
    (label, arrays), *_ = scenarios(spec, sizes)
    assert label == "saturated logits"
    expected = Mathematics(spec, sizes).value_and_grad(arrays)
    assert expected[0] and all(expected[1].values())  # the mathematics is finite here
    naive_value, naive_grads = run_torch(spec.reference("torch"), spec, arrays)
    naive_ok = np.isfinite(naive_value).all() and all(
        np.isfinite(g).all() for g in naive_grads.values()
    )
    assert not naive_ok, f"plain autograd of `{rule}` stays finite"
    assert rule in {r.rule for r in spec.rewrites}
    assert failures(rule, expected, run_torch(spec.compile("torch"), spec, arrays)) == []
    jitted = jax_value_and_grad(spec.compile("jax"), spec)
    assert failures(rule, expected, run_jax(jitted, spec, arrays)) == []


def test_the_suite_covers_every_kind_of_extreme_point() -> None:
    seen = set()
    for path in FILES:
        for spec in lossdsl.load_all(path):
            seen |= {label for label, _ in scenarios(spec, sizes_of(spec))}
    assert seen == {
        "saturated logits",
        "exact 0/1 probabilities",
        "saturated logits, exact probabilities",
        "identical embeddings",
        "zero-area boxes",
    }
    assert math.isfinite(SATURATED)
