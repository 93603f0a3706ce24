"""PyTorch backend: a ``torch.autograd.Function`` whose backward is the generated gradient.

The emitted module imports only torch. For a scalar loss, forward computes the value and the
requested gradients together (``_value_and_grad``) and saves them; backward returns them, or
scales them by the incoming gradient; under ``create_graph=True`` it runs ``_grad`` on the saved
inputs instead (differentiable torch ops, so double backward is exact). A loss with output dims
saves only its inputs and backward is ``_grad``. Only the gradients asked for are computed, and
``generate_vmap_rule`` makes ``torch.func.vmap`` and ``torch.func.grad`` work; ``torch.compile``
traces it whole.
"""

from __future__ import annotations

from typing import ClassVar

import sympy

from lossdsl import ir
from lossdsl.backends import blocked, inplace
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
    release,
    reserved_names,
    schedule,
    size_lines,
    straight_line,
)
from lossdsl.codegen import (
    Plan,
    cotangent,
    py_name,
    size_name,
    unit_gradients,
    with_gradients,
)


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
    broadcast_new="torch.broadcast_to({x}, {shape}).contiguous()",
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
    body = [*_prelude(plan, [plan.value]), *lines, f"return {_value_result(plan, result)}"]
    return [f"def _value({args}):", *indent(finish(release(body)))]


def _value_result(plan: Plan, result: str) -> str:
    sizes = {ir.size(d) for d in plan.layout.order}
    if not plan.value.free_symbols - sizes:  # a constant loss (sizes are Python ints here) is
        # still a tensor of the inputs' dtype
        first = py_name(next(i for i in plan.loss.inputs if i.elem != "Index").name)
        return f"torch.full({plan.layout.shape(frozenset())}, {result}, dtype={first}.dtype)"
    if isinstance(plan.value, sympy.Symbol):  # an input as it is: autograd.Function must
        return f"{result}.view_as({result})"  # return a view of it, not the input itself
    return result


def _grad_function(plan: Plan, unit: dict[str, sympy.Expr] | None, reserved: set[str]) -> list[str]:
    """The vector-Jacobian product; for a scalar loss (``unit``: its unit gradients), the unit
    gradients times the cotangent (the product is linear in it), which share their tidying
    with `_value_and_grad`."""
    grads = plan.grads if unit is None else {k: cotangent(plan) * g for k, g in unit.items()}
    exprs = _leaf_exprs(plan, grads)
    lines, printed = straight_line(
        _printer(plan), plan, list(exprs.values()), reserved, differentiated=True
    )
    body = _prelude(plan, [*exprs.values(), cotangent(plan)]) + lines
    body += _assemble(plan, exprs, dict(zip(exprs, printed, strict=True)))
    returns = _returns(plan)
    body.append(f"return {', '.join(returns)}{',' if len(returns) == 1 else ''}")
    body = schedule(_prelude_components(body, plan))
    names = ", ".join(arg_names(plan))
    return [f"def _grad({names}, grad, needs):", *indent(finish(release(body)))]


def _joint_function(
    plan: Plan, unit: dict[str, sympy.Expr], reserved: set[str], in_place: bool = True
) -> list[str]:
    """The value and the gradients with cotangent 1 in one pass: shared subexpressions are
    computed once, and backward only scales the gradients. With ``in_place``, operations
    write into private temporaries where that is safe (lossdsl.backends.inplace): this
    function only ever runs without autograd recording, outside torch.func transforms.
    Either way multiply-adds are fused (``addcmul``), so that both round alike."""
    exprs = _leaf_exprs(plan, unit)
    everything = _share_log_softmax([plan.value, *exprs.values()])
    exprs = dict(zip(exprs, everything[1:], strict=True))
    lines, (value, *printed) = straight_line(
        _printer(plan), plan, everything, reserved, tie=plan.recompute
    )
    body = _prelude(plan, everything) + lines
    body.append(f"value = {_value_result(plan, value)}")
    body += _assemble(plan, exprs, dict(zip(exprs, printed, strict=True)))
    body.append(f"return value, {', '.join(_returns(plan))}")
    body = schedule(_prelude_components(body, plan))
    body = inplace.rewrite(body, _leaves(plan), plan.layout.order, in_place)
    names = ", ".join(arg_names(plan))
    return [f"def _value_and_grad({names}, needs):", *indent(finish(release(body)))]


