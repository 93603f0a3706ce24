"""JAX backend: a ``jax.custom_jvp`` function whose JVP rule is generated.

For a scalar loss the rule computes the value and the gradient G of each input in one straight
line and returns the tangent sum(G * d_input), which JAX transposes into G * cotangent; for a
loss with output dims it returns the forward-mode tangent. The emitted module imports only
jax. Because the rule is written in jnp operations, JAX can transpose it (``grad``,
``jacrev``), batch it (``vmap``), compile it (``jit``) and differentiate it again
(``hessian``).

Shapes: the layout (lossdsl.codegen.Layout) gives every tensor one axis per dim of the loss; this
backend drops the *trailing* size-1 axes of each value ("trimmed" layout: a per-row value of a
`[N, D]` loss is `[N]`, not `[N, 1]`) and pads a lower-rank operand with `[..., None]` where it
meets a higher-rank one. NumPy broadcasting aligns from the right, so leading size-1 axes stay.
XLA:CPU reduces an elementwise chain over a `[N, 1]` array more than ten times slower than the
same chain over `[N]` (its reduction fusion works row by row), and a reshape cannot undo it:
XLA moves reshapes past elementwise ops.
"""

from __future__ import annotations

from typing import Any, ClassVar

import sympy
from sympy.core.symbol import Str

