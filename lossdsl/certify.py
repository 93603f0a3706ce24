"""The differentiability certificate (LANGUAGE.md section 5): per differentiated input, the class
smooth / C1 / piecewise / discontinuous, the sets where it is less than smooth, and errors for
inputs whose gradient is zero almost everywhere; then the domain hazards (:mod:`hazards`).

Every kink of the stable IR (abs, max, min, relu, clamp, `if` conditions, sign, steps, ties
of max-reductions, norms at 0) is a candidate. Whether composition smooths it (``abs(x)^2`` is
smooth, ``max(x, 0)^2`` is C1) is decided by comparing the Taylor series of the loss on both
sides of the kink (:mod:`lossdsl.jets`) on lines that cross it at sampled points of the
declared domain; the order of the first differing coefficient is the class.
"""

from __future__ import annotations

import math
import random
from typing import Any

import mpmath
import sympy

from lossdsl import ir
from lossdsl.analysis import CLASSES, Break, Certificate, Diagnostic, Report
from lossdsl.domain import Sampler
from lossdsl.hazards import find_hazards, nearest_spans
from lossdsl.jets import Evaluator, Invalid, Singular, Unsupported, break_order, line
from lossdsl.notation import Namer
from lossdsl.scalar import Kink, Scalar, scalarize, structural_kinks

ATTEMPTS = 16  # lines tried per kink
SCAN = 24  # points scanned along a line for a crossing
# The worst class each kind of kink can have: kinks are continuous, jumps are not.
_WORST = {"if": 0, "sign": 0, "step": 0}
_SUBGRADIENT = {
    "abs": "abs has derivative 0 at 0",
    "max": "max/min pass 1/2 of the gradient to each argument at a tie",
    "min": "max/min pass 1/2 of the gradient to each argument at a tie",
    "relu": "relu has derivative 0 at 0",
    "clamp": "clamp has derivative 1 at its bounds",
    "if": "the derivative of the branch selected on the boundary",
    "sign": "sign has derivative 0",
    "step": "floor, ceil and round have derivative 0",
    "tie": "tied maxima share the gradient equally",
    "norm": "norm has gradient 0 at 0",
}


def certify(loss: ir.LossIR, stable: ir.LossIR, report: Report) -> None:
    """Fill ``report`` with certificates, zero-gradient errors and hazard warnings.

    Args:
        loss: the IR as written (zero-gradient errors point at its spans).
        stable: the IR after stability rewrites (classes and hazards are judged on it).
        report: the report to fill.
    """
    namer = Namer(stable)
    report.diagnostics.extend(zero_gradients(loss, Namer(loss)))
    breaks = find_breaks(stable, namer)
    for info in loss.differentiated():
        mine = tuple(b for b in breaks if info.name in b.inputs)
        report.certificates.append(_certificate(info.name, mine))
    report.diagnostics.extend(find_hazards(stable, namer))


def _certificate(name: str, breaks: tuple[Break, ...]) -> Certificate:
    if not breaks:
        return Certificate(name, "smooth")
    ordered = tuple(sorted(breaks, key=lambda b: -CLASSES.index(b.klass)))
    worst = ordered[0].klass
    top = [b for b in ordered if b.klass == worst]
    subgradients = dict.fromkeys(b.subgradient for b in top if b.subgradient)
    where = tuple(dict.fromkeys(b.condition for b in top))
    return Certificate(name, worst, where, "; ".join(subgradients), ordered)


# --- breaks ----------------------------------------------------------------------------------


