"""IR expressions printed back in the language's own notation, for diagnostics and `--explain`:
leaves by their spec names, ``sum[N](...)``, ``norm[D](a - b)``, ``x^2``, ``where(c, a, b)``,
and conditions as equations (``abs(pred - target) == delta``).
"""

from __future__ import annotations

from typing import Any

import sympy
from sympy.core.symbol import Str
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.str import StrPrinter

from lossdsl import ir

# IR function class name -> the builtin's name in the language.
_FUNCTIONS = {
    "Abs": "abs",
    "Sign": "sign",
    "sign": "sign",
    "Floor": "floor",
    "Ceil": "ceil",
    "Round": "round",
    "Sigmoid": "sigmoid",
    "Softplus": "softplus",
    "Relu": "relu",
    "Clamp": "clamp",
    "Max": "max",
    "Min": "min",
    "Heaviside": "step",
}
_REDUCTIONS = {
    "ReduceSum": "sum",
    "ReduceMax": "max",
    "ReduceMin": "min",
    "ReduceProd": "prod",
    "LogSumExp": "logsumexp",
    "Softmax": "softmax",
    "LogSoftmax": "log_softmax",
}
_RELATIONS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!="}
# Conditions longer than this are printed with the spec's binding names instead.
SHORT = 48


class Notation(StrPrinter):
    """A SymPy printer for IR expressions in `.loss` syntax.

    Args:
        names: binding expression -> its name in the spec (``LossIR.names``); subexpressions
            equal to a binding print as its name (the whole expression never does).
        leaves: leaf symbol -> name, for symbols whose spec name is not ``ir.leaf_name``
            (unpacked components such as ``px1``).
        ranks: leaf symbol -> declaration order: ``abs(pred - target)``, not ``abs(target -
            pred)`` as SymPy may store it.
    """

    def __init__(
        self,
        names: dict[sympy.Basic, str] | None = None,
        leaves: dict[sympy.Symbol, str] | None = None,
        ranks: dict[sympy.Symbol, int] | None = None,
    ) -> None:
        super().__init__({"order": "none"})
        self.names = names or {}
        self.leaves = leaves or {}
        self.ranks = ranks or {}
        self._top: Any = None

    def doprint(self, expr: Any) -> str:
        self._top = expr
        return str(super().doprint(expr))

    def _print(self, expr: Any, **kwargs: Any) -> str:
        if expr is not self._top and expr in self.names:
            return self.names[expr]
        return str(super()._print(expr, **kwargs))

    # Leaves: the name in the spec; dim sizes as `size(D)`.
    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        if expr in self.leaves:
            return self.leaves[expr]
        if "|" not in expr.name and expr.name.startswith("n_") and expr.is_integer:
            return f"size({expr.name[2:]})"
        return ir.leaf_name(expr)

    def _print_Float(self, expr: sympy.Float) -> str:
        return repr(float(expr))

    def _print_Rational(self, expr: sympy.Rational) -> str:
        value = float(expr)
        return repr(value) if expr.q in (2, 4, 5, 8, 10) else f"{expr.p}/{expr.q}"

    # `^` for powers, `sqrt` for square roots, `1/x` for reciprocals.
    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        base, exp = expr.args
        if exp == sympy.S.Half:
            return f"sqrt({self._print(base)})"
        if exp.is_negative and exp.is_number:
            inner = sympy.Pow(base, -exp, evaluate=False) if exp != -1 else base
            return f"1/{self.parenthesize(inner, PRECEDENCE['Pow'], strict=True)}"
        b = self.parenthesize(base, PRECEDENCE["Pow"])
        e = self.parenthesize(exp, PRECEDENCE["Pow"])
        return f"{b}^{e}"

    def parenthesize(self, item: Any, level: int, strict: bool = False) -> str:
        if item is not self._top and item in self.names:
            return self.names[item]
        return str(super().parenthesize(item, level, strict))

    # Sums: positive terms first, numbers last among them, then ` - ` and the negative terms.
    def _print_Add(self, expr: sympy.Add, order: Any = None) -> str:
        terms = self._named_parts(list(sympy.Add.make_args(expr)), sympy.Add)
        negative = [-t for t in terms if _negative(t)]
        positive = [t for t in terms if not _negative(t)]
        if len(positive) > 1:
            positive.sort(key=lambda t: bool(t.is_number))
        text = " + ".join(self.parenthesize(t, PRECEDENCE["Add"]) for t in positive)
        for term in negative:
            piece = self.parenthesize(term, PRECEDENCE["Add"], strict=True)
            text = f"{text} - {piece}" if text else f"-{piece}"
        return text

    # Products as `a*b/(c*d)`; `mean[N](x)` for `sum[N](x) / size(N)`, as specs write it.
    def _print_Mul(self, expr: sympy.Mul) -> str:
        factors = self._named_parts(list(sympy.Mul.make_args(expr)), sympy.Mul)
        texts: list[str] = []
        found = _as_mean(factors)
        if found is not None:
            factors, total = found
            texts.append(f"mean[{', '.join(total.dims)}]({self._print(total.arg)})")
        sign, numerator, denominator = "", [], []
        for factor in factors:
            if factor.is_Number and factor.is_negative:
                sign, factor = ("" if sign else "-"), -factor
            if factor == 1:
                continue
            if factor.is_Pow and factor.exp.is_number and factor.exp.is_negative:
                denominator.append(factor.base if factor.exp == -1 else 1 / factor)
            else:
                numerator.append(factor)
        level = PRECEDENCE["Mul"]
        texts = [self.parenthesize(f, level) for f in numerator] + texts
        text = "*".join(texts) or "1"
        if denominator:
            under = "*".join(self.parenthesize(f, level) for f in denominator)
            paren = len(denominator) > 1 or precedence(denominator[0]) <= level
            text += f"/({under})" if paren and not under.startswith("(") else f"/{under}"
        return sign + text

    def _named_parts(self, args: list[sympy.Basic], cls: type) -> list[sympy.Basic]:
        """Args with the sub-sums (sub-products) that are bindings replaced by the names:
        SymPy flattens `union + eps` into the terms of `union` and `eps`."""
        named: list[tuple[sympy.Basic, str]] = [
            (e, n) for e, n in self.names.items() if type(e) is cls
        ]
        signs = (1, -1) if cls is sympy.Add else (1,)
        for expr, name in sorted(named, key=lambda item: -len(item[0].args)):
            for sign in signs:
                rest = list(args)
                if len(expr.args) < len(args) and all(_take(rest, sign * a) for a in expr.args):
                    args = [*rest, sign * sympy.Symbol(name)]
                    break
        return args

    def _print_Function(self, expr: sympy.Function) -> str:
        name = type(expr).__name__
        args = ", ".join(self._print(a) for a in expr.args)
        return f"{_FUNCTIONS.get(name, name)}({args})"

    def _print_Abs(self, expr: sympy.Abs) -> str:
        arg = expr.args[0]
        ranked = arg.free_symbols & self.ranks.keys()
        first = min(ranked, key=lambda s: self.ranks[s], default=None)
        if first is not None and arg.coeff(first).could_extract_minus_sign():
            arg = -arg
        return f"abs({self._print(arg)})"

    # Max and Min are binary in the language: nest the extra arguments.
    def _print_Max(self, expr: sympy.Basic) -> str:
        return self._minmax("max", list(expr.args))

    def _print_Min(self, expr: sympy.Basic) -> str:
        return self._minmax("min", list(expr.args))

    def _minmax(self, name: str, args: list[sympy.Basic]) -> str:
        ordered = sorted(args, key=lambda a: (a.is_number, sympy.default_sort_key(a)))
        text = self._print(ordered[-1])
        for arg in reversed(ordered[:-1]):
            text = f"{name}({self._print(arg)}, {text})"
        return text

    def _print_Piecewise(self, expr: sympy.Piecewise) -> str:
        (value, cond), rest = expr.args[0], expr.args[1:]
        if cond is sympy.true or not rest:
            return self._print(value)
        other = sympy.Piecewise(*rest, evaluate=False) if len(rest) > 1 else rest[0][0]
        return f"where({self._print(cond)}, {self._print(value)}, {self._print(other)})"

    def _print_Relational(self, expr: sympy.core.relational.Relational) -> str:
        op = _RELATIONS.get(expr.rel_op, expr.rel_op)
        return f"{self._print(expr.lhs)} {op} {self._print(expr.rhs)}"

    def _print_And(self, expr: sympy.And) -> str:
        return " and ".join(self.parenthesize(a, PRECEDENCE["And"]) for a in expr.args)

    def _print_Or(self, expr: sympy.Or) -> str:
        return " or ".join(self.parenthesize(a, PRECEDENCE["Or"]) for a in expr.args)

    def _print_Not(self, expr: sympy.Not) -> str:
        return f"not {self.parenthesize(expr.args[0], PRECEDENCE['Not'])}"

    def _print_BooleanTrue(self, expr: Any) -> str:
        return "true"

    def _print_BooleanFalse(self, expr: Any) -> str:
        return "false"

    # Tensor ops: `op[dims](x)` like the language.
    def _print_TensorOp(self, expr: ir.TensorOp) -> str:
        name = _REDUCTIONS.get(type(expr).__name__, type(expr).__name__)
        dims = ", ".join(ir.dim_names(expr.args[1]))
        return f"{name}[{dims}]({self._print(expr.args[0])})"

    def _print_Norm(self, expr: ir.Norm) -> str:
        arg, dims, eps = expr.args
        extra = f", eps={self._print(eps)}" if eps != 0 else ""
        return f"norm[{', '.join(ir.dim_names(dims))}]({self._print(arg)}{extra})"

    def _print_Gather(self, expr: ir.Gather) -> str:
        x = expr.args[0]
        base = self._print(x)
        if not (isinstance(x, (sympy.Symbol, sympy.Function)) or x in self.names):
            base = f"({base})"
        return f"{base}[{self._print(expr.args[1])}]"

    def _print_OneHot(self, expr: ir.OneHot) -> str:
        return f"onehot({self._print(expr.args[0])})"

    def _print_Str(self, expr: Str) -> str:
        return str(expr.name)


