"""One measurement, in its own process: ``python -m benchmarks.worker JOB_JSON``.

The job names a spec, a size, a dtype, a variant (``eager``, ``compiled``, ``jax``, ``copy``)
and an implementation (``ref``: the hand-written reference, ``ours``: lossdsl, ``copy``: the
bandwidth roofline). The worker builds the inputs and the callable, times the first call
(warm-up: torch.compile's or XLA's compile lands here), warms up further, then times
``repeats`` forward+backward samples, then measures peak memory, and prints one JSON object
on its last stdout line.

Peak memory is the process's peak resident set size (``getrusage().ru_maxrss``, the kernel's
``VmHWM``) during one forward+backward after warm-up and timing, minus the resident size just
before it: the extra memory one step needs on top of its inputs (saved tensors, temporaries,
gradients). tracemalloc does not see torch's or XLA's buffers, so RSS it is. To make RSS follow
the allocations, the worker first switches glibc to serve every block of 128 KiB or more with
its own mmap (``mallopt(M_MMAP_THRESHOLD)``; by default glibc keeps freed blocks of up to
32 MiB resident for reuse, where RSS no longer sees them) and runs one step; then, before each
measured step, ``malloc_trim(0)`` returns freed heap pages and writing ``5`` to
``/proc/self/clear_refs`` resets the high-water mark to the current size. The median of
three measured steps is reported. Timing runs before the switch, with the default allocator.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import cases, references

ROOT = Path(__file__).resolve().parent.parent
MIN_SAMPLE_S = 0.005  # calls shorter than this are timed in a loop and divided
WARMUP_CALLS = 2  # after the first (timed separately)
MEMORY_CALLS = 3


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(argv[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = measure(job)
    # e.g. lossdsl's "torch.compile failed ...; running eager": the report must say so
    result["warnings"] = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    print(json.dumps(result))
    return 0


def measure(job: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    case = cases.CASES[job["spec"]]
    arrays = case.make(np.random.default_rng(job.get("seed", 0)), job["size"], job["dtype"])
    variant, impl = job["variant"], job["impl"]
    if variant == "jax":
        step, reset, build_s, check = _jax_step(job, case, arrays)
    else:
        step, reset, build_s, check = _torch_step(job, case, arrays)
    setup_s = time.perf_counter() - start

    t0 = time.perf_counter()
    step()
    warmup_s = time.perf_counter() - t0
    estimate = warmup_s
    for _ in range(WARMUP_CALLS):
        t0 = time.perf_counter()
        step()
        estimate = time.perf_counter() - t0
    inner = max(1, min(1000, int(MIN_SAMPLE_S / max(estimate, 1e-7))))
    times = []
    for _ in range(job["repeats"]):
        t0 = time.perf_counter()
        for _ in range(inner):
            step()
        times.append((time.perf_counter() - t0) / inner)

    checked = check()
    peaks = []
    if impl != "copy":
        _fix_malloc()
        step()  # the first step after the switch still reuses the heap's resident pages
        peaks = [_peak_kib(step, reset) for _ in range(MEMORY_CALLS)]
    return {
        **job,
        "shapes": [list(a.shape) for a in arrays],
        "input_bytes": int(sum(a.nbytes for a in arrays)),
        "times_s": times,
        "median_s": statistics.median(times),
        "inner": inner,
        "warmup_s": warmup_s,
        "build_s": build_s,
        "setup_s": setup_s,
        "peak_kib": statistics.median(peaks) if peaks else None,
        "check": checked,
        "threads": job["threads"],
    }


def _torch_step(job, case, arrays):
    import torch

    torch.set_num_threads(job["threads"])
    variant, impl = job["variant"], job["impl"]
    inputs = [torch.from_numpy(a) for a in arrays]
    if impl == "copy":
        outputs = [torch.empty_like(x) for x in inputs]

        def copy() -> None:
            for out, x in zip(outputs, inputs, strict=True):
                out.copy_(x)

        return copy, lambda: None, 0.0, lambda: {}

    for i in case.grad:
        inputs[i].requires_grad_(True)
    t0 = time.perf_counter()
    if impl == "ref":
        fn = references.TORCH[case.name]
        if variant == "compiled":
            fn = torch.compile(fn)
    else:
        import lossdsl

        spec = lossdsl.load(ROOT / "specs" / f"{case.name}.loss")
        fn = spec.compile("torch", mode="compiled" if variant == "compiled" else "eager")
    build_s = time.perf_counter() - t0
    differentiated = [inputs[i] for i in case.grad]
    state: dict[str, Any] = {}

    def reset() -> None:
        for x in differentiated:
            x.grad = None
        state.clear()

    def step() -> None:
        reset()
        loss = fn(*inputs)
        loss.backward()
        state["loss"] = loss

    def check() -> dict[str, Any]:
        return {
            "loss": float(state["loss"].detach().double()),
            "grad_abs_sum": [float(x.grad.double().abs().sum()) for x in differentiated],
        }

    return step, reset, build_s, check


def _jax_step(job, case, arrays):
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 inputs stay float64
    inputs = [jax.device_put(a) for a in arrays]
    t0 = time.perf_counter()
    if job["impl"] == "ref":
        loss = references.JAX[case.name]
    else:
        import lossdsl

        loss = lossdsl.load(ROOT / "specs" / f"{case.name}.loss").compile("jax")
    fn = jax.jit(jax.value_and_grad(loss, argnums=case.grad))
    build_s = time.perf_counter() - t0
    state: dict[str, Any] = {}

    def reset() -> None:
        state.clear()  # free the last step's gradients

    def step() -> None:
        reset()
        state["out"] = jax.block_until_ready(fn(*inputs))

    def check() -> dict[str, Any]:
        value, grads = state["out"]
        return {
            "loss": float(value),
            "grad_abs_sum": [float(np.abs(np.asarray(g, dtype=np.float64)).sum()) for g in grads],
        }

    return step, reset, build_s, check


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def _fix_malloc() -> None:
    """Serve every allocation of 128 KiB or more with its own mmap, unmapped when freed, from
    now on (glibc otherwise raises this threshold as it sees large frees and keeps the freed
    memory resident for reuse, which hides it from RSS)."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
        libc.mallopt(M_TRIM_THRESHOLD, 128 * 1024)


def _trim() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _peak_kib(step, reset) -> float | None:
    """Peak RSS during one step minus RSS just before it (KiB), with the last step's outputs
    freed first; None where the high-water mark cannot be reset (not Linux)."""
    reset()
    gc.collect()
    _trim()
    before = _rss_kib()
    if not _reset_peak():
        return None
    step()
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)


if __name__ == "__main__":
    raise SystemExit(main())
