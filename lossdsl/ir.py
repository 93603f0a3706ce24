"""The IR: SymPy expressions over one Symbol per input (its element type's assumptions), plus a
small set of custom SymPy Function classes for what SymPy lacks.

A leaf symbol's dims are part of its name, ``"logits|N,C"``, so :func:`dims_of` is a pure
function of an expression and two losses can never confuse their symbols. Tensor operations
(reductions, normalisations, gathers, one-hots) carry their dims as ``Tuple(Str(...))`` args
and know their own derivatives in both modes (:meth:`TensorOp.vjp`, :meth:`TensorOp.jvp`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache

import sympy
from sympy import Function, Piecewise, S, Symbol, Tuple
from sympy.core.symbol import Str

from lossdsl.checked import InputInfo, ParamInfo
from lossdsl.conditions import as_condition
from lossdsl.errors import Span

# Elementwise functions SymPy lacks are IR nodes too; they live in lossdsl.functions.
from lossdsl.functions import (  # noqa: F401 - re-exported
    Ceil,
    Clamp,
    ExpSigmoid,
    ExpSigmoidPair,
    ExpSoftplus,
    Floor,
    Relu,
    Round,
    Safe,
    Same,
    Sigmoid,
    Sign,
    Softplus,
    Tied,
)

# --- leaves --------------------------------------------------------------------------------

ASSUMPTIONS = {
    "Real": {"real": True},
    "Positive": {"positive": True},
    "NonNegative": {"nonnegative": True},
    "Prob": {"nonnegative": True},
    "Binary": {"integer": True, "nonnegative": True},
    "Index": {"integer": True, "nonnegative": True},
}


def _named(name: str, dims: Sequence[str]) -> str:
    """A symbol's name that carries its dims (`x|N,C`), as :func:`dims_in` reads them."""
    return f"{name}|{','.join(dims)}" if dims else name


def leaf(name: str, dims: tuple[str, ...], elem: str = "Real") -> Symbol:
    """The symbol of an input, param, component or intermediate with these dims."""
    return Symbol(_named(name, dims), **ASSUMPTIONS[elem])


def leaf_name(symbol: Symbol) -> str:
    return symbol.name.split("|", 1)[0]


def size(dim: str) -> sympy.Expr:
    """``size(D)``: a literal dim is its number, a named one a positive integer symbol."""
    return (
        sympy.Integer(int(dim))
        if dim.isdigit()
        else Symbol(f"n_{dim}", positive=True, integer=True)
    )


def dims_tuple(dims: tuple[str, ...] | frozenset[str]) -> Tuple:
    return Tuple(*(Str(d) for d in sorted(dims)))


def dim_names(t: Tuple) -> tuple[str, ...]:
    return tuple(str(d.name) for d in t.args)


@lru_cache(maxsize=65536)
def dims_of(expr: sympy.Basic) -> frozenset[str]:
    """The dims an expression varies along (broadcasting aligns them by name)."""
    return dims_in(expr, {})


def dims_in(expr: sympy.Basic, known: Mapping[sympy.Basic, frozenset[str]]) -> frozenset[str]:
    """:func:`dims_of` where some symbols (CSE temporaries) have dims given in ``known``."""
    if expr in known:
        return known[expr]
    if isinstance(expr, Symbol):
        return frozenset(expr.name.split("|", 1)[1].split(",")) if "|" in expr.name else frozenset()
    if isinstance(expr, TensorOp):
        return expr.result_dims([dims_in(a, known) for a in expr.args])
    if isinstance(expr, (Str, Tuple)) and not expr.free_symbols:
        return frozenset()
    found: frozenset[str] = frozenset()
    for arg in expr.args:
        found |= dims_in(arg, known)
    return found


# --- tensor operations ---------------------------------------------------------------------

# Tensor ops simplify themselves on construction using the dims in their arguments' symbol
# names. CSE rebuilds expressions over temporaries whose names carry no dims, so it turns that
# off while it works.
_SIMPLIFY: ContextVar[bool] = ContextVar("lossdsl_simplify_tensor_ops", default=True)