from lossdsl import ir
from lossdsl.backends.base import TensorPrinter, install_table
from lossdsl.backends.module import (
    Dialect,
    arg_names,
    dtype_line,
    entry_function,
    finish,
    header,
    indent,
    reserved_names,
    size_lines,
    straight_line,
)
from lossdsl.codegen import (
    Layout,
    Plan,
    py_name,
    size_name,
    tangent_symbol,
    unit_gradients,
    with_tangent,
)
from lossdsl.errors import Span


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
    # {keep} is ", keepdims=True" where a reduced axis stays as a size-1 axis, else empty.
    REDUCTIONS: ClassVar[dict[str, str]] = {
        "sum": "jnp.sum({arg}, axis={axes}{keep})",
        "max": "jnp.max({arg}, axis={axes}{keep})",
        "min": "jnp.min({arg}, axis={axes}{keep})",
        "prod": "jnp.prod({arg}, axis={axes}{keep})",
        "logsumexp": "jax.nn.logsumexp({arg}, axis={axes}{keep})",
        "softmax": "jax.nn.softmax({arg}, axis={axes})",
        "log_softmax": "jax.nn.log_softmax({arg}, axis={axes})",
        "gather": "jnp.take_along_axis({arg}, {index}, axis={axes})",
        "arange": "jnp.arange({size}).reshape({shape})",
    }
    WHERE = "jnp.where({0}, {1}, {2})"
    LOGICAL: ClassVar[dict[str, str]] = {"And": "({0} & {1})", "Or": "({0} | {1})", "Not": "(~{0})"}
    ASTYPE = "{x}.astype(dtype)"

    # A function's argument of sizes alone as an array of the loss's dtype (`jax.nn.sigmoid`
    # refuses a Python int); elsewhere sizes stay Python numbers.
    def _arg(self, expr: Any) -> str:
        return self.as_array(expr, self._print(expr), "jnp.asarray({x}, dtype=dtype)")

    def __init__(
        self, layout: Layout, names: dict[sympy.Symbol, str], spans: dict[Any, Span] | None = None
    ) -> None:
        super().__init__(layout, names, spans)
        self._want: int | None = None  # the rank the expression being printed must have
        self._ranks: dict[sympy.Basic, int] = {}

    def rank(self, expr: sympy.Basic) -> int:
        """The number of axes of ``expr``'s printed value (the trimmed layout)."""
        if expr not in self._ranks:
            self._ranks[expr] = trimmed_rank(self.layout, ir.dims_in(expr, self.temp_dims))
        return self._ranks[expr]

    # An operand of lower rank than the node it meets (the rank the enclosing node wants),
    # other than a scalar, is printed at its own rank and gets `[..., None]`. Elementwise
    # nodes pass the wanted rank down, so that a boolean condition is padded as a whole.
    def _print(self, expr: Any, **kwargs: Any) -> str:
        if not isinstance(expr, sympy.Basic) or isinstance(expr, (sympy.Tuple, Str)):
            return super()._print(expr, **kwargs)
        want, rank = self._want, self.rank(expr)
        short = bool(want) and 0 < rank < want  # type: ignore[operator]
        leaf = isinstance(expr, (sympy.Symbol, ir.TensorOp)) or not expr.args
        # a padded node's operands align with the node itself, at its own rank
        self._want = None if leaf else rank if short else max(want or 0, rank)
        try:
            printed = super()._print(expr, **kwargs)
        finally:
            self._want = want
        return _pad(printed, want - rank) if short else printed  # type: ignore[operator]

    def parenthesize(self, item: Any, level: int, strict: bool = False) -> str:
        """A padded operand (`(a + b)[..., None]`) is an atom already."""
        want = self._want
        if isinstance(item, sympy.Basic) and want and 0 < self.rank(item) < want:
            return self._print(item)
        return super().parenthesize(item, level, strict)  # type: ignore[no-any-return]

    # Reductions drop the reduced axes that trail the result's last axis and keep (size 1)
    # those before it; the size-1 axes after the result's last one are reduced too (a no-op
    # on their values), so that they go with the reduced ones.
    def _reduction(self, kind: str, printed: str, arg: Any, dims: Any, result: sympy.Basic) -> str:
        have, rank = self.rank(arg), self.rank(result)
        axes = [a for a in self.layout.axes(ir.dim_names(dims)) if a < have]
        if not axes:  # over size-1 axes only: the identity
            return printed
        template = self.REDUCTIONS[kind]
        if all(a >= rank for a in axes):
            axes = sorted({*axes, *range(rank, have)})
            return template.format(arg=printed, axes=repr(tuple(axes)), keep="")
        # A reduced axis before the result's last one stays (size 1); what trails goes.
        out = template.format(arg=printed, axes=repr(tuple(axes)), keep=", keepdims=True")
        return squeeze(out, tuple(range(rank, have)))

    def _along(self, kind: str, expr: Any) -> str:
        """softmax or log_softmax along one dim: the result has the argument's rank."""
        arg, axis = expr.args[0], self.layout.axis(ir.dim_names(expr.args[1])[0])
        have = self.rank(arg)
        full = max(have, axis + 1)
        out = self.REDUCTIONS[kind].format(arg=_pad(self._print(arg), full - have), axes=axis)
        return squeeze(out, tuple(range(have, full)))

    def _print_Softmax(self, expr: ir.Softmax) -> str:
        return self._along("softmax", expr)

    def _print_LogSoftmax(self, expr: ir.LogSoftmax) -> str:
        return self._along("log_softmax", expr)

    # take_along_axis wants the index with the rank of the array (size 1 along the axis).
    def _print_Gather(self, expr: ir.Gather) -> str:
        x, t, dim = expr.args
        axis = self.layout.axis(str(dim.name))
        full = max(self.rank(x), self.rank(t), axis + 1)
        out = self.REDUCTIONS["gather"].format(
            arg=_pad(self._print(x), full - self.rank(x)),
            index=_pad(self._print(t), full - self.rank(t)),
            axes=axis,
        )
        return squeeze(out, tuple(range(self.rank(expr), full)))

    def _print_OneHot(self, expr: ir.OneHot) -> str:
        t, dim = expr.args[0], str(expr.args[1].name)
        axis = self.layout.axis(dim)
        full = max(self.rank(t), axis + 1)
        sizes = [size_name(dim) if k == axis else "1" for k in range(full)]
        shape = "(" + ", ".join(sizes) + ("," if full == 1 else "") + ")"
        positions = self.REDUCTIONS["arange"].format(size=size_name(dim), shape=shape)
        index = _pad(self._print(t), full - self.rank(t))
        return self.ASTYPE.format(x=f"({positions} == {index})")


def trimmed_rank(layout: Layout, dims: frozenset[str] | tuple[str, ...]) -> int:
    """Axes of a value with these dims in the trimmed layout: up to its last dim's axis."""
    return max((layout.axis(d) + 1 for d in dims), default=0)


def pad(printed: str, k: int) -> str:
    """``printed`` (an atom or a call) with ``k`` trailing size-1 axes added."""
    return f"{printed}[{', '.join(['...'] + ['None'] * k)}]" if k > 0 else printed


def _pad(printed: str, k: int) -> str:
    """``pad`` for any printed expression: parenthesised unless it is an atom."""
    return pad(printed if _atomic(printed) else f"({printed})", k)


def _atomic(printed: str) -> bool:
    """A name, a call or a parenthesised group, with attributes and calls after it
    (`(m == t).astype(dtype)`): a subscript can follow it without parentheses."""
    if not printed or printed[0] in "-+":
        return False
    depth = 0
    for ch in printed:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and not (ch.isalnum() or ch in "_."):
            return False
    return True


