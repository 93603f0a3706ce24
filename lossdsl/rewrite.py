"""Stability rewrites (LANGUAGE.md section 6): value-preserving on the declared domains, each
a small named entry with the identity it uses, each application recorded with its span.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import sympy
from sympy.codegen.cfunctions import expm1, log1p

from lossdsl import ir
from lossdsl.errors import Span


@dataclass(frozen=True, slots=True)
class Rewrite:
    """One applied rewrite: which rule, where in the spec, and the forms before and after."""

    rule: str
    span: Span | None
    before: str
    after: str


@dataclass(frozen=True)
class Rule:
    name: str
    identity: str
    matches: Callable[[sympy.Basic], bool]
    apply: Callable[[sympy.Basic], sympy.Basic]


def _is_one_minus_sigmoid(e: sympy.Basic) -> bool:
    return isinstance(e, sympy.Add) and len(e.args) == 2 and sympy.S.One in e.args and any(
        isinstance(-a, ir.Sigmoid) for a in e.args
    )


def _one_minus_sigmoid(e: sympy.Basic) -> sympy.Basic:
    (term,) = [a for a in e.args if a != sympy.S.One]
    return ir.Sigmoid(-(-term).args[0])


def _is_log_of(cls: type) -> Callable[[sympy.Basic], bool]:
    return lambda e: isinstance(e, sympy.log) and isinstance(e.args[0], cls)


def _is_log_one_plus(e: sympy.Basic) -> bool:
    return isinstance(e, sympy.log) and isinstance(e.args[0], sympy.Add) and (
        sympy.S.One in e.args[0].args
    )


def _is_exp_minus_one(e: sympy.Basic) -> bool:
    return (
        isinstance(e, sympy.Add)
        and sympy.S.NegativeOne in e.args
        and any(isinstance(a, sympy.exp) for a in e.args)
    )


def _exp_minus_one(e: sympy.Basic) -> sympy.Basic:
    exp_term = next(a for a in e.args if isinstance(a, sympy.exp))
    rest = [a for a in e.args if a is not exp_term and a != sympy.S.NegativeOne]
    return expm1(exp_term.args[0]) + sympy.Add(*rest)


def _is_log_sum_exp(e: sympy.Basic) -> bool:
    return (
        isinstance(e, sympy.log)
        and isinstance(e.args[0], ir.ReduceSum)
        and isinstance(e.args[0].args[0], sympy.exp)
    )


# Applied in this order, each to a fixed point over the whole expression.
RULES = (
    Rule(
        "one_minus_sigmoid",
        "1 - sigmoid(x) = sigmoid(-x), without cancellation for large x",
        _is_one_minus_sigmoid,
        _one_minus_sigmoid,
    ),
    Rule(
        "log_sigmoid",
        "log(sigmoid(x)) = -softplus(-x), finite for every x",
        _is_log_of(ir.Sigmoid),
        lambda e: -ir.Softplus(-e.args[0].args[0]),
    ),
    Rule(
        "log_softmax",
        "log(softmax[C](x)) = log_softmax[C](x) = x - logsumexp[C](x)",
        _is_log_of(ir.Softmax),
        lambda e: ir.LogSoftmax(*e.args[0].args),
    ),
    Rule(
        "logsumexp",
        "log(sum[C](exp(x))) = logsumexp[C](x) = m + log(sum[C](exp(x - m))), m = max[C](x)",
        _is_log_sum_exp,
        lambda e: ir.LogSumExp(e.args[0].args[0].args[0], e.args[0].args[1]),
    ),
    Rule(
        "log1p",
        "log(1 + x) = log1p(x), accurate for small x",
        _is_log_one_plus,
        lambda e: log1p(e.args[0] - 1),
    ),
    Rule("expm1", "exp(x) - 1 = expm1(x), accurate for small x", _is_exp_minus_one, _exp_minus_one),
)


class _Rewriter:
    def __init__(self, loss: ir.LossIR) -> None:
        self.loss = loss
        self.applied: list[Rewrite] = []

    def span_of(self, expr: sympy.Basic) -> Span | None:
        return self.loss.spans.get(expr, self.loss.span)

    def record(self, rule: str, span: Span | None, before: sympy.Basic, after: sympy.Basic) -> None:
        self.applied.append(Rewrite(rule, span, _show(before), _show(after)))

    def run(self, expr: sympy.Basic) -> sympy.Basic:
        expr = self.binary_split(expr)
        for rule in RULES:
            expr = self.apply(rule, expr)
        return expr

    def apply(self, rule: Rule, expr: sympy.Basic) -> sympy.Basic:
        def rewrite(e: sympy.Basic) -> sympy.Basic:
            new = rule.apply(e)
            self.record(rule.name, self.span_of(e), e, new)
            return new

        for _ in range(8):  # a rewrite can expose another match of the same rule
            new = expr.replace(rule.matches, rewrite)
            if new == expr:
                break
            expr = new
        return expr

    # The Binary split: f(t) = t*f(1) + (1-t)*f(0) for t in {0, 1}, which turns
    # `log(t*p + (1-t)*(1-p))` into `t*log(p) + (1-t)*log(1-p)` for the rules above.
    def binary_split(self, expr: sympy.Basic) -> sympy.Basic:
        binaries = [
            symbol
            for info in self.loss.inputs
            if info.elem == "Binary"
            for symbol in self.loss.leaves_of(info.name)
        ]
        for t in binaries:
            expr = self.split_region(expr, t)
        return expr

    def split_region(self, expr: sympy.Basic, t: sympy.Symbol) -> sympy.Basic:
        """Split every elementwise region (the output, and each tensor op's argument) in which
        ``t`` sits inside a nonlinear function."""
        if isinstance(expr, ir.TensorOp):
            inner = self.split_region(expr.args[0], t)
            return expr.func(inner, *expr.args[1:])
        if not expr.args:
            return expr
        expr = expr.func(*(self.split_region(a, t) for a in expr.args))
        if not isinstance(expr, sympy.Expr) or not _nonlinear_in(expr, t):
            return expr
        one, zero = _subs_elementwise(expr, t, sympy.S.One), _subs_elementwise(expr, t, sympy.S.Zero)
        split = t * one + (1 - t) * zero
        self.record("binary_split", self.span_of(expr), expr, split)
        return split


def _outside_ops(expr: sympy.Basic) -> list[sympy.Basic]:
    """Subexpressions of ``expr`` not inside a tensor op (whose elements differ)."""
    found = [expr]
    if not isinstance(expr, ir.TensorOp):
        for arg in expr.args:
            found.extend(_outside_ops(arg))
    return found


def _nonlinear_in(expr: sympy.Expr, t: sympy.Symbol) -> bool:
    for node in _outside_ops(expr):
        is_function = isinstance(node, sympy.Function) and not isinstance(node, ir.TensorOp)
        is_power = isinstance(node, sympy.Pow) and not node.exp.is_Integer
        if (is_function or is_power or isinstance(node, sympy.Piecewise)) and node.has(t):
            inside_op = any(isinstance(op, ir.TensorOp) and op.has(t) for op in _outside_ops(node))
            if not inside_op:
                return True
    return False


def _subs_elementwise(expr: sympy.Basic, t: sympy.Symbol, value: sympy.Basic) -> sympy.Basic:
    if expr == t:
        return value
    if isinstance(expr, ir.TensorOp) or not expr.args:
        return expr
    return expr.func(*(_subs_elementwise(a, t, value) for a in expr.args))


def _show(expr: sympy.Basic) -> str:
    return str(expr).replace("|", "").replace("ReduceSum", "sum")


def rewrite(loss: ir.LossIR) -> tuple[ir.LossIR, list[Rewrite]]:
    """Apply the stability rewrites to a loss's output expression."""
    rewriter = _Rewriter(loss)
    output = rewriter.run(loss.output)
    return replace(loss, output=output), rewriter.applied


__all__ = ["RULES", "Rewrite", "rewrite"]