@contextmanager
def frozen() -> Iterator[None]:
    """Build tensor ops as given, without construction-time simplification."""
    token = _SIMPLIFY.set(False)
    try:
        yield
    finally:
        _SIMPLIFY.reset(token)


def rebuilt(expr: sympy.Basic, args: Sequence[sympy.Basic]) -> sympy.Basic:
    """``expr`` with new arguments; ``expr`` itself where none changed (rebuilding re-evaluates:
    a ``Max`` of GIoU's box corners compares its arguments pairwise, about 0.3 s in all)."""
    if all(new is old for new, old in zip(args, expr.args, strict=True)):
        return expr
    return expr.func(*args)


class TensorOp(Function):
    """A node that mixes elements along dims. Subclasses define the result's dims and the
    cotangent (vjp) and tangent (jvp) rules used by :mod:`lossdsl.derive`. Every value in a
    loss is real, so tensor ops are too (SymPy's Max and comparisons need to know)."""

    is_real = True

    def _eval_derivative(self, s: sympy.Basic) -> sympy.Expr | None:
        """Only derive.py differentiates through tensor ops; to SymPy they are opaque (their
        dims arguments have no derivative)."""
        return S.Zero if s not in self.free_symbols else None

    def result_dims(self, arg_dims: list[frozenset[str]]) -> frozenset[str]:
        """The dims of the result, given the dims of each argument."""
        raise NotImplementedError(type(self).__name__)

    def vjp(self, cot: sympy.Expr) -> sympy.Expr:
        """The cotangent of this op's first argument, given the cotangent of its result."""
        raise NotImplementedError(f"no derivative rule for `{type(self).__name__}`")

    def jvp(self, tangent: sympy.Expr) -> sympy.Expr:
        """The tangent of this op's result, given the tangent of its first argument."""
        raise NotImplementedError(f"no derivative rule for `{type(self).__name__}`")


class OverDims(TensorOp):
    """An op of an argument over some of its dims, which it removes: args start (arg,
    Tuple(Str dims))."""

    @property
    def arg(self) -> sympy.Expr:
        return self.args[0]  # type: ignore[no-any-return]

    @property
    def dims(self) -> tuple[str, ...]:
        return dim_names(self.args[1])

    def result_dims(self, arg_dims: list[frozenset[str]]) -> frozenset[str]:
        return arg_dims[0] - set(self.dims)


class Reduction(OverDims):
    """``op[dims](arg)``: args are (arg, Tuple(Str dims))."""

    nargs = 2

    @classmethod
    def make(cls, arg: sympy.Expr, dims: tuple[str, ...] | frozenset[str]) -> sympy.Expr:
        if not dims:
            return arg
        return cls(arg, dims_tuple(dims))


def _sum_of_onehot(arg: sympy.Expr, dims: tuple[str, ...]) -> sympy.Expr | None:
    """sum[C](onehot(t) * x) = x[t]: a one-hot selects, it need not be materialised."""
    factors = arg.args if isinstance(arg, sympy.Mul) else (arg,)
    for factor in factors:
        if isinstance(factor, OneHot) and str(factor.args[1].name) in dims:
            dim = str(factor.args[1].name)
            rest = sympy.Mul(*(f for f in factors if f is not factor))
            picked = Gather(rest, factor.args[0], factor.args[1])
            others = tuple(d for d in dims if d != dim)
            return ReduceSum.make(picked, others)
    return None


def count(dims: tuple[str, ...]) -> sympy.Expr:
    return sympy.Mul(*(size(d) for d in dims))


def _missing(arg: sympy.Expr, dims: Tuple) -> tuple[tuple[str, ...], tuple[str, ...]]:
    names = dim_names(dims)
    if not _SIMPLIFY.get():
        return names, ()
    present = dims_of(arg)
    return tuple(d for d in names if d in present), tuple(d for d in names if d not in present)


