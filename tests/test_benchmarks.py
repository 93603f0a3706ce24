"""Smoke tests of benchmarks/: the runner works end to end on a tiny size (no timing
assertions), and its aggregation and planning do what the report says."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import cases, compile_time, references, report, run

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("torch")
HAS_JAX = importlib.util.find_spec("jax") is not None and importlib.util.find_spec("optax")


def test_runner_end_to_end_on_a_tiny_size(tmp_path: Path) -> None:
    variants = "eager,jax,copy" if HAS_JAX else "eager,copy"
    command = [
        sys.executable,
        "-m",
        "benchmarks",
        "--specs=mse",
        "--sizes=1000",
        "--dtypes=float32",
        f"--variants={variants}",
        "--rounds=1",
        "--repeats=2",
        f"--out={tmp_path}",
        "--quiet",
    ]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "results.json").read_text())
    assert [r for r in data["records"] if "error" in r] == []
    (cell,) = data["summary"]["cells"]
    assert (cell["spec"], cell["size"], cell["dtype"]) == ("mse", "1000", "float32")
    assert cell["copy_s"] > 0
    for variant in variants.split(",")[:-1]:
        v = cell["variants"][variant]
        assert v["time_ratio"] > 0 and v["check_ok"], v
        assert v["ref_processes"] == v["ours_processes"] == 1
    markdown = (tmp_path / "results.md").read_text()
    assert "| mse | 1000 (1000) | float32 |" in markdown
    assert "matched its reference" in markdown


def test_every_case_has_a_spec_and_references() -> None:
    for name, case in cases.CASES.items():
        assert (ROOT / "specs" / f"{name}.loss").exists(), name
        assert name in references.TORCH and name in references.JAX, name
        size = "8x5" if case.shaped else "1000"
        arrays = case.make(__import__("numpy").random.default_rng(0), size, "float64")
        assert all(arrays[i].dtype == "float64" for i in case.grad), name


def test_plan_alternates_and_restricts_compiled() -> None:
    args = run.parser().parse_args(
        [
            "--specs=mse,cross_entropy",
            "--sizes=1e5,1e6",
            "--ce-shapes=64x10",
            "--dtypes=float32,float64",
            "--compiled-sizes=1e6",
            "--compiled-dtypes=float32",
            "--rounds=2",
        ]
    )
    jobs = run.plan(args)
    compiled = {(j["spec"], j["size"], j["dtype"]) for j in jobs if j["variant"] == "compiled"}
    assert compiled == {("mse", "1e6", "float32"), ("cross_entropy", "64x10", "float32")}
    eager = [j["impl"] for j in jobs if j["variant"] == "eager" and j["size"] == "1e5"]
    assert eager == ["ref", "ours"] * 4  # two dtypes, two rounds each
    assert all(j["repeats"] == 5 and j["threads"] == 1 for j in jobs)


def _record(variant: str, impl: str, times: list[float], peak: float, rnd: int = 0) -> dict:
    return {
        "spec": "mse",
        "size": "1e6",
        "dtype": "float32",
        "variant": variant,
        "impl": impl,
        "round": rnd,
        "shapes": [[1000000], [1000000]],
        "input_bytes": 8_000_000,
        "times_s": times,
        "median_s": sorted(times)[len(times) // 2],
        "warmup_s": 0.5,
        "build_s": 0.1,
        "peak_kib": peak,
        "check": {"loss": 1.0, "grad_abs_sum": [2.0]},
    }


def test_summary_pools_rounds_and_takes_ratios() -> None:
    records = [
        {**_record("copy", "copy", [0.001], None), "check": {}},
        _record("eager", "ref", [0.010, 0.010, 0.012], 8000.0, 0),
        _record("eager", "ours", [0.005, 0.006, 0.005], 4000.0, 0),
        _record("eager", "ref", [0.010, 0.011, 0.010], 8000.0, 1),
        _record("eager", "ours", [0.005, 0.005, 0.004], 4000.0, 1),
        _record("jax", "ref", [0.002], 100.0),  # below the memory resolution
        {**_record("jax", "ours", [0.002], 100.0), "check": {"loss": 2.0, "grad_abs_sum": [2]}},
    ]
    summary = report.summarise(records)
    (cell,) = summary["cells"]
    eager = cell["variants"]["eager"]
    assert eager["time_ratio"] == pytest.approx(0.005 / 0.010)
    assert eager["memory_ratio"] == pytest.approx(0.5)
    assert eager["ref_roofline"] == pytest.approx(10.0)
    assert len(eager["time_ratio_rounds"]) == 2 and eager["check_ok"]
    jax = cell["variants"]["jax"]
    assert jax["memory_ratio"] is None and jax["check_ok"] is False
    assert summary["overall"]["eager"]["faster"] == 1
    markdown = report.markdown({"command": "x", "threads": 1}, summary)
    row = "| mse | 1e6 (1000000) | float32 | 0.50 <sub>0.50–0.50</sub> | — | 1.00 | — |"
    assert row in markdown
    assert "differs from the reference" in markdown


def test_compile_time_child_and_table() -> None:
    timings = compile_time.child(str(ROOT / "specs" / "mse.loss"), "torch")
    assert set(timings) >= {"import_s", "load_s", "compile_s", "again_s"}
    assert all(v >= 0 for v in timings.values())
    results = {"mse": {"torch": {"import_s": 0.2, "cold_s": 0.4, "warm_same_process_s": 1e-4}}}
    results["mse"]["torch"]["warm_disk_s"] = 0.08
    text = compile_time.markdown(results, "cmd")
    assert "| mse | 200 | 400 | 0.1 | **80** |" in text
    assert "- torch warm (disk): max 80 ms, median 80 ms; 1/1 over the 50 ms target." in text
