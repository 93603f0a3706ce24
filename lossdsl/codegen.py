"""What every backend prints: a loss specialised to its param values, its gradient or tangent,
guarded against NaN leaks from unselected branches, and split into named statements by CSE.

Layout: every tensor in generated code has one axis per dim of the loss, in canonical order,
with size 1 along the dims it lacks, so broadcasting by *name* is NumPy broadcasting.
"""

from __future__ import annotations

import builtins
import functools
import keyword
from collections.abc import Iterator
from dataclasses import dataclass, field

import sympy
from sympy import Symbol
from sympy.codegen.cfunctions import log1p

from lossdsl import derive, ir
from lossdsl.checked import InputInfo, ParamInfo
from lossdsl.errors import ResolveError
from lossdsl.functions import Sigmoid, Softplus
from lossdsl.lower import constant

# Names the generated code itself uses; spec names equal to one of these get a trailing `_`.
_TAKEN = frozenset(
    {"torch", "jax", "jnp", "F", "dtype", "dtype_device", "grad", "needs", "ctx", "inputs"}
    | {"output", "primals", "grads", "grad_on"}
    | {"tangents", "math", "np", "self", "cls", "LossInputError", "value", "tangent", "out"}
    | set(dir(builtins))  # `float`, `tuple`, `str`, ... are called by the generated code
)


def py_name(name: str) -> str:
    """A spec name as a Python identifier that shadows nothing the generated code uses."""
    if name.startswith("_"):
        name = "v" + name
    if keyword.iskeyword(name) or keyword.issoftkeyword(name) or name in _TAKEN:
        name += "_"
    return name


@dataclass
class Layout:
    order: tuple[str, ...]

    def axis(self, dim: str) -> int:
        return self.order.index(dim)

    def axes(self, dims: tuple[str, ...] | frozenset[str]) -> tuple[int, ...]:
        return tuple(sorted(self.axis(d) for d in dims))

    def shape(self, dims: tuple[str, ...] | frozenset[str]) -> str:
        """The layout shape of a value with these dims, as Python source."""
        sizes = [size_name(d) if d in dims else "1" for d in self.order]
        return "(" + ", ".join(sizes) + ("," if len(sizes) == 1 else "") + ")"


def size_name(dim: str) -> str:
    return dim if dim.isdigit() else f"n_{dim}"


@dataclass
class Plan:
    """A loss ready to print: specialised, differentiated, guarded."""

    loss: ir.LossIR
    value: sympy.Expr
    layout: Layout
    params: dict[str, float]  # scalar params, baked into the source
    tensor_params: list[ParamInfo]  # params given as tensors at call time
    grads: dict[str, sympy.Expr] = field(default_factory=dict)  # input -> gradient (layout)
    tangent: sympy.Expr | None = None
    wrt: list[InputInfo] = field(default_factory=list)
    # For code a compiler fuses (torch.compile): a transcendental function of a full-size
    # tensor is recomputed at each use instead of shared (see `_recompute_heavy`), and
    # Huber-shaped branches stay branches (see `_tidy`).
    recompute: bool = False

    @property
    def output_dims(self) -> tuple[str, ...]:
        """The dims of the core's result, in layout order: the value's own, which may be fewer
        than the declared `loss.output_dims` (the entry function broadcasts to those)."""
        dims = ir.dims_of(self.value)
        return tuple(d for d in self.layout.order if d in dims)


def check_names(loss: ir.LossIR) -> None:
    """Refuse spec names whose Python spellings collide in generated code: two names with one
    spelling (`_x` and `v_x`), or a name spelled like one the code derives from another (`n_N`
    for the size of dim `N`, `d_x` for the tangent of `x`, `grad_x` for its gradient)."""
    owners = {size_name(d): f"the size of dim `{d}`" for d in loss.order}
    named = [(i.name, f"`{i.name}`", i.span) for i in loss.inputs]
    named += [(p.name, f"`{p.name}`", p.span) for p in loss.params]
    named += [
        (ir.leaf_name(s), f"component {k} of `{base}`", loss.span)
        for s, (base, _, k) in loss.components.items()
    ]
    for name, what, span in named:
        spelling = py_name(name)
        derived = [(spelling, what)]
        derived += [(prefix + spelling, f"the {role} of {what}") for prefix, role in _DERIVED]
        for python, role in derived:
            if python in owners:
                raise ResolveError(
                    span,
                    f"{role} and {owners[python]} would both be `{python}` in generated Python",
                    "rename one of them",
                )
            owners[python] = role