def squeeze(printed: str, axes: tuple[int, ...]) -> str:
    return f"jnp.squeeze({printed}, axis={axes!r})" if axes else printed


def _index(layout: Layout, dims: tuple[str, ...], dim: str | None = None, k: int = 0) -> str:
    """The subscript that takes a value with ``dims`` in the full layout to the trimmed one,
    and, if ``dim`` is given, picks position ``k`` along it (a component)."""
    rest = frozenset(dims) - {dim}
    rank = trimmed_rank(layout, rest)
    parts = [":" if a < rank else "0" for a in range(len(layout.order))]
    if dim is not None:
        axis = layout.axis(dim)
        parts[axis] = f"{k}:{k + 1}" if axis < rank else str(k)
    while parts and parts[-1] == ":":
        parts.pop()
    return ", ".join(parts)


DIALECT = Dialect(
    name="jax",
    is_float="jnp.issubdtype({x}.dtype, jnp.floating)",
    not_integer="not jnp.issubdtype({x}.dtype, jnp.integer)",
    cast="{x}.astype({dtype})",
    as_index="{x}",
    permute="{x}.transpose({perm})",
    zeros_like="jnp.zeros_like({x})",
    broadcast="jnp.broadcast_to({x}, {shape})",
    broadcast_new="jnp.broadcast_to({x}, {shape})",  # JAX arrays are never views
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
    """Sizes, components cut out of their inputs (and tangents), and the inputs the core gets
    in the full layout cut to the trimmed one (`target[:, 0]`: a `[N]` input of a `[N, D]`
    loss arrives as `[N, 1]`)."""
    # The result is broadcast to the output's layout shape, which names the output's sizes.
    exprs = [*exprs, *(ir.size(d) for d in plan.output_dims if not d.isdigit())]
    symbols = set().union(*(e.free_symbols for e in exprs)) if exprs else set()
    used = {ir.leaf_name(s) for s in symbols}
    layout = plan.layout
    lines = [dtype_line(plan), *size_lines(plan, exprs)]
    for symbol, (name, dim, k) in sorted(plan.loss.components.items(), key=lambda kv: kv[0].name):
        dims = next(i for i in plan.loss.inputs if i.name == name).dims
        for prefix in ("", "d_"):
            if prefix + ir.leaf_name(symbol) in used:
                index = _index(layout, dims, dim, k)
                lines.append(
                    f"{prefix}{py_name(ir.leaf_name(symbol))} = {prefix}{py_name(name)}[{index}]"
                )
    for info in [*plan.loss.inputs, *plan.tensor_params]:
        index = _index(layout, info.dims)
        if trimmed_rank(layout, info.dims) == len(layout.order):
            continue
        for prefix in ("", "d_"):
            if prefix + info.name in used:
                x = prefix + py_name(info.name)
                lines.append(f"{x} = {x}[{index}]")
    return lines


def _result(plan: Plan, printed: str, expr: sympy.Basic, scalar: bool = False) -> str:
    """The value ``printed`` (of ``expr``, or a scalar) broadcast to the output's full layout."""
    first = py_name(next(i for i in plan.loss.inputs if i.elem != "Index").name)
    shape = plan.layout.shape(frozenset(plan.output_dims))
    if not expr.free_symbols:
        return f"jnp.full({shape}, {printed}, dtype={first}.dtype)"
    rank = 0 if scalar else trimmed_rank(plan.layout, ir.dims_of(expr))
    if rank and rank < len(plan.layout.order):
        printed = _pad(printed, len(plan.layout.order) - rank)
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
    # G has the leaf's rank, so that the product with d_leaf aligns its axes.
    for i, s in enumerate(leaves):
        missing = trimmed_rank(plan.layout, ir.dims_of(s)) - trimmed_rank(
            plan.layout, ir.dims_of(exprs[i + 1])
        )
        if ir.dims_of(exprs[i + 1]) and missing > 0:
            printed[i] = _pad(printed[i], missing)
    return [
        *_unpack(plan, set(tangents)),
        *_prelude(plan, [*exprs, *tangents]),
        *lines,
        *(f"{names[s]} = {g}" for s, g in zip(leaves, printed, strict=True)),
        f"value = {_result(plan, value, plan.value)}",
        f"tangent = {_result(plan, ' + '.join(terms) or '0', sympy.Add(*tangents), scalar=True)}",
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