# Reductions and normalisations all print as `op[dims](x)`.
for _cls in (ir.ReduceSum, ir.ReduceMax, ir.ReduceMin, ir.ReduceProd, ir.LogSumExp):
    setattr(Notation, f"_print_{_cls.__name__}", Notation._print_TensorOp)
for _cls in (ir.Softmax, ir.LogSoftmax):
    setattr(Notation, f"_print_{_cls.__name__}", Notation._print_TensorOp)


def _as_mean(factors: list[sympy.Basic]) -> tuple[list[sympy.Basic], ir.ReduceSum] | None:
    """The factors of ``c * sum[D](x) / size(D)`` split into the others and the sum."""
    for k, factor in enumerate(factors):
        if not isinstance(factor, ir.ReduceSum):
            continue
        sizes = [sympy.Pow(ir.size(d), -1) for d in factor.dims]
        if all(s in factors for s in sizes):
            return [f for j, f in enumerate(factors) if j != k and f not in sizes], factor
    return None


class Namer:
    """Prints IR expressions of one loss in its own names."""

    def __init__(self, loss: ir.LossIR) -> None:
        self.loss = loss
        self.leaves = component_names(loss)
        self.inputs = _input_order(loss)

    def show(self, expr: sympy.Basic, short: int = SHORT, whole: bool = False) -> str:
        """The expression in full, or with binding names if the full text is long (``whole``:
        the expression itself may print as its name)."""
        text = Notation(leaves=self.leaves, ranks=self.inputs).doprint(expr)
        if len(text) > short and self.loss.names:
            printer = Notation(self.loss.names, self.leaves, self.inputs)
            if whole and expr in self.loss.names:
                return self.loss.names[expr]
            return printer.doprint(expr)
        return text

    def equation(self, g: sympy.Expr) -> str:
        """The set ``g == 0`` as a readable equation: input terms left, the rest right."""
        lhs, rhs = self.sides(g)
        return f"{self.show(lhs, whole=True)} == {self.show(rhs, whole=True)}"

    def sides(self, g: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
        """``(lhs, rhs)`` with ``lhs - rhs`` proportional to ``g``: the terms that depend on
        inputs on the left (the earliest declared input first), without a leading minus."""
        g = _drop_factors(g)
        terms = sympy.Add.make_args(g)
        varying = [t for t in terms if self.rank(t) < len(self.inputs)]
        fixed = [t for t in terms if t not in varying]
        if varying and fixed:
            lhs, rhs = sympy.Add(*varying), -sympy.Add(*fixed)
        else:
            lhs = sympy.Add(*(t for t in terms if not _negative(t)))
            rhs = -sympy.Add(*(t for t in terms if _negative(t)))
        if lhs == 0 or (_negative(lhs) and not _negative(-lhs)):
            lhs, rhs = -lhs, -rhs
        if rhs != 0 and self.rank(rhs) < self.rank(lhs):
            lhs, rhs = rhs, lhs
        return lhs, rhs

    def rank(self, expr: sympy.Basic) -> int:
        """The position of the first declared input ``expr`` depends on (len: none)."""
        found = [self.inputs[s] for s in expr.free_symbols if s in self.inputs]
        return min(found, default=len(self.inputs))


def _take(items: list[sympy.Basic], item: sympy.Basic) -> bool:
    if item in items:
        items.remove(item)
        return True
    return False


def _drop_factors(g: sympy.Expr) -> sympy.Expr:
    """``g`` without numeric and nonzero constant factors (they do not move ``g == 0``), and
    expanded where that makes it shorter (``tau*r - (tau - 1)*r`` is ``r``)."""
    if sympy.count_ops(g) < 24:
        expanded = sympy.expand(g)
        if sympy.count_ops(expanded) < sympy.count_ops(g):
            g = expanded
    _, g = g.as_content_primitive()
    if isinstance(g, sympy.Mul):
        kept = [f for f in g.args if not (f.is_number and f.is_nonzero)]
        g = sympy.Mul(*kept)
    return g


def _negative(term: sympy.Expr) -> bool:
    return term.could_extract_minus_sign()


def component_names(loss: ir.LossIR) -> dict[sympy.Symbol, str]:
    """Unpacked components by the name they were bound to (`px1`), else `pred[0]`."""
    names = {}
    for symbol, (base, _, position) in loss.components.items():
        span = loss.spans.get(symbol)
        text = span.text if span is not None else ""
        names[symbol] = text if text.isidentifier() else f"{base}[{position}]"
    return names


def _input_order(loss: ir.LossIR) -> dict[sympy.Symbol, int]:
    order = {}
    for k, info in enumerate(loss.inputs):
        for symbol in loss.leaves_of(info.name):
            order[symbol] = k
    return order


def show(expr: sympy.Basic) -> str:
    """An IR expression in the language's notation (no binding names)."""
    return Notation().doprint(expr)


__all__ = ["Namer", "Notation", "component_names", "show"]