_DERIVED = (("d_", "tangent"), ("grad_", "gradient"))


def specialise(loss: ir.LossIR, params: dict[str, object]) -> Plan:
    """Substitute scalar param values into the loss; tensor-valued params stay symbols."""
    check_names(loss)
    scalars: dict[str, float] = {}
    tensors: list[ParamInfo] = []
    subs: dict[sympy.Basic, sympy.Basic] = {}
    for info in loss.params:
        value = params.get(info.name, info.default)
        if isinstance(value, (int, float)):
            scalars[info.name] = float(value)
            subs[loss.param_symbols[info.name]] = constant(float(value))
        else:
            tensors.append(info)
    value = _decided(loss.output.xreplace(subs) if subs else loss.output)
    return Plan(loss, value, Layout(loss.order), scalars, tensors, wrt=loss.differentiated())


def cotangent(plan: Plan) -> Symbol:
    # Not a spec identifier (`'`), so never the symbol of an input named `grad`; printed `grad`.
    return ir.leaf("grad'", plan.output_dims)


def tangent_symbol(leaf: Symbol) -> Symbol:
    return ir.leaf("d_" + ir.leaf_name(leaf), tuple(sorted(ir.dims_of(leaf))))


def with_gradients(plan: Plan) -> Plan:
    """Reverse mode, for PyTorch: one gradient per differentiated input (its own leaf plus its
    unpacked components, concatenated by the backend)."""
    leaves = [s for info in plan.wrt for s in plan.loss.leaves_of(info.name)]
    grads = derive.vjp(plan.value, leaves, cotangent(plan))
    plan.grads = {ir.leaf_name(s): guard(g) for s, g in grads.items()}
    return plan


def unit_gradients(plan: Plan) -> dict[str, sympy.Expr] | None:
    """For a scalar loss, the gradient of each differentiated leaf with the cotangent 1 (what a
    forward pass computes next to the value, so the backward pass only scales it); ``None`` for
    a loss with output dims, whose vector-Jacobian product needs the cotangent itself."""
    if plan.output_dims:
        return None
    if not plan.grads:
        plan = with_gradients(plan)
    one = {cotangent(plan): sympy.Integer(1)}
    return {name: g.xreplace(one) for name, g in plan.grads.items()}


def with_tangent(plan: Plan) -> Plan:
    """Forward mode, for JAX's custom_jvp."""
    leaves = [s for info in plan.wrt for s in plan.loss.leaves_of(info.name)]
    plan.tangent = guard(derive.jvp(plan.value, {s: tangent_symbol(s) for s in leaves}))
    return plan


# --- the "double where": unselected branches never see arguments that make NaN --------------


def _unsafe_argument(e: sympy.Basic) -> sympy.Basic | None:
    """The argument of ``e`` that must stay in a safe range, if ``e`` can make NaN or inf."""
    if isinstance(e, (sympy.log, log1p)) and not e.args[0].is_positive:
        return e.args[0]
    if isinstance(e, sympy.Pow) and not e.base.is_positive:
        exponent = e.exp
        if exponent.is_negative or not exponent.is_integer:
            return e.base
    return None


def _guard_branch(expr: sympy.Basic, selected: sympy.Basic) -> sympy.Basic:
    if not expr.args or isinstance(expr, (Symbol, sympy.Number)):
        return expr
    expr = ir.rebuilt(expr, [_guard_branch(a, selected) for a in expr.args])
    arg = _unsafe_argument(expr)
    if arg is None or arg.is_number:
        return expr
    return expr.xreplace({arg: ir.Safe(arg, selected)})


