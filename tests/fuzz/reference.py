"""The NumPy side of generated specs: arrays in a *layout* (one axis per dim of the loss, in the
loss's dim order, size 1 where a value lacks the dim, so NumPy broadcasting is broadcasting by
dim name) and the language's functions written directly in NumPy, independently of lossdsl.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Array = np.ndarray


@dataclass(frozen=True)
class Env:
    """Where an expression is evaluated: the dim order and sizes, and the value of each name
    (layout arrays or floats)."""

    order: tuple[str, ...]
    sizes: Mapping[str, int]
    values: Mapping[str, Any] = field(default_factory=dict)

    def axis(self, dim: str) -> int:
        return self.order.index(dim)

    def axes(self, dims: Iterable[str]) -> tuple[int, ...]:
        return tuple(sorted(self.axis(d) for d in dims))

    def shape(self, dims: Iterable[str]) -> tuple[int, ...]:
        wanted = set(dims)
        return tuple(self.sizes[d] if d in wanted else 1 for d in self.order)

    def full(self, x: Any, dims: Iterable[str]) -> Array:
        """``x`` broadcast to the layout shape of ``dims``."""
        return np.broadcast_to(np.asarray(x, dtype=float), self.shape(dims))

    def bind(self, values: Mapping[str, Any]) -> Env:
        return Env(self.order, self.sizes, {**self.values, **values})

    def layout(self, x: Array, dims: tuple[str, ...]) -> Array:
        """An input array with its declared dims, permuted and reshaped into the layout."""
        relative = [d for d in self.order if d in dims]
        x = np.transpose(np.asarray(x), [dims.index(d) for d in relative])
        return x.reshape(self.shape(dims))


Fn = Callable[[Env], Any]


class Conditioning:
    """Set while evaluating when a point is ill-conditioned for comparison: an argument within
    a hair of a kink, a step or a comparison's threshold (where rounding differences between
    two correct implementations change the branch, and a finite difference straddles the
    kink), or a periodic function of a huge argument. Such points are skipped."""

    ill = False
    # Set when a finite argument of `exp` or `expm1` overflowed to inf: the naive reference
    # may then be 0 or inf where lossdsl's stable forms give the true, finite value (`8 /
    # softplus(log(0.25 + exp(u)))` for a huge `u`), so only finiteness is compared.
    overflow = False

    @classmethod
    def near(cls, x: Any, at: Any = 0.0, tol: float = 1e-5) -> None:
        x, at = np.asarray(x, dtype=float), np.asarray(at, dtype=float)
        if np.any(np.abs(x - at) <= tol * (1.0 + np.abs(x))):
            cls.ill = True

    @classmethod
    def step(cls, x: Any, period: float = 1.0, offset: float = 0.0) -> None:
        """``x`` near ``offset`` + a multiple of ``period`` (floor, ceil, round's halves)."""
        x = np.asarray(x, dtype=float) - offset
        cls.near(x, np.round(x / period) * period)


def _periodic(fn: Callable[[Array], Array]) -> Callable[[Array], Array]:
    def f(x: Array) -> Array:
        if np.any(np.abs(np.asarray(x, dtype=float)) > 1e3):
            Conditioning.ill = True
        return fn(x)

    return f


def _overflowing(fn: Callable[[Array], Array]) -> Callable[[Array], Array]:
    def f(x: Array) -> Array:
        with np.errstate(over="ignore"):
            y = fn(x)
        if np.any(np.isinf(y) & np.isfinite(x)):
            Conditioning.overflow = True
        return y

    return f


def _kinked(fn: Callable[[Array], Array], at: float = 0.0) -> Callable[[Array], Array]:
    def f(x: Array) -> Array:
        Conditioning.near(x, at)
        return fn(x)

    return f


def _stepped(fn: Callable[[Array], Array], offset: float) -> Callable[[Array], Array]:
    def f(x: Array) -> Array:
        Conditioning.step(x, offset=offset)
        return fn(x)

    return f


def sigmoid(x: Array) -> Array:
    x = np.asarray(x, dtype=float)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def softplus(x: Array) -> Array:
    return np.logaddexp(0.0, x)


_erf = np.vectorize(math.erf, otypes=[float])

ELEMENTWISE: dict[str, Callable[[Array], Array]] = {
    "exp": _overflowing(np.exp),
    "sin": _periodic(np.sin),
    "cos": _periodic(np.cos),
    "tanh": np.tanh,
    "erf": lambda x: _erf(np.asarray(x, dtype=float)),
    "sigmoid": sigmoid,
    "logsigmoid": lambda x: -softplus(-np.asarray(x)),
    "softplus": softplus,
    "expm1": _overflowing(np.expm1),
    "log": np.log,
    "log1p": np.log1p,
    "sqrt": np.sqrt,
    "abs": _kinked(np.abs),
    "relu": _kinked(lambda x: np.maximum(x, 0.0)),
    "floor": _stepped(np.floor, 0.0),
    "ceil": _stepped(np.ceil, 0.0),
    "round": _stepped(np.round, 0.5),  # half to even, like torch.round and jnp.round
    "sign": _kinked(np.sign),
}


def logsumexp(x: Array, axes: tuple[int, ...]) -> Array:
    m = np.max(x, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return m + np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True))


def _extreme(fn: Callable[..., Array]) -> Callable[[Array, tuple[int, ...]], Array]:
    """max / min over axes; a tie between the two best (a kink) makes the point ill."""

    def f(x: Array, axes: tuple[int, ...]) -> Array:
        best = fn(x, axis=axes, keepdims=True)
        hits = np.sum(np.abs(x - best) <= 1e-5 * (1 + np.abs(best)), axis=axes)
        if np.any(hits > 1):
            Conditioning.ill = True
        return best

    return f


REDUCTIONS: dict[str, Callable[[Array, tuple[int, ...]], Array]] = {
    "sum": lambda x, a: np.sum(x, axis=a, keepdims=True),
    "max": _extreme(np.max),
    "min": _extreme(np.min),
    "prod": lambda x, a: np.prod(x, axis=a, keepdims=True),
    "logsumexp": logsumexp,
}


def log_softmax(x: Array, axis: int) -> Array:
    return x - logsumexp(x, (axis,))


def softmax(x: Array, axis: int) -> Array:
    return np.exp(log_softmax(x, axis))


def gather(x: Array, index: Array, axis: int) -> Array:
    """``x[t]``: for each position of the index, the element it names along ``axis``."""
    shape = np.broadcast_shapes((*x.shape[:axis], 1, *x.shape[axis + 1 :]), index.shape)
    x = np.broadcast_to(x, (*shape[:axis], x.shape[axis], *shape[axis + 1 :]))
    return np.take_along_axis(x, np.broadcast_to(index, shape), axis=axis)
