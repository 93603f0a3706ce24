"""Random *valid* .loss specs, each paired with a NumPy evaluation of the same expression.

A generated expression is an :class:`Expr`: its .loss text, its dims, a function evaluating it
in NumPy (:mod:`tests.fuzz.reference`), and what the generator knows about it (smooth, positive).
The generator covers inputs of every element type with dims in any declared order, params
(with `where`), consts, bindings, unpacking, `def` helpers, a loss calling another loss with a
keyword param, arithmetic and `^`, every elementwise builtin, reductions with and without dims,
normalisations, gathers, one-hots, `size`, `if`/`where` with chained comparisons and logic,
comments, doc comments with quotes, backslashes and unicode, `;` and newlines in brackets, and
names chosen to collide with Python builtins and keywords and the generated code's own names.
With ``smooth=True`` only infinitely differentiable constructs are used (the gradient property).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from hypothesis import strategies as st

from tests.fuzz import reference as ref
from tests.fuzz.branches import Branches
from tests.fuzz.choose import Chooser, DrawChooser
from tests.fuzz.exprs import Expr, atom, combine, component, const_leaf, name_leaf
from tests.fuzz.reference import Conditioning, Env

# Names that try to shadow or break out of the generated Python: builtins, keywords (not the
# language's own), the emitted code's own names and their generated patterns.
ADVERSARIAL = (
    *("print", "len", "float", "range", "type", "id", "object", "list", "str", "open", "eval"),
    *("exec", "compile", "globals", "vars", "__import__", "__builtins__", "__name__", "__class__"),
    *("lambda", "import", "class", "pass", "None", "True", "False", "yield", "async", "await"),
    *("match", "case", "del", "global", "with", "as", "is", "try", "except", "raise", "while"),
    *("for", "elif", "assert", "nonlocal", "torch", "jax", "jnp", "F", "np", "math", "os", "sys"),
    *("dtype", "dtype_device", "grad", "needs", "ctx", "inputs", "output", "primals", "tangents"),
    *("value", "tangent", "out", "self", "cls", "LossInputError", "t0", "t1", "forward"),
    # Not `v_x`, `d_x`, `n_N`, `grad_x`: next to `_x`, `x`, dim `N` they are refused (see
    # codegen.check_names and tests/test_security.py).
    *("backward", "apply", "setup_context", "_value", "_grad", "_cse0", "x_"),
    *("_x", "Function", "builtins", "shape", "reshape"),
)
PLAIN = ("x", "y", "z", "w", "a", "b", "c", "u", "p", "q", "pred", "target", "logits", "k")
VALUE_ONLY = ("mean", "norm", "size", "exp")  # builtin names are fine for values
DIMS = ("N", "C", "K", "D", "B", "dtype", "torch", "i", "shape_", "M2")
LITERAL_DIMS = ("2", "3")

NUMBERS = (
    *(("2", 2.0), ("0.5", 0.5), ("1.5", 1.5), ("3", 3.0), (".25", 0.25), ("2.5e-1", 0.25)),
    *(("1e-3", 1e-3), ("0.75", 0.75), ("4.", 4.0), ("1", 1.0), ("1.25E0", 1.25)),
)
DOCS = (
    "A generated loss.",
    'Quotes " and \'\'\' and """ and a backslash \\ and \\n, which stay data.',
    "Unicode: λ ∑ ✓ ünïcödé \u200b \u2028 end",
    "Braces {x} {{y}} %s and a tab\there",
)
SEPARATORS = ("\n", "\n", ";", " ;\n", "\n\n", "\n    # a comment: ) } ( {\n")


@dataclass(frozen=True)
class Input:
    name: str
    elem: str
    dims: tuple[str, ...]
    of: str | None = None

    @property
    def decl(self) -> str:
        dims = f"[{', '.join(self.dims)}]" if self.dims else ""
        return f"{self.name}: {self.elem}{dims}" + (f" of {self.of}" if self.of else "")

    @property
    def differentiated(self) -> bool:
        return self.elem in ("Real", "Positive", "NonNegative", "Prob")


