"""Determinism (issue #7): the emitted source of a loss is byte-identical across runs and across
processes with different hash seeds (PYTHONHASHSEED changes set and dict-of-set iteration
order, which SymPy's printing and CSE must not leak into the code), each process compiling
into its own empty cache so nothing is merely read back.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lossdsl
from lossdsl import cache
from tests.conftest import EXAMPLES, ROOT, SPECS

FILES = [
    *sorted(EXAMPLES.glob("*.loss")),
    *(SPECS / f"{name}.loss" for name in ("cross_entropy", "giou", "hinge", "tversky", "triplet")),
]
HOSTILE = """# Doc with "quotes", ''' and \\ and unicode λ ∑.
def helper(a, b) = a * sigmoid(b) + log1p(a^2)
loss print(lambda: Real[N, C], t: Index[N] of C, w: Positive[C], box: Real[N, 4]) {
    param __import__: Positive = 0.5 where __import__ <= 2
    x1, y1, x2, y2 = box
    s = softmax[C](lambda)
    e = sum[C](onehot(t) * log_softmax[C](lambda)) + norm[C](lambda - w, eps=1e-6)
    return mean(helper(e, s[t]) + max(x2 - x1, y2 - y1) * __import__)
}
"""
SCRIPT = """
import hashlib, json, sys
import lossdsl
out = {}
for path in sys.argv[1:]:
    specs = lossdsl.load_all(path)
    for spec in specs:
        for backend in ("torch", "jax"):
            source = spec.emit(backend).encode()
            out[f"{path}:{spec.name}:{backend}"] = hashlib.sha256(source).hexdigest()
print(json.dumps(out, sort_keys=True))
"""
SEEDS = ("0", "1", "4242")


def digests_here(paths: list[Path]) -> dict[str, str]:
    out = {}
    for path in paths:
        for spec in lossdsl.load_all(path):
            for backend in ("torch", "jax"):
                source = spec.emit(backend).encode()
                out[f"{path}:{spec.name}:{backend}"] = hashlib.sha256(source).hexdigest()
    return out


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    hostile = tmp_path_factory.mktemp("determinism") / "hostile.loss"
    hostile.write_text(HOSTILE, encoding="utf-8")
    return [*FILES, hostile]


def test_emitted_source_is_identical_across_processes_and_hash_seeds(
    paths: list[Path], tmp_path: Path
) -> None:
    runs = []
    for seed in SEEDS:  # concurrently: each process pays its own imports once
        env = {**os.environ, "PYTHONHASHSEED": seed, "LOSSDSL_CACHE_DIR": str(tmp_path / seed)}
        command = [sys.executable, "-c", SCRIPT, *map(str, paths)]
        runs.append(subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE))
    outputs = []
    for run in runs:
        stdout, _ = run.communicate(timeout=600)
        assert run.returncode == 0
        outputs.append(json.loads(stdout))
    assert len(outputs[0]) >= 2 * len(paths)
    for seed, other in zip(SEEDS[1:], outputs[1:], strict=True):
        differing = [k for k in outputs[0] if outputs[0][k] != other.get(k)]
        assert not differing, f"PYTHONHASHSEED={seed} emits different source for {differing}"
    # The disk entries each process wrote hold the same text too.
    entries = [sorted((tmp_path / seed).glob("*.py")) for seed in SEEDS]
    assert (
        [e.name for e in entries[0]] == [e.name for e in entries[1]] == [e.name for e in entries[2]]
    )
    for files in zip(*entries, strict=True):
        assert len({f.read_bytes() for f in files}) == 1
    # ... and this process, reading its own cache, agrees with them.
    assert digests_here(paths) == outputs[0]


def test_emitting_twice_in_one_process_without_the_cache_is_identical(
    paths: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostile = paths[-1]
    first = digests_here([hostile])
    monkeypatch.setenv("LOSSDSL_CACHE_DIR", str(tmp_path / "fresh"))
    cache.clear_memory()
    assert digests_here([hostile]) == first


FLAT = """loss f(y: Real[M], g: Real) {
    r = if g < y then 1 else 2
    return sum(if r != g then y else 2)
}
"""


def test_check_reports_are_identical_across_hash_seeds(tmp_path: Path) -> None:
    """`lossdsl check --json` names the same node in its messages whatever the hash seed (the
    zero-gradient error once named the first comparison an `Or` happened to hold first)."""
    spec = tmp_path / "flat.loss"
    spec.write_text(FLAT, encoding="utf-8")
    runs = []
    for seed in SEEDS:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        command = [sys.executable, "-m", "lossdsl.cli", "check", "--json", str(spec)]
        runs.append(subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE))
    reports = [run.communicate(timeout=600)[0] for run in runs]
    assert json.loads(reports[0])  # a report, with the zero-gradient error in it
    assert b"zero-gradient" in reports[0]
    assert reports[1] == reports[0] and reports[2] == reports[0]
