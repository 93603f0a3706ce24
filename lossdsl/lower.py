"""Checked AST -> IR: one SymPy expression per loss (see :mod:`lossdsl.ir`)."""

from __future__ import annotations

from collections.abc import Callable

import sympy
from sympy.codegen.cfunctions import expm1, log1p
from sympy.core.symbol import Str

from lossdsl import checked as c
from lossdsl import ir
from lossdsl.conditions import compare
from lossdsl.errors import ResolveError, ShapeError

_ARITHMETIC: dict[str, Callable[..., sympy.Expr]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
    "neg": lambda a: -a,
    "lt": lambda a, b: compare(sympy.Lt, a, b),
    "le": lambda a, b: compare(sympy.Le, a, b),
    "gt": lambda a, b: compare(sympy.Gt, a, b),
    "ge": lambda a, b: compare(sympy.Ge, a, b),
    "eq": lambda a, b: compare(sympy.Eq, a, b),
    "ne": lambda a, b: compare(sympy.Ne, a, b),
    "and": sympy.And,
    "or": sympy.Or,
    "not": sympy.Not,
    "if": lambda cond, a, b: sympy.Piecewise((a, cond), (b, True)),
}

# Builtins by name (lossdsl.builtins) -> IR constructors.
_ELEMENTWISE: dict[str, Callable[..., sympy.Expr]] = {
    "abs": sympy.Abs,
    "sign": ir.Sign,
    "exp": sympy.exp,
    "log": sympy.log,
    "log1p": log1p,
    "expm1": expm1,
    "sqrt": sympy.sqrt,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tanh": sympy.tanh,
    "erf": sympy.erf,
    "sigmoid": ir.Sigmoid,
    "logsigmoid": lambda x: -ir.Softplus(-x),  # log(sigmoid(x)) = -softplus(-x)
    "softplus": ir.Softplus,
    "relu": ir.Relu,
    "floor": ir.Floor,
    "ceil": ir.Ceil,
    "round": ir.Round,
    "max": sympy.Max,
    "min": sympy.Min,
    "clamp": ir.Clamp,
}

_REDUCTIONS: dict[str, Callable[[sympy.Expr, tuple[str, ...]], sympy.Expr]] = {
    "sum": ir.ReduceSum.make,
    "mean": lambda x, dims: ir.ReduceSum.make(x, dims) / ir.count(dims),
    "max": ir.ReduceMax.make,
    "min": ir.ReduceMin.make,
    "prod": ir.ReduceProd.make,
    "logsumexp": ir.LogSumExp.make,
}


def constant(value: float) -> sympy.Expr:
    """Integers stay exact (so ``x^2`` is a square, not a float power)."""
    if value in (float("inf"), float("-inf")):
        return sympy.oo if value > 0 else -sympy.oo
    return sympy.Integer(int(value)) if float(value).is_integer() else sympy.Float(value)


class Lowering:
    def __init__(self, loss: c.CheckedLoss) -> None:
        self.loss = loss
        self.memo: dict[int, sympy.Basic] = {}
        self.result = ir.LossIR(
            name=loss.name,
            doc=loss.doc,
            output=sympy.S.Zero,
            output_dims=loss.output.type.dims,
            order=loss.dims,
            inputs=loss.inputs,
            params=loss.params,
            input_symbols={i.name: ir.leaf(i.name, i.dims, i.elem) for i in loss.inputs},
            param_symbols={p.name: ir.leaf(p.name, p.dims, p.elem) for p in loss.params},
            span=loss.span,
        )
        self.elems = {i.name: i.elem for i in loss.inputs}

    def lower(self) -> ir.LossIR:
        self.result.output = sympy.sympify(self.node(self.loss.output))
        return self.result

    def node(self, node: c.Node) -> sympy.Basic:
        key = id(node)
        if key not in self.memo:
            expr = getattr(self, "lower_" + type(node).__name__)(node)
            if not isinstance(node, c.Constant) and _not_finite(expr):
                raise ResolveError(
                    node.span,
                    f"`{node.span.text}` is undefined",
                    "fix the constant arithmetic (e.g. `log(0)`, `1 / 0`)",
                )
            self.memo[key] = expr
            self.result.spans.setdefault(expr, node.span)
            if key in self.loss.names and not isinstance(expr, (sympy.Number, sympy.Symbol)):
                self.result.names.setdefault(expr, self.loss.names[key])
        return self.memo[key]

    def lower_InputRef(self, node: c.InputRef) -> sympy.Basic:
        return self.result.input_symbols[node.name]

    def lower_ParamRef(self, node: c.ParamRef) -> sympy.Basic:
        return self.result.param_symbols[node.name]

    def lower_SizeRef(self, node: c.SizeRef) -> sympy.Basic:
        return ir.size(node.dim)

    def lower_Constant(self, node: c.Constant) -> sympy.Basic:
        if node.type.kind is c.Kind.BOOL:
            return sympy.true if node.value else sympy.false
        return constant(node.value)

    def lower_Apply(self, node: c.Apply) -> sympy.Basic:
        args = [self.node(a) for a in node.args]
        build = _ARITHMETIC.get(node.op) or _ELEMENTWISE[node.op]
        return build(*args)

    def lower_Reduce(self, node: c.Reduce) -> sympy.Basic:
        arg = self.node(node.arg)
        if node.op == "norm":
            eps = self.node(node.eps) if node.eps is not None else sympy.S.Zero
            return ir.Norm(arg, ir.dims_tuple(node.dims), eps)
        return _REDUCTIONS[node.op](arg, node.dims)

    def lower_Normalize(self, node: c.Normalize) -> sympy.Basic:
        cls = ir.Softmax if node.op == "softmax" else ir.LogSoftmax
        return cls(self.node(node.arg), ir.dims_tuple((node.dim,)))

    def lower_Gather(self, node: c.Gather) -> sympy.Basic:
        return ir.Gather(self.node(node.base), self.node(node.index), Str(node.dim))

    def lower_OneHot(self, node: c.OneHot) -> sympy.Basic:
        return ir.OneHot(self.node(node.index), Str(node.dim))

    def lower_Component(self, node: c.Component) -> sympy.Basic:
        base = self.node(node.base)
        for op in sympy.preorder_traversal(base):
            if isinstance(op, ir.TensorOp) and node.dim in ir.dims_touched(op):
                raise ShapeError(
                    node.span,
                    f"cannot unpack along `{node.dim}` a value that mixes elements along it",
                    "unpack the input first, then combine the components",
                )
        replace = {}
        for symbol in base.free_symbols:
            if node.dim in ir.dims_of(symbol):
                replace[symbol] = self.component(symbol, node.dim, node.position)
        return base.xreplace(replace)

    def component(self, symbol: sympy.Symbol, dim: str, position: int) -> sympy.Symbol:
        name = ir.leaf_name(symbol)
        if name not in self.elems:
            raise ShapeError(
                self.loss.span, f"cannot unpack param `{name}` along `{dim}`", "unpack an input"
            )
        dims = tuple(d for d in self.loss.dims if d in ir.dims_of(symbol) and d != dim)
        part = ir.leaf(f"{name}__{position}", dims, self.elems[name])
        self.result.components[part] = (name, dim, position)
        return part


def _not_finite(expr: sympy.Basic) -> bool:
    """Undefined constants (`log(0)`, `1/0`); `inf` itself is a number of the language."""
    return isinstance(expr, sympy.Expr) and expr.is_number and expr.has(sympy.zoo, sympy.nan)


def lower(loss: c.CheckedLoss) -> ir.LossIR:
    """Lower a checked loss to its IR."""
    return Lowering(loss).lower()