def guard(expr: sympy.Basic) -> sympy.Basic:
    """Rewrite every ``Piecewise`` so that the arguments of log, division and fractional powers
    in a branch are replaced by 1 where that branch is not selected."""
    if not expr.args or isinstance(expr, (Symbol, sympy.Number)):
        return expr
    expr = ir.rebuilt(expr, [guard(a) for a in expr.args])
    if not isinstance(expr, sympy.Piecewise):
        return expr
    pieces = []
    earlier: list[sympy.Basic] = []
    for value, cond in expr.args:
        selected = sympy.And(cond, *(sympy.Not(c) for c in earlier)) if earlier else cond
        pieces.append(
            (_guard_branch(value, selected) if selected is not sympy.true else value, cond)
        )
        earlier.append(cond)
    return sympy.Piecewise(*pieces, evaluate=False)


# --- statements ----------------------------------------------------------------------------


@dataclass
class Program:
    """Straight-line code: named assignments, then result expressions."""

    assignments: list[tuple[Symbol, sympy.Basic]]
    results: list[sympy.Basic]
    names: dict[Symbol, str]
    dims: dict[sympy.Basic, frozenset[str]] = field(default_factory=dict)  # of temporaries


def _tidy_scaled(expr: sympy.Basic, clamp: bool, scale: Symbol | None) -> sympy.Basic:
    """:func:`_tidy`, where a product with ``scale`` (a scalar loss's cotangent: the backward
    function's gradients are the unit gradients times it) is tidied without it: the unit
    gradients are then tidied once for the forward and the backward function (GIoU: 8
    gradients at about 20 ms each)."""
    if scale is not None and isinstance(expr, sympy.Mul) and scale in expr.args:
        return scale * _tidy(sympy.Mul(*(a for a in expr.args if a != scale)), clamp)
    return _tidy(expr, clamp)


@functools.lru_cache(maxsize=64)  # the value and the unit gradients, met once per program
def _tidy(expr: sympy.Basic, clamp: bool = True) -> sympy.Basic:
    """Fewer kernels before CSE: whole floats become integers (``1.0*x`` is ``x``, ``x**2.0``
    is ``x**2``), ``exp(-k*softplus(u))`` becomes ``sigmoid(-u)^k``, common factors leave sums
    (``factor_terms``), a minus sign every branch of a ``Piecewise`` has moves outside it
    (``where(c, -a, -b)`` is ``-where(c, a, b)``, which CSE then shares with ``where(c, a,
    b)``), sums over full-size tensors are collected on the inputs (``_collect_leaves``), and,
    with ``clamp``, Huber-shaped branches share one clamp (``_clamp_form``). The
    clamp saves eager kernels; fused, the branches cost less arithmetic than ``c*u - c^2/2``
    (huber at 1e7 float32 under torch.compile: 24.7 ms with branches, 26.0 ms clamped)."""
    expr = _whole(expr).replace(_is_sigmoid_power, _sigmoid_power)
    expr = _whole(_collect_leaves(sympy.factor_terms(expr, radical=False, clear=False)))
    expr = _factor_branches(expr)
    if not clamp:
        return expr
    return expr.replace(lambda e: _clamp_form(e) is not None, _clamp_form)


def _decided(expr: sympy.Basic) -> sympy.Basic:
    """Comparisons that are true or false whatever the inputs, once param values are in
    (``a + p >= a + p + 0.1``, which SymPy leaves standing), as ``True``/``False``, so that
    their branches fold away instead of reaching a `where` as a Python bool."""
    decided = {}
    for rel in expr.atoms(sympy.core.relational.Relational):
        difference = rel.lhs - rel.rhs
        if difference.is_number and difference.is_comparable:
            decided[rel] = rel.func(difference, 0)
    return expr.xreplace(decided) if decided else expr


def _whole(expr: sympy.Basic) -> sympy.Basic:
    whole = {  # small ones: a huge Python int overflows where arrays take it as a number
        f: sympy.Integer(int(f))
        for f in expr.atoms(sympy.Float)
        if float(f).is_integer() and abs(f) < 2**31
    }
    return expr.xreplace(whole) if whole else expr


