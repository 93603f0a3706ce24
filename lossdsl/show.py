"""`lossdsl show`: a loss as mathematics (text or LaTeX), and a 1-D plot of it and its
generated gradient."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from lossdsl import ir
from lossdsl.errors import BackendError

_NAMES = {"Sigmoid": "sigmoid", "Softplus": "softplus", "Relu": "relu", "Sign": "sign"}
_NAMES |= {"Floor": "floor", "Ceil": "ceil", "Round": "round", "Clamp": "clamp"}
_REDUCTIONS = {"ReduceSum": "sum", "ReduceMax": "max", "ReduceMin": "min", "ReduceProd": "prod"}
_REDUCTIONS |= {"LogSumExp": "logsumexp"}


class LossPrinter(StrPrinter):
    """Prints the IR back in the language's own notation: `sum[N](...)`, `x[t]`."""

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        name = ir.leaf_name(expr)
        return f"size({name[2:]})" if name.startswith("n_") and "|" not in expr.name else name

    def _print_Function(self, expr: sympy.Function) -> str:
        name = type(expr).__name__
        if name in _REDUCTIONS:
            dims = ", ".join(ir.dim_names(expr.args[1]))
            return f"{_REDUCTIONS[name]}[{dims}]({self._print(expr.args[0])})"
        if name == "Norm":
            eps = "" if expr.args[2] == 0 else f", eps={self._print(expr.args[2])}"
            return (
                f"norm[{', '.join(ir.dim_names(expr.args[1]))}]({self._print(expr.args[0])}{eps})"
            )
        if name in ("Softmax", "LogSoftmax"):
            op = "softmax" if name == "Softmax" else "log_softmax"
            return f"{op}[{ir.dim_names(expr.args[1])[0]}]({self._print(expr.args[0])})"
        if name == "Gather":
            base = self._print(expr.args[0])
            atomic = isinstance(expr.args[0], (sympy.Symbol, sympy.Function))
            return f"{base if atomic else f'({base})'}[{self._print(expr.args[1])}]"
        if name == "OneHot":
            return f"onehot({self._print(expr.args[0])})"
        if name == "Safe":
            return self._print(expr.args[0])
        args = ", ".join(self._print(a) for a in expr.args)
        return f"{_NAMES.get(name, name.lower())}({args})"

    def _print_Piecewise(self, expr: sympy.Piecewise) -> str:
        (value, cond), rest = expr.args[0], expr.args[1:]
        if cond is sympy.true or not rest:
            return self._print(value)
        orelse = sympy.Piecewise(*rest, evaluate=False)
        return f"(if {self._print(cond)} then {self._print(value)} else {self._print(orelse)})"

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        return super()._print_Pow(expr, rational).replace("**", "^")


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
    return LossPrinter().doprint(expr)


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