class ReduceSum(Reduction):
    @classmethod
    def eval(cls, arg: sympy.Expr, dims: Tuple) -> sympy.Expr | None:
        present, missing = _missing(arg, dims)
        if missing:  # summing a value that does not vary along a dim multiplies it by the size
            return count(missing) * ReduceSum.make(arg, present)
        if arg == 0 and _SIMPLIFY.get():
            return S.Zero
        return _sum_of_onehot(arg, present) if _SIMPLIFY.get() else None

    def vjp(self, cot: sympy.Expr) -> sympy.Expr:
        return cot

    def jvp(self, tangent: sympy.Expr) -> sympy.Expr:
        return ReduceSum.make(tangent, self.dims)


class ReduceMax(Reduction):
    """Max over dims; its derivative splits evenly among tied maxima (like ``torch.amax``)."""

    @classmethod
    def eval(cls, arg: sympy.Expr, dims: Tuple) -> sympy.Expr | None:
        present, missing = _missing(arg, dims)
        if missing:
            return ReduceMax.make(arg, present)
        return None

    def mask(self) -> sympy.Expr:
        hit = Same(self.arg, self)
        return hit / ReduceSum.make(hit, self.dims)

    def vjp(self, cot: sympy.Expr) -> sympy.Expr:
        return cot * self.mask()

    def jvp(self, tangent: sympy.Expr) -> sympy.Expr:
        return ReduceSum.make(self.mask() * tangent, self.dims)


class ReduceMin(ReduceMax):
    @classmethod
    def eval(cls, arg: sympy.Expr, dims: Tuple) -> sympy.Expr | None:
        present, missing = _missing(arg, dims)
        if missing:
            return ReduceMin.make(arg, present)
        return None


class ReduceProd(Reduction):
    @classmethod
    def eval(cls, arg: sympy.Expr, dims: Tuple) -> sympy.Expr | None:
        present, missing = _missing(arg, dims)
        if missing:
            return ReduceProd.make(arg, present) ** count(missing)
        return None

    def vjp(self, cot: sympy.Expr) -> sympy.Expr:
        return cot * self / self.arg

    def jvp(self, tangent: sympy.Expr) -> sympy.Expr:
        return self * ReduceSum.make(tangent / self.arg, self.dims)


class LogSumExp(Reduction):
    @classmethod
    def eval(cls, arg: sympy.Expr, dims: Tuple) -> sympy.Expr | None:
        present, missing = _missing(arg, dims)
        if missing:
            return LogSumExp.make(arg, present) + sympy.log(count(missing))
        return None

    def weights(self) -> sympy.Expr:
        """exp(x - logsumexp(x)): the softmax over the reduced dims."""
        if len(self.dims) == 1:
            return Softmax(self.arg, self.args[1])
        return sympy.exp(self.arg - self)

    def vjp(self, cot: sympy.Expr) -> sympy.Expr:
        return cot * self.weights()

    def jvp(self, tangent: sympy.Expr) -> sympy.Expr:
        return ReduceSum.make(self.weights() * tangent, self.dims)


class Norm(OverDims):
    """``sqrt(sum[dims](x^2) + eps)``. At ``x == 0`` with ``eps == 0`` the gradient is the
    subgradient 0 (documented in docs/language.md)."""

    nargs = 3

    @classmethod
    def eval(cls, arg: sympy.Expr, dims: Tuple, eps: sympy.Expr) -> sympy.Expr | None:
        if not dims.args:  # over no dims (the norm of a scalar): |x|, or sqrt(x^2 + eps)
            return sympy.Abs(arg) if eps == 0 else sympy.sqrt(arg**2 + eps)
        present, missing = _missing(arg, dims)
        if not missing:
            return None
        # A value constant along a dim is counted once per position: sqrt(n * x^2 + eps).
        if present:
            return Norm(sympy.sqrt(count(missing)) * arg, dims_tuple(present), eps)
        if eps == 0:
            return sympy.sqrt(count(missing)) * sympy.Abs(arg)
        return sympy.sqrt(count(missing) * arg**2 + eps)

    def _unit(self, numerator: sympy.Expr) -> sympy.Expr:
        if self.args[2].is_positive:
            return numerator / self
        # The guard multiplies the numerator from outside: it varies only along the kept dims.
        return numerator * Piecewise((S.Zero, sympy.Eq(self, 0)), (1 / self, True))

    def vjp(self, cot: sympy.Expr) -> sympy.Expr:
        return self._unit(cot * self.arg)

    def jvp(self, tangent: sympy.Expr) -> sympy.Expr:
        return self._unit(ReduceSum.make(self.arg * tangent, self.dims))

    def _eval_is_nonnegative(self) -> bool:
        return True

    def _eval_is_real(self) -> bool:
        return True


