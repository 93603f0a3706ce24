"""The language's built-in functions (LANGUAGE.md section 4), by category.

One table that the resolver (arity, dims), the lowering (SymPy node) and the backends (printed
op) all key on, so a builtin is added in one place per stage.
"""

from __future__ import annotations

# One argument, applied per element.
ELEMENTWISE = (
    "abs",
    "sign",
    "exp",
    "log",
    "log1p",
    "expm1",
    "sqrt",
    "sin",
    "cos",
    "tanh",
    "erf",
    "sigmoid",
    "logsigmoid",
    "softplus",
    "relu",
    "floor",
    "ceil",
    "round",
)

# Reductions remove dims: `sum(x)` over every dim, `sum[C](x)` over the named ones.
# `max` and `min` with two arguments are the elementwise maximum and minimum instead.
REDUCTIONS = ("sum", "mean", "max", "min", "logsumexp", "norm", "prod")

# Normalisations keep dims and need exactly one: `softmax[C](x)`.
NORMALIZATIONS = ("softmax", "log_softmax")

# Everything else, with its number of positional arguments.
SPECIAL_ARITY = {"clamp": 3, "where": 3, "onehot": 1, "size": 1}

_RESERVED_WORDS = (
    "loss def param const return where if then else and or not in of use from true false inf"
)
RESERVED = frozenset(_RESERVED_WORDS.split())

ALL = frozenset((*ELEMENTWISE, *REDUCTIONS, *NORMALIZATIONS, *SPECIAL_ARITY))


def signature(name: str) -> str:
    """How a builtin is called, for error messages."""
    if name in ELEMENTWISE:
        return f"`{name}(x)`"
    if name in ("max", "min"):
        return f"`{name}(x)`, `{name}[D](x)` or `{name}(a, b)`"
    if name == "norm":
        return "`norm[D](x)` or `norm[D](x, eps=1e-12)`"
    if name in REDUCTIONS:
        return f"`{name}(x)` or `{name}[D](x)`"
    if name in NORMALIZATIONS:
        return f"`{name}[C](x)`"
    return {
        "clamp": "`clamp(x, lo, hi)`",
        "where": "`where(cond, a, b)`",
        "onehot": "`onehot(t)` for `t: Index[N] of C`",
        "size": "`size(C)` for a dim `C`",
    }[name]
