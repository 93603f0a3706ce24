"""The benchmark runner: lossdsl against hand-written losses, forward+backward time and memory.

    python -m benchmarks [--specs focal,mse] [--sizes 1e5,1e6,1e7] [--dtypes float32,float64]
                         [--variants eager,compiled,jax,copy] [--repeats 5] [--rounds 2]
                         [--out benchmarks/results/] [--summary benchmarks/RESULTS.md]

For every spec, size and dtype, and every variant, it runs the hand-written reference and
lossdsl in alternating subprocesses (ref, ours, ref, ours, ... for ``--rounds`` rounds), each
one process per measurement (see ``benchmarks/worker.py`` for what a process measures and how),
then reports the ratios lossdsl / reference of the median times and of the peak memory, in
``OUT/results.json`` and ``OUT/results.md``. The variants:

- ``eager``: the reference with autograd, against ``spec.compile("torch")``;
- ``compiled``: ``torch.compile(reference)`` against ``spec.compile("torch", mode="compiled")``;
- ``jax``: ``jax.jit(jax.value_and_grad(reference))`` against the same of ``spec.compile("jax")``;
- ``copy``: copying the inputs' bytes once (torch ``copy_``), the bandwidth roofline.

``--compiled-sizes`` / ``--compiled-dtypes`` restrict the (slow to warm up) compiled variant.
``--resume`` keeps the measurements ``OUT/results.json`` already holds for the same plan.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import cases, report

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results"
VARIANTS = ("eager", "compiled", "jax", "copy")
PAIRED = ("eager", "compiled", "jax")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time and memory of lossdsl against hand-written losses (fwd+bwd).",
    )
    p.add_argument("--specs", type=_csv, default=tuple(cases.CASES), help="comma-separated")
    p.add_argument(
        "--sizes", type=_csv, default=cases.SIZES, help="element counts (default 1e5,1e6,1e7)"
    )
    p.add_argument(
        "--ce-shapes",
        type=_csv,
        default=cases.CE_SHAPES,
        help="N x C shapes for cross_entropy (default 4096x1000,65536x32)",
    )
    p.add_argument("--dtypes", type=_csv, default=cases.DTYPES)
    p.add_argument("--variants", type=_csv, default=VARIANTS, help=", ".join(VARIANTS))
    p.add_argument(
        "--compiled-sizes",
        type=_csv,
        default=None,
        help="sizes (and cross_entropy shapes) for the compiled variant (default: all)",
    )
    p.add_argument(
        "--compiled-dtypes", type=_csv, default=None, help="dtypes for the compiled variant"
    )
    p.add_argument("--repeats", type=int, default=5, help="timed samples per process")
    p.add_argument("--rounds", type=int, default=2, help="ref/ours process pairs per variant")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads, torch and XLA")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per process")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--summary", type=Path, default=None, help="also write the markdown here")
    p.add_argument("--resume", action="store_true", help="reuse OUT/results.json's records")
    p.add_argument("--quiet", action="store_true")
    return p


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The jobs, in the order they run: per cell, the copy, then per variant ref/ours pairs."""
    unknown = [s for s in args.specs if s not in cases.CASES]
    if unknown:
        raise SystemExit(f"unknown specs: {', '.join(unknown)}; known: {', '.join(cases.CASES)}")
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad:
        raise SystemExit(f"unknown variants: {', '.join(bad)}; known: {', '.join(VARIANTS)}")
    jobs = []
    for name in args.specs:
        case = cases.CASES[name]
        if not (ROOT / "specs" / f"{name}.loss").exists():
            print(f"skipping {name}: specs/{name}.loss does not exist", file=sys.stderr)
            continue
        for size in cases.sizes_for(case, args.sizes, args.ce_shapes):
            for dtype in args.dtypes:
                base = {"spec": name, "size": size, "dtype": dtype}
                if "copy" in args.variants:
                    jobs.append({**base, "variant": "copy", "impl": "copy", "round": 0})
                for variant in PAIRED:
                    if variant not in args.variants or not _included(args, variant, size, dtype):
                        continue
                    for r in range(args.rounds):
                        for impl in ("ref", "ours"):
                            jobs.append({**base, "variant": variant, "impl": impl, "round": r})
    for job in jobs:
        job.update(repeats=args.repeats, threads=args.threads, seed=args.seed)
    return jobs


