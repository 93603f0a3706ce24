"""A small NumPy evaluator of the IR, for tests: an interpreter written independently of the
code generator, so the IR can be checked against hand computations without a backend.

Every value is an array over the loss's dims in canonical order (``LossIR.order``), with a
size-1 axis for each dim it does not vary along, so broadcasting by name is NumPy broadcasting.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import sympy
from sympy.codegen.cfunctions import expm1, log1p

from lossdsl import ir

Array = np.ndarray

_UNARY: dict[type, Callable[[Array], Array]] = {
    sympy.exp: np.exp,
    sympy.log: np.log,
    sympy.sin: np.sin,
    sympy.cos: np.cos,
    sympy.tanh: np.tanh,
    sympy.Abs: np.abs,
    sympy.erf: np.vectorize(math.erf, otypes=[float]),
    log1p: np.log1p,
    expm1: np.expm1,
    ir.Sigmoid: lambda x: 1.0 / (1.0 + np.exp(-x)),
    ir.Softplus: lambda x: np.logaddexp(0.0, x),
    ir.Relu: lambda x: np.maximum(x, 0.0),
    ir.Sign: np.sign,
    ir.Floor: np.floor,
    ir.Ceil: np.ceil,
    ir.Round: np.round,  # half to even, as the language documents
}
_COMPARE: dict[str, Callable[[Array, Array], Array]] = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}


class Evaluator:
    """Evaluate a :class:`~lossdsl.ir.LossIR` at given inputs and params."""

    def __init__(
        self, loss: ir.LossIR, inputs: Mapping[str, Any], params: Mapping[str, Any] | None = None
    ) -> None:
        self.loss = loss
        self.order = list(loss.order)
        self.sizes: dict[str, int] = {d: int(d) for d in self.order if d.isdigit()}
        self.env: dict[sympy.Symbol, Array] = {}
        for info in loss.inputs:
            value = np.asarray(inputs[info.name], dtype=float)
            self.sizes.update(zip(info.dims, value.shape, strict=True))
            self.env[loss.input_symbols[info.name]] = self.layout(value, info.dims)
        for symbol, (name, dim, position) in loss.components.items():
            whole = self.env[loss.input_symbols[name]]
            self.env[symbol] = np.take(whole, [position], axis=self.axis(dim))
        given = dict(params or {})
        for info in loss.params:
            value = given.get(info.name, info.default)
            array = np.asarray(value, dtype=float)
            dims = info.dims if array.ndim else ()
            self.env[loss.param_symbols[info.name]] = self.layout(array, dims)

    def axis(self, dim: str) -> int:
        return self.order.index(dim)

    def layout(self, value: Array, dims: tuple[str, ...]) -> Array:
        """An array whose axes are ``dims`` -> the canonical layout."""
        ranked = sorted(range(len(dims)), key=lambda i: self.axis(dims[i]))
        value = np.transpose(value, ranked)
        shape = [1] * len(self.order)
        for i, k in enumerate(ranked):
            shape[self.axis(dims[k])] = value.shape[i]
        return value.reshape(shape)

    def spread(self, value: Array, dims: tuple[str, ...]) -> Array:
        """Broadcast ``value`` to full size along ``dims``."""
        value = np.asarray(value, dtype=float).reshape(np.shape(value) or (1,) * len(self.order))
        shape = list(value.shape)
        for dim in dims:
            shape[self.axis(dim)] = self.sizes[dim]
        return np.broadcast_to(value, shape)

    def output(self) -> Any:
        """The loss's value: a float for a scalar loss, else an array over its output dims."""
        value = np.asarray(self.eval(self.loss.output), dtype=float)
        value = value.reshape(np.shape(value) or (1,) * len(self.order))
        dims = [d for d in self.order if d in ir.dims_of(self.loss.output)]
        if not dims:
            return float(value.reshape(-1)[0])
        keep = tuple(self.axis(d) for d in dims)
        squeeze = tuple(i for i in range(len(self.order)) if i not in keep)
        return self.spread(value, tuple(dims)).squeeze(axis=squeeze)

    def eval(self, expr: sympy.Basic) -> Any:
        if isinstance(expr, sympy.Symbol):
            if expr in self.env:
                return self.env[expr]
            if expr.name.startswith("n_"):
                return float(self.sizes[expr.name[2:]])
            raise KeyError(f"no value for symbol {expr}")
        if expr is sympy.true or expr is sympy.false:
            return bool(expr)
        if expr.is_Number:
            return float(expr)
        args = expr.args
        if isinstance(expr, sympy.Add):
            return sum((self.eval(a) for a in args[1:]), start=self.eval(args[0]))
        if isinstance(expr, sympy.Mul):
            result = self.eval(args[0])
            for a in args[1:]:
                result = result * self.eval(a)
            return result
        if isinstance(expr, sympy.Pow):
            return np.power(np.asarray(self.eval(args[0]), float), self.eval(args[1]))
        if isinstance(expr, sympy.Piecewise):
            result = np.nan
            for value, cond in reversed(args):
                result = np.where(self.eval(cond), self.eval(value), result)
            return result
        if isinstance(expr, sympy.core.relational.Relational):
            return _COMPARE[expr.rel_op](self.eval(args[0]), self.eval(args[1]))
        if isinstance(expr, sympy.And):
            return np.logical_and.reduce([self.eval(a) for a in args])
        if isinstance(expr, sympy.Or):
            return np.logical_or.reduce([self.eval(a) for a in args])
        if isinstance(expr, sympy.Not):
            return np.logical_not(self.eval(args[0]))
        if isinstance(expr, (sympy.Max, sympy.Min)):
            pick = np.maximum if isinstance(expr, sympy.Max) else np.minimum
            return pick.reduce(np.broadcast_arrays(*(self.eval(a) for a in args)))
        if isinstance(expr, ir.Clamp):
            x, lo, hi = (self.eval(a) for a in args)
            return np.minimum(np.maximum(x, lo), hi)
        if isinstance(expr, ir.Same):  # a tie mask: 1 where equal
            a, b = (np.asarray(self.eval(x), float) for x in args)
            return (a == b).astype(float)
        for cls, fn in _UNARY.items():
            if isinstance(expr, cls):
                return fn(np.asarray(self.eval(args[0]), float))
        if isinstance(expr, ir.TensorOp):
            return self.tensor_op(expr)
        raise NotImplementedError(f"ireval: no rule for {type(expr).__name__}")

    def tensor_op(self, expr: ir.TensorOp) -> Array:
        if isinstance(expr, ir.Gather):
            return self.gather(expr)
        if isinstance(expr, ir.OneHot):
            dim = str(expr.args[1].name)
            shape = [1] * len(self.order)
            shape[self.axis(dim)] = self.sizes[dim]
            positions = np.arange(self.sizes[dim]).reshape(shape)
            return (positions == self.eval(expr.args[0])).astype(float)
        dims = ir.dim_names(expr.args[1])
        axes = tuple(self.axis(d) for d in dims)
        x = self.spread(self.eval(expr.args[0]), dims)
        if isinstance(expr, ir.ReduceSum):
            return x.sum(axis=axes, keepdims=True)
        if isinstance(expr, ir.ReduceMin):  # before ReduceMax: it subclasses it
            return x.min(axis=axes, keepdims=True)
        if isinstance(expr, ir.ReduceMax):
            return x.max(axis=axes, keepdims=True)
        if isinstance(expr, ir.ReduceProd):
            return x.prod(axis=axes, keepdims=True)
        if isinstance(expr, ir.LogSumExp):
            top = x.max(axis=axes, keepdims=True)
            return top + np.log(np.exp(x - top).sum(axis=axes, keepdims=True))
        if isinstance(expr, ir.Norm):
            eps = self.eval(expr.args[2])
            return np.sqrt((x * x).sum(axis=axes, keepdims=True) + eps)
        if isinstance(expr, (ir.Softmax, ir.LogSoftmax)):
            shifted = x - x.max(axis=axes, keepdims=True)
            log_p = shifted - np.log(np.exp(shifted).sum(axis=axes, keepdims=True))
            return log_p if isinstance(expr, ir.LogSoftmax) else np.exp(log_p)
        raise NotImplementedError(f"ireval: no rule for {type(expr).__name__}")

    def gather(self, expr: ir.Gather) -> Array:
        dim = str(expr.args[2].name)
        axis = self.axis(dim)
        x = self.spread(self.eval(expr.args[0]), (dim,))
        index = np.asarray(self.eval(expr.args[1]))
        index = index.reshape(index.shape or (1,) * len(self.order))
        shape = list(np.broadcast_shapes((*x.shape[:axis], 1, *x.shape[axis + 1 :]), index.shape))
        index = np.broadcast_to(index, shape).astype(int)
        shape[axis] = x.shape[axis]
        return np.take_along_axis(np.broadcast_to(x, shape), index, axis=axis)


def evaluate(loss: ir.LossIR, inputs: Mapping[str, Any], **params: Any) -> Any:
    """The loss's value at ``inputs`` (NumPy arrays by input name) and ``params``."""
    return Evaluator(loss, inputs, params).output()
