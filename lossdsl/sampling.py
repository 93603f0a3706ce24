"""Inputs drawn from a loss's declared types and dims (NumPy), for `lossdsl verify` and tests.

Random points are where gradients must agree with autodiff and finite differences; hard points
(saturated logits, exact 0/1 probabilities, identical arguments, zero-size boxes) are where the
generated code must at least stay finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lossdsl.checked import InputInfo


@dataclass(frozen=True)
class Point:
    label: str
    inputs: tuple[np.ndarray, ...]


def dim_sizes(inputs: tuple[InputInfo, ...], rng: np.random.Generator) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for info in inputs:
        for dim in (*info.dims, *([info.of] if info.of else [])):
            if dim not in sizes:
                sizes[dim] = int(dim) if dim.isdigit() else int(rng.integers(2, 5))
    return sizes


def _box_like(info: InputInfo) -> bool:
    return bool(info.dims) and info.dims[-1] == "4"


def draw(info: InputInfo, sizes: dict[str, int], rng: np.random.Generator) -> np.ndarray:
    """One random input of the declared element type, away from kinks."""
    shape = tuple(sizes[d] for d in info.dims)
    if info.elem == "Index":
        return rng.integers(0, sizes[info.of or ""], size=shape).astype(np.int64)
    if info.elem == "Binary":
        return (rng.random(shape) < 0.5).astype(np.float64)
    if info.elem == "Prob":
        return rng.uniform(0.05, 0.95, size=shape)
    if info.elem == "Positive":
        return np.exp(rng.normal(0.0, 0.5, size=shape))
    if info.elem == "NonNegative":
        return np.abs(rng.normal(1.0, 0.5, size=shape)) + 0.05
    if _box_like(info):  # (x1, y1, x2, y2) with x2 > x1, y2 > y1
        low = rng.uniform(0.0, 1.0, size=(*shape[:-1], 2))
        size = rng.uniform(0.5, 1.5, size=(*shape[:-1], 2))
        return np.concatenate([low, low + size], axis=-1)
    return rng.normal(0.0, 1.5, size=shape)


def random_points(inputs: tuple[InputInfo, ...], count: int, seed: int = 0) -> list[Point]:
    """``count`` random points; all share one draw of dim sizes (so jitted code is reused)."""
    rng = np.random.default_rng(seed)
    sizes = dim_sizes(inputs, np.random.default_rng(seed))
    points = []
    for k in range(count):
        points.append(Point(f"random {k}", tuple(draw(i, sizes, rng) for i in inputs)))
    return points


def hard_points(inputs: tuple[InputInfo, ...], seed: int = 0) -> list[Point]:
    """Extreme but valid inputs: saturation, domain edges, coincident arguments."""
    rng = np.random.default_rng(seed + 1)
    sizes = dim_sizes(inputs, np.random.default_rng(seed))
    base = [draw(i, sizes, rng) for i in inputs]
    points = []
    for scale, label in ((30.0, "saturated"), (1e3, "extreme")):
        varied = [
            np.sign(rng.normal(size=x.shape)) * scale
            if i.elem == "Real" and not _box_like(i)
            else x
            for i, x in zip(inputs, base, strict=True)
        ]
        points.append(Point(label, tuple(varied)))
    edges = [
        np.round(x) if i.elem == "Prob" else (np.zeros_like(x) if i.elem == "NonNegative" else x)
        for i, x in zip(inputs, base, strict=True)
    ]
    points.append(Point("domain edges", tuple(edges)))
    same = list(base)
    for j, info in enumerate(inputs):  # identical arguments: a == b, pred == target
        for k in range(j):
            if inputs[k].elem == info.elem and inputs[k].dims == info.dims:
                same[j] = same[k].copy()
    points.append(Point("coincident", tuple(same)))
    return points
