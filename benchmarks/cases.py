"""What is measured per spec: the input shapes for a size, the input data, which inputs are
differentiated.

A *size* is the element count of the first input (``1e6``: a ``Real[N]`` input of a million
elements, a ``Real[N, 128]`` one of 7812 rows). Cross-entropy is measured at explicit
``N x C`` shapes instead (``4096x1000``, ``65536x32``): the class count changes the kernel.
Only the inputs a training loop differentiates get ``requires_grad`` (the logits, not the
targets), the same for the reference and for lossdsl.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Arrays = tuple[np.ndarray, ...]

# Default sizes and shapes of the full run.
SIZES = ("1e5", "1e6", "1e7")
CE_SHAPES = ("4096x1000", "65536x32")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Case:
    """One library spec in the benchmark."""

    name: str  # the spec: specs/{name}.loss
    make: Callable[[np.random.Generator, str, str], Arrays]  # (rng, size, dtype) -> inputs
    grad: tuple[int, ...]  # positions of the differentiated inputs
    shaped: bool = False  # sizes are N x C shapes, not element counts


def elements(size: str) -> int:
    return int(float(size))


def shape2(size: str) -> tuple[int, int]:
    n, c = size.lower().split("x")
    return int(n), int(c)


def _rows(size: str, width: int) -> tuple[int, int]:
    return max(1, elements(size) // width), width


def _real(rng: np.random.Generator, shape, dtype: str, scale: float = 1.0) -> np.ndarray:
    return (scale * rng.standard_normal(shape, dtype=np.float32)).astype(dtype)


def _binary(rng: np.random.Generator, shape, dtype: str, p: float = 0.5) -> np.ndarray:
    return (rng.random(shape, dtype=np.float32) < p).astype(dtype)


def _logits_binary(rng, size, dtype):
    n = elements(size)
    return _real(rng, (n,), dtype, 2.0), _binary(rng, (n,), dtype)


def _regression(rng, size, dtype):
    n = elements(size)
    target = _real(rng, (n,), dtype)
    return (target + _real(rng, (n,), dtype, 1.5)).astype(dtype), target


def _bce(rng, size, dtype):
    shape = _rows(size, 100)
    return _real(rng, shape, dtype, 2.0), rng.uniform(0.05, 0.95, shape).astype(dtype)


def _logits_index(rng, size, dtype):
    n, c = shape2(size)
    return _real(rng, (n, c), dtype, 2.0), rng.integers(0, c, size=n).astype(np.int64)


def _boxes(rng, size, dtype):
    n = _rows(size, 4)[0]
    centre = rng.uniform(0.0, 10.0, (n, 2))
    extent = rng.uniform(1.0, 4.0, (n, 2))
    centre_g = centre + rng.normal(0.0, 1.5, (n, 2))
    extent_g = extent * np.exp(rng.normal(0.0, 0.3, (n, 2)))
    pred = np.concatenate([centre - extent / 2, centre + extent / 2], axis=1)
    target = np.concatenate([centre_g - extent_g / 2, centre_g + extent_g / 2], axis=1)
    return pred.astype(dtype), target.astype(dtype)


def _mask(rng, size, dtype):
    shape = _rows(size, 10_000)  # N images of 100 x 100 pixels
    return _real(rng, shape, dtype, 2.0), _binary(rng, shape, dtype, 0.3)


def _pairs(rng, size, dtype):
    shape = _rows(size, 128)  # 128-d embeddings, pair distances around the margin 1
    x1 = _real(rng, shape, dtype)
    x2 = (x1 + _real(rng, shape, dtype, 0.09)).astype(dtype)
    return x1, x2, _binary(rng, shape[:1], dtype)


def _triplets(rng, size, dtype):
    # d(a, p) about 5.7 and d(a, n) about 6.2: the margin 1 hinge is active for most triplets
    shape = _rows(size, 128)
    anchor = _real(rng, shape, dtype)
    positive = (anchor + _real(rng, shape, dtype, 0.5)).astype(dtype)
    return anchor, positive, (anchor + _real(rng, shape, dtype, 0.55)).astype(dtype)


def _log_probs(rng, size, dtype):
    shape = _rows(size, 1000)  # distributions over 1000 classes
    logits = rng.standard_normal(shape)
    log_q = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    p = np.exp(rng.standard_normal(shape))
    return log_q.astype(dtype), (p / p.sum(-1, keepdims=True)).astype(dtype)


CASES: dict[str, Case] = {
    c.name: c
    for c in (
        Case("focal", _logits_binary, (0,)),
        Case("bce_with_logits", _bce, (0,)),
        Case("huber", _regression, (0,)),
        Case("mse", _regression, (0,)),
        Case("cross_entropy", _logits_index, (0,), shaped=True),
        Case("giou", _boxes, (0,)),
        Case("dice", _mask, (0,)),
        Case("tversky", _mask, (0,)),
        Case("contrastive", _pairs, (0, 1)),
        Case("triplet", _triplets, (0, 1, 2)),
        Case("kl_div", _log_probs, (0,)),
        Case("cosine_embedding", _pairs, (0, 1)),
    )
}


def sizes_for(case: Case, sizes: tuple[str, ...], shapes: tuple[str, ...]) -> tuple[str, ...]:
    """The sizes a case runs at: the N x C shapes for cross-entropy, element counts otherwise."""
    return shapes if case.shaped else sizes
