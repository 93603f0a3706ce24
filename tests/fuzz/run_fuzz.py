"""The long fuzz profile, as a script: text cases (mutated specs, token soup, random
characters, pathological nesting) through parse + resolve, some through the CLI, and
optionally generated valid specs through both backends.

    python tests/fuzz/run_fuzz.py --cases 100000            # text-level, parse + resolve
    python tests/fuzz/run_fuzz.py --cases 2000 --cli-every 20
    python tests/fuzz/run_fuzz.py --cases 0 --valid 300     # valid specs, both backends
    python tests/fuzz/run_fuzz.py --replay 1234             # show one case and its outcome

Case ``k`` is generated from seed ``start + k`` alone, so every failure is reproducible with
``--replay``. A case passes when it succeeds or raises a ``LossDSLError``; any other exception,
a case over ``--timeout`` seconds (a hang), or a CLI run that prints a traceback or an
"internal error" is a failure. Exit status: 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import multiprocessing
import os
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `tests.fuzz` importable
    sys.path.insert(0, str(ROOT))

from tests.fuzz.harness import (  # noqa: E402
    Hang,
    KnownBug,
    check_generated,
    check_text,
    time_limit,
)
from tests.fuzz.textgen import case_for_seed  # noqa: E402


def run_cli(text: str) -> str | None:
    """`lossdsl check` on the text as a file: None if it behaved, else what went wrong."""
    from lossdsl import cli

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "case.loss"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = cli.main(["check", str(path)])
            except SystemExit as exc:  # argparse usage errors exit 2
                code = exc.code if isinstance(exc.code, int) else 2
    stderr = err.getvalue()
    if "Traceback" in stderr or "internal error" in stderr or code not in (0, 1):
        return f"exit {code}: {stderr[-2000:]}"
    return None


def one_case(args: tuple[int, float, bool]) -> tuple[int, str, str]:
    """(seed, outcome, detail): outcome is "ok", an error class name, or FAIL:/HANG."""
    seed, timeout, cli = args
    try:
        text = case_for_seed(seed)
    except Exception:  # the generator's own bug: reported, never mistaken for lossdsl's
        return seed, "FAIL:generator", traceback.format_exc(limit=-6)
    try:
        with time_limit(timeout):
            outcome = check_text(text)
            if cli:
                problem = run_cli(text)
                if problem is not None:
                    return seed, "FAIL:cli", problem
    except Hang:
        return seed, "HANG", f"over {timeout} s"
    except Exception as exc:  # anything but a LossDSLError is a bug
        return seed, f"FAIL:{type(exc).__name__}", traceback.format_exc(limit=-6)
    return seed, outcome, ""


def one_valid(args: tuple[int, float, bool]) -> tuple[int, str, str]:
    from tests.fuzz.choose import RandomChooser
    from tests.fuzz.specgen import generate

    seed, timeout, _ = args
    spec = generate(RandomChooser(random.Random(seed)), smooth=seed % 2 == 0)
    try:
        with time_limit(timeout):
            check_generated(spec, seed=seed)
    except Hang:
        return seed, "HANG", spec.text
    except KnownBug as bug:
        return seed, f"known bug {bug.key}", ""
    except Exception as exc:
        return seed, f"FAIL:{type(exc).__name__}", f"{exc}\n{traceback.format_exc(limit=-6)}"
    return seed, "ok", ""


def _init_worker() -> None:
    os.environ.setdefault("LOSSDSL_CACHE_DIR", tempfile.mkdtemp(prefix="lossdsl-fuzz-"))
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
    except ImportError:
        pass


def run(kind: str, seeds: range, jobs: int, timeout: float, cli_every: int) -> int:
    work = [(s, timeout, cli_every > 0 and s % cli_every == 0) for s in seeds]
    target = one_case if kind == "text" else one_valid
    counts: collections.Counter[str] = collections.Counter()
    failures: list[tuple[int, str, str]] = []
    start = time.time()
    _init_worker()
    results: Iterator[tuple[int, str, str]]
    if jobs > 1:
        pool = multiprocessing.get_context("fork").Pool(jobs, initializer=_init_worker)
        results = pool.imap_unordered(target, work, chunksize=64)
    else:
        results = map(target, work)
    for done, (seed, outcome, detail) in enumerate(results, 1):
        counts[outcome] += 1
        if outcome.startswith(("FAIL", "HANG")):
            failures.append((seed, outcome, detail))
            print(f"seed {seed}: {outcome}\n{detail}", file=sys.stderr, flush=True)
        if done % 10000 == 0:
            print(f"  {kind}: {done} cases, {time.time() - start:.0f} s", flush=True)
    elapsed = time.time() - start
    total = sum(counts.values())
    print(f"{kind}: {total} cases in {elapsed:.1f} s, {len(failures)} failures")
    for outcome, n in counts.most_common():
        print(f"  {outcome:>20}: {n}")
    return len(failures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000, help="text cases")
    parser.add_argument("--valid", type=int, default=0, help="generated valid specs")
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per case")
    parser.add_argument("--cli-every", type=int, default=0, help="also run the CLI every K")
    parser.add_argument("--replay", type=int, help="print one text case and its outcome")
    args = parser.parse_args(argv)
    if args.replay is not None:
        print(case_for_seed(args.replay))
        print(one_case((args.replay, args.timeout, True))[1:])
        return 0
    failed = 0
    if args.cases:
        seeds = range(args.start, args.start + args.cases)
        failed += run("text", seeds, args.jobs, args.timeout, args.cli_every)
    if args.valid:
        seeds = range(args.start, args.start + args.valid)
        failed += run("valid", seeds, args.jobs, args.timeout * 6, 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
