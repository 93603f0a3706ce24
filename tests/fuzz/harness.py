"""What every fuzz case must satisfy.

- :func:`check_text`: any text parses and resolves, or raises a :class:`LossDSLError` whose
  rendering works; nothing else may escape.
- :func:`check_generated`: a generated valid spec compiles on both backends, agrees with its
  NumPy evaluation at random points, and its generated gradient agrees with central finite
  differences of that evaluation wherever the differentiability certificate says the loss is
  differentiable (smooth, C1, or piecewise away from its kinks). Where the NumPy evaluation
  overflowed on the way (`exp` of a huge argument), only finiteness is compared: lossdsl's
  stable forms may be the accurate answer there, and must at least never be NaN or inf.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import numpy as np

import lossdsl
from lossdsl import loader
from lossdsl.errors import LossDSLError
from lossdsl.parser import parse as parse_text
from lossdsl.resolve import resolve_all
from tests.fuzz.modcheck import check_module
from tests.fuzz.reference import Conditioning
from tests.fuzz.specgen import GeneratedSpec

BACKENDS = ("torch", "jax")


class Hang(Exception):
    """A case ran past its time limit."""


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread after ``seconds`` (SymPy and the parser are
    pure Python, so the signal interrupts them)."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_text(text: str, filename: str = "<fuzz>") -> str:
    """Parse and resolve every loss of ``text``: "ok" or the LossDSLError's class name."""
    try:
        resolve_all(loader.scope_of(parse_text(text, filename)))
    except LossDSLError as exc:
        rendered = exc.render()  # rendering (spans, carets, notes) must never fail either
        assert rendered and isinstance(exc.to_dict(), dict)
        return type(exc).__name__
    return "ok"


@dataclass
class Failure(AssertionError):
    """A generated spec that broke a property, with everything needed to reproduce it."""

    spec: GeneratedSpec
    what: str

    def __str__(self) -> str:
        params = f"params: {self.spec.params}\n" if self.spec.params else ""
        return f"{self.what}\n--- spec (loss `{self.spec.name}`) ---\n{self.spec.text}{params}"


# Bugs found by this fuzzer in modules owned elsewhere, not fixed yet. Each has a minimal
# reproduction marked xfail(strict=True) in tests/test_fuzz.py; when it is fixed, that test
# fails, and its entry here and its recognition in `_known` are removed.
KNOWN_BUGS: dict[str, str] = {}


@dataclass
class KnownBug(Exception):
    """A case that ran into one of :data:`KNOWN_BUGS` (counted, not a new failure)."""

    key: str


def check_generated(
    spec: GeneratedSpec,
    backends: Sequence[str] = BACKENDS,
    points: int = 2,
    seed: int = 0,
    gradients: bool = True,
) -> None:
    """All properties of one generated valid spec (raises :class:`Failure` or
    :class:`KnownBug`)."""
    try:
        _check(spec, backends, points, seed, gradients)
    except (Failure, KnownBug):
        raise
    except Exception as exc:
        key = _known(spec, exc)
        if key is None:
            raise Failure(spec, f"{type(exc).__name__}: {exc}") from exc
        raise KnownBug(key) from exc


def _known(spec: GeneratedSpec, exc: Exception) -> str | None:
    """The key of the known bug ``exc`` is a case of (none open at present)."""
    return None


