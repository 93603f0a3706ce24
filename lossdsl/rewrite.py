"""Stability rewrites (LANGUAGE.md section 6): value-preserving on the declared domains, each
a small named entry with the identity it uses, each application recorded once with the span of
the source it rewrote (new nodes inherit it, so rewrites after the Binary split point at the
spec too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import sympy
from sympy.codegen.cfunctions import expm1, log1p

from lossdsl import ir
from lossdsl.errors import Span
from lossdsl.notation import Namer


@dataclass(frozen=True, slots=True)
class Rewrite:
    """One applied rewrite: which rule, where in the spec, and the forms before and after."""

    rule: str
    span: Span | None
    before: str
    after: str
    identity: str = ""


@dataclass(frozen=True)
class Rule:
    name: str
    identity: str
    matches: Callable[[sympy.Basic], bool]
    apply: Callable[[sympy.Basic], sympy.Basic]


# --- matchers --------------------------------------------------------------------------------


def _is_one_minus_sigmoid(e: sympy.Basic) -> bool:
    return (
        isinstance(e, sympy.Add)
        and len(e.args) == 2
        and sympy.S.One in e.args
        and any(isinstance(-a, ir.Sigmoid) for a in e.args)
    )


def _one_minus_sigmoid(e: sympy.Basic) -> sympy.Basic:
    (term,) = [a for a in e.args if a != sympy.S.One]
    return ir.Sigmoid(-(-term).args[0])


def _is_naive_sigmoid(e: sympy.Basic) -> bool:
    """``(a + b*exp(u))^-k`` for numbers ``a, b, k > 0`` (``1/(1 + exp(-x))`` the commonest)."""
    return (
        isinstance(e, sympy.Pow)
        and bool(e.exp.is_number and e.exp.is_negative)
        and _scaled_exp_sum(e.base) is not None
    )


def _scaled_exp_sum(e: sympy.Basic) -> tuple[sympy.Basic, sympy.Basic, sympy.Basic] | None:
    """``(a, b, u)`` where ``e`` is ``a + b*exp(u)`` for numbers ``a, b > 0`` (once products
    of sums are multiplied out: ``(exp(u) + 0.25)*exp(6) + 0.25``, what ``exp(6 + log(0.25 +
    exp(u)))`` becomes), else None."""
    if not isinstance(e, sympy.Add):
        return None
    if any(isinstance(t, sympy.Mul) and any(f.is_Add for f in t.args) for t in e.args):
        e = sympy.expand_mul(e)
    terms = sympy.Add.make_args(e)
    numbers = [t for t in terms if t.is_number]
    (term, *more) = [t for t in terms if not t.is_number] or [None]
    if term is None or more or not numbers:
        return None
    factors = sympy.Mul.make_args(term)
    exps = [f for f in factors if not f.is_number]
    a, b = (
        _numeral(x) for x in (sympy.Add(*numbers), sympy.Mul(*(f for f in factors if f.is_number)))
    )
    if len(exps) == 1 and isinstance(exps[0], sympy.exp) and a.is_positive and b.is_positive:
        return a, b, exps[0].args[0]
    return None


def _numeral(x: sympy.Basic) -> sympy.Basic:
    """A rational as it is, any other number as one float (``0.25 + 0.25*exp(6)``, which
    common subexpressions would otherwise split into named parts)."""
    return x if x.is_Rational else sympy.Float(x.evalf(17))


def _naive_sigmoid(e: sympy.Basic) -> sympy.Basic:
    """``(a + b*exp(u))^-k = a^-k * sigmoid(log(a/b) - u)^k``: finite, and with a finite
    derivative, where ``exp(u)`` overflows (``exp(u) / (a + exp(u))^2`` is inf/inf there)."""
    a, b, u = _scaled_exp_sum(e.base)  # type: ignore[misc]
    k = -e.exp
    return a ** (-k) * ir.Sigmoid(sympy.log(a / b) - u) ** k


def _is_log_of(cls: type) -> Callable[[sympy.Basic], bool]:
    return lambda e: isinstance(e, sympy.log) and isinstance(e.args[0], cls)


def _is_softplus(e: sympy.Basic) -> bool:
    """``log1p(exp(u))``, or ``log(a + b*exp(u))`` for numbers ``a, b > 0``."""
    if isinstance(e, log1p):
        return isinstance(e.args[0], sympy.exp)
    return isinstance(e, sympy.log) and _scaled_exp_sum(e.args[0]) is not None


def _softplus(e: sympy.Basic) -> sympy.Basic:
    """``log(a + b*exp(u)) = log(a) + softplus(u + log(b/a))``: finite where ``exp(u)``
    overflows, and so is its derivative (``b*exp(u)/(a + b*exp(u))`` is inf/inf there)."""
    if isinstance(e, log1p):
        return ir.Softplus(e.args[0].args[0])
    a, b, u = _scaled_exp_sum(e.args[0])  # type: ignore[misc]
    return sympy.log(a) + ir.Softplus(u + sympy.log(b / a))


def _is_log_one_plus(e: sympy.Basic) -> bool:
    return (
        isinstance(e, sympy.log)
        and isinstance(e.args[0], sympy.Add)
        and (sympy.S.One in e.args[0].args)
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


# Applied bottom-up, all of them, until none matches.
RULES = (
    Rule(
        "one_minus_sigmoid",
        "1 - sigmoid(x) = sigmoid(-x), without cancellation for large x",
        _is_one_minus_sigmoid,
        _one_minus_sigmoid,
    ),
    Rule(
        "sigmoid",
        "1/(1 + exp(-x)) = sigmoid(x), which never overflows; for numbers a, b, k > 0, "
        "(a + b*exp(-x))^-k = (sigmoid(x + log(a/b)) / a)^k",
        _is_naive_sigmoid,
        _naive_sigmoid,
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
        "softplus",
        "log(1 + exp(x)) = softplus(x) = max(x, 0) + log1p(exp(-abs(x))), which never overflows; "
        "for numbers a, b > 0, log(a + b*exp(x)) = log(a) + softplus(x + log(b/a))",
        _is_softplus,
        _softplus,
    ),
    Rule(
        "log1p",
        "log(1 + x) = log1p(x), accurate for small x",
        _is_log_one_plus,
        lambda e: log1p(e.args[0] - 1),
    ),
    Rule("expm1", "exp(x) - 1 = expm1(x), accurate for small x", _is_exp_minus_one, _exp_minus_one),
)
BINARY_SPLIT = (
    "f(t*a + (1 - t)*b) = t*f(a) + (1 - t)*f(b) for t in {0, 1}, computed as "
    "where(t == 1, f(a), f(b)) so that the branch not taken never turns 0 * inf into NaN"
)


class _Rewriter:
    def __init__(self, loss: ir.LossIR) -> None:
        self.loss = loss
        self.spans: dict[sympy.Basic, Span] = dict(loss.spans)
        self.applied: dict[tuple[str, str, str, str], Rewrite] = {}
        self.namer = Namer(loss)

    def record(
        self, rule: str, identity: str, span: Span | None, before: sympy.Basic, after: sympy.Basic
    ) -> None:
        shown = (self.namer.show(before, short=60), self.namer.show(after, short=60))
        key = (rule, span.location if span else "", *shown)
        self.applied.setdefault(key, Rewrite(rule, span, *shown, identity))
        if span is not None:
            for node in sympy.preorder_traversal(after):
                self.spans.setdefault(node, span)

    def run(self, expr: sympy.Basic) -> sympy.Basic:
        expr = self.binary_split(expr, self.loss.span)
        for _ in range(8):  # a rewrite can expose another match
            new = self.rules(expr, self.loss.span, {})
            if new == expr:
                break
            expr = new
        return expr

    def rules(self, expr: sympy.Basic, span: Span | None, memo: dict) -> sympy.Basic:
        """One bottom-up pass of every rule, with the span of the nearest spanned node."""
        if (expr, span) in memo:
            return memo[(expr, span)]  # type: ignore[no-any-return]
        here = self.spans.get(expr, span)
        new = expr
        if expr.args and not isinstance(expr, sympy.Symbol):
            new = ir.rebuilt(expr, [self.rules(a, here, memo) for a in expr.args])
        for rule in RULES:
            if rule.matches(new):
                out = rule.apply(new)
                self.record(rule.name, rule.identity, here, new, out)
                new = out
                break
        memo[(expr, span)] = new
        return new

    # The Binary split: for t in {0, 1}, f(t) = where(t == 1, f(1), f(0)), which turns
    # `log(t*p + (1-t)*(1-p))` into `where(t == 1, log(p), log(1 - p))` for the rules above.
    def binary_split(self, expr: sympy.Basic, span: Span | None) -> sympy.Basic:
        """Split each elementwise region (the output, and each tensor op's argument) as a
        whole by every Binary input that needs it."""
        here = self.spans.get(expr, span)
        expr = self.inner_regions(expr, here)
        for t in self.binaries():
            if isinstance(expr, sympy.Expr) and _needs_split(expr, t):
                split = sympy.Piecewise(
                    (self.substitute(expr, t, sympy.S.One, here), sympy.Eq(t, 1)),
                    (self.substitute(expr, t, sympy.S.Zero, here), True),
                )
                self.record("binary_split", BINARY_SPLIT, here, expr, split)
                expr = split
        return expr

    def substitute(
        self, expr: sympy.Basic, t: sympy.Symbol, value: sympy.Basic, span: Span | None
    ) -> sympy.Basic:
        """``expr`` with ``t`` set to ``value`` outside tensor ops; each new node keeps the span
        of the node it came from."""
        if expr == t:
            return value
        if isinstance(expr, ir.TensorOp) or not expr.args:
            return expr
        here = self.spans.get(expr, span)
        new = expr.func(*(self.substitute(a, t, value, here) for a in expr.args))
        if here is not None:
            self.spans.setdefault(new, here)
        return new

    def inner_regions(self, expr: sympy.Basic, span: Span | None) -> sympy.Basic:
        """``expr`` with the argument of every tensor op in its region split."""
        here = self.spans.get(expr, span)
        if isinstance(expr, ir.TensorOp):
            return expr.func(self.binary_split(expr.args[0], here), *expr.args[1:])
        if not expr.args or isinstance(expr, sympy.Symbol):
            return expr
        return ir.rebuilt(expr, [self.inner_regions(a, here) for a in expr.args])

    def binaries(self) -> list[sympy.Symbol]:
        return [
            symbol
            for info in self.loss.inputs
            if info.elem == "Binary"
            for symbol in self.loss.leaves_of(info.name)
        ]


def _outside_ops(expr: sympy.Basic) -> list[sympy.Basic]:
    """Subexpressions of ``expr`` not inside a tensor op (whose elements differ)."""
    found = [expr]
    if not isinstance(expr, ir.TensorOp):
        for arg in expr.args:
            found.extend(_outside_ops(arg))
    return found


def _needs_split(expr: sympy.Expr, t: sympy.Symbol) -> bool:
    """``t`` sits inside a nonlinear function, or multiplies a factor that can be infinite
    (``t*log(p)`` is NaN at ``t == 0, p == 0`` where the select is finite)."""
    for node in _outside_ops(expr):
        if not _has_outside(node, t):
            continue
        is_function = isinstance(node, sympy.Function) and not isinstance(node, ir.TensorOp)
        is_power = isinstance(node, sympy.Pow) and not node.exp.is_Integer
        if is_function or is_power or isinstance(node, sympy.Piecewise):
            return True
        if isinstance(node, sympy.Mul) and any(_can_blow_up(f) for f in node.args):
            return True
    return False


def _has_outside(expr: sympy.Basic, t: sympy.Symbol) -> bool:
    return any(node == t for node in _outside_ops(expr))


def _can_blow_up(expr: sympy.Basic) -> bool:
    for node in _outside_ops(expr):
        if isinstance(node, (sympy.log, log1p)):
            return True
        if isinstance(node, sympy.Pow) and not (node.exp.is_Integer and node.exp > 0):
            return not node.base.is_positive
    return False


def rewrite(loss: ir.LossIR) -> tuple[ir.LossIR, list[Rewrite]]:
    """Apply the stability rewrites to a loss's output expression.

    Returns:
        The stable IR (its ``spans`` extended to the nodes the rewrites made) and the rewrites
        applied, each once per place in the spec.
    """
    rewriter = _Rewriter(loss)
    output = rewriter.run(loss.output)
    return replace(loss, output=output, spans=rewriter.spans), list(rewriter.applied.values())


__all__ = ["BINARY_SPLIT", "RULES", "Rewrite", "Rule", "rewrite"]