def _collect_leaves(expr: sympy.Basic) -> sympy.Basic:
    """A sum over full-size tensors with its terms multiplied out and collected on the inputs
    (``a*(1 - t) + b*t - c*t`` is ``a + (b - a - c)*t``, with ``a``, ``b``, ``c`` per row),
    where that leaves fewer full-size operations: the small coefficients are combined first
    (Tversky's gradient factor: two full-size passes instead of three, and ``1 - t`` is no
    longer held for it)."""
    leaves = sorted((s for s in expr.free_symbols if ir.dims_of(s)), key=str)  # same every run
    if not leaves:
        return expr
    full = max(len(ir.dims_of(s)) for s in leaves)
    if not any(0 < len(ir.dims_of(e)) < full for e in [*leaves, *expr.atoms(ir.TensorOp)]):
        return expr  # no per-row coefficients to combine (expanding GIoU's terms cost 0.6 s)

    def cost(e: sympy.Basic) -> int:  # operations on full-size tensors
        if len(ir.dims_of(e)) < full or not e.args or isinstance(e, Symbol):
            return 0
        return 1 + sum(cost(a) for a in e.args)

    def collected(e: sympy.Basic) -> sympy.Basic:
        if not isinstance(e, sympy.Add) or len(ir.dims_of(e)) < full or e.has(sympy.Piecewise):
            return e
        on = [s for s in leaves if s in e.free_symbols and len(ir.dims_of(s)) == full]
        with ir.frozen():
            terms = [
                sympy.expand(t, deep=False, power_base=False, power_exp=False, log=False)
                for t in e.args
            ]
            new = sympy.collect(sympy.Add(*terms), on)
        return new if cost(new) < cost(e) else e

    with ir.frozen():
        return expr.replace(lambda e: isinstance(e, sympy.Add), collected)


def _clamp_form(e: sympy.Basic) -> sympy.Basic | None:
    """A Huber-shaped branch on ``|u| < a`` (a positive number) in terms of
    ``c = clamp(u, -a, a)``, which the value and the gradient then share, instead of ``abs``,
    a comparison and a ``where`` per branch:

        where(|u| < a, u, a*sign(u))                       = c
        where(|u| < a, k*u^2, 2*k*a*|u| - k*a^2)           = 2k * (c*u - c^2/2)

    (at ``|u| >= a``, ``c = a*sign(u)`` and ``2k*(c*u - c^2/2) = 2ka|u| - ka^2``). ``None``
    where ``e`` is not of either shape."""
    if not isinstance(e, sympy.Piecewise) or len(e.args) != 2 or e.args[1].cond != sympy.true:
        return None
    (inner, cond), (outer, _) = e.args
    if not isinstance(cond, (sympy.StrictLessThan, sympy.LessThan)):
        return None
    bound, a = cond.args
    if not isinstance(bound, sympy.Abs) or not (a.is_number and a.is_positive):
        return None
    u = bound.args[0]
    if u.has(ir.TensorOp, sympy.Piecewise) or inner.has(ir.TensorOp) or outer.has(ir.TensorOp):
        return None
    c = ir.Clamp(u, -a, a)
    if sympy.expand(inner - u) == 0 and sympy.expand(outer - a * sympy.sign(u)) == 0:
        return c
    k = sympy.simplify(inner / u**2)
    if not k.is_number or k == 0:
        return None
    if sympy.expand(outer - (2 * k * a * sympy.Abs(u) - k * a**2)) != 0:
        return None
    scale = 2 * k
    if float(scale).is_integer():
        scale = sympy.Integer(int(scale))
    return scale * (c * u - c**2 / 2)  # `u` stays whole: `x - 0.5*c - t` would cancel


def _is_sigmoid_power(e: sympy.Basic) -> bool:
    """``exp(-k * softplus(u))`` for a whole k from 1 to 4: ``sigmoid(-u)^k``, one sigmoid and
    k - 1 multiplications instead of exp, log1p and exp (focal loss's ``(1 - p_t)^gamma``)."""
    if not isinstance(e, sympy.exp) or not isinstance(e.args[0], sympy.Mul):
        return False
    k, rest = e.args[0].as_coeff_Mul()
    return isinstance(rest, Softplus) and k.is_integer and -4 <= k <= -1


