"""Domain hazards (LANGUAGE.md section 5): where a loss's value or gradient can be infinite or
NaN on its declared domain. Judged on the stable IR (so `log(sigmoid(x))`, rewritten to
`-softplus(-x)`, is not one) with the bounds the declared types give (:mod:`lossdsl.bounds`),
narrowed inside each `if` branch by its condition; reported at the source span.
"""

from __future__ import annotations

import sympy
from sympy.codegen.cfunctions import expm1, log1p

from lossdsl import ir
from lossdsl.analysis import Diagnostic
from lossdsl.bounds import Bounds, loss_bounds
from lossdsl.errors import Span
from lossdsl.notation import Namer
from lossdsl.scalar import norm_like

EXP_MAX_FLOAT32 = 88.72  # log(float32 max); 709.78 for float64


def nearest_spans(loss: ir.LossIR) -> dict[sympy.Basic, Span | None]:
    """Every node's own span, or else the span of the nearest enclosing node that has one."""
    found: dict[sympy.Basic, Span | None] = {}

    def walk(node: sympy.Basic, inherited: Span | None) -> None:
        if node in found:
            return
        here = loss.spans.get(node, inherited)
        found[node] = here
        for arg in node.args:
            walk(arg, here)

    walk(loss.output, loss.span)
    return found


