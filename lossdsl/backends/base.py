"""The printer both backends share: SymPy's PythonCodePrinter with our nodes, dispatching on
the node class (``_print_X``) and differing per backend mostly in the lookup table ``FUNCTIONS``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import sympy
from sympy.printing.pycode import PythonCodePrinter

from lossdsl import ir
from lossdsl.codegen import Layout, py_name, size_name
from lossdsl.errors import BackendError, Span

# IR function class name -> the builtin's name in the language (for error messages).
_ELEMENTWISE = [
    "exp",
    "log",
    "log1p",
    "expm1",
    "sin",
    "cos",
    "tanh",
    "erf",
    "Abs",
    "sign",
    "Sign",
    "Floor",
    "Ceil",
    "Round",
    "Sigmoid",
    "Softplus",
    "Relu",
]


class TensorPrinter(PythonCodePrinter):
    """Prints IR expressions as array code over layout tensors (see lossdsl.codegen.Layout)."""

    backend: ClassVar[str] = ""
    # IR function name -> format string with {0}, {1}, ... for the printed arguments.
    FUNCTIONS: ClassVar[dict[str, str]] = {}
    # Reductions: IR class name -> format with {arg} and {axes} (a tuple literal).
    REDUCTIONS: ClassVar[dict[str, str]] = {}
    WHERE = ""
    LOGICAL: ClassVar[dict[str, str]] = {"And": "", "Or": "", "Not": ""}
    ASTYPE = ""  # format with {x}: cast a boolean tensor to the computation's dtype
    SCALAR = "{x}"  # format with {x}: a Python number as an array of the computation's dtype

    def __init__(
        self, layout: Layout, names: dict[sympy.Symbol, str], spans: dict[Any, Span] | None = None
    ) -> None:
        super().__init__({"fully_qualified_modules": True, "allow_unknown_functions": False})
        self.layout = layout
        self.names = names
        self.spans = spans or {}
        self.temp_dims: dict[sympy.Basic, frozenset[str]] = {}  # dims of CSE temporaries

    def doprint(self, expr: Any, assign_to: Any = None) -> str:
        return super().doprint(expr, assign_to)

    # Constant subexpressions (sqrt(2), log(3), ...) become float literals.
    def _print(self, expr: Any, **kwargs: Any) -> str:
        if isinstance(expr, sympy.Expr) and expr.is_number and not expr.is_Integer:
            value = float(expr.evalf(17))
            return (
                repr(value) if value == value and abs(value) != float("inf") else self._inf(value)
            )
        return super()._print(expr, **kwargs)  # type: ignore[no-any-return]

    def _inf(self, value: float) -> str:
        return (
            "float('nan')" if value != value else ("float('inf')" if value > 0 else "-float('inf')")
        )

    # Leaves print as the generated code's variable names.
    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        if expr in self.names:
            return self.names[expr]
        name = ir.leaf_name(expr)
        return (
            size_name(name[2:]) if name.startswith("n_") and "|" not in expr.name else py_name(name)
        )

    # Sizes are Python ints in generated code: the argument of an array function that depends
    # on sizes alone (`exp(size(N))`) is made an array of the loss's dtype first.
    def _arg(self, expr: Any) -> str:
        return self.as_array(expr, self._print(expr))

    def as_array(self, expr: Any, printed: str, template: str | None = None) -> str:
        """``printed`` (the code of ``expr``), as an array (``template``, by default
        ``SCALAR``) if ``expr`` depends on sizes alone."""
        symbols = getattr(expr, "free_symbols", set())
        if symbols and all(_is_size(s) for s in symbols):
            return (template or self.SCALAR).format(x=printed)
        return printed

    # The generic fallback names the backend and the node, never prints Python that fails later.
    def _print_Function(self, expr: sympy.Function) -> str:
        name = type(expr).__name__
        if name in self.FUNCTIONS:
            return self.FUNCTIONS[name].format(*(self._arg(a) for a in expr.args))
        raise BackendError(
            self.spans.get(expr),
            f"the {self.backend} backend cannot print `{name}`",
            "report this; meanwhile rewrite the expression with other builtins",
        )

    # A sum starts with a positive term: `b - a` is one kernel, `-a + b` a negation and an add.
    def _as_ordered_terms(self, expr: Any, order: Any = None) -> list[Any]:
        terms = list(super()._as_ordered_terms(expr, order=order))
        if isinstance(expr, sympy.Add) and terms[0].could_extract_minus_sign():
            lead = next((t for t in terms if not t.could_extract_minus_sign()), None)
            if lead is not None:
                terms.remove(lead)
                terms.insert(0, lead)
        return terms

    # Smaller factors first: Python multiplies left to right, so `(g / d) * x` with `g`, `d`
    # of shape [N, 1] and `x` of [N, D] costs one full-size kernel where `x * g / d` costs two.
    def _print_Mul(self, expr: sympy.Mul) -> str:
        ranks = [len(ir.dims_in(f, self.temp_dims)) for f in expr.args]
        top = max(ranks)
        small = [f for f, r in zip(expr.args, ranks, strict=True) if r < top]
        large = [f for f, r in zip(expr.args, ranks, strict=True) if r == top]
        if len([f for f in small if f != -1]) < 2 or not large:
            return super()._print_Mul(expr)  # type: ignore[no-any-return]
        precedence = sympy.printing.precedence.PRECEDENCE["Mul"]
        head = self.parenthesize(sympy.Mul(*small, evaluate=False), precedence)
        return f"{head}*{self.parenthesize(sympy.Mul(*large), precedence)}"

    # Powers: roots as sqrt/rsqrt, reciprocals as division.
    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        base, exp = expr.args
        b = self.parenthesize(base, sympy.printing.precedence.PRECEDENCE["Pow"])
        if exp == sympy.S.Half:
            return self.FUNCTIONS["sqrt"].format(self._arg(base))
        if exp == -sympy.S.Half:
            return self.FUNCTIONS["rsqrt"].format(self._arg(base))
        if exp == -1:
            return f"1 / {b}"
        e = self.parenthesize(exp, sympy.printing.precedence.PRECEDENCE["Pow"])
        return f"{b}**{e}"

    # Booleans combine elementwise, not with Python's short-circuit `and`.
    def _print_And(self, expr: sympy.And) -> str:
        return self._fold(self.LOGICAL["And"], expr.args)

    def _print_Or(self, expr: sympy.Or) -> str:
        return self._fold(self.LOGICAL["Or"], expr.args)

    def _print_Not(self, expr: sympy.Not) -> str:
        return self.LOGICAL["Not"].format(self._print(expr.args[0]))

    def _fold(self, template: str, args: tuple[Any, ...]) -> str:
        printed = self._print(args[0])
        for arg in args[1:]:
            printed = template.format(printed, self._print(arg))
        return printed

    # Conditions select with `where`; two constant branches are arithmetic on the mask so the
    # result keeps the inputs' dtype and device.
    def _print_Piecewise(self, expr: sympy.Piecewise) -> str:
        (value, cond), rest = expr.args[0], expr.args[1:]
        if cond is sympy.true or not rest:
            return self._print(value)
        other = rest[0][0] if len(rest) == 1 and rest[0][1] is sympy.true else None
        orelse = sympy.Piecewise(*rest, evaluate=False) if other is None else other
        if value.is_number and orelse.is_number:
            mask = self.ASTYPE.format(x=self._print(cond))
            if orelse == 0:
                return mask if value == 1 else f"{self._print(value)} * {mask}"
            return f"({self._print(orelse)} + {self._print(value - orelse)} * {mask})"
        # A branch of sizes alone (`size(N)`, `8 / size(N)`) is a Python number: as an array of
        # the loss's dtype, so that `where` neither gives integers nor the default float dtype.
        return self.WHERE.format(self._print(cond), self._arg(value), self._arg(orelse))

    # The inner `where` of the double-where guard: `u` where the branch is selected, else 1.
    def _print_Safe(self, expr: ir.Safe) -> str:
        u, cond = expr.args
        return self.WHERE.format(self._print(cond), self._print(u), "1.0")

    # A tie mask: both sides printed as they are, compared exactly.
    def _print_Same(self, expr: ir.Same) -> str:
        return self.ASTYPE.format(x=self._print(sympy.Eq(*expr.args, evaluate=False)))

    # `a`, computed so that it reads `g` (`a` is a name: codegen.program makes it one).
    def _print_Tied(self, expr: ir.Tied) -> str:
        a, g = (self._print(arg) for arg in expr.args)
        return self.WHERE.format(f"{g} == {g}", a, a)

    # sigmoid and softplus through one exp(-|u|) (compiled mode, codegen._share_exp).
    def _print_ExpSigmoid(self, expr: ir.ExpSigmoid) -> str:
        return self._print(expr.written())

    def _print_ExpSigmoidPair(self, expr: ir.ExpSigmoidPair) -> str:  # a quotient
        return f"({self._print(expr.written())})"

    def _print_ExpSoftplus(self, expr: ir.ExpSoftplus) -> str:  # a sum: parenthesized
        return f"({self._print(expr.written())})"

    # Heaviside(x, h) from max/min derivatives: ties split by h (1/2 by default, like torch).
    def _print_Heaviside(self, expr: sympy.Heaviside) -> str:
        x = expr.args[0]
        h0 = expr.args[1] if len(expr.args) > 1 else sympy.S.Half
        if h0 == sympy.S.Half:  # (sign(x) + 1) / 2: two cheap kernels, where `where` is slow
            return f"(({self.FUNCTIONS['sign'].format(self._print(x))} + 1) * 0.5)"
        return self._print(
            sympy.Piecewise((1, x > 0), (h0, sympy.Eq(x, 0)), (0, True), evaluate=False)
        )

    # Elementwise max/min against a number clamps; between tensors it is maximum/minimum.
    def _print_Max(self, expr: sympy.Max) -> str:
        return self._minmax(expr, "max")

    def _print_Min(self, expr: sympy.Min) -> str:
        return self._minmax(expr, "min")

    def _minmax(self, expr: Any, which: str) -> str:
        numbers = [a for a in expr.args if a.is_number]
        tensors = [self._arg(a) for a in expr.args if not a.is_number]
        printed = tensors[0]
        for other in tensors[1:]:
            printed = self.FUNCTIONS[f"{which}imum"].format(printed, other)
        if numbers:
            bound = self._print(numbers[0])
            printed = self.FUNCTIONS[f"clamp_{which}"].format(printed, bound)
        return printed

    def _print_Clamp(self, expr: ir.Clamp) -> str:
        x, lo, hi = self._arg(expr.args[0]), self._print(expr.args[1]), self._print(expr.args[2])
        return self.FUNCTIONS["Clamp"].format(x, lo, hi)

    # Tensor ops: axes come from the layout, every reduction keeps its dims (size 1).
    def _reduce(self, kind: str, expr: Any) -> str:
        arg, dims = expr.args[0], expr.args[1]
        return self._reduction(kind, self._print(arg), arg, dims, expr)

    def _reduction(self, kind: str, printed: str, arg: Any, dims: Any, result: sympy.Basic) -> str:
        """``REDUCTIONS[kind]`` of ``printed`` (the printed ``arg``, or a function of it) over
        ``dims``, giving ``result``."""
        axes = self.layout.axes(ir.dim_names(dims))
        return self.REDUCTIONS[kind].format(arg=printed, axes=repr(axes))

    def _print_ReduceSum(self, expr: ir.ReduceSum) -> str:
        return self._reduce("sum", expr)

    def _print_ReduceMax(self, expr: ir.ReduceMax) -> str:
        return self._reduce("max", expr)

    def _print_ReduceMin(self, expr: ir.ReduceMin) -> str:
        return self._reduce("min", expr)

    def _print_ReduceProd(self, expr: ir.ReduceProd) -> str:
        return self._reduce("prod", expr)

    def _print_LogSumExp(self, expr: ir.LogSumExp) -> str:
        return self._reduce("logsumexp", expr)

    # norm[D](x, eps) = sqrt(sum[D](x^2) + eps), printed directly: its argument may be a CSE
    # temporary, whose dims the IR cannot see.
    def _print_Norm(self, expr: ir.Norm) -> str:
        arg, dims, eps = expr.args
        x = self.parenthesize(arg, sympy.printing.precedence.PRECEDENCE["Mul"])
        squares = self._reduction("sum", f"{x} * {x}", arg, dims, expr)
        inside = squares if eps == 0 else f"{squares} + {self._print(eps)}"
        return self.FUNCTIONS["sqrt"].format(inside)

    def _print_Softmax(self, expr: ir.Softmax) -> str:
        return self.REDUCTIONS["softmax"].format(
            arg=self._print(expr.args[0]), axes=self.layout.axis(ir.dim_names(expr.args[1])[0])
        )

    def _print_LogSoftmax(self, expr: ir.LogSoftmax) -> str:
        return self.REDUCTIONS["log_softmax"].format(
            arg=self._print(expr.args[0]), axes=self.layout.axis(ir.dim_names(expr.args[1])[0])
        )

    def _print_Gather(self, expr: ir.Gather) -> str:
        return self.REDUCTIONS["gather"].format(
            arg=self._print(expr.args[0]),
            index=self._print(expr.args[1]),
            axes=self.layout.axis(str(expr.args[2].name)),
        )

    def _print_OneHot(self, expr: ir.OneHot) -> str:
        dim = str(expr.args[1].name)
        positions = self.REDUCTIONS["arange"].format(
            size=size_name(dim), shape=self.layout.shape(frozenset({dim}))
        )
        return self.ASTYPE.format(x=f"({positions} == {self._print(expr.args[0])})")


def _is_size(symbol: sympy.Symbol) -> bool:
    return symbol.name.startswith("n_") and "|" not in symbol.name and bool(symbol.is_integer)


def install_table(cls: type[TensorPrinter]) -> type[TensorPrinter]:
    """Route SymPy's own elementwise functions (exp, log, ...) through the lookup table."""
    for name in _ELEMENTWISE:
        if name in cls.FUNCTIONS:
            setattr(cls, f"_print_{name}", TensorPrinter._print_Function)
    return cls
