"""JAX backend: a ``jax.custom_jvp`` function whose JVP rule is generated.

For a scalar loss the rule computes the value and the gradient G of each input in one straight
line and returns the tangent sum(G * d_input), which JAX transposes into G * cotangent; for a
loss with output dims it returns the forward-mode tangent. The emitted module imports only
jax. Because the rule is written in jnp operations, JAX can transpose it (``grad``,
``jacrev``), batch it (``vmap``), compile it (``jit``) and differentiate it again
(``hessian``).
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
from lossdsl.codegen import Plan, py_name, tangent_symbol, unit_gradients, with_tangent


@install_table
class JaxPrinter(TensorPrinter):
    backend = "jax"
    FUNCTIONS: ClassVar[dict[str, str]] = {
        "exp": "jnp.exp({0})",
        "log": "jnp.log({0})",
        "log1p": "jnp.log1p({0})",
        "expm1": "jnp.expm1({0})",
        "sqrt": "jnp.sqrt({0})",
        "rsqrt": "jax.lax.rsqrt({0})",
        "sin": "jnp.sin({0})",
        "cos": "jnp.cos({0})",
        "tanh": "jnp.tanh({0})",
        "erf": "jax.scipy.special.erf({0})",
        "Abs": "jnp.abs({0})",
        "sign": "jnp.sign({0})",
        "Sign": "jnp.sign({0})",
        "Floor": "jnp.floor({0})",
        "Ceil": "jnp.ceil({0})",
        "Round": "jnp.round({0})",
        "Sigmoid": "jax.nn.sigmoid({0})",
        "Softplus": "jax.nn.softplus({0})",
        "Relu": "jax.nn.relu({0})",
        "Clamp": "jnp.clip({0}, {1}, {2})",
        "maximum": "jnp.maximum({0}, {1})",
        "minimum": "jnp.minimum({0}, {1})",
        "clamp_max": "jnp.maximum({0}, {1})",
        "clamp_min": "jnp.minimum({0}, {1})",
    }
    REDUCTIONS: ClassVar[dict[str, str]] = {
        "sum": "jnp.sum({arg}, axis={axes}, keepdims=True)",
        "max": "jnp.max({arg}, axis={axes}, keepdims=True)",
        "min": "jnp.min({arg}, axis={axes}, keepdims=True)",
        "prod": "jnp.prod({arg}, axis={axes}, keepdims=True)",
        "logsumexp": "jax.nn.logsumexp({arg}, axis={axes}, keepdims=True)",
        "softmax": "jax.nn.softmax({arg}, axis={axes})",
        "log_softmax": "jax.nn.log_softmax({arg}, axis={axes})",
        "gather": "jnp.take_along_axis({arg}, {index}, axis={axes})",
        "arange": "jnp.arange({size}).reshape({shape})",
    }
    WHERE = "jnp.where({0}, {1}, {2})"
    LOGICAL: ClassVar[dict[str, str]] = {"And": "({0} & {1})", "Or": "({0} | {1})", "Not": "(~{0})"}
    ASTYPE = "{x}.astype(dtype)"


DIALECT = Dialect(
    name="jax",
    is_float="jnp.issubdtype({x}.dtype, jnp.floating)",
    not_integer="not jnp.issubdtype({x}.dtype, jnp.integer)",
    cast="{x}.astype({dtype})",
    as_index="{x}",
    permute="{x}.transpose({perm})",
    zeros_like="jnp.zeros_like({x})",
    broadcast="jnp.broadcast_to({x}, {shape})",
    concat="jnp.concatenate([{parts}], axis={axis})",
    as_array="jnp.asarray({x})",
    like="jnp.asarray({x}, dtype={ref}.dtype)",
)


def _printer(plan: Plan):  # type: ignore[no-untyped-def]
    # Tangents print as `d_` + the input's Python name, as the jvp rule's arguments are named
    # (`d_yield_` for an input `yield`, not `d_yield`).
    tangents = {
        tangent_symbol(s): "d_" + py_name(ir.leaf_name(s))
        for info in plan.wrt
        for s in plan.loss.leaves_of(info.name)
    }

    def make(names: dict[sympy.Symbol, str]) -> JaxPrinter:
        return JaxPrinter(plan.layout, {**tangents, **names}, plan.loss.spans)

    return make


def _prelude(plan: Plan, exprs: list[sympy.Basic]) -> list[str]:
    # The result is broadcast to the output's layout shape, which names the output's sizes.
    exprs = [*exprs, *(ir.size(d) for d in plan.output_dims if not d.isdigit())]
    symbols = set().union(*(e.free_symbols for e in exprs)) if exprs else set()
    lines = [dtype_line(plan), *size_lines(plan, exprs), *component_slices(plan, symbols)]
    tangents = {s.name for s in symbols if ir.leaf_name(s).startswith("d_")}
    for symbol, (name, dim, k) in sorted(plan.loss.components.items(), key=lambda kv: kv[0].name):
        if tangent_symbol(symbol).name in tangents:
            index = ", ".join([":"] * plan.layout.axis(dim) + [f"{k}:{k + 1}"])
            lines.append(f"d_{py_name(ir.leaf_name(symbol))} = d_{py_name(name)}[{index}]")
    return lines


def _result(plan: Plan, printed: str, expr: sympy.Basic) -> str:
    first = py_name(next(i for i in plan.loss.inputs if i.elem != "Index").name)
    shape = plan.layout.shape(frozenset(plan.output_dims))
    if not expr.free_symbols:
        return f"jnp.full({shape}, {printed}, dtype={first}.dtype)"
    return f"jnp.broadcast_to({printed}, {shape}).astype({first}.dtype)"


def emit_reference(plan: Plan) -> str:
    """A direct translation without the generated derivative, for jax.grad to differentiate."""
    return emit(plan, reference=True)


def _unpack(plan: Plan, symbols: set[sympy.Basic]) -> list[str]:
    """Bind the primals, and the tangents of the inputs whose tangent (or a component's) is used."""
    args = arg_names(plan)
    used = {ir.leaf_name(s) for s in symbols}
    used |= {
        "d_" + base
        for c, (base, _, _) in plan.loss.components.items()
        if "d_" + ir.leaf_name(c) in used
    }
    tangent_names = [
        "d_" + py_name(i.name) if "d_" + i.name in used else "_" for i in plan.loss.inputs
    ] + ["_"] * len(plan.tensor_params)
    comma = "," if len(args) == 1 else ""
    return [f"{', '.join(args)}{comma} = primals", f"{', '.join(tangent_names)}{comma} = tangents"]


def _tangent_body(plan: Plan, reserved: set[str]) -> list[str]:
    """A loss with output dims: the value and its forward-mode tangent."""
    plan = with_tangent(plan)
    assert plan.tangent is not None
    exprs = [plan.value, plan.tangent]
    lines, (value, tangent) = straight_line(_printer(plan), plan, exprs, reserved)
    return [
        *_unpack(plan, plan.tangent.free_symbols),
        *_prelude(plan, exprs),
        *lines,
        f"value = {_result(plan, value, plan.value)}",
        f"tangent = {_result(plan, tangent, plan.tangent)}",
    ]


def _gradient_body(plan: Plan, grads: dict[str, sympy.Expr], reserved: set[str]) -> list[str]:
    """A scalar loss: the value and the gradient G of every leaf, then the tangent
    sum(G * d_leaf). It is linear in the tangents, so JAX transposes it into G * cotangent;
    transposing the forward-mode tangent instead can be slow (a gather becomes a scatter)."""
    leaves = [
        s
        for info in plan.wrt
        for s in plan.loss.leaves_of(info.name)
        if grads[ir.leaf_name(s)] != 0  # a leaf the loss does not depend on adds nothing
    ]
    names = {s: "grad_" + py_name(ir.leaf_name(s)) for s in leaves}
    exprs = _share_softmax([plan.value, *(grads[ir.leaf_name(s)] for s in leaves)])
    reserved = reserved | set(names.values())
    lines, (value, *printed) = straight_line(_printer(plan), plan, exprs, reserved)
    tangents = [tangent_symbol(s) for s in leaves]
    # G has size 1 along the dims it is constant in; the product broadcasts it against d_leaf.
    terms = [f"jnp.sum({names[s]}*d_{py_name(ir.leaf_name(s))})" for s in leaves]
    return [
        *_unpack(plan, set(tangents)),
        *_prelude(plan, [*exprs, *tangents]),
        *lines,
        *(f"{names[s]} = {g}" for s, g in zip(leaves, printed, strict=True)),
        f"value = {_result(plan, value, plan.value)}",
        f"tangent = {_result(plan, ' + '.join(terms) or '0', sympy.Add(*tangents))}",
    ]


_FLOOR = sympy.Float(-1e30)  # finite in float32 and float64: exp(-inf - floor) = 0


def _share_softmax(exprs: list[sympy.Basic]) -> list[sympy.Basic]:
    """Spell out softmax, log_softmax and logsumexp of one argument where two of them occur
    (the value's log_softmax and its gradient's softmax), so that exp(x - max) and its sum are
    computed once: with e = exp(x - max), softmax = e / sum(e), log_softmax = x - max -
    log(sum(e)) and logsumexp = max + log(sum(e)). A log_softmax picked at a class is
    x[t] - max - log(sum(e)), so nothing of the size of x but e is made."""
    kinds = (ir.Softmax, ir.LogSoftmax, ir.LogSumExp)
    found: dict[tuple[sympy.Basic, ...], set[type]] = {}
    for e in exprs:
        for op in e.atoms(*kinds):
            found.setdefault(op.args, set()).add(type(op))
    subs: dict[sympy.Basic, sympy.Basic] = {}
    for (arg, dims), ops in found.items():
        if len(ops) < 2:
            continue
        names = ir.dim_names(dims)
        top = ir.ReduceMax.make(arg, names)
        if ir.LogSumExp in ops:  # of a row of -inf it is -inf, as jax.nn.logsumexp's, not NaN
            top = sympy.Max(top, _FLOOR)
        total = ir.ReduceSum.make(sympy.exp(arg - top), names)
        subs[ir.Softmax(arg, dims)] = sympy.exp(arg - top) / total
        subs[ir.LogSoftmax(arg, dims)] = arg - top - sympy.log(total)
        subs[ir.LogSumExp(arg, dims)] = top + sympy.log(total)
        for e in exprs:
            for pick in e.atoms(ir.Gather):
                if pick.args[0] == ir.LogSoftmax(arg, dims) and (pick.dim,) == names:
                    subs[pick] = ir.Gather(arg, *pick.args[1:]) - top - sympy.log(total)
    return [e.xreplace(subs) for e in exprs] if subs else exprs


def emit(plan: Plan, reference: bool = False) -> str:
    """The standalone module source for a specialised loss."""
    reserved = reserved_names(plan)
    reserved |= {"d_" + py_name(i.name) for i in plan.loss.inputs}
    reserved |= {"d_" + py_name(ir.leaf_name(s)) for s in plan.loss.components}
    args = arg_names(plan)
    core = "_" + py_name(plan.loss.name)

    value_lines, (value,) = straight_line(_printer(plan), plan, [plan.value], reserved)
    value_body = [*_prelude(plan, [plan.value]), *value_lines]
    value_body.append(f"return {_result(plan, value, plan.value)}")

    jvp = []
    if not reference:
        grads = unit_gradients(plan)
        jvp_body = (
            _tangent_body(plan, reserved)
            if grads is None
            else _gradient_body(plan, grads, reserved)
        )
        jvp = [
            f"@{core}.defjvp",
            f"def {core}_jvp(primals, tangents):",
            *indent(finish([*jvp_body, "return value, tangent"])),
            "",
            "",
        ]
    lines = [
        header(plan, "jax" if not reference else "jax reference"),
        "",
        "import jax",
        "import jax.numpy as jnp",
        "import jax.scipy.special",
        "",
        "",
        "class LossInputError(ValueError):",
        '    """An input whose shape or dtype does not match the declaration."""',
        "",
        "",
        *(["@jax.custom_jvp"] if not reference else []),
        f"def {core}({', '.join(args)}):",
        *indent(finish(value_body)),
        "",
        "",
        *jvp,
        *entry_function(plan, DIALECT, f"{core}({{args}})"),
        "",
    ]
    return "\n".join(lines)
