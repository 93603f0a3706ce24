"""Front-end speed: read, parse and resolve every example spec, in a warm process.

    python benchmarks/frontend.py [--runs 20] [DIR ...]

One untimed pass warms the process (the Lark parser is built once and cached); then each of
``--runs`` passes reads, parses and resolves every ``.loss`` file in the folders given (default:
tests/examples) and the median pass time is printed, with the parse-only median beside it.
LANGUAGE.md's budget for the example set is 200 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lossdsl.loader import load_file, read_source  # noqa: E402
from lossdsl.parser import parse  # noqa: E402
from lossdsl.resolve import resolve_all  # noqa: E402


def parse_and_resolve(files: list[Path]) -> int:
    """One front-end pass over ``files``; returns the number of losses checked."""
    return sum(len(resolve_all(load_file(path))) for path in files)


def parse_only(files: list[Path]) -> int:
    return sum(len(parse(read_source(path).text, str(path)).decls) for path in files)


def median_ms(work: Callable[[], object], runs: int) -> float:
    work()  # warm-up: builds and caches the parser
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", type=Path, default=[ROOT / "tests" / "examples"])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    files = sorted(f for d in args.dirs for f in d.glob("*.loss"))
    if not files:
        parser.error("no .loss files found")
    losses = parse_and_resolve(files)
    total = median_ms(lambda: parse_and_resolve(files), args.runs)
    parsing = median_ms(lambda: parse_only(files), args.runs)
    print(
        f"front end: {len(files)} files, {losses} losses: parse + resolve median {total:.1f} ms "
        f"(parse alone {parsing:.1f} ms) over {args.runs} warm runs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