def _sigmoid_power(e: sympy.Basic) -> sympy.Basic:
    k, rest = e.args[0].as_coeff_Mul()
    return Sigmoid(-rest.args[0]) ** int(-k)


def _factor_branches(expr: sympy.Basic) -> sympy.Basic:
    if not expr.args or isinstance(expr, (Symbol, sympy.Number)):
        return expr
    args = [_factor_branches(a) for a in expr.args]
    if not isinstance(expr, sympy.Piecewise):
        return ir.rebuilt(expr, args)
    pieces = [(arg.args[0], arg.args[1]) for arg in args]
    if all(value != 0 and value.could_extract_minus_sign() for value, _ in pieces):
        return -sympy.Piecewise(*[(-value, cond) for value, cond in pieces], evaluate=False)
    return sympy.Piecewise(*pieces, evaluate=False) if args != list(expr.args) else expr


def program(
    exprs: list[sympy.Basic],
    loss: ir.LossIR,
    plan: Plan | None = None,
    tie: bool = False,
    differentiated: bool = False,
) -> Program:
    """CSE over all results at once; temporaries that are a binding of the spec take its name.
    With ``tie``, ``exprs`` are a value and its gradients, and the value's sums are tied to a
    gradient (:func:`tie_reductions`). ``differentiated``: the printed code is itself
    differentiated (torch's `_grad` under create_graph=True), so sigmoid and softplus stay
    as they are (:func:`_share_exp`'s forms have abs's and relu's derivative 0 at u = 0)."""
    fused = plan is not None and plan.recompute  # torch compiled mode
    scale = cotangent(plan) if plan is not None and not plan.output_dims else None
    exprs = [_tidy_scaled(e, not fused, scale) for e in exprs]
    if tie:
        exprs = [tie_reductions(exprs[0], exprs[1:]), *exprs[1:]]
    temps = sympy.numbered_symbols("_cse", real=True)
    with ir.frozen():
        assignments, results = sympy.cse(exprs, symbols=temps, order="canonical")
        if tie:
            assignments, results = _name_tied(assignments, results, temps)
        assignments, results = _inline_numbers(assignments, results)
    bindings = {}
    if plan is not None:
        subs = {loss.param_symbols[k]: constant(v) for k, v in plan.params.items()}
        bindings = {k.xreplace(subs): v for k, v in loss.names.items()}
    names: dict[Symbol, str] = {}
    used: set[str] = set()
    full: dict[Symbol, sympy.Basic] = {}
    for i, (temp, rhs) in enumerate(assignments):
        with ir.frozen():
            full[temp] = rhs.xreplace(full)
        name = py_name(bindings[full[temp]]) if full[temp] in bindings else f"t{i}"
        while name in used:
            name += "_"
        used.add(name)
        names[temp] = name
    dims: dict[sympy.Basic, frozenset[str]] = {}
    for temp, rhs in assignments:
        dims[temp] = ir.dims_in(rhs, dims)
    if plan is not None and plan.recompute:
        assignments, results = _recompute_heavy(assignments, results, dims)
        if not differentiated:
            assignments, results = _share_exp(assignments, results, full)
    return Program(list(assignments), list(results), names, dims)


def _inline_numbers(
    assignments: list[tuple[Symbol, sympy.Basic]], results: list[sympy.Basic]
) -> tuple[list[tuple[Symbol, sympy.Basic]], list[sympy.Basic]]:
    """Temporaries that are numbers (``0.25 + 0.25*exp(6)``, met twice) put back where they
    are used: the printer writes a number as one float literal, and a named one inside a
    function would reach `torch.log` as a Python float."""
    numbers: dict[Symbol, sympy.Basic] = {}
    kept = []
    for temp, rhs in assignments:
        rhs = rhs.xreplace(numbers)
        if rhs.is_number:
            numbers[temp] = rhs
        else:
            kept.append((temp, rhs))
    if not numbers:
        return assignments, results
    return kept, [r.xreplace(numbers) for r in results]