def _leaves(plan: Plan) -> dict[str, inplace.Leaf]:
    """What the in-place pass must know of the names a core function gets: each input and
    tensor param (a float tensor of the computation's dtype, or an Index's integers, with its
    dims), each component slice, and each size (a Python int)."""
    leaves = {size_name(d): inplace.Leaf(inplace.SCALAR) for d in plan.layout.order}
    for info in [*plan.loss.inputs, *plan.tensor_params]:
        kind = inplace.INT if info.elem == "Index" else inplace.FLOAT
        leaves[py_name(info.name)] = inplace.Leaf(kind, frozenset(info.dims))
    for symbol, (name, dim, _) in plan.loss.components.items():
        dims = next(i.dims for i in plan.loss.inputs if i.name == name)
        leaves[py_name(ir.leaf_name(symbol))] = inplace.Leaf(inplace.FLOAT, frozenset(dims) - {dim})
    return leaves


def _share_log_softmax(exprs: list[sympy.Expr]) -> list[sympy.Expr]:
    """softmax(x) as exp(log_softmax(x)) where log_softmax(x) is computed anyway (the value of
    a cross-entropy): one class-sized pass instead of a second softmax."""
    logs = {op.args for e in exprs for op in e.atoms(ir.LogSoftmax)}
    subs = {
        op: sympy.exp(ir.LogSoftmax(*op.args))
        for e in exprs
        for op in e.atoms(ir.Softmax)
        if op.args in logs
    }
    return [e.xreplace(subs) for e in exprs] if subs else exprs


def _leaf_exprs(plan: Plan, grads: dict[str, sympy.Expr]) -> dict[sympy.Symbol, sympy.Expr]:
    """The gradient of each differentiated leaf (an input, or one of its components)."""
    return {
        leaf: grads[ir.leaf_name(leaf)]
        for info in plan.wrt
        for leaf in plan.loss.leaves_of(info.name)
    }


def _assemble(
    plan: Plan, exprs: dict[sympy.Symbol, sympy.Expr], result: dict[sympy.Symbol, str]
) -> list[str]:
    """`grad_x = ... if needs[i] else None` for each differentiated input: its leaf's gradient
    broadcast to its shape, plus its components' gradients concatenated along their dim.

    A component's gradient is a statement of its own (`grad_x__k`), which module.schedule puts
    right after what it alone needs; the k-th components of all inputs come together (a box's
    x1 and its target's x1 share most of their terms), then the inputs' gradients."""
    columns: dict[int, list[str]] = {}
    body = []
    sizes = {ir.size(d) for d in plan.layout.order}
    for position, info in enumerate(plan.loss.inputs):
        x = py_name(info.name)
        if info not in plan.wrt:
            continue
        own, *parts = plan.loss.leaves_of(info.name)
        total = _broadcast_or_zero(result[own], exprs[own], own, x, sizes)
        if parts:
            dim = plan.loss.components[parts[0]][1]
            axis = plan.layout.axis(dim)
            by_position = {plan.loss.components[p][2]: p for p in parts}
            pieces = []
            for k in range(int(dim)):  # a component the loss never uses has no leaf: zeros
                p = by_position.get(k)
                index = ", ".join([":"] * axis + [f"{k}:{k + 1}"])
                if p is None:
                    pieces.append(DIALECT.zeros_like.format(x=f"{x}[{index}]"))
                    continue
                leaf = py_name(ir.leaf_name(p))
                piece = _broadcast_or_zero(result[p], exprs[p], p, leaf, sizes)
                columns.setdefault(k, []).append(
                    f"grad_{leaf} = {piece} if needs[{position}] else None"
                )
                pieces.append(f"grad_{leaf}")
            cat = DIALECT.concat.format(parts=", ".join(pieces), axis=axis)
            total = cat if exprs[own] == 0 else f"{total} + {cat}"
        body.append(f"grad_{x} = {total} if needs[{position}] else None")
    return [line for k in sorted(columns) for line in columns[k]] + body


def _returns(plan: Plan) -> list[str]:
    """One gradient (or None) per input, then None per tensor param."""
    returns = [f"grad_{py_name(i.name)}" if i in plan.wrt else "None" for i in plan.loss.inputs]
    return returns + ["None"] * len(plan.tensor_params)


