"""What the declared types say about the values of an IR expression: interval bounds, with
SymPy's assumptions (``expr.is_positive``) as a second opinion.

SymPy's assumptions know ``p: Prob`` is nonnegative but not that it is at most 1, nor that
``sigmoid(x) < 1``; intervals know both, so ``1 - p`` is nonnegative and ``1 - sigmoid(x)`` is
positive. Bounds are sound, never tight: a hazard is reported whenever they cannot exclude it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import sympy
from sympy.codegen.cfunctions import expm1, log1p

from lossdsl import checked as c
from lossdsl import ir
from lossdsl.intervals import (
    ELEMENT_TYPES,
    INF,
    NONNEGATIVE,
    POSITIVE,
    REAL,
    UNIT,
    Interval,
    absolute,
    add,
    fold,
    hull,
    maximum,
    meet,
    monotone,
    mul,
    neg,
    no_overflow,
    point,
    power,
    real_power,
    reciprocal,
    sigmoid,
    softplus,
)

# Increasing elementwise functions: (function, infimum, supremum of the range).
_MONOTONE: dict[type, tuple[Callable[[float], float], float, float]] = {
    sympy.exp: (no_overflow(math.exp), 0.0, INF),
    ir.Sigmoid: (sigmoid, 0.0, 1.0),
    ir.Softplus: (no_overflow(softplus), 0.0, INF),
    sympy.tanh: (math.tanh, -1.0, 1.0),
    sympy.erf: (math.erf, -1.0, 1.0),
    expm1: (no_overflow(math.expm1), -1.0, INF),
    ir.Floor: (math.floor, -INF, INF),
    ir.Ceil: (math.ceil, -INF, INF),
    ir.Round: (round, -INF, INF),
}


class Bounds:
    """Interval bounds of the expressions of one loss.

    Args:
        leaves: symbol -> the interval its declared type allows.
        known: expression -> interval known to hold here (from enclosing `if` conditions).
    """

    def __init__(
        self, leaves: dict[sympy.Symbol, Interval], known: dict[sympy.Basic, Interval] | None = None
    ) -> None:
        self.leaves = leaves
        self.known = known or {}
        self.cache: dict[sympy.Basic, Interval] = {}

    def assuming(self, cond: sympy.Basic) -> Bounds:
        """These bounds where ``cond`` holds."""
        known = dict(self.known)
        for expr, interval in refinements(cond):
            known[expr] = meet(known.get(expr, REAL), interval)
        return Bounds(self.leaves, known)

    def of(self, expr: sympy.Basic) -> Interval:
        if expr not in self.cache:
            found = self._of(expr)
            if expr in self.known:
                found = meet(found, self.known[expr])
            self.cache[expr] = found
        return self.cache[expr]

    def _of(self, e: sympy.Basic) -> Interval:
        if e.is_Number:
            return _number(e)
        if isinstance(e, sympy.Symbol):
            return self.leaves.get(e) or _assumed(e)
        if isinstance(e, sympy.Add):
            terms, parts = _masked_lse_pairs(list(e.args))
            terms, pairs = _sum_differences(terms)
            parts += [meet(self.of(one), add(self.of(a), self.of(b))) for one, a, b in pairs]
            return fold(add, parts + [self.of(a) for a in terms])
        if isinstance(e, sympy.Mul):
            return fold(mul, [self.of(a) for a in e.args])
        if isinstance(e, sympy.Pow):
            return self._pow(e)
        if isinstance(e, ir.TensorOp):
            return self._tensor(e)
        if isinstance(e, sympy.Piecewise):
            return fold(hull, [self.assuming(c).of(v) for v, c in e.args if c is not sympy.false])
        return self._function(e)

    def _pow(self, e: sympy.Pow) -> Interval:
        base, exp = self.of(e.base), e.exp
        if exp.is_Integer:
            return power(base, int(exp))
        if exp.is_number and base.nonnegative:
            p = float(exp)
            up = monotone(lambda x: real_power(x, abs(p)), base, 0.0, INF)
            return up if p > 0 else reciprocal(up)
        if base.positive:
            return POSITIVE
        return NONNEGATIVE if base.nonnegative else REAL

    def _function(self, e: sympy.Basic) -> Interval:
        args = [self.of(a) for a in e.args] if isinstance(e, sympy.Expr) else []
        for cls, (f, low, high) in _MONOTONE.items():
            if isinstance(e, cls):
                return monotone(f, args[0], low, high)
        if isinstance(e, (sympy.log, log1p)):
            arg = args[0] if isinstance(e, sympy.log) else add(args[0], point(1.0))
            return monotone(_log, arg, -INF, INF) if arg.positive else REAL
        if isinstance(e, (sympy.Max, ir.Relu)):
            return fold(maximum, args + ([point(0.0)] if isinstance(e, ir.Relu) else []))
        if isinstance(e, sympy.Min):
            return neg(fold(maximum, [neg(a) for a in args]))
        if isinstance(e, ir.Clamp):
            return neg(maximum(neg(maximum(args[0], args[1])), neg(args[2])))
        if isinstance(e, sympy.Abs):
            return absolute(args[0])
        if isinstance(e, (ir.Sign, sympy.sign, sympy.sin, sympy.cos)):
            return Interval(-1.0, 1.0, False, False)
        return REAL

    def _tensor(self, e: ir.TensorOp) -> Interval:
        arg = self.of(e.args[0])
        if isinstance(e, ir.ReduceSum):  # a sum of one or more such values
            return Interval(
                arg.lo if arg.lo >= 0 else -INF,
                arg.hi if arg.hi <= 0 else INF,
                arg.lo_open if arg.lo >= 0 else True,
                arg.hi_open if arg.hi <= 0 else True,
            )
        if isinstance(e, (ir.ReduceMax, ir.ReduceMin, ir.Gather)):
            return arg
        if isinstance(e, ir.ReduceProd):
            return POSITIVE if arg.positive else (NONNEGATIVE if arg.nonnegative else REAL)
        if isinstance(e, ir.LogSumExp):
            return Interval(arg.lo, INF, arg.lo_open, True)
        if isinstance(e, ir.Softmax):
            return Interval(0.0, 1.0, True, False)
        if isinstance(e, ir.LogSoftmax):
            return Interval(-INF, 0.0, True, False)
        if isinstance(e, ir.Norm):
            return POSITIVE if self.of(e.args[2]).positive else NONNEGATIVE
        if isinstance(e, ir.OneHot):
            return UNIT
        return REAL

    # --- decisions, with SymPy's assumptions as a second opinion -----------------------------

    def positive(self, expr: sympy.Basic) -> bool:
        return self.of(expr).positive or self._sympy(expr, "is_positive")

    def nonnegative(self, expr: sympy.Basic) -> bool:
        return self.of(expr).nonnegative or self._sympy(expr, "is_nonnegative")

    def nonzero(self, expr: sympy.Basic) -> bool:
        return self.of(expr).nonzero or self._sympy(expr, "is_nonzero")

    def _sympy(self, expr: sympy.Basic, query: str) -> bool:
        """Ask SymPy, with tensor ops and our functions replaced by symbols that carry what
        the intervals know about them (small expressions only: SymPy's queries can be slow)."""
        if sympy.count_ops(expr) > 40:
            return False
        opaque = {}
        for node in sympy.preorder_traversal(expr):
            if isinstance(node, sympy.Function) and type(node).__module__ == ir.__name__:
                opaque[node] = _symbol_for(self.of(node))
        return bool(getattr(expr.xreplace(opaque), query))


def _masked_lse_pairs(terms: list[sympy.Basic]) -> tuple[list[sympy.Basic], list[Interval]]:
    """Pairs ``logsumexp[C](where(c, -inf, x)) - logsumexp[C](x)``: the log of a part of a sum
    of exps minus the log of the whole, so at most 0 (what intervals alone cannot see)."""
    found = []
    for term in list(terms):
        if not (isinstance(term, ir.LogSumExp) and isinstance(term.args[0], sympy.Piecewise)):
            continue
        values = {v for v, _ in term.args[0].args}
        for whole in values - {-sympy.oo}:
            partner = -ir.LogSumExp(whole, term.args[1])
            if values <= {whole, -sympy.oo} and partner in terms and term in terms:
                terms.remove(term)
                terms.remove(partner)
                found.append(Interval(-INF, 0.0, True, False))
    return terms, found


def _sum_differences(
    terms: list[sympy.Basic],
) -> tuple[list[sympy.Basic], list[tuple[sympy.Basic, sympy.Basic, sympy.Basic]]]:
    """Pairs ``sum[D](a) - sum[D](b)``, each with the one sum ``sum[D](a - b)`` (argument
    factored, if small) that bounds it too: tversky's FP, ``sum(p) - sum(p * t)``, is
    ``sum(p * (1 - t))``, at least 0, which the two sums' intervals cannot show."""
    negated = {t: -t for t in terms if not isinstance(t, ir.ReduceSum)}
    subtracted = [t for t, minus in negated.items() if isinstance(minus, ir.ReduceSum)]
    pairs = []
    for term in [t for t in terms if isinstance(t, ir.ReduceSum)]:
        dims = term.args[1]
        partner = next((t for t in subtracted if negated[t].args[1] == dims), None)
        if partner is None:
            continue
        subtracted.remove(partner)
        terms = [t for t in terms if t is not term and t is not partner]
        argument = term.args[0] - negated[partner].args[0]
        if sympy.count_ops(argument) <= 40:  # factoring a large expression can be slow
            argument = sympy.factor(argument)
        with ir.frozen():
            pairs.append((ir.ReduceSum(argument, dims), term, partner))
    return terms, pairs


def _number(e: sympy.Basic) -> Interval:
    value = float(e)
    return Interval(value, value, math.isinf(value), math.isinf(value))


def _assumed(symbol: sympy.Symbol) -> Interval:
    if symbol.is_positive:
        return POSITIVE
    return NONNEGATIVE if symbol.is_nonnegative else REAL


def _symbol_for(interval: Interval) -> sympy.Symbol:
    if interval.positive:
        return sympy.Dummy(positive=True)
    if interval.negative:
        return sympy.Dummy(negative=True)
    if interval.nonnegative:
        return sympy.Dummy(nonnegative=True)
    return sympy.Dummy(real=True)


# --- what conditions tell -----------------------------------------------------------------

_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_NEGATE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}