def tie_reductions(value: sympy.Basic, grads: list[sympy.Basic]) -> sympy.Basic:
    """``value`` with the argument ``a`` of each of its innermost sums tied to a gradient
    ``g`` of ``a``'s dims that does not need that sum: ``Tied(a, g)``, which is ``a`` but
    reads ``g``. Inductor evaluates a pointwise buffer and a reduction that reads it in one
    loop; a sum and a gradient that merely read the same inputs it evaluates in two, one
    after the other (torch 2.13, CPU: ``CppScheduling`` fuses pointwise-then-reduction
    vertically, not horizontally). Elementwise losses (mean of f(x, t)) then read their
    inputs once per step, not twice (Huber at 1e7 float32: 34 -> 22 ms)."""
    sums = [  # innermost, of more than a leaf: the ones with a loop to share
        total
        for total in sorted(value.atoms(ir.ReduceSum), key=sympy.default_sort_key)
        if not total.args[0].atoms(ir.Reduction) and not isinstance(total.args[0], Symbol)
    ]
    # A gradient that needs none of them: tying never makes one wait for another, and the
    # gradient inside each tie is the very one returned (CSE computes it once).
    free = [g for g in grads if not isinstance(g, Symbol) and not any(g.has(s) for s in sums)]
    tied: dict[sympy.Basic, sympy.Basic] = {}
    for total in sums:
        a = total.args[0]
        g = next((g for g in free if ir.dims_of(g) == ir.dims_of(a)), None)
        if g is not None:
            with ir.frozen():
                tied[total] = ir.ReduceSum(ir.Tied(a, g), total.args[1])
    if not tied:
        return value
    with ir.frozen():
        return value.xreplace(tied)


def _name_tied(
    assignments: list[tuple[Symbol, sympy.Basic]],
    results: list[sympy.Basic],
    temps: Iterator[Symbol],
) -> tuple[list[tuple[Symbol, sympy.Basic]], list[sympy.Basic]]:
    """A tied argument as a temporary of its own, so that ``where(g == g, a, a)`` prints a
    name twice, not an expression."""
    out: list[tuple[Symbol, sympy.Basic]] = []

    def name(e: sympy.Basic) -> sympy.Basic:
        subs = {}
        for tie in sorted(e.atoms(ir.Tied), key=sympy.default_sort_key):
            a = tie.args[0]
            if not isinstance(a, Symbol):
                temp = next(temps)
                out.append((temp, a))
                subs[tie] = ir.Tied(temp, tie.args[1])
        return e.xreplace(subs) if subs else e

    for temp, rhs in assignments:
        rhs = name(rhs)
        out.append((temp, rhs))
    return out, [name(r) for r in results]


def _share_exp(
    assignments: list[tuple[Symbol, sympy.Basic]],
    results: list[sympy.Basic],
    full: dict[Symbol, sympy.Basic],
) -> tuple[list[tuple[Symbol, sympy.Basic]], list[sympy.Basic]]:
    """sigmoid and softplus of one argument ``u`` and of ``-u`` written from one
    e = exp(-|u|) and r = 1 / (1 + e), wherever two or more of the four occur: sigmoid(u) as
    where(u >= 0, r, e*r), sigmoid(-u) as where(u >= 0, e*r, r) (each the stable form on its
    side), softplus(+-u) as relu(+-u) + log1p(e). The compiler's kernel computes e (and r,
    log1p(e)) once for all of them: one exp per element where there were up to four (Dice,
    Tversky: sigmoid(x) in the sums, both signs in the gradient, measured on Tversky 1e6
    float32 under torch.compile, 1.91 -> 1.46 ms; BCE with logits: softplus(x) in the value,
    sigmoid(x) in the gradient; focal: sigmoid and softplus of both signs). Arguments match
    by their full expressions (``full``: each temporary with the temporaries in it
    expanded), since CSE may have named ``u`` and ``-u`` apart."""
    exprs = [rhs for _, rhs in assignments] + list(results)
    ops = {op for e in exprs for op in e.atoms(Sigmoid, Softplus)}
    groups: dict[sympy.Basic, list[tuple[sympy.Basic, int]]] = {}
    with ir.frozen():
        for op in sorted(ops, key=sympy.default_sort_key):
            whole = op.args[0].xreplace(full)
            sign = -1 if whole.could_extract_minus_sign() else 1
            groups.setdefault(-whole if sign < 0 else whole, []).append((op, sign))
    subs = {}
    with ir.frozen():
        for members in groups.values():
            if len(members) < 2:
                continue
            # u itself, spelled with the temporaries of a member written with sign +1 if any
            op, sign = max(members, key=lambda m: m[1])
            u = op.args[0] if sign > 0 else -op.args[0]
            for op, sign in members:
                kind = ir.ExpSigmoid if isinstance(op, Sigmoid) else ir.ExpSoftplus
                subs[op] = kind(u, sign)
    if not subs:
        return assignments, results
    with ir.frozen():
        results = [_pair_sigmoids(result.xreplace(subs)) for result in results]
        rewritten = [(t, _pair_sigmoids(rhs.xreplace(subs))) for t, rhs in assignments]
    # a temporary only an argument used (``-u`` named apart) is read by nothing now
    used = set().union(*(r.free_symbols for r in results))
    kept = []
    for temp, rhs in reversed(rewritten):
        if temp in used:
            kept.append((temp, rhs))
            used |= rhs.free_symbols
    return kept[::-1], results