class HazardFinder:
    """Walks one loss's stable IR, collecting a warning per hazard (deduplicated)."""

    def __init__(self, loss: ir.LossIR, namer: Namer) -> None:
        self.loss = loss
        self.namer = namer
        self.spans = nearest_spans(loss)
        self.found: dict[tuple[str, str, str], Diagnostic] = {}
        self.visited: set[tuple[sympy.Basic, int]] = set()
        self.squared = _only_squared(loss.output)

    def run(self) -> list[Diagnostic]:
        self.walk(self.loss.output, loss_bounds(self.loss))
        return sorted(self.found.values(), key=_position)

    def walk(self, expr: sympy.Basic, bounds: Bounds) -> None:
        if (expr, id(bounds)) in self.visited or not expr.args:
            return
        self.visited.add((expr, id(bounds)))
        if isinstance(expr, sympy.Piecewise):
            earlier: list[sympy.Basic] = []
            for value, cond in expr.args:
                here = sympy.And(cond, *(sympy.Not(c) for c in earlier))
                self.walk(value, bounds.assuming(here))
                earlier.append(cond)
            return
        self.check(expr, bounds)
        for arg in expr.args:
            if isinstance(arg, sympy.Expr):
                self.walk(arg, bounds)

    def check(self, e: sympy.Basic, bounds: Bounds) -> None:
        if isinstance(e, (sympy.log, log1p)):
            self.log(e, bounds)
        elif isinstance(e, sympy.Pow):
            self.power(e, bounds)
        elif isinstance(e, ir.Norm):
            self.norm(e, e.args[0], bounds.positive(e.args[2]))
        elif isinstance(e, (sympy.exp, expm1)):
            self.overflow(e, bounds)

    def warn(self, kind: str, node: sympy.Basic, message: str, help: str, condition: str) -> None:
        span = self.loss.spans.get(node) or self.spans.get(node)
        key = (kind, condition, span.location if span else "")
        self.found.setdefault(key, Diagnostic("warning", kind, span, message, help, condition))

    # log(u) at u <= 0: -inf, and NaN below.
    def log(self, e: sympy.Basic, bounds: Bounds) -> None:
        arg = e.args[0] if isinstance(e, sympy.log) else 1 + e.args[0]
        if bounds.positive(arg):
            return
        shown = self.namer.show(e)
        if bounds.nonnegative(arg):
            where = self.namer.equation(arg)
            message = f"`{shown}` is -inf where `{where}`, and its gradient is infinite there"
        else:
            where = f"{self.namer.show(arg)} <= 0"
            message = f"`{shown}` is NaN or -inf where `{where}`"
        help = (
            "keep the argument positive, e.g. `log(max(x, 1e-12))`, or compute the log "
            "from logits (`logsigmoid(x)`, `log_softmax[C](x)`)"
        )
        self.warn("log", e, message, help, where)

    def power(self, e: sympy.Pow, bounds: Bounds) -> None:
        base, exp = e.args
        if exp.is_negative or bounds.of(exp).negative:
            self.division(e, base, bounds)
        if exp.is_integer:
            return
        norm = norm_like(e)
        if norm is not None:
            self.norm(e, norm[0], False)
        elif not bounds.nonnegative(base):
            where = f"{self.namer.show(base)} < 0"
            message = f"`{self.namer.show(e)}` is NaN where `{where}` (a fractional power)"
            help = "make the base nonnegative (`relu(x)^p`, `abs(x)^p`) or use an integer power"
            self.warn("power", e, message, help, where)
        elif not bounds.positive(base) and bounds.of(exp).lo < 1 and not exp.is_negative:
            where = self.namer.equation(base)
            message = f"`{self.namer.show(e)}` has an infinite derivative where `{where}`"
            help = "add a small constant to the base, e.g. `sqrt(x + 1e-12)`"
            self.warn("sqrt", e, message, help, where)

    def division(self, e: sympy.Basic, denominator: sympy.Basic, bounds: Bounds) -> None:
        if bounds.nonzero(denominator):
            return
        # the caret goes under the denominator, or the division if it is a bare input
        node = e if isinstance(denominator, sympy.Symbol) else denominator
        where = self.namer.equation(denominator)
        shown = self.namer.show(denominator)
        message = f"division by `{shown}`, which is 0 where `{where}`"
        help = "keep the denominator away from 0, e.g. add a small positive constant"
        self.warn("division", node, message, help, where)

    # norm[D](u) at u == 0: the square root's derivative is infinite there.
    def norm(self, e: sympy.Basic, u: sympy.Expr, eps_positive: bool) -> None:
        if eps_positive or e in self.squared:
            return
        where = self.namer.equation(u)
        shown = self.namer.show(e)
        message = (
            f"`{shown}` is not differentiable where `{where}`: its square root has an "
            "infinite derivative at 0"
        )
        fix = f"`{shown[:-1]}, eps=1e-12)`" if isinstance(e, ir.Norm) else "`sqrt(... + 1e-12)`"
        help = f"add a small eps inside the root: {fix}; the generated gradient there is 0"
        self.warn("norm", e, message, help, where)

    def overflow(self, e: sympy.Basic, bounds: Bounds) -> None:
        if bounds.of(e.args[0]).hi <= EXP_MAX_FLOAT32:
            return
        where = f"{self.namer.show(e.args[0])} > {EXP_MAX_FLOAT32}"
        message = f"`{self.namer.show(e)}` overflows to inf where `{where}` (float32)"
        help = (
            "bound the argument (`exp(min(x, 80))`) or use a stable form: `softplus`, "
            "`sigmoid`, `logsumexp`, `softmax`"
        )
        self.warn("overflow", e, message, help, where)


def _only_squared(expr: sympy.Basic) -> set[sympy.Basic]:
    """Norms that appear only raised to even powers (smooth: `norm(u)^2 == sum(u^2)`)."""
    squared: set[sympy.Basic] = set()
    other: set[sympy.Basic] = set()
    for node in sympy.preorder_traversal(expr):
        for arg in node.args:
            if isinstance(arg, ir.Norm) or norm_like(arg) is not None:
                even = isinstance(node, sympy.Pow) and node.exp.is_even and node.exp.is_positive
                (squared if even else other).add(arg)
    return squared - other


def _position(d: Diagnostic) -> tuple[int, int, str]:
    return (d.span.line, d.span.column, d.kind) if d.span else (0, 0, d.kind)


def find_hazards(stable: ir.LossIR, namer: Namer) -> list[Diagnostic]:
    """The hazard warnings of a loss's stable IR."""
    return HazardFinder(stable, namer).run()


__all__ = ["find_hazards", "nearest_spans"]
