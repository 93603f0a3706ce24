"""Aggregate worker records into ratios, and render them as markdown.

Per cell (spec, size, dtype) and variant: the median of all timed samples of all reference
processes and of all lossdsl processes (pooled over the alternating rounds), their ratio
lossdsl / reference, the per-round ratios, the median peak memory of each side and its ratio,
and the median warm-up (first call) and build (``spec.compile``) times. The copy of the inputs
gives each cell its roofline; times are also reported as multiples of it.

    python -m benchmarks.report benchmarks/results/results.json   # re-render the markdown
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

PAIRED = ("eager", "compiled", "jax")
TOLERANCE = {"float32": 1e-3, "float64": 1e-6}
MEMORY_FLOOR_KIB = 256  # smaller peaks are within RSS noise: no memory ratio


def _median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def _reldiff(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[record["spec"], record["size"], record["dtype"]].append(record)
    cells = []
    for (spec, size, dtype), group in groups.items():
        ok = [r for r in group if "error" not in r]
        copy = [r for r in ok if r["variant"] == "copy"]
        cell: dict[str, Any] = {
            "spec": spec,
            "size": size,
            "dtype": dtype,
            "shapes": ok[0]["shapes"] if ok else None,
            "input_bytes": ok[0]["input_bytes"] if ok else None,
            "copy_s": _median([t for r in copy for t in r["times_s"]]),
            "variants": {},
        }
        for variant in PAIRED:
            runs = [r for r in group if r["variant"] == variant]
            if runs:
                cell["variants"][variant] = _variant(runs, dtype, cell["copy_s"])
        cells.append(cell)
    return {"cells": cells, "overall": _overall(cells)}


def _variant(runs: list[dict[str, Any]], dtype: str, copy_s: float | None) -> dict[str, Any]:
    side = {i: [r for r in runs if r["impl"] == i and "error" not in r] for i in ("ref", "ours")}
    out: dict[str, Any] = {"errors": [f"{r['impl']}: {r['error']}" for r in runs if "error" in r]}
    out["warnings"] = sorted(
        {f"{r['impl']}: {w}" for r in runs for w in r.get("warnings", []) if _notable(w)}
    )
    for impl, rs in side.items():
        out[f"{impl}_s"] = _median([t for r in rs for t in r["times_s"]])
        out[f"{impl}_peak_kib"] = _median([r["peak_kib"] for r in rs])
        out[f"{impl}_warmup_s"] = _median([r["warmup_s"] for r in rs])
        out[f"{impl}_build_s"] = _median([r["build_s"] for r in rs])
        out[f"{impl}_processes"] = len(rs)
        out[f"{impl}_roofline"] = _ratio(out[f"{impl}_s"], copy_s)
    out["time_ratio"] = _ratio(out["ours_s"], out["ref_s"])
    resolved = all((out[f"{i}_peak_kib"] or 0) >= MEMORY_FLOOR_KIB for i in ("ref", "ours"))
    out["memory_ratio"] = _ratio(out["ours_peak_kib"], out["ref_peak_kib"]) if resolved else None
    rounds = sorted({r["round"] for r in runs})
    per_round = []
    for k in rounds:
        ref = [r["median_s"] for r in side["ref"] if r["round"] == k]
        ours = [r["median_s"] for r in side["ours"] if r["round"] == k]
        if ref and ours:
            per_round.append(ours[0] / ref[0])
    out["time_ratio_rounds"] = per_round
    if side["ref"] and side["ours"]:
        ref, ours = side["ref"][0]["check"], side["ours"][0]["check"]
        diffs = [_reldiff(ours["loss"], ref["loss"])]
        grads = zip(ours["grad_abs_sum"], ref["grad_abs_sum"], strict=True)
        diffs += [_reldiff(a, b) for a, b in grads]
        out["check_reldiff"] = max(diffs)
        out["check_ok"] = max(diffs) <= TOLERANCE.get(dtype, 1e-3)
    return out


def _notable(warning: str) -> bool:
    """Warnings that change what was measured (a compile that fell back to eager)."""
    if warning.startswith(("DeprecationWarning", "FutureWarning")):
        return False
    return "lossdsl" in warning or "eager" in warning.lower()


def _geomean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None and x > 0]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def _overall(cells: list[dict[str, Any]]) -> dict[str, Any]:
    overall = {}
    for variant in PAIRED:
        vs = [c["variants"][variant] for c in cells if variant in c["variants"]]
        times = [v["time_ratio"] for v in vs if v["time_ratio"] is not None]
        mems = [v["memory_ratio"] for v in vs if v["memory_ratio"] is not None]
        if not times:
            continue
        overall[variant] = {
            "cells": len(times),
            "time_geomean": _geomean(times),
            "time_min": min(times),
            "time_max": max(times),
            "faster": sum(t < 1 for t in times),
            "memory_geomean": _geomean(mems),
            "leaner": sum(m < 1 for m in mems),
            "memory_cells": len(mems),
        }
    # lossdsl compiled against what users write by hand: the eager reference.
    pairs = []
    for c in cells:
        v = c["variants"]
        if "compiled" in v and "eager" in v:
            pairs.append(_ratio(v["compiled"]["ours_s"], v["eager"]["ref_s"]))
    pairs = [p for p in pairs if p is not None]
    if pairs:
        overall["compiled_vs_ref_eager"] = {
            "cells": len(pairs),
            "time_geomean": _geomean(pairs),
            "time_min": min(pairs),
            "time_max": max(pairs),
            "faster": sum(p < 1 for p in pairs),
        }
    return overall


# -- markdown ---------------------------------------------------------------------------------


def _f(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _cell_value(cell: dict[str, Any], variant: str, key: str, digits: int = 2) -> str:
    v = cell["variants"].get(variant)
    if v is None:
        return "—"
    if v.get(key) is None and v["errors"]:
        return "err"
    return _f(v.get(key), digits)


def _time_cell(cell: dict[str, Any], variant: str) -> str:
    """The pooled ratio, with the range of the per-round ratios when there are several."""
    text = _cell_value(cell, variant, "time_ratio")
    rounds = cell["variants"].get(variant, {}).get("time_ratio_rounds") or []
    if len(rounds) > 1 and text not in ("—", "err"):
        text += f" <sub>{min(rounds):.2f}–{max(rounds):.2f}</sub>"
    return text


def _size_label(cell: dict[str, Any]) -> str:
    shapes = cell["shapes"]
    shape = "x".join(map(str, shapes[0])) if shapes else "?"
    return f"{cell['size']} ({shape})" if "x" not in cell["size"] else cell["size"]


def markdown(meta: dict[str, Any], summary: dict[str, Any], folder: Path | None = None) -> str:
    """The results as markdown; with ``folder``, its compile_time.md (from
    ``python -m benchmarks.compile_time``) is appended when present."""
    cells = summary["cells"]
    m = meta.get("machine", {})
    state = meta.get("lossdsl", {})
    measured = f"lossdsl at commit {state.get('commit', '?')}"
    if state.get("uncommitted_changes"):
        measured += " with uncommitted changes"
    if state.get("compiler_hash"):
        measured += f" (source hash {state['compiler_hash']})"
    lines = [
        "# lossdsl benchmark results",
        "",
        f"Command: `{meta.get('command', '?')}`; {measured}.  ",
        f"Started {meta.get('started', '?')}, took {meta.get('duration_s', 0) / 60:.1f} min. "
        f"{m.get('cpu', '?')}, {m.get('cpus', '?')} CPUs; {meta.get('threads')} intra-op "
        f"thread(s) for torch and XLA; torch {m.get('torch', '?')}, jax {m.get('jax', '?')}, "
        f"optax {m.get('optax', '?')}, Python {m.get('python', '?')}.  ",
        f"{meta.get('rounds')} alternating ref/lossdsl process pairs per variant, "
        f"{meta.get('repeats')} timed forward+backward samples per process after warm-up. "
        "Method: docs/performance.md.",
        "",
        "Ratios are lossdsl / reference: below 1 means lossdsl is faster (time) or needs less "
        'memory (peak). *eager*: hand-written torch + autograd vs `spec.compile("torch")`; '
        '*compiled*: `torch.compile(reference)` vs `spec.compile("torch", mode="compiled")`; '
        "*jax*: `jax.jit(jax.value_and_grad(...))` of the optax/jnp reference vs of "
        '`spec.compile("jax")`.',
        "",
        "## Summary (geometric means over cells)",
        "",
        "| variant | cells | time ratio | min | max | lossdsl faster | memory ratio "
        "| lossdsl leaner |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant, o in summary["overall"].items():
        label = variant
        if variant == "compiled_vs_ref_eager":
            label = "compiled lossdsl vs eager reference"
        mem = _f(o.get("memory_geomean")) if "memory_geomean" in o else "—"
        leaner = f"{o['leaner']}/{o['memory_cells']}" if "leaner" in o else "—"
        lines.append(
            f"| {label} | {o['cells']} | {_f(o['time_geomean'])} | {_f(o['time_min'])} "
            f"| {_f(o['time_max'])} | {o['faster']}/{o['cells']} | {mem} | {leaner} |"
        )
    lines += [
        "",
        "## Time ratios (lossdsl / reference, median fwd+bwd)",
        "",
        "Small numbers: the range of the per-round ratios (each round one reference and one "
        "lossdsl process, run back to back). The last column compares lossdsl compiled with "
        "the eager reference a user writes.",
        "",
        "| spec | size | dtype | eager | compiled | jax | compiled vs ref eager |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        v = c["variants"]
        vs_eager = None
        if "compiled" in v and "eager" in v:
            vs_eager = _ratio(v["compiled"]["ours_s"], v["eager"]["ref_s"])
        lines.append(
            f"| {c['spec']} | {_size_label(c)} | {c['dtype']} | "
            + " | ".join(_time_cell(c, k) for k in PAIRED)
            + f" | {_f(vs_eager)} |"
        )
    lines += [
        "",
        "## Peak memory ratios (lossdsl / reference, extra RSS of one fwd+bwd)",
        "",
        "The last two columns give the eager peaks as multiples of the input bytes.",
        "",
        "| spec | size | dtype | eager | compiled | jax | ref eager / inputs "
        "| lossdsl eager / inputs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        eager = c["variants"].get("eager", {})
        per_input = []
        for impl in ("ref", "ours"):
            peak = eager.get(f"{impl}_peak_kib")
            resolved = peak is not None and peak >= MEMORY_FLOOR_KIB and c["input_bytes"]
            per_input.append(_f(peak * 1024 / c["input_bytes"]) if resolved else "—")
        lines.append(
            f"| {c['spec']} | {_size_label(c)} | {c['dtype']} | "
            + " | ".join(_cell_value(c, k, "memory_ratio") for k in PAIRED)
            + f" | {per_input[0]} | {per_input[1]} |"
        )
    lines += [
        "",
        "## Distance from the roofline (median time / time to copy the inputs once)",
        "",
        "| spec | size | dtype | ref eager | lossdsl eager | ref compiled | lossdsl compiled "
        "| ref jax | lossdsl jax |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        row = []
        for k in PAIRED:
            row += [_cell_value(c, k, "ref_roofline", 1), _cell_value(c, k, "ours_roofline", 1)]
        lines.append(f"| {c['spec']} | {_size_label(c)} | {c['dtype']} | " + " | ".join(row) + " |")
    lines += [
        "",
        "## Warm-up (first call, seconds: reference / lossdsl) and lossdsl build",
        "",
        "The first call includes torch.compile's and XLA's compilation; *build* is "
        "`lossdsl.load` + `spec.compile` in the worker (disk cache warm after the first process).",
        "",
        "| spec | size | dtype | eager | compiled | jax | build (torch eager) |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        row = []
        for k in PAIRED:
            v = c["variants"].get(k)
            row.append("—" if v is None else f"{_f(v['ref_warmup_s'])} / {_f(v['ours_warmup_s'])}")
        build = c["variants"].get("eager", {}).get("ours_build_s")
        lines.append(
            f"| {c['spec']} | {_size_label(c)} | {c['dtype']} | "
            + " | ".join(row)
            + f" | {_f(build, 3)} |"
        )
    problems = []
    for c in cells:
        for k, v in c["variants"].items():
            where = f"{c['spec']} {c['size']} {c['dtype']} {k}"
            problems += [f"- {where}: {e.splitlines()[-1] if e else e}" for e in v["errors"]]
            problems += [f"- {where}: warning {w.splitlines()[0]}" for w in v.get("warnings", [])]
            if v.get("check_ok") is False:
                problems.append(
                    f"- {where}: loss or gradient differs from the reference by "
                    f"{v['check_reldiff']:.2e} (relative)"
                )
    lines += ["", "## Checks", ""]
    lines += problems or [
        "Every lossdsl loss value and gradient (sum of absolute values) matched its reference."
    ]
    text = "\n".join(lines) + "\n"
    extra = folder / "compile_time.md" if folder is not None else None
    if extra is not None and extra.exists():
        text += "\n" + extra.read_text()
    return text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0])
    data = json.loads(path.read_text())
    summary = data.get("summary") or summarise(data["records"])
    sys.stdout.write(markdown(data["meta"], summary, path.parent))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