def _pair_sigmoids(expr: sympy.Basic) -> sympy.Basic:
    """Each product sigmoid(u) * sigmoid(-u) in ``expr`` (of :class:`ir.ExpSigmoid` factors,
    as :func:`_share_exp` writes them) as one :class:`ir.ExpSigmoidPair`, e / (1 + e)**2:
    one quotient instead of two selected by the sign of u and their product."""

    def pair(product: sympy.Mul) -> sympy.Basic:
        powers = product.as_powers_dict()
        found = False
        for base, power in list(powers.items()):
            if not (isinstance(base, ir.ExpSigmoid) and base.args[1] > 0):
                continue
            mirror = ir.ExpSigmoid(base.args[0], -1)
            k = sympy.Min(power, powers.get(mirror, sympy.S.Zero))
            if k.is_Integer and k > 0:
                powers[base] -= k
                powers[mirror] -= k
                powers[ir.ExpSigmoidPair(base.args[0])] = k
                found = True
        if not found:
            return product
        return sympy.Mul(*(b**p for b, p in powers.items() if p != 0))

    with ir.frozen():
        return expr.replace(lambda e: isinstance(e, sympy.Mul), pair)


# Functions inductor's CPU lowering calls heavy: one of them with more than one consumer is
# written to a full-size buffer and read back (torch/_inductor/ir.py, should_realize_on_reuse).
_HEAVY = (sympy.exp, sympy.log, log1p, sympy.tanh, Sigmoid, Softplus)


def _recompute_heavy(
    assignments: list[tuple[Symbol, sympy.Basic]],
    results: list[sympy.Basic],
    dims: dict[sympy.Basic, frozenset[str]],
) -> tuple[list[tuple[Symbol, sympy.Basic]], list[sympy.Basic]]:
    """Inline each temporary that is a heavy function of a full-size tensor into its uses.
    A compiler then evaluates it inside each loop that needs it (the row sums and the
    elementwise gradient of a Dice loss, say) from the inputs it reads anyway: memory
    traffic, not arithmetic, bounds these losses on a CPU (measured: Tversky 1e7 elements,
    72 ms instead of 104 ms). Small temporaries (rows, scalars) stay shared."""
    full = max((len(d) for d in dims.values()), default=0)
    inline: dict[Symbol, sympy.Basic] = {}
    kept = []
    for temp, rhs in assignments:
        with ir.frozen():
            rhs = rhs.xreplace(inline)
        if isinstance(rhs, _HEAVY) and len(dims[temp]) == full and full > 0:
            inline[temp] = rhs
        else:
            kept.append((temp, rhs))
    if not inline:
        return assignments, results
    with ir.frozen():
        return kept, [r.xreplace(inline) for r in results]