def find_breaks(stable: ir.LossIR, namer: Namer) -> list[Break]:
    """Every set where the loss is less than smooth in a differentiated input."""
    try:
        scalarizer, scalar = scalarize(stable)
        kinks = scalarizer.kinks(stable.output)
    except (NotImplementedError, TypeError, ValueError):  # judge by kind alone
        scalar, kinks = Scalar(stable.output), structural_kinks(stable.output)
    owners = _owners(stable)
    groups: dict[Any, list[Kink]] = {}
    for kink in kinks:
        if owners.keys() & kink.switch.free_symbols:
            groups.setdefault(_key(kink), []).append(kink)
    sampler = Sampler(stable, scalar, random.Random(0))
    spans = nearest_spans(stable)
    found = []
    for members in groups.values():
        kink = members[0]
        order = measure(kink, scalar, sampler, min(_WORST.get(k.kind, 1) for k in members))
        klass = _class(order)
        if klass == "smooth":
            continue
        crossing = {owners[s] for s in _leaves(kink, owners)}
        inputs = tuple(i.name for i in stable.differentiated() if i.name in crossing)
        sub = _SUBGRADIENT[kink.kind] if klass != "C1" else ""
        if kink.kind == "norm" and not isinstance(kink.node, ir.Norm):
            sub = "none: sqrt'(0) is infinite (`norm[D](u)` has gradient 0 at 0)"
        span = _span(kink.node, stable, spans)
        found.append(Break(_condition(kink, namer), klass, kink.kind, span, sub, inputs))
    return found


def _span(node: sympy.Basic, loss: ir.LossIR, nearest: dict) -> Any:
    """A node's span; SymPy may have flipped a condition (`r <= d` is kept as `d >= r`)."""
    forms = [node]
    if isinstance(node, sympy.core.relational.Relational):
        forms += [node.reversed, node.reversedsign, node.reversedsign.reversed]
    for form in forms:
        if form in loss.spans:
            return loss.spans[form]
    return nearest.get(node)


def _owners(loss: ir.LossIR) -> dict[sympy.Symbol, str]:
    return {s: i.name for i in loss.differentiated() for s in loss.leaves_of(i.name)}


def _leaves(kink: Kink, owners: dict[sympy.Symbol, str]) -> list[sympy.Symbol]:
    return sorted(owners.keys() & kink.switch.free_symbols, key=sympy.default_sort_key)


def _key(kink: Kink) -> Any:
    """Kinks on the same set are one break (`max(a, b)` and `min(a, b)` at `a == b`)."""
    if kink.kind in ("step", "tie", "norm"):
        return (kink.kind, kink.node)
    _, g = kink.switch.as_content_primitive()
    return min(g, -g, key=sympy.default_sort_key)


def _class(order: int | None) -> str:
    if order is None:
        return "smooth"
    return ("discontinuous", "piecewise")[order] if order < 2 else "C1"


def _condition(kink: Kink, namer: Namer) -> str:
    if kink.kind == "tie":
        return f"{namer.show(kink.node)} is attained by two elements"
    if kink.kind == "step":
        offset = " + 0.5" if isinstance(kink.node, ir.Round) else ""
        return f"{namer.show(kink.switch)} is an integer{offset}"
    return namer.equation(kink.switch)


def measure(kink: Kink, scalar: Scalar, sampler: Sampler, floor: int) -> int | None:
    """The lowest break order seen on lines crossing the kink (None: smooth on all of them).

    Args:
        kink: the kink; its scalar switching expression says where the lines cross.
        scalar: the loss's scalar form.
        sampler: points of the declared domain.
        floor: the lowest order possible here (0 for jumps, 1 for kinks): stop when seen.
    """
    worst: int | None = None
    if not kink.scalar:  # no scalar form: the worst its kind allows
        return floor
    for attempt in range(ATTEMPTS):
        crossing = _crossing(kink, sampler, attempt)
        if crossing is None:
            continue
        point, direction, t = crossing
        try:
            if not _regular_near(scalar.output, point, direction, t):
                continue
            order = break_order(scalar.output, line(point, direction, t))
        except (Unsupported, ArithmeticError, TypeError, ValueError):
            return floor  # no series here: the worst this kind of kink allows
        if order is not None and (worst is None or order < worst):
            worst = order
        if worst is not None and worst <= floor:
            break
    return worst