class Softmax(TensorOp):
    nargs = 2

    @classmethod
    def eval(cls, arg: sympy.Expr, dims: Tuple) -> sympy.Expr | None:
        _, missing = _missing(arg, dims)
        # Over a dim the argument does not vary along, softmax is uniform: 1 / size.
        return 1 / count(missing) if missing else None

    def result_dims(self, arg_dims: list[frozenset[str]]) -> frozenset[str]:
        return arg_dims[0]

    @property
    def dims(self) -> tuple[str, ...]:
        return dim_names(self.args[1])

    def vjp(self, cot: sympy.Expr) -> sympy.Expr:
        return self * (cot - ReduceSum.make(cot * self, self.dims))

    def jvp(self, tangent: sympy.Expr) -> sympy.Expr:
        return self * (tangent - ReduceSum.make(self * tangent, self.dims))

    def _eval_is_positive(self) -> bool:
        return True


class LogSoftmax(TensorOp):
    nargs = 2

    @classmethod
    def eval(cls, arg: sympy.Expr, dims: Tuple) -> sympy.Expr | None:
        _, missing = _missing(arg, dims)
        return -sympy.log(count(missing)) if missing else None  # log(1 / size), as above

    def result_dims(self, arg_dims: list[frozenset[str]]) -> frozenset[str]:
        return arg_dims[0]

    @property
    def dims(self) -> tuple[str, ...]:
        return dim_names(self.args[1])

    def vjp(self, cot: sympy.Expr) -> sympy.Expr:
        return cot - Softmax(*self.args) * ReduceSum.make(cot, self.dims)

    def jvp(self, tangent: sympy.Expr) -> sympy.Expr:
        return tangent - ReduceSum.make(Softmax(*self.args) * tangent, self.dims)

    def _eval_is_real(self) -> bool:
        return True


class Gather(TensorOp):
    """``x[t]``: args are (x, t, Str(dim)); the cotangent scatters through a one-hot."""

    nargs = 3

    @property
    def dim(self) -> str:
        return str(self.args[2].name)

    def result_dims(self, arg_dims: list[frozenset[str]]) -> frozenset[str]:
        return (arg_dims[0] - {self.dim}) | arg_dims[1]

    def vjp(self, cot: sympy.Expr) -> sympy.Expr:
        return cot * OneHot(self.args[1], self.args[2])

    def jvp(self, tangent: sympy.Expr) -> sympy.Expr:
        return Gather(tangent, self.args[1], self.args[2])

    @classmethod
    def eval(cls, x: sympy.Expr, t: sympy.Expr, dim: Str) -> sympy.Expr | None:
        if _SIMPLIFY.get() and str(dim.name) not in dims_of(x):  # same value at every class
            return x
        return None


class OneHot(TensorOp):
    """``onehot(t)``: 1.0 where the position along ``dim`` equals ``t``. Args (t, Str(dim))."""

    nargs = 2

    def result_dims(self, arg_dims: list[frozenset[str]]) -> frozenset[str]:
        return arg_dims[0] | {str(self.args[1].name)}

    def _eval_is_nonnegative(self) -> bool:
        return True

    def _eval_is_integer(self) -> bool:
        return True


def dims_touched(op: TensorOp) -> frozenset[str]:
    """The dims an op mixes elements along."""
    if isinstance(op, (Gather, OneHot)):
        return frozenset({str(op.args[-1].name)})
    return frozenset(dim_names(op.args[1]))