def _check(
    spec: GeneratedSpec, backends: Sequence[str], points: int, seed: int, gradients: bool
) -> None:
    try:
        loaded = lossdsl.parse(spec.text, name=spec.name)
        compiled = {b: loaded.compile(b, params=spec.params) for b in backends}
        for backend in backends:
            check_module(loaded.emit(backend, **spec.params), backend, spec.name)
    except LossDSLError as exc:
        raise Failure(spec, f"a valid spec was refused:\n{exc.render()}") from exc
    certificate = _certificate(loaded) if gradients else {}
    rng = np.random.default_rng(seed)
    sizes = spec.sizes(rng)
    for _ in range(points):
        arrays = spec.draw_inputs(sizes, rng)
        Conditioning.ill = Conditioning.overflow = False
        want = spec.reference(arrays, sizes)
        if Conditioning.ill:
            continue  # a point on (or a hair from) a kink or step: no fair comparison
        for backend, fn in compiled.items():
            got = _call(backend, fn, arrays)
            _compare(spec, f"{backend} value", got, want, loose=Conditioning.overflow)
        if not gradients or not np.isfinite(want).all() or np.abs(want).max(initial=0) > 1e8:
            continue
        weights = rng.normal(size=want.shape)
        for k, info in enumerate(spec.inputs):
            # A differentiable loss, or a piecewise one at random points (off its kinks).
            if not info.differentiated or certificate.get(info.name) == "discontinuous":
                continue
            fd = _finite_differences(spec, arrays, sizes, weights, k)
            if Conditioning.ill:
                break  # a finite difference that straddles a kink
            for backend, fn in compiled.items():
                got = _gradient(backend, fn, arrays, weights, k, spec)
                what = f"{backend} gradient of `{info.name}`"
                _compare(spec, what, got, fd, True, loose=Conditioning.overflow)


def _certificate(loaded: lossdsl.Spec) -> dict[str, str]:
    return {c.input: c.klass for c in loaded.check().certificates}


def _compare(
    spec: GeneratedSpec,
    what: str,
    got: np.ndarray,
    want: np.ndarray,
    gradient: bool = False,
    loose: bool = False,
) -> None:
    """``got`` close to ``want`` wherever that is finite; ``loose`` (the reference overflowed
    on the way): only finite there, since lossdsl's stable forms may be the accurate one."""
    if got.shape != want.shape:
        raise Failure(spec, f"{what}: shape {got.shape}, expected {want.shape}")
    finite = np.isfinite(want)
    scale = 1.0 + float(np.abs(want[finite]).max(initial=0.0))
    rtol, atol = (1e-4, 1e-5 * scale) if gradient else (1e-7, 1e-9 * scale)
    close = np.isfinite(got) if loose else np.abs(got - want) <= atol + rtol * np.abs(want)
    bad = finite & ~close
    if bad.any():
        raise Failure(spec, f"{what} differs:\n got {got[bad]}\nwant {want[bad]}")


def _call(backend: str, fn: Callable[..., Any], arrays: list[np.ndarray]) -> np.ndarray:
    if backend == "torch":
        import torch

        return fn(*(torch.as_tensor(x) for x in arrays)).detach().numpy()
    import jax.numpy as jnp

    return np.asarray(fn(*(jnp.asarray(x) for x in arrays)))


def _gradient(
    backend: str,
    fn: Callable[..., Any],
    arrays: list[np.ndarray],
    weights: np.ndarray,
    k: int,
    spec: GeneratedSpec,
) -> np.ndarray:
    """The generated gradient of ``sum(weights * loss)`` w.r.t. input ``k``."""
    if backend == "torch":
        import torch

        inputs = [torch.as_tensor(x) for x in arrays]
        inputs[k] = inputs[k].clone().requires_grad_(True)
        weighted = (fn(*inputs) * torch.as_tensor(weights)).sum()
        (grad,) = torch.autograd.grad(weighted, [inputs[k]], allow_unused=True)
        return np.zeros_like(arrays[k]) if grad is None else grad.numpy()
    import jax
    import jax.numpy as jnp

    jinputs = [jnp.asarray(x) for x in arrays]

    def total(x: Any) -> Any:
        return jnp.sum(jnp.asarray(weights) * fn(*jinputs[:k], x, *jinputs[k + 1 :]))

    return np.asarray(jax.grad(total)(jinputs[k]))


def _finite_differences(
    spec: GeneratedSpec,
    arrays: list[np.ndarray],
    sizes: dict[str, int],
    weights: np.ndarray,
    k: int,
) -> np.ndarray:
    x = arrays[k]
    grad = np.zeros_like(x)
    for position in np.ndindex(x.shape):
        h = 1e-6 * max(1.0, abs(float(x[position])))
        values = []
        for step in (h, -h):
            moved = x.copy()
            moved[position] += step
            out = spec.reference([*arrays[:k], moved, *arrays[k + 1 :]], sizes)
            values.append(float(np.sum(weights * out)))
        grad[position] = (values[0] - values[1]) / (2 * h)
    return grad