def _crossing(
    kink: Kink, sampler: Sampler, attempt: int
) -> tuple[dict[sympy.Symbol, float], dict[sympy.Symbol, float], float] | None:
    """A point, a direction and ``t`` where the line crosses the kink."""
    point = sampler.point(first=attempt == 0)
    moving = [s for g in kink.scalar for s in g.free_symbols if sampler.differentiated(s)]
    moving = sorted(set(moving), key=sympy.default_sort_key)
    if not moving:
        return None
    if kink.kind == "norm":
        return _through_zero(kink, sampler, point, moving)
    direction = {s: sampler.rng.gauss(0.0, 1.0) for s in moving}
    lo, hi = sampler.t_range(point, direction)
    g = kink.scalar[0]
    level = _level(kink)
    ts = [lo + (hi - lo) * (k + 0.5) / SCAN for k in range(SCAN)]
    values = [_value(g, point, direction, t) for t in ts]
    for k in range(SCAN - 1):
        (t0, v0), (t1, v1) = (ts[k], values[k]), (ts[k + 1], values[k + 1])
        if v0 is None or v1 is None:
            continue
        edge = level(v0, v1)
        if edge is not None:
            t = _root(g, point, direction, t0, t1, edge)
            if t is not None:
                return point, direction, t
    return None


def _level(kink: Kink) -> Any:
    """The value of the switching expression at the kink between two scanned values."""
    if kink.kind != "step":
        return lambda a, b: 0.0 if (a < 0) != (b < 0) else None
    offset = 0.5 if isinstance(kink.node, ir.Round) else 0.0

    def between(a: float, b: float) -> float | None:
        edge = math.ceil(min(a, b) - offset) + offset
        return edge if edge < max(a, b) else None

    return between


def _value(g: sympy.Expr, point: dict, direction: dict, t: float) -> float | None:
    try:
        value = Evaluator(line(point, direction, t, degree=0))(g)
    except (Singular, Invalid, Unsupported):
        return None
    return value if isinstance(value, float) and math.isfinite(value) else None


def _root(
    g: sympy.Expr, point: dict, direction: dict, a: float, b: float, edge: float
) -> float | None:
    """Where ``g == edge`` between ``a`` and ``b`` (bisection; g may have kinks itself)."""
    fa = (_value(g, point, direction, a) or 0.0) - edge
    for _ in range(60):
        mid = 0.5 * (a + b)
        fm = _value(g, point, direction, mid)
        if fm is None:
            return None
        if (fm - edge < 0) == (fa < 0):
            a, fa = mid, fm - edge
        else:
            b = mid
    t = 0.5 * (a + b)
    value = _value(g, point, direction, t)
    return t if value is not None and abs(value - edge) < 1e-8 * (1 + abs(edge)) else None


def _through_zero(kink: Kink, sampler: Sampler, point: dict, moving: list) -> Any:
    """For `norm[D](u)`: a point where every element of ``u`` is 0, found by solving for one
    moving element per element of ``u`` (``u`` must be linear in them, as in `a - b`)."""
    unknowns: list[sympy.Symbol] = []
    for u in kink.scalar:
        free = [s for s in moving if s in u.free_symbols and s not in unknowns]
        if not free:
            return None
        unknowns.append(free[0])
    values = _solve_linear(list(kink.scalar), unknowns, point)
    if values is None or not all(sampler.inside(s, v) for s, v in values.items()):
        return None
    direction = {s: sampler.rng.gauss(0.0, 1.0) for s in moving}
    return {**point, **values}, direction, 0.0


def _solve_linear(us: list[sympy.Expr], unknowns: list, point: dict) -> dict | None:
    """Solve ``us == 0`` for ``unknowns`` numerically, checking the system is linear."""

    def at(values: list[float]) -> list[float] | None:
        env = {**point, **dict(zip(unknowns, values, strict=True))}
        try:
            found = [Evaluator(env)(u) for u in us]
        except (Singular, Invalid, Unsupported):
            return None
        return [v for v in found if isinstance(v, float)] if len(found) == len(us) else None

    n = len(unknowns)
    base = at([0.0] * n)
    columns = [at([float(i == j) for i in range(n)]) for j in range(n)]
    if base is None or len(base) < n or any(c is None or len(c) < n for c in columns):
        return None
    rows = [[columns[j][i] - base[i] for j in range(n)] for i in range(n)]  # type: ignore[index]
    if not all(math.isfinite(v) for v in [*base, *(v for row in rows for v in row)]):
        return None
    matrix = mpmath.matrix(rows)
    try:
        solution = [float(v) for v in mpmath.lu_solve(matrix, [-v for v in base])]
    except (ZeroDivisionError, TypeError):
        # Singular. mpmath raises ZeroDivisionError, except where a column is 0 on and below
        # the diagonal: its pivot is left None, and swapping rows with it is a TypeError.
        return None
    check = at(solution)
    if check is None or any(abs(v) > 1e-9 for v in check):
        return None  # not linear in the unknowns
    return dict(zip(unknowns, solution, strict=True))