def _included(args: argparse.Namespace, variant: str, size: str, dtype: str) -> bool:
    if variant != "compiled":
        return True
    sizes = args.compiled_sizes
    # cross-entropy's N x C shapes pass unless some are listed
    listed = sizes is None or size in sizes
    if not listed and ("x" not in size or any("x" in s for s in sizes)):
        return False
    return args.compiled_dtypes is None or dtype in args.compiled_dtypes


def worker_env(threads: int) -> dict[str, str]:
    """The same thread settings for every process: torch's and XLA's intra-op pools."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env["TORCHINDUCTOR_COMPILE_THREADS"] = str(threads)
    eigen = "true" if threads > 1 else "false"
    xla = f"--xla_cpu_multi_thread_eigen={eigen} intra_op_parallelism_threads={threads}"
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + xla).strip()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_job(job: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one job in a fresh interpreter; a failure becomes a record with an ``error``."""
    command = [sys.executable, "-m", "benchmarks.worker", json.dumps(job)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            command,
            cwd=ROOT,
            env=worker_env(job["threads"]),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {**job, "error": f"timed out after {timeout:g} s"}
    wall = time.perf_counter() - start
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        return {**job, "error": f"exit {proc.returncode}: {tail}", "process_s": wall}
    return {**json.loads(lines[-1]), "process_s": wall}


def _key(record: dict[str, Any]) -> tuple[Any, ...]:
    fields = ("spec", "size", "dtype", "variant", "impl", "round", "repeats", "threads", "seed")
    return tuple(record.get(f) for f in fields)


def _describe(record: dict[str, Any]) -> str:
    head = f"{record['spec']} {record['size']} {record['dtype']} {record['variant']}"
    head += f" {record['impl']}"
    if "error" in record:
        return f"{head}: ERROR {record['error'].splitlines()[-1] if record['error'] else ''}"
    peak = record.get("peak_kib")
    mem = f", peak +{peak / 1024:.1f} MiB" if peak is not None else ""
    return f"{head}: {record['median_s'] * 1e3:.3f} ms (warm-up {record['warmup_s']:.2f} s{mem})"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    jobs = plan(args)
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    previous: dict[tuple[Any, ...], dict[str, Any]] = {}
    if args.resume and results_path.exists():
        for record in json.loads(results_path.read_text())["records"]:
            if "error" not in record:
                previous[_key(record)] = record
    meta = {
        "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": _machine(),
        "lossdsl": _lossdsl_state(),
        "threads": args.threads,
        "repeats": args.repeats,
        "rounds": args.rounds,
    }
    records: list[dict[str, Any]] = []
    start = time.perf_counter()
    for i, job in enumerate(jobs, 1):
        record = previous.get(_key(job)) or run_job(job, args.timeout)
        records.append(record)
        if not args.quiet:
            elapsed = time.perf_counter() - start
            print(f"[{i}/{len(jobs)} {elapsed:.0f}s] {_describe(record)}", file=sys.stderr)
        meta["duration_s"] = time.perf_counter() - start
        _write(results_path, meta, records)
    summary = report.summarise(records)
    _write(results_path, meta, records, summary)
    markdown = report.markdown(meta, summary, args.out)
    (args.out / "results.md").write_text(markdown)
    if args.summary is not None:
        args.summary.write_text(markdown)
    if not args.quiet:
        print(markdown)
    failed = [r for r in records if "error" in r]
    return 1 if failed and len(failed) == len(records) else 0


def _write(path: Path, meta: dict, records: list, summary: Any = None) -> None:
    data = {"meta": meta, "records": records}
    if summary is not None:
        data["summary"] = summary
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    for module in ("torch", "jax", "jaxlib", "optax"):
        with contextlib.suppress(Exception):  # not installed or broken: leave it out
            info[module] = _version(module)
    return info


def _lossdsl_state() -> dict[str, Any]:
    """Which lossdsl was measured: the git commit, whether lossdsl/ had uncommitted changes,
    and the compile cache's hash of lossdsl's sources (which identifies them exactly)."""
    state: dict[str, Any] = {}

    def git(*command: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", *command], cwd=ROOT, capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    state["commit"] = git("rev-parse", "--short", "HEAD")
    changes = git("status", "--porcelain", "--", "lossdsl", "grammar", "specs")
    state["uncommitted_changes"] = None if changes is None else bool(changes)
    with contextlib.suppress(Exception):
        from lossdsl import cache

        state["compiler_hash"] = cache._compiler_hash()
    return state


def _version(module: str) -> str:
    from importlib.metadata import version

    return version(module)


if __name__ == "__main__":
    raise SystemExit(main())
