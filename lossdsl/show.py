"""`lossdsl show`: a loss as mathematics (text or LaTeX), and a 1-D plot of it and its
generated gradient."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sympy
from sympy.printing.latex import LatexPrinter

from lossdsl import ir, notation
from lossdsl.errors import BackendError

_REDUCTIONS = {"ReduceSum": "sum", "ReduceMax": "max", "ReduceMin": "min", "ReduceProd": "prod"}
_REDUCTIONS |= {"LogSumExp": "logsumexp"}


class LossLatexPrinter(LatexPrinter):
    """LaTeX with sums over named dims, sigma for the sigmoid and norms as norms."""

    def _print_Symbol(self, expr: sympy.Symbol, style: str = "plain") -> str:
        name = ir.leaf_name(expr)
        if name.startswith("n_") and "|" not in expr.name:
            return rf"|{name[2:]}|"
        return r"\mathit{" + name.replace("_", r"\_") + "}"

    def _print_Function(self, expr: sympy.Function, exp: Any = None) -> str:
        printed = self._function(expr)
        return printed if exp is None else rf"\left({printed}\right)^{{{exp}}}"

    def _function(self, expr: sympy.Function) -> str:
        name = type(expr).__name__
        arg = self._print(expr.args[0])
        if name in _REDUCTIONS:
            dims = ",".join(ir.dim_names(expr.args[1]))
            symbol = {"sum": r"\sum", "prod": r"\prod"}.get(_REDUCTIONS[name])
            head = symbol or rf"\operatorname{{{_REDUCTIONS[name]}}}"
            return rf"{head}_{{{dims}}} \left({arg}\right)"
        if name == "Norm":
            return rf"\left\lVert {arg} \right\rVert_{{{','.join(ir.dim_names(expr.args[1]))}}}"
        if name == "Sigmoid":
            return rf"\sigma\left({arg}\right)"
        if name == "Gather":
            return rf"\left({arg}\right)_{{{self._print(expr.args[1])}}}"
        if name in ("Softmax", "LogSoftmax", "OneHot", "Softplus", "Relu", "Clamp", "Safe"):
            args = ", ".join(self._print(a) for a in expr.args if not isinstance(a, sympy.Tuple))
            return rf"\operatorname{{{name.lower()}}}\left({args}\right)"
        return super()._print_Function(expr)  # type: ignore[no-any-return]


def as_text(expr: sympy.Basic) -> str:
    """An IR expression in the language's own notation (the printer `check` uses too)."""
    return notation.show(expr)


def show(path: str, name: str | None, latex: bool, plot: str | None) -> int:
    import lossdsl

    spec = lossdsl.load(path, name)
    if latex:
        print(LossLatexPrinter().doprint(spec.ir.output))
    else:
        print(describe(spec))
    if plot:
        plot_slice(spec, Path(plot))
        print(f"wrote {plot}")
    return 0


def describe(spec: Any) -> str:
    lines = [f"loss {spec.name}"]
    if spec.doc:
        lines += ["  " + line for line in spec.doc.splitlines()]
    for info in spec.inputs:
        dims = f"[{', '.join(info.dims)}]" if info.dims else ""
        of = f" of {info.of}" if info.of else ""
        role = "differentiated" if info.differentiated else "data"
        lines.append(f"  input {info.name}: {info.elem}{dims}{of}  ({role})")
    for p in spec.params:
        where = f" where {p.condition_text}" if p.condition_text else ""
        default = "required" if p.default is None else f"= {p.default:g}"
        lines.append(f"  param {p.name}: {p.elem} {default}{where}")
    lines.append(f"  = {as_text(spec.ir.output)}")
    if as_text(spec.stable_ir.output) != as_text(spec.ir.output):
        lines.append(f"  stable form: {as_text(spec.stable_ir.output)}")
    return "\n".join(lines)


def plot_slice(spec: Any, out: Path) -> None:
    """The loss and d(loss)/d(first differentiated input) along t, with that input's every
    element set to t and the other inputs fixed at a sample point."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
        import torch
    except ImportError as exc:
        raise BackendError(None, f"--plot needs {exc.name}", "pip install 'lossdsl[dev]'") from None
    from lossdsl.sampling import random_points

    point = random_points(spec.inputs, 1, seed=0)[0].inputs
    which = next(i for i, info in enumerate(spec.inputs) if info.differentiated)
    loss = spec.compile("torch")
    ts = np.linspace(-4.0, 4.0, 161)
    values, slopes = [], []
    for t in ts:
        args = [torch.as_tensor(x) for x in point]
        args[which] = torch.full_like(args[which], float(t)).requires_grad_()
        value = loss(*args).sum()
        (grad,) = torch.autograd.grad(value, args[which])
        values.append(value.item())
        slopes.append(float(grad.sum()))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(ts, values, label=f"{spec.name}")
    ax.plot(ts, slopes, label="d/dt (generated gradient)", linestyle="--")
    ax.set_xlabel(f"t (every element of `{spec.inputs[which].name}`)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
