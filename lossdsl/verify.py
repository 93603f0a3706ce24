"""`lossdsl verify`: the generated gradient against the framework's autodiff of a direct
translation and against central finite differences, in float64, at sampled points.

Random points must agree (value: compiled vs direct translation; gradient: generated vs
autodiff vs finite differences); hard points (saturation, domain edges, coincident arguments)
must give a finite value and gradient wherever the direct translation's value is finite.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lossdsl.errors import LossDSLError
from lossdsl.sampling import Point, hard_points, random_points

RTOL_AUTODIFF, ATOL_AUTODIFF = 1e-6, 1e-9
RTOL_FD, ATOL_FD = 1e-4, 1e-6


@dataclass
class Outcome:
    loss: str
    backend: str
    points: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def compare(
        self, label: str, got: np.ndarray, want: np.ndarray, rtol: float, atol: float
    ) -> None:
        got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
        err = np.abs(got - want)
        rel = err / np.maximum(np.abs(want), atol / rtol)
        self.max_abs = max(self.max_abs, float(np.max(err, initial=0.0)))
        self.max_rel = max(self.max_rel, float(np.max(rel, initial=0.0)))
        if not np.allclose(got, want, rtol=rtol, atol=atol):
            self.failures.append(f"{label}: max abs error {float(np.max(err)):.3g}")


class _Torch:
    name = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch

    def value(self, fn: Any, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        return fn(*(self.torch.as_tensor(x) for x in inputs)).detach().numpy()

    def grads(self, fn: Any, inputs: tuple[np.ndarray, ...], wrt: list[int]) -> list[np.ndarray]:
        tensors = [self.torch.tensor(x, requires_grad=i in wrt) for i, x in enumerate(inputs)]
        out = fn(*tensors).sum()
        if not out.requires_grad:  # a constant loss (`x - x`): autograd has no graph to walk
            return [np.zeros_like(inputs[i]) for i in wrt]
        grads = self.torch.autograd.grad(out, [tensors[i] for i in wrt], allow_unused=True)
        return [
            np.zeros_like(inputs[i]) if g is None else g.numpy()
            for i, g in zip(wrt, grads, strict=True)
        ]

    def batched(
        self, fn: Any, inputs: tuple[np.ndarray, ...], index: int, batch: np.ndarray
    ) -> np.ndarray:
        from torch.func import vmap

        dims = tuple(0 if i == index else None for i in range(len(inputs)))
        args = [self.torch.as_tensor(batch if i == index else x) for i, x in enumerate(inputs)]
        return vmap(fn, in_dims=dims)(*args).detach().numpy()


class _Jax:
    name = "jax"

    def __init__(self) -> None:
        import jax

        jax.config.update("jax_enable_x64", True)
        self.jax = jax

        self.jitted: dict[tuple[int, str, object], Any] = {}

    def _jit(self, fn: Any, kind: str, extra: object, make: Any) -> Any:
        """jit once per function and kind (eager JAX dispatch is slow)."""
        key = (id(fn), kind, extra)
        if key not in self.jitted:
            self.jitted[key] = self.jax.jit(make())
        return self.jitted[key]

    def value(self, fn: Any, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        return np.asarray(self._jit(fn, "value", None, lambda: fn)(*inputs))

    def grads(self, fn: Any, inputs: tuple[np.ndarray, ...], wrt: list[int]) -> list[np.ndarray]:
        def make() -> Any:
            total = lambda *xs: self.jax.numpy.sum(fn(*xs))  # noqa: E731
            return self.jax.grad(total, argnums=tuple(wrt))

        return [np.asarray(g) for g in self._jit(fn, "grad", tuple(wrt), make)(*inputs)]

    def batched(
        self, fn: Any, inputs: tuple[np.ndarray, ...], index: int, batch: np.ndarray
    ) -> np.ndarray:
        dims = tuple(0 if i == index else None for i in range(len(inputs)))
        args = [batch if i == index else x for i, x in enumerate(inputs)]
        vmapped = self._jit(fn, "vmap", dims, lambda: self.jax.vmap(fn, in_axes=dims))
        return np.asarray(vmapped(*args))


def finite_differences(
    runner: Any, fn: Any, inputs: tuple[np.ndarray, ...], index: int
) -> np.ndarray:
    """Central differences of ``sum(fn(...))`` w.r.t. one input, all perturbations in one call."""
    x = inputs[index]
    h = 1e-6 * np.maximum(1.0, np.abs(x)).reshape(-1)
    eye = np.eye(x.size) * h[:, None]
    batch = np.concatenate([x.reshape(1, -1) + eye, x.reshape(1, -1) - eye]).reshape(-1, *x.shape)
    values = runner.batched(fn, inputs, index, batch).reshape(2 * x.size, -1).sum(axis=1)
    return ((values[: x.size] - values[x.size :]) / (2 * h)).reshape(x.shape)


def verify_spec(spec: Any, backend: str, points: int) -> Outcome:
    runner = _Torch() if backend == "torch" else _Jax()
    compiled, reference = spec.compile(backend), spec.reference(backend)
    wrt = [i for i, info in enumerate(spec.inputs) if info.differentiated]
    outcome = Outcome(spec.name, backend)
    for point in random_points(spec.inputs, points):
        outcome.points += 1
        _check_random(outcome, runner, compiled, reference, point, wrt)
    for point in hard_points(spec.inputs):
        outcome.points += 1
        _check_hard(outcome, runner, compiled, reference, point, wrt)
    return outcome


def _check_random(o: Outcome, runner: Any, fn: Any, ref: Any, point: Point, wrt: list[int]) -> None:
    o.compare(
        f"{point.label} value",
        runner.value(fn, point.inputs),
        runner.value(ref, point.inputs),
        RTOL_AUTODIFF,
        ATOL_AUTODIFF,
    )
    generated = runner.grads(fn, point.inputs, wrt)
    autodiff = runner.grads(ref, point.inputs, wrt)
    for i, got, want in zip(wrt, generated, autodiff, strict=True):
        o.compare(
            f"{point.label} d/d input {i} vs autodiff", got, want, RTOL_AUTODIFF, ATOL_AUTODIFF
        )
        fd = finite_differences(runner, fn, point.inputs, i)
        o.compare(f"{point.label} d/d input {i} vs finite differences", got, fd, RTOL_FD, ATOL_FD)


def _check_hard(o: Outcome, runner: Any, fn: Any, ref: Any, point: Point, wrt: list[int]) -> None:
    with np.errstate(all="ignore"):
        want = runner.value(ref, point.inputs)
    if not np.all(np.isfinite(want)):
        return
    got = runner.value(fn, point.inputs)
    grads = runner.grads(fn, point.inputs, wrt)
    if not np.all(np.isfinite(got)) or not all(np.all(np.isfinite(g)) for g in grads):
        o.failures.append(f"{point.label}: non-finite value or gradient where the loss is finite")


def _backends(requested: str | None) -> list[str]:
    import importlib.util

    names = [requested] if requested else ["torch", "jax"]
    return [n for n in names if requested or importlib.util.find_spec(n) is not None]


def verify_files(paths: list[Path], backend: str | None, points: int) -> int:
    """Verify every loss in the files; print a table; 0 if all pass, 1 otherwise."""
    from lossdsl.api import load_all

    specs = []
    for path in paths:
        try:
            specs.extend(load_all(path))
        except LossDSLError as exc:
            print(exc.render(), file=sys.stderr)
            return 1
    jobs = [(spec, b) for spec in specs for b in _backends(backend)]
    if not jobs:
        print(
            "lossdsl verify: no backend installed (pip install 'lossdsl[torch]')", file=sys.stderr
        )
        return 1
    outcomes = _run_with_progress(jobs, points)
    _print_table(outcomes)
    return 0 if all(o.passed for o in outcomes) else 1


def _run_with_progress(jobs: list[tuple[Any, str]], points: int) -> list[Outcome]:
    try:
        from rich.progress import Progress
    except ImportError:
        return [verify_spec(spec, b, points) for spec, b in jobs]
    outcomes = []
    with Progress(transient=True, disable=not sys.stderr.isatty()) as progress:
        task = progress.add_task("verifying", total=len(jobs))
        for spec, b in jobs:
            progress.update(task, description=f"{spec.name} ({b})")
            outcomes.append(verify_spec(spec, b, points))
            progress.advance(task)
    return outcomes


def _print_table(outcomes: list[Outcome]) -> None:
    header = (
        f"{'loss':<20} {'backend':<8} {'points':>6} {'max abs err':>12} {'max rel err':>12}  result"
    )
    print(header)
    print("-" * len(header))
    for o in outcomes:
        print(
            f"{o.loss:<20} {o.backend:<8} {o.points:>6} {o.max_abs:>12.2e} {o.max_rel:>12.2e}  "
            f"{'pass' if o.passed else 'FAIL'}"
        )
        for failure in o.failures:
            print(f"    {failure}")
    failed = sum(not o.passed for o in outcomes)
    print(f"{len(outcomes) - failed} passed, {failed} failed")