def _prelude_components(body: list[str], plan: Plan) -> list[str]:
    """Every component must be defined for zeros_like, even if its gradient is zero."""
    needed = {p for info in plan.wrt for p in plan.loss.leaves_of(info.name)[1:]}
    if not needed:
        return body
    extra = [line for line in component_slices(plan, needed) if line not in body]
    return body[:1] + extra + body[1:]


def _broadcast_or_zero(
    printed: str, expr: sympy.Basic, leaf: sympy.Symbol, like: str, sizes: set[sympy.Expr]
) -> str:
    """The gradient of ``leaf`` (the tensor ``like``) at its shape. One that varies along all
    of the leaf's dims has it already, and stays a plain tensor: an expanded view of a result
    keeps inductor from computing it in the loop of a sum that reads it (codegen.Tied)."""
    dims = ir.dims_of(leaf)
    if dims and ir.dims_of(expr) == dims and not isinstance(expr, sympy.Symbol):
        return printed
    if expr == 0:
        return DIALECT.zeros_like.format(x=like)
    if expr.is_number:
        return f"torch.full_like({like}, {printed})"
    if not expr.free_symbols - sizes:  # of sizes alone (mean's 1/n): a Python or 0-d number
        printed = DIALECT.like.format(x=printed, ref=like)
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


def emit(plan: Plan, in_place: bool = True) -> str:
    """The standalone module source for a specialised loss; ``in_place=False`` keeps every
    function functional (for tests: the same results, bitwise)."""
    plan = with_gradients(plan)
    unit = unit_gradients(plan)
    reserved = reserved_names(plan)
    cls = "_" + "".join(part.title() for part in plan.loss.name.split("_")) + "Function"
    args = ", ".join(arg_names(plan))
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
        *_grad_function(plan, unit, reserved),
        "",
        "",
    ]
    if unit is None:
        lines += [*_function_class(cls, args), "", "", *_plain_class(cls)]
        entry = entry_function(plan, DIALECT, "_function().apply({args})")
    else:
        joint = _joint_function(plan, unit, reserved, in_place)
        for name, helper in {**inplace.HELPERS, **blocked.HELPERS}.items():
            if any(f"{name}(" in line for line in joint):
                lines += [*helper, "", ""]
        lines += [*joint, "", ""]
        lines += [*_dispatch(plan, in_place), "", "", *_UNIT, "", ""]
        lines += [*_joint_class(plan, cls, args), "", "", *_plain_class(cls)]
        needs = [
            f"grad_on and {py_name(i.name)}.requires_grad" if i in plan.wrt else "False"
            for i in plan.loss.inputs
        ] + ["False"] * len(plan.tensor_params)
        before = (  # which gradients the forward pass computes
            "grad_on = torch.is_grad_enabled()",
            f"needs = ({', '.join(needs)}{',' if len(needs) == 1 else ''})",
        )
        call = "_function().apply({args}, needs)[0]"  # forward gives the value its shape ()
        entry = entry_function(plan, DIALECT, call, before, shaped=True)
    lines += ["", "", *entry, ""]
    return "\n".join(lines)


def _dispatch(plan: Plan, in_place: bool) -> list[str]:
    """`_joint`: what forward runs for a scalar loss. `_value_and_grad` updates private
    temporaries in place, which torch.func transforms cannot batch (an unbatched buffer
    cannot take a batched operand): under them, the functional `_value` and `_grad`."""
    args = ", ".join(arg_names(plan))
    if not in_place:
        return [f"def _joint({args}, needs):", f"    return _value_and_grad({args}, needs)"]
    names = arg_names(plan)
    tensors = f"({', '.join(names)}{',' if len(names) == 1 else ''})"
    return [
        f"def _joint({args}, needs):",
        '    """The value and the gradients asked for (cotangent 1); in one pass with in-place',
        "    updates, or, under torch.func transforms (a batched operand cannot be written into",
        '    an unbatched buffer), by the functional `_value` and `_grad`."""',
        "    if torch.compiler.is_compiling() or not any(",
        f"        torch._C._functorch.is_functorch_wrapped_tensor(x) for x in {tensors}",
        "    ):",
        f"        return _value_and_grad({args}, needs)",
        f"    value = _value({args})",
        f"    return (value, *_grad({args}, torch.ones_like(value), needs))",
    ]