def _regular_near(expr: sympy.Basic, point: dict, direction: dict, t: float) -> bool:
    """The loss is finite just beside the crossing on both sides (not a bad sample point)."""
    for side in (1, -1):
        try:
            Evaluator(line(point, direction, t + side * 1e-2, degree=0), side)(expr)
        except (Singular, Invalid):
            return False
    return True


# --- zero gradients --------------------------------------------------------------------------


def zero_gradients(loss: ir.LossIR, namer: Namer) -> list[Diagnostic]:
    """Errors for differentiated inputs the loss cannot train: unused, or used only through
    piecewise-constant functions (floor, ceil, round, sign, comparisons)."""
    used = loss.output.free_symbols
    valued = _value_symbols(loss.output, {})
    found = []
    for info in loss.differentiated():
        leaves = set(loss.leaves_of(info.name))
        if not leaves & used:
            message = f"`{info.name}` is not used: the gradient w.r.t. `{info.name}` is 0"
            help = "remove the input, or use it in the loss"
            found.append(Diagnostic("error", "unused", info.span, message, help))
        elif not leaves & valued:
            found.append(_flat_error(loss, namer, info.name, leaves))
    return found


def _flat_error(loss: ir.LossIR, namer: Namer, name: str, leaves: set) -> Diagnostic:
    node = next(
        (
            n
            # args in a sorted order: And/Or keep theirs in a hash-seeded set
            for n in sympy.preorder_traversal(loss.output, keys=True)
            if _is_flat(n) and leaves & n.free_symbols
        ),
        loss.output,
    )
    shown = namer.show(node)
    message = (
        f"the gradient w.r.t. `{name}` is zero almost everywhere: `{name}` reaches the loss only "
        f"through `{shown}`, which is piecewise constant"
    )
    help = (
        "floor, ceil, round, sign and comparisons have derivative 0; use a smooth surrogate "
        "(e.g. `sigmoid((x - a) / T)` for `x > a`), or give the input a label type "
        "(Binary, Index) if it is not trained"
    )
    span = loss.spans.get(node) or nearest_spans(loss).get(node)
    return Diagnostic("error", "zero-gradient", span, message, help, shown)


def _is_flat(node: sympy.Basic) -> bool:
    return isinstance(
        node, (ir.Sign, ir.Floor, ir.Ceil, ir.Round, sympy.core.relational.Relational)
    )


def _value_symbols(expr: sympy.Basic, memo: dict) -> set[sympy.Symbol]:
    """Leaves the value of ``expr`` depends on other than through piecewise-constant parts."""
    if expr in memo:
        return memo[expr]  # type: ignore[no-any-return]
    if isinstance(expr, sympy.Symbol):
        found = {expr}
    elif _is_flat(expr) or isinstance(expr, (sympy.logic.boolalg.Boolean, ir.OneHot)):
        found = set()
    elif isinstance(expr, sympy.Piecewise):
        found = set().union(*(_value_symbols(v, memo) for v, _ in expr.args))
    elif isinstance(expr, ir.Gather):
        found = _value_symbols(expr.args[0], memo)
    else:
        found = set().union(set(), *(_value_symbols(a, memo) for a in expr.args))
    memo[expr] = found
    return found


__all__ = ["certify", "find_breaks", "measure", "zero_gradients"]
