"""PyTorch backend: a ``torch.autograd.Function`` whose backward is the generated gradient.

The emitted module imports only torch. Its Function saves only the inputs (the backward
recomputes what it needs from them, in differentiable torch ops, so double backward is exact),
computes only the gradients ``needs_input_grad`` asks for, and has ``generate_vmap_rule`` so
``torch.func.vmap`` and ``torch.func.grad`` work; ``torch.compile`` traces it whole.
"""

from __future__ import annotations

from typing import ClassVar

import sympy

from lossdsl import ir
from lossdsl.backends.base import TensorPrinter, install_table
from lossdsl.backends.module import (
    Dialect,
    arg_names,
    component_slices,
    dtype_line,
    entry_function,
    finish,
    header,
    indent,
    reserved_names,
    size_lines,
    straight_line,
)
from lossdsl.codegen import Plan, cotangent, py_name, with_gradients


@install_table
class TorchPrinter(TensorPrinter):
    backend = "torch"
    FUNCTIONS: ClassVar[dict[str, str]] = {
        "exp": "torch.exp({0})",
        "log": "torch.log({0})",
        "log1p": "torch.log1p({0})",
        "expm1": "torch.expm1({0})",
        "sqrt": "torch.sqrt({0})",
        "rsqrt": "torch.rsqrt({0})",
        "sin": "torch.sin({0})",
        "cos": "torch.cos({0})",
        "tanh": "torch.tanh({0})",
        "erf": "torch.erf({0})",
        "Abs": "torch.abs({0})",
        "sign": "torch.sign({0})",
        "Sign": "torch.sign({0})",
        "Floor": "torch.floor({0})",
        "Ceil": "torch.ceil({0})",
        "Round": "torch.round({0})",
        "Sigmoid": "torch.sigmoid({0})",
        "Softplus": "torch.nn.functional.softplus({0})",
        "Relu": "torch.relu({0})",
        "Clamp": "torch.clamp({0}, {1}, {2})",
        "maximum": "torch.maximum({0}, {1})",
        "minimum": "torch.minimum({0}, {1})",
        "clamp_max": "torch.clamp({0}, min={1})",
        "clamp_min": "torch.clamp({0}, max={1})",
    }
    REDUCTIONS: ClassVar[dict[str, str]] = {
        "sum": "torch.sum({arg}, dim={axes}, keepdim=True)",
        "max": "torch.amax({arg}, dim={axes}, keepdim=True)",
        "min": "torch.amin({arg}, dim={axes}, keepdim=True)",
        "prod": "torch.prod(torch.flatten(({arg}).movedim({axes}, tuple(range(-len({axes}), 0))),"
        " -len({axes})), -1).reshape(torch.amax({arg}, dim={axes}, keepdim=True).shape)",
        "logsumexp": "torch.logsumexp({arg}, dim={axes}, keepdim=True)",
        "softmax": "torch.softmax({arg}, dim={axes})",
        "log_softmax": "torch.log_softmax({arg}, dim={axes})",
        "gather": "torch.take_along_dim({arg}, {index}, dim={axes})",
        "arange": "torch.arange({size}, device=dtype_device).reshape({shape})",
    }
    WHERE = "torch.where({0}, {1}, {2})"
    LOGICAL: ClassVar[dict[str, str]] = {"And": "({0} & {1})", "Or": "({0} | {1})", "Not": "(~{0})"}
    ASTYPE = "{x}.to(dtype)"
    SCALAR = "torch.as_tensor({x}, dtype=dtype)"

    # A vector norm without eps is one fused kernel in torch.
    def _print_Norm(self, expr: ir.Norm) -> str:
        arg, dims, eps = expr.args
        if eps != 0:
            return super()._print_Norm(expr)
        axes = self.layout.axes(ir.dim_names(dims))
        return f"torch.linalg.vector_norm({self._print(arg)}, dim={axes!r}, keepdim=True)"


DIALECT = Dialect(
    name="torch",
    is_float="{x}.is_floating_point()",
    not_integer="{x}.is_floating_point() or {x}.is_complex() or {x}.dtype == torch.bool",
    cast="{x}.to({dtype})",  # a no-op when the dtype already matches
    as_index="{x}.long()",
    permute="{x}.permute({perm})",
    zeros_like="torch.zeros_like({x})",
    broadcast="torch.broadcast_to({x}, {shape})",
    concat="torch.cat([{parts}], dim={axis})",
    as_array="torch.as_tensor({x})",
    like="torch.as_tensor({x}, dtype={ref}.dtype, device={ref}.device)",
)


def _prelude(plan: Plan, exprs: list[sympy.Basic]) -> list[str]:
    symbols = set().union(*(e.free_symbols for e in exprs)) if exprs else set()
    lines = [dtype_line(plan)]
    floats = [i for i in plan.loss.inputs if i.elem != "Index"]
    if any(e.has(ir.OneHot) for e in exprs):
        lines.append(f"dtype_device = {py_name(floats[0].name)}.device")
    return lines + size_lines(plan, exprs) + component_slices(plan, symbols)