def refinements(cond: sympy.Basic, holds: bool = True) -> list[tuple[sympy.Basic, Interval]]:
    """(expression, interval) pairs that hold where ``cond`` is ``holds``."""
    if isinstance(cond, sympy.Not):
        return refinements(cond.args[0], not holds)
    if isinstance(cond, (sympy.And, sympy.Or)):
        if isinstance(cond, sympy.And) == holds:
            return [r for arg in cond.args for r in refinements(arg, holds)]
        return []
    if not isinstance(cond, sympy.core.relational.Relational):
        return []
    op = cond.rel_op if holds else _NEGATE[cond.rel_op]
    lhs, rhs = cond.lhs, cond.rhs
    if lhs.is_number and not rhs.is_number:
        lhs, rhs, op = rhs, lhs, _FLIP[op]
    if not rhs.is_number:
        lhs, rhs = lhs - rhs, sympy.S.Zero
    interval = _relation(op, float(rhs))
    return [(lhs, interval)] if interval is not None else []


def _relation(op: str, v: float) -> Interval | None:
    return {
        "<": Interval(-INF, v, True, True),
        "<=": Interval(-INF, v, True, False),
        ">": Interval(v, INF, True, True),
        ">=": Interval(v, INF, False, True),
        "==": point(v),
    }.get(op)