_UNIT = [
    "def _unit(grad):",
    '    """Whether an incoming gradient is exactly 1, where asking costs no device sync and',
    '    the question has an answer (not while tracing or under torch.func transforms)."""',
    "    return (",
    "        grad.is_cpu",
    "        and grad.numel() == 1",
    "        and not torch.compiler.is_compiling()",
    "        and not torch._C._functorch.is_functorch_wrapped_tensor(grad)",
    "        and grad.item() == 1",
    "    )",
]


def _function_class(cls: str, args: str) -> list[str]:
    """A loss with output dims: backward computes the vector-Jacobian product from the saved
    inputs."""
    return [
        f"class {cls}(torch.autograd.Function):",
        "    generate_vmap_rule = True",
        "",
        "    @staticmethod",
        f"    def forward({args}):",
        f"        return _value({args})",
        "",
        "    @staticmethod",
        "    def setup_context(ctx, inputs, output):",
        "        ctx.save_for_backward(*inputs)",
        "",
        "    @staticmethod",
        "    def backward(ctx, grad):",
        "        return _grad(*ctx.saved_tensors, grad, ctx.needs_input_grad)",
    ]


def _plain_class(cls: str) -> list[str]:
    """The same Function in the form without `setup_context`, and `_function()`, which picks
    it outside torch.func transforms and tracing. `Function.apply` binds the arguments of a
    Function with `setup_context` to `forward`'s signature (`inspect.signature` on every call,
    about 30 us on this machine); torch.func transforms and dynamo need that form."""
    plain = cls.removesuffix("Function") + "Plain"
    return [
        f"class {plain}({cls}):",
        f'    """`{cls}` without `setup_context`: `apply` binds no signature per call."""',
        "",
        "    @staticmethod",
        "    def forward(ctx, *inputs):",
        f"        output = {cls}.forward(*inputs)",
        f"        {cls}.setup_context(ctx, inputs, output)",
        "        return output",
        "",
        "    setup_context = torch.autograd.Function.setup_context  # not defined: no binding",
        "",
        "",
        "def _function():",
        '    """The Function to apply: the `setup_context` form where torch.func transforms or',
        '    dynamo need it, else the plain one."""',
        "    if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():",
        f"        return {cls}",
        f"    return {plain}",
    ]


def _joint_class(plan: Plan, cls: str, args: str) -> list[str]:
    """A scalar loss: when some input requires grad, forward computes the value and the
    gradients together (`needs`, given by the caller, says which) and saves the gradients;
    backward scales them by the incoming gradient. Under `create_graph=True` backward is
    `_grad` instead: differentiable torch ops on the saved inputs, so double backward is exact.
    """
    count = len(plan.loss.inputs) + len(plan.tensor_params)
    return [
        f"class {cls}(torch.autograd.Function):",
        "    generate_vmap_rule = True",
        "",
        "    @staticmethod",
        f"    def forward({args}, needs):",
        "        if not any(needs):",
        f"            return (_value({args}).reshape(()),)",
        f"        value, *grads = _joint({args}, needs)",
        "        return (value.reshape(()), *(out for out in grads if out is not None))",
        "",
        "    @staticmethod",
        "    def setup_context(ctx, inputs, output):",
        "        ctx.needs = inputs[-1]",
        "        ctx.set_materialize_grads(False)  # the gradients output get no gradient",
        "        ctx.mark_non_differentiable(*output[1:])",
        "        ctx.save_for_backward(*inputs[:-1])",
        "        ctx.grads = output[1:]",
        "",
        "    @staticmethod",
        "    def backward(ctx, grad, *_):",
        "        if grad is None:  # no gradient reaches the value",
        f"            return (None,) * {count + 1}",
        "        if torch.is_grad_enabled():  # create_graph=True",
        f"            needs = ctx.needs_input_grad[:{count}]",
        f"            grad = grad.reshape({plan.layout.shape(frozenset())})",
        "            return (*_grad(*ctx.saved_tensors, grad, needs), None)",
        "        if not ctx.grads:  # handed out by an earlier backward (retain_graph=True)",
        "            _, *again = _joint(*ctx.saved_tensors, ctx.needs)",
        "            ctx.grads = tuple(out for out in again if out is not None)",
        "        grads = iter(ctx.grads)",
        "        if _unit(grad):  # loss.backward(): the saved gradients are the answer, given",
        "            ctx.grads = ()  # away once (autograd may accumulate into them in place)",
        "            return (*(next(grads) if need else None for need in ctx.needs), None)",
        "        return (*(next(grads) * grad if need else None for need in ctx.needs), None)",
    ]