def _value_function(plan: Plan, reserved: set[str]) -> list[str]:
    lines, (result,) = straight_line(_printer(plan), plan, [plan.value], reserved)
    args = ", ".join(arg_names(plan))
    sizes = {ir.size(d) for d in plan.layout.order}
    if not plan.value.free_symbols - sizes:  # a constant loss (sizes are Python ints here) is
        # still a tensor of the inputs' dtype
        first = py_name(next(i for i in plan.loss.inputs if i.elem != "Index").name)
        result = f"torch.full({plan.layout.shape(frozenset())}, {result}, dtype={first}.dtype)"
    elif isinstance(plan.value, sympy.Symbol):  # an input as it is: autograd.Function must
        result = f"{result}.view_as({result})"  # return a view of it, not the input itself
    body = [*_prelude(plan, [plan.value]), *lines, f"return {result}"]
    return [f"def _value({args}):", *indent(finish(body))]


def _grad_function(plan: Plan, reserved: set[str]) -> list[str]:
    leaves = {info.name: plan.loss.leaves_of(info.name) for info in plan.wrt}
    order = [leaf for info in plan.wrt for leaf in leaves[info.name]]
    exprs = [plan.grads[ir.leaf_name(leaf)] for leaf in order]
    lines, printed = straight_line(_printer(plan), plan, exprs, reserved)
    result = dict(zip(order, printed, strict=True))
    grad_exprs = {leaf: e for leaf, e in zip(order, exprs, strict=True)}
    body = _prelude(plan, [*exprs, cotangent(plan)]) + lines
    returns = []
    names = arg_names(plan)
    for position, info in enumerate(plan.loss.inputs):
        x = py_name(info.name)
        if info.name not in leaves:
            returns.append("None")
            continue
        own, *parts = leaves[info.name]
        total = _broadcast_or_zero(result[own], grad_exprs[own], x)
        if parts:
            dim = plan.loss.components[parts[0]][1]
            axis = plan.layout.axis(dim)
            by_position = {plan.loss.components[p][2]: p for p in parts}
            pieces = []
            for k in range(int(dim)):  # a component the loss never uses has no leaf: zeros
                p = by_position.get(k)
                index = ", ".join([":"] * axis + [f"{k}:{k + 1}"])
                pieces.append(
                    DIALECT.zeros_like.format(x=f"{x}[{index}]")
                    if p is None
                    else _broadcast_or_zero(result[p], grad_exprs[p], py_name(ir.leaf_name(p)))
                )
            cat = DIALECT.concat.format(parts=", ".join(pieces), axis=axis)
            total = cat if grad_exprs[own] == 0 else f"{total} + {cat}"
        body.append(f"grad_{x} = {total} if needs[{position}] else None")
        returns.append(f"grad_{x}")
    returns += ["None"] * len(plan.tensor_params)
    body.append(f"return {', '.join(returns)}")
    if any(ir.leaf_name(p) for info in plan.wrt for p in leaves[info.name][1:]):
        body = _prelude_components(body, plan, leaves)
    return [f"def _grad({', '.join(names)}, grad, needs):", *indent(finish(body))]


def _prelude_components(body: list[str], plan: Plan, leaves: dict) -> list[str]:  # type: ignore[type-arg]
    """Every component must be defined for zeros_like, even if its gradient is zero."""
    needed = {p for parts in leaves.values() for p in parts[1:]}
    extra = [line for line in component_slices(plan, needed) if line not in body]
    return body[:1] + extra + body[1:]


def _broadcast_or_zero(printed: str, expr: sympy.Basic, like: str) -> str:
    if expr == 0:
        return DIALECT.zeros_like.format(x=like)
    return DIALECT.broadcast.format(x=printed, shape=f"{like}.shape")


def _printer(plan: Plan):  # type: ignore[no-untyped-def]
    def make(names: dict[sympy.Symbol, str]) -> TorchPrinter:
        names = {**names, cotangent(plan): "grad"}
        return TorchPrinter(plan.layout, names, plan.loss.spans)

    return make


def emit_reference(plan: Plan) -> str:
    """A direct translation without the generated gradient: the value function alone, for
    autograd to differentiate (what `lossdsl verify` compares against)."""
    reserved = reserved_names(plan)
    lines = [
        header(plan, "torch reference"),
        "",
        "import torch",
        "",
        "",
        "class LossInputError(ValueError):",
        '    """An input whose shape or dtype does not match the declaration."""',
        "",
        "",
        *_value_function(plan, reserved),
        "",
        "",
        *entry_function(plan, DIALECT, "_value({args})"),
        "",
    ]
    return "\n".join(lines)


def emit(plan: Plan) -> str:
    """The standalone module source for a specialised loss."""
    plan = with_gradients(plan)
    reserved = reserved_names(plan)
    cls = "_" + "".join(part.title() for part in plan.loss.name.split("_")) + "Function"
    args = arg_names(plan)
    lines = [
        header(plan, "torch"),
        "",
        "import torch",
        "",
        "",
        "class LossInputError(ValueError):",
        '    """An input whose shape or dtype does not match the declaration."""',
        "",
        "",
        *_value_function(plan, reserved),
        "",
        "",
        *_grad_function(plan, reserved),
        "",
        "",
        f"class {cls}(torch.autograd.Function):",
        "    generate_vmap_rule = True",
        "",
        "    @staticmethod",
        f"    def forward({', '.join(args)}):",
        f"        return _value({', '.join(args)})",
        "",
        "    @staticmethod",
        "    def setup_context(ctx, inputs, output):",
        "        ctx.save_for_backward(*inputs)",
        "",
        "    @staticmethod",
        "    def backward(ctx, grad):",
        "        return _grad(*ctx.saved_tensors, grad, ctx.needs_input_grad)",
        "",
        "",
        *entry_function(plan, DIALECT, f"{cls}.apply({{args}})"),
        "",
    ]
    return "\n".join(lines)