@dataclass(frozen=True)
class GeneratedSpec:
    """A valid spec and the independent evaluation of its (last) loss."""

    text: str
    name: str
    inputs: tuple[Input, ...]
    order: tuple[str, ...]
    params: dict[str, float]  # param values to compile with (those that differ from defaults)
    output: Expr

    @property
    def smooth(self) -> bool:
        return self.output.smooth

    def sizes(self, rng: np.random.Generator) -> dict[str, int]:
        return {d: int(d) if d.isdigit() else int(rng.integers(2, 5)) for d in self.order}

    def draw_inputs(self, sizes: dict[str, int], rng: np.random.Generator) -> list[np.ndarray]:
        arrays = []
        for info in self.inputs:
            shape = tuple(sizes[d] for d in info.dims)
            arrays.append(np.asarray(_sample(info, shape, sizes, rng)))
        return arrays

    def out_shape(self, sizes: dict[str, int]) -> tuple[int, ...]:
        return tuple(sizes[d] for d in self.order if d in self.output.dims)

    def reference(self, arrays: list[np.ndarray], sizes: dict[str, int]) -> np.ndarray:
        env = Env(self.order, sizes)
        env = env.bind(
            {i.name: env.layout(x, i.dims) for i, x in zip(self.inputs, arrays, strict=True)}
        )
        with np.errstate(all="ignore"):
            out = env.full(self.output.fn(env), self.output.dims)
        return np.array(out).reshape(self.out_shape(sizes))


def _sample(info: Input, shape: tuple[int, ...], sizes: dict[str, int], rng: Any) -> np.ndarray:
    if info.elem == "Index":
        return rng.integers(0, sizes[info.of or ""], size=shape).astype(np.int64)
    if info.elem == "Binary":
        return (rng.random(shape) < 0.5).astype(np.float64)
    if info.elem == "Prob":
        return rng.uniform(0.05, 0.95, size=shape)
    if info.elem == "Positive":
        return np.exp(rng.normal(0.0, 0.5, size=shape))
    if info.elem == "NonNegative":
        return np.abs(rng.normal(1.0, 0.5, size=shape)) + 0.05
    return rng.normal(0.0, 1.5, size=shape)