def param_interval(info: c.ParamInfo) -> Interval:
    """A param's declared type, narrowed by its `where` condition (``0 <= alpha <= 1``)."""
    interval = ELEMENT_TYPES.get(info.elem, REAL)
    for bound in _condition_bounds(info.condition, info.name) if info.condition else []:
        interval = meet(interval, bound)
    return interval


def _condition_bounds(node: c.Node, name: str) -> list[Interval]:
    if isinstance(node, c.Apply) and node.op == "and":
        return [b for arg in node.args for b in _condition_bounds(arg, name)]
    if isinstance(node, c.Apply) and node.op == "or":
        parts = [_condition_bounds(arg, name) for arg in node.args]
        if all(parts):
            return [fold(hull, [fold(meet, p) for p in parts])]
        return []
    if not (isinstance(node, c.Apply) and node.op in ("lt", "le", "gt", "ge", "eq")):
        return []
    lhs, rhs = node.args
    op = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "=="}[node.op]
    if isinstance(rhs, c.ParamRef) and isinstance(lhs, c.Constant):
        lhs, rhs, op = rhs, lhs, _FLIP[op]
    if isinstance(lhs, c.ParamRef) and lhs.name == name and isinstance(rhs, c.Constant):
        found = _relation(op, float(rhs.value))
        return [found] if found is not None else []
    return []


def loss_bounds(loss: ir.LossIR) -> Bounds:
    """Bounds from the declared types of a loss's inputs and params."""
    leaves: dict[sympy.Symbol, Interval] = {}
    for info in loss.inputs:
        for symbol in loss.leaves_of(info.name):
            leaves[symbol] = ELEMENT_TYPES[info.elem]
    for param in loss.params:
        leaves[loss.param_symbols[param.name]] = param_interval(param)
    return Bounds(leaves)


__all__ = ["Bounds", "Interval", "loss_bounds", "param_interval", "refinements"]


def _log(x: float) -> float:
    """log, and its limit -inf at 0 (an open end: a positive interval may start at 0)."""
    return math.log(x) if x > 0 else -INF