# --- SymPy's piecewise folding stops at the tensor ops it is not an identity for -----------

# A Piecewise condition that contains a Piecewise is folded (`ExprCondPair` calls
# `piecewise_fold`) through every function around it: f(where(c, a, b)) = where(c, f(a), f(b)).
# That holds for an op only if `c` is constant along the dims the op mixes; otherwise
# `logsumexp[S](where(x > 0, a, b)) > 0` became `ITE(x > 0, a + log(n_S) > 0, ...)`, whose
# dims and value are wrong (K5 in docs/fuzzing.md). Such ops are held as stand-ins while SymPy
# folds; under `frozen` (CSE, whose temporaries carry no dims) every op with a where is.
_sympy_fold = sympy.functions.elementary.piecewise.piecewise_fold


def _mixes_a_condition(op: TensorOp) -> bool:
    if not _SIMPLIFY.get():  # CSE's temporaries have no dims in their names: hold any where
        return op.has(Piecewise)
    mixed = dims_touched(op)
    return any(dims_of(c) & mixed for p in op.atoms(Piecewise) for _, c in p.args)


def _stand_in(name: str, op: TensorOp) -> sympy.Dummy:
    return sympy.Dummy(_named(name, sorted(dims_of(op))), **op.assumptions0)


def _fold_outside_mixing_ops(expr: sympy.Basic, evaluate: bool | None = True) -> sympy.Basic:
    """``piecewise_fold`` with every op that mixes elements along a condition inside it held
    as it is: a stand-in with its dims (which the ops around it read) and assumptions."""
    ops = expr.atoms(TensorOp) if isinstance(expr, sympy.Basic) else set()
    mixing = sorted((op for op in ops if _mixes_a_condition(op)), key=sympy.default_sort_key)
    if not mixing:
        return _sympy_fold(expr, evaluate)
    held = {op: _stand_in(f"held{k}", op) for k, op in enumerate(mixing)}
    folded = _sympy_fold(expr.xreplace(held), evaluate)
    if isinstance(expr, sympy.logic.boolalg.Boolean):
        # written while the ops are held: `ExprCondPair` would rewrite the Piecewise as an
        # `ITE`, all of it, the held ops' own where too (which are no conditions)
        folded = as_condition(folded)
    return folded.xreplace({stand_in: op for op, stand_in in held.items()})


# The module's global, which `ExprCondPair` and the fold's own recursion look up when called.
sympy.functions.elementary.piecewise.piecewise_fold = _fold_outside_mixing_ops


@dataclass
class LossIR:
    """A lowered loss: its output expression and what every symbol in it stands for."""

    name: str
    doc: str
    output: sympy.Expr
    # The result's declared dims (its resolved type), which `output` may have lost: SymPy
    # cancels `x - x` to 0, a baked param or a decided `if` can make it constant along a dim.
    output_dims: tuple[str, ...]
    order: tuple[str, ...]  # canonical dim order: the layout of every tensor in generated code
    inputs: tuple[InputInfo, ...]
    params: tuple[ParamInfo, ...]
    input_symbols: dict[str, Symbol]
    param_symbols: dict[str, Symbol]
    # component symbol -> (input name, literal dim, position): `x1, y1, x2, y2 = box`
    components: dict[Symbol, tuple[str, str, int]] = field(default_factory=dict)
    spans: dict[sympy.Basic, Span] = field(default_factory=dict)
    names: dict[sympy.Basic, str] = field(default_factory=dict)  # binding names, for codegen
    span: Span | None = None

    def differentiated(self) -> list[InputInfo]:
        return [info for info in self.inputs if info.differentiated]

    def leaves_of(self, name: str) -> list[Symbol]:
        """The input's own symbol and the symbols of its unpacked components."""
        own = [self.input_symbols[name]]
        parts = [(k, s) for s, (base, _, k) in self.components.items() if base == name]
        return own + [s for _, s in sorted(parts, key=lambda part: part[0])]