class Builder(Branches):
    """Draws one spec; ``smooth`` restricts it to infinitely differentiable constructs."""

    def __init__(self, c: Chooser, smooth: bool) -> None:
        self.c = c
        self.smooth = smooth
        self.used: set[str] = set()
        self.leaves: list[Expr] = []
        self.dims: list[str] = []
        self.index: Input | None = None
        self.helpers: list[tuple[str, Callable[[Expr, Expr], Expr]]] = []
        self.aux: tuple[str, Callable[[Expr], Expr | None]] | None = None
        self.elementwise_only = False

    def fresh(self, *pools: tuple[str, ...]) -> str:
        pool = [n for p in pools for n in p if n not in self.used]
        name = self.c.choice(pool)
        self.used.add(name)
        return name

    def sep(self) -> str:
        return self.c.choice(SEPARATORS)

    # -- declarations ------------------------------------------------------------------------

    def inputs(self) -> list[Input]:
        named = [self.fresh(DIMS) for _ in range(self.c.integer(1, 2))]
        inputs: list[Input] = []
        for k in range(self.c.integer(1, 3)):
            elems = ("Real", "Positive", "NonNegative", "Prob")
            elem = self.c.choice(elems if k == 0 else (*elems, "Binary", "Real"))
            dims = [d for d in named if self.c.chance(0.6)]
            if len(dims) == 2 and self.c.chance(0.5):
                dims.reverse()  # declared in an order other than the layout's
            inputs.append(Input(self.fresh(PLAIN, ADVERSARIAL), elem, tuple(dims)))
        have = [d for i in inputs for d in i.dims]
        if len(named) == 2 and have and self.c.chance(0.35):
            of = self.c.choice(have)
            kept = tuple(d for d in named if d != of and self.c.chance(0.7))
            self.index = Input(self.fresh(PLAIN, ADVERSARIAL), "Index", kept, of)
            inputs.append(self.index)
        if self.c.chance(0.25):
            literal = self.c.choice(LITERAL_DIMS)
            boxed = (*[d for d in named if self.c.chance(0.5)], literal)
            inputs.append(Input(self.fresh(PLAIN, ADVERSARIAL), "Real", boxed))
        if self.c.chance(0.5):
            inputs = inputs[1:] + inputs[:1] if len(inputs) > 1 else inputs
        return inputs

    def param(self) -> tuple[str, str, float | None]:
        """A param statement, its name, and the value to compile with (None: the default)."""
        name = self.fresh(PLAIN, ADVERSARIAL, VALUE_ONLY)
        elem, text, default, lo, hi = self.c.choice(
            (
                ("Real", "1.5", 1.5, -5.0, 5.0),
                ("Positive", "0.75", 0.75, 0.1, 3.0),
                ("NonNegative", "2", 2.0, 0.0, 3.0),
                ("Prob", ".25", 0.25, 0.0, 1.0),
            )
        )
        dims = [d for d in self.dims if not d.isdigit() and self.c.chance(0.2)]
        typ = f"{elem}[{', '.join(dims)}]" if dims else elem
        where = self.c.choice(("", f" where {name} >= {lo}", f" where {lo} <= {name} <= {hi}"))
        given = None if self.c.chance(0.5) else round(lo + (hi - lo) * 0.37, 3)
        value = default if given is None else given
        self.leaves.append(const_leaf(name, frozenset(dims), value))
        return f"param {name}: {typ} = {text}{where}", name, given

    def const(self) -> str:
        name = self.fresh(PLAIN, ADVERSARIAL, VALUE_ONLY)
        (a, x), (b, y) = self.c.choice(NUMBERS), self.c.choice(NUMBERS)
        op = self.c.choice(("+", "*", "/"))
        value = x + y if op == "+" else (x * y if op == "*" else x / y)
        self.leaves.append(const_leaf(name, frozenset(), value))
        return f"const {name} = {a} {op} {b}"

    def declare_helper(self) -> str:
        name = self.fresh(PLAIN, ADVERSARIAL)
        a, b = self.fresh(PLAIN, ADVERSARIAL, VALUE_ONLY), self.fresh(PLAIN, ADVERSARIAL)
        saved, self.leaves, self.elementwise_only = self.leaves, [], True
        self.leaves = [name_leaf("#a", frozenset()), name_leaf("#b", frozenset())]
        body = self.expr(2)
        self.leaves, self.elementwise_only = saved, False
        text = body.text.replace("#a", a).replace("#b", b)

        def call(x: Expr, y: Expr) -> Expr:
            used = [arg for arg, key in ((x, "#a"), (y, "#b")) if key in body.text]
            return Expr(
                f"{name}({x.text}, {y.text})",
                frozenset().union(*(arg.dims for arg in used)),
                lambda env: body.fn(env.bind({"#a": x.fn(env), "#b": y.fn(env)})),
                smooth=body.smooth and x.smooth and y.smooth,
                positive=body.positive,
                atom=True,
            )

        self.helpers.append((name, call))
        return f"def {name}({a}, {b}) = {text}"

    def aux_loss(self) -> str:
        """Another loss, called by the main one with a keyword param."""
        name = self.fresh(PLAIN, ADVERSARIAL)
        u, s = self.fresh(PLAIN, ADVERSARIAL, VALUE_ONLY), self.fresh(PLAIN, ADVERSARIAL)
        dim = self.c.choice(("", "M"))
        saved, self.leaves, self.elementwise_only = self.leaves, [], True
        given = Expr("#s", frozenset(), lambda env: env.values["#s"], True, True, True, True)
        self.leaves = [name_leaf("#u", frozenset()), given]
        body = self.expr(2)
        self.leaves, self.elementwise_only = saved, False
        reduce = bool(dim) and self.c.chance(0.5)
        text = body.text.replace("#u", u).replace("#s", s)
        ret = f"mean({text})" if reduce else text

        def call(x: Expr) -> Expr | None:
            if len(x.dims) != (1 if dim else 0) or any(d.isdigit() for d in x.dims):
                return None
            value = self.c.choice((None, 0.5, 2.0))
            kw = "" if value is None else f", {s}={value}"
            sv = 1.0 if value is None else value

            shape = x.dims if "#u" in body.text else frozenset()  # shapes flow through

            def fn(env: Env) -> Any:
                out = env.full(body.fn(env.bind({"#u": x.fn(env), "#s": sv})), shape)
                return np.mean(out, axis=env.axes(shape), keepdims=True) if reduce else out

            dims = frozenset() if reduce else shape
            smooth = body.smooth and x.smooth
            return Expr(f"{name}({x.text}{kw})", dims, fn, smooth=smooth, atom=True)

        self.aux = (name, call)
        decl = f"{u}: Real[{dim}]" if dim else f"{u}: Real"
        return f"loss {name}({decl}) {{ param {s}: Positive = 1 ; return {ret} }}"

    # -- the spec ----------------------------------------------------------------------------

    def build(self) -> GeneratedSpec:
        inputs = self.inputs()
        order: list[str] = []
        for info in inputs:
            order.extend(d for d in (*info.dims, info.of or "") if d and d not in order)
        self.dims = order
        top: list[str] = []
        if self.c.chance(0.3):
            top.append(self.declare_helper())
        if self.c.chance(0.3):
            top.append(self.aux_loss())
        for info in inputs:
            if info.elem != "Index":
                leaf = name_leaf(info.name, frozenset(info.dims), info.elem == "Positive")
                # The Binary split turns `f(c + t)` into `t*f(c + 1) + (1-t)*f(c)`: for the
                # generator a Binary input is as constant as `c` (see KNOWN_BUGS).
                self.leaves.append(replace(leaf, const=info.elem == "Binary"))
        body: list[str] = []
        params: dict[str, float] = {}
        for _ in range(self.c.integer(0, 2)):
            stmt, pname, given = self.param()
            body.append(stmt)
            if given is not None:
                params[pname] = given
        if self.c.chance(0.3):
            body.append(self.const())
        body += self.unpack(inputs)
        for _ in range(self.c.integer(0, 3)):
            name = self.fresh(PLAIN, ADVERSARIAL, VALUE_ONLY)
            value = self.expr(2)
            body.append(f"{name} = {value.text}")
            self.leaves.append(replace(value, text=name, atom=True))
        output = self.ret(self.live(self.expr(3)))
        body.append(f"return {output.text}")
        name = self.fresh(PLAIN, ADVERSARIAL)
        doc = "".join(f"# {line}\n" for line in self.c.choice(DOCS).split("\n"))
        loss = f"{doc}loss {name}({', '.join(i.decl for i in inputs)}) {{"
        loss += self.sep() + self.sep().join(body) + self.sep() + "}"
        text = "\n".join([*top, loss]) + "\n"
        return GeneratedSpec(text, name, tuple(inputs), tuple(order), params, output)

    def unpack(self, inputs: list[Input]) -> list[str]:
        stmts = []
        for info in inputs:
            if info.dims and info.dims[-1].isdigit():
                literal = info.dims[-1]
                names = [self.fresh(PLAIN, ADVERSARIAL) for _ in range(int(literal))]
                stmts.append(f"{', '.join(names)} = {info.name}")
                rest = frozenset(info.dims[:-1])
                for k, part in enumerate(names):
                    self.leaves.append(
                        Expr(part, rest, component(info.name, literal, k), atom=True)
                    )
        return stmts

    def ret(self, e: Expr) -> Expr:
        kind = self.c.choice(("mean", "none", "sum", "sum_dims"))
        if kind == "none" or not e.dims:
            return e
        if kind == "sum_dims":
            dims = [d for d in sorted(e.dims) if self.c.chance(0.5)] or [sorted(e.dims)[0]]
            return self.reduction("sum", e, dims)
        return self.reduction(kind, e, None)

    # -- expressions -------------------------------------------------------------------------

    def expr(self, depth: int) -> Expr:
        if depth <= 0 or self.c.chance(0.2):
            return self.leaf()
        kinds = ["arith", "arith", "arith", "unary", "unary", "positive_fn", "power", "neg_pow"]
        if not self.elementwise_only:
            kinds += ["reduce", "reduce", "normalize", "size"]
            kinds += ["gather", "onehot"] if self.index is not None else []
            kinds += ["call_aux"] if self.aux is not None else []
        kinds += ["call_helper"] if self.helpers and not self.elementwise_only else []
        if not self.smooth:
            kinds += ["kink", "kink", "step", "select", "select"]
        kind = self.c.choice(kinds)
        return getattr(self, kind)(depth - 1)  # type: ignore[no-any-return]

    def live(self, e: Expr) -> Expr:
        """``e``, mostly made to depend on an input if it does not: a constant (a loss, or a
        reduction's argument, of no input) is rare in real specs, but kept a fifth of the
        time (once K1: its dims were lost)."""
        if not e.const or self.c.chance(0.2):
            return e
        other = self.c.choice([leaf for leaf in self.leaves if not leaf.const])
        return combine(f"({e.text} + {other.text})", [e, other], np.add)

    def leaf(self) -> Expr:
        if self.leaves and self.c.chance(0.75):
            return self.c.choice(self.leaves)
        return self.number()

    def number(self) -> Expr:
        text, value = self.c.choice(NUMBERS)
        return Expr(text, frozenset(), lambda env: value, positive=True, atom=True, const=True)

    def positive(self, depth: int) -> Expr:
        known = [leaf for leaf in self.leaves if leaf.positive]
        if known and self.c.chance(0.4):
            return self.c.choice(known)
        e = self.live(self.expr(depth))
        # Bounded away from 0, so that no power, log or quotient of it meets an infinite
        # derivative through underflow (the hard points are tested elsewhere).
        form = self.c.choice(("exp", "softplus", "sigmoid", "square", "tanh"))
        if form == "square":
            return combine(f"({atom(e)}^2 + 0.5)", [e], lambda x: x**2 + 0.5, positive=True)
        if form == "tanh":
            return combine(
                f"(1.5 + tanh({e.text}))", [e], lambda x: 1.5 + np.tanh(x), positive=True
            )
        fn = ref.ELEMENTWISE[form]
        return combine(f"(0.25 + {form}({e.text}))", [e], lambda x: 0.25 + fn(x), positive=True)

    def arith(self, depth: int) -> Expr:
        a = self.expr(depth)
        op = self.c.choice(("+", "-", "*", "/"))
        b = self.positive(depth) if op == "/" else self.expr(depth)
        gap = self.c.choice((" ", " ", "\n        "))  # newlines inside brackets continue
        fns: dict[str, Callable[[Any, Any], Any]] = {
            "+": np.add,
            "-": np.subtract,
            "*": np.multiply,
            "/": np.divide,
        }
        positive = a.positive and b.positive and op != "-"
        return combine(f"({a.text} {op}{gap}{b.text})", [a, b], fns[op], positive=positive)

    def unary(self, depth: int) -> Expr:
        a = self.live(self.expr(depth))
        name = self.c.choice(("exp", "sin", "cos", "tanh", "erf", "sigmoid", "logsigmoid"))
        if self.c.chance(0.3):
            name = self.c.choice(("softplus", "expm1", "neg"))
        if name == "neg":
            return combine(f"(-{a.text})", [a], np.negative)
        return combine(f"{name}({a.text})", [a], ref.ELEMENTWISE[name], atom=True)

    def positive_fn(self, depth: int) -> Expr:
        a = self.live(self.positive(depth))
        name = self.c.choice(("log", "sqrt", "log1p"))
        return combine(f"{name}({a.text})", [a], ref.ELEMENTWISE[name], positive=name == "sqrt")

    def power(self, depth: int) -> Expr:
        if self.c.chance(0.5):
            a, k = self.expr(depth), self.c.choice((2, 3))
            return combine(f"({atom(a)}^{k})", [a], lambda x: x**k, positive=a.positive)
        a = self.positive(depth)
        text, r = self.c.choice((("0.5", 0.5), ("1.5", 1.5), ("-1", -1.0), ("-0.5", -0.5)))
        return combine(f"({atom(a)} ^ {text})", [a], lambda x: x**r, positive=True)

    def neg_pow(self, depth: int) -> Expr:
        a = self.expr(depth)  # `-a^2` is `-(a^2)`: `^` binds tighter than unary minus
        return combine(f"(-{atom(a)}^2)", [a], lambda x: -(x**2))

    def size(self, depth: int) -> Expr:
        if not self.dims:
            return self.number()
        dim = self.c.choice(self.dims)
        return Expr(
            f"size({dim})", frozenset(), lambda env: float(env.sizes[dim]), True, True, True, True
        )

    def reduce(self, depth: int) -> Expr:
        e = self.live(self.expr(depth))
        ops = ["sum", "mean", "logsumexp", "prod", "norm_eps"]
        if not self.smooth:
            ops += ["max", "min", "norm"]
        op = self.c.choice(ops)
        dims = [d for d in sorted(e.dims) if self.c.chance(0.5)]
        return self.reduction(op, e, dims or None)

    def reduction(self, op: str, e: Expr, dims: list[str] | None) -> Expr:
        """``op[dims](e)``; ``None`` reduces over every dim, written without brackets."""
        over = frozenset(e.dims if dims is None else dims)
        name, eps = {"norm_eps": ("norm", 1e-3)}.get(op, (op, None))
        brackets = "" if dims is None else f"[{', '.join(dims)}]"
        kw = f", eps={eps}" if eps is not None else ""
        text = f"{name}{brackets}({e.text}{kw})"

        def fn(env: Env) -> Any:
            x, axes = env.full(e.fn(env), e.dims), env.axes(over)
            if name == "mean":
                return np.sum(x, axis=axes, keepdims=True) / np.prod(env.shape(over))
            if name == "norm":
                squares = np.sum(x * x, axis=axes, keepdims=True)
                if eps is None:
                    Conditioning.near(squares, 0.0)  # norm's kink at 0
                return np.sqrt(squares + (eps or 0.0))
            return ref.REDUCTIONS[name](x, axes)

        smooth = e.smooth and op != "norm"
        return Expr(text, e.dims - over, fn, smooth=smooth, positive=eps is not None, atom=True)

    def normalize(self, depth: int) -> Expr:
        e = self.live(self.expr(depth))
        if not e.dims:
            return e
        dim, name = self.c.choice(sorted(e.dims)), self.c.choice(("softmax", "log_softmax"))
        fn = ref.softmax if name == "softmax" else ref.log_softmax

        def f(env: Env) -> Any:
            return fn(env.full(e.fn(env), e.dims), env.axis(dim))

        return Expr(f"{name}[{dim}]({e.text})", e.dims, f, e.smooth, False, True)

    def with_dim(self, depth: int, dim: str) -> Expr:
        e = self.live(self.expr(depth))
        if dim in e.dims:
            return e
        other = self.c.choice([leaf for leaf in self.leaves if dim in leaf.dims])
        return combine(f"({e.text} + {other.text})", [e, other], np.add)

    def gather(self, depth: int) -> Expr:
        index = self.index
        assert index is not None and index.of is not None
        of, t = index.of, index.name
        x = self.with_dim(depth, of)
        base = x.text if x.atom and not x.text[0].isdigit() else f"({x.text})"

        def fn(env: Env) -> Any:
            return ref.gather(env.full(x.fn(env), x.dims), env.values[t], env.axis(of))

        dims = (x.dims - {of}) | frozenset(index.dims)
        return Expr(f"{base}[{t}]", dims, fn, x.smooth, x.positive, True)

    def onehot(self, depth: int) -> Expr:
        index = self.index
        assert index is not None and index.of is not None
        of, t = index.of, index.name

        def fn(env: Env) -> Any:
            positions = np.arange(env.sizes[of]).reshape(env.shape({of}))
            return (positions == env.values[t]).astype(float)

        return Expr(f"onehot({t})", frozenset(index.dims) | {of}, fn, atom=True)

    def call_helper(self, depth: int) -> Expr:
        _, call = self.c.choice(self.helpers)
        return call(self.live(self.expr(depth)), self.live(self.expr(depth)))

    def call_aux(self, depth: int) -> Expr:
        assert self.aux is not None
        return self.aux[1](self.live(self.expr(depth))) or self.arith(depth)


def generate(c: Chooser, smooth: bool = False) -> GeneratedSpec:
    return Builder(c, smooth).build()


@st.composite
def specs(draw: Callable[[st.SearchStrategy[Any]], Any], smooth: bool = False) -> GeneratedSpec:
    """Hypothesis strategy: a valid generated spec (shrinks towards small specs)."""
    return generate(DrawChooser(draw), smooth)
