"""Property and fuzz tests (issue #7), generators in tests/fuzz/.

(a) Generated *valid* specs (tests/fuzz/specgen.py) parse, resolve and compile on both
    backends, emit modules of the allowed shape, agree with an independent NumPy evaluation of
    the same expression at random points, and their generated gradients agree with central
    finite differences wherever the differentiability certificate allows.
(b) Mutated and random text (tests/fuzz/textgen.py) yields only ``LossDSLError`` from parse +
    resolve, never another exception or a hang, and the CLI never prints a traceback.

The fast profile (derandomised, a fixed set of cases) runs in the default suite; the long
profile is ``pytest -m fuzz`` (``LOSSDSL_FUZZ_EXAMPLES`` cases per test, default 100,000 text
cases) or ``python tests/fuzz/run_fuzz.py`` (docs/fuzzing.md). Bugs the fuzzer found and that
are not fixed yet are :data:`tests.fuzz.harness.KNOWN_BUGS`, each with a strict xfail below.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import lossdsl
from lossdsl import cli
from tests.fuzz import textgen
from tests.fuzz.choose import DrawChooser
from tests.fuzz.harness import KnownBug, check_generated, check_text, time_limit
from tests.fuzz.specgen import GeneratedSpec, specs

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SLOW_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
FAST = settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=SLOW_CHECKS,
)
FAST_TEXT = settings(FAST, max_examples=200)
LONG_EXAMPLES = int(os.environ.get("LOSSDSL_FUZZ_EXAMPLES", "100000"))
LONG = settings(
    max_examples=LONG_EXAMPLES,
    deadline=None,
    suppress_health_check=SLOW_CHECKS,
)
LONG_VALID = settings(LONG, max_examples=max(1, LONG_EXAMPLES // 50))
TEXT_SECONDS = 20.0  # a text case slower than this is a hang


@st.composite
def text_cases(draw: st.DrawFn) -> str:
    return textgen.case(DrawChooser(draw))


def _valid(spec: GeneratedSpec) -> None:
    try:
        with time_limit(120):
            check_generated(spec)
    except KnownBug as bug:
        event(f"known bug {bug.key}")


def _text(text: str) -> None:
    with time_limit(TEXT_SECONDS):
        event(check_text(text))


# -- (a) valid specs ---------------------------------------------------------------------------


@FAST
@given(specs(smooth=True))
def test_smooth_specs_match_numpy_and_finite_differences(spec: GeneratedSpec) -> None:
    _valid(spec)


@FAST
@given(specs(smooth=False))
def test_specs_with_kinks_and_branches_match_numpy(spec: GeneratedSpec) -> None:
    _valid(spec)


@pytest.mark.fuzz
@LONG_VALID
@given(specs(smooth=True))
def test_long_smooth_specs(spec: GeneratedSpec) -> None:
    _valid(spec)


@pytest.mark.fuzz
@LONG_VALID
@given(specs(smooth=False))
def test_long_specs_with_kinks_and_branches(spec: GeneratedSpec) -> None:
    _valid(spec)


# -- (b) text ----------------------------------------------------------------------------------


@FAST_TEXT
@given(text_cases())
def test_mutated_and_random_text_yields_only_lossdsl_errors(text: str) -> None:
    _text(text)


@FAST_TEXT
@given(st.text(max_size=300))
def test_arbitrary_unicode_yields_only_lossdsl_errors(text: str) -> None:
    _text(text)


@pytest.mark.fuzz
@LONG
@given(text_cases())
def test_long_mutated_and_random_text(text: str) -> None:
    _text(text)


@pytest.mark.fuzz
@LONG
@given(st.text())
def test_long_arbitrary_unicode(text: str) -> None:
    _text(text)


@pytest.mark.parametrize("seed", range(8))
def test_the_cli_never_prints_a_traceback(
    seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "case.loss"
    path.write_text(textgen.case_for_seed(seed), encoding="utf-8", errors="surrogatepass")
    for argv in (["check", str(path)], ["compile", str(path), "--target", "torch"]):
        with time_limit(60):
            code = cli.main(argv)
        err = capsys.readouterr().err
        assert code in (0, 1)
        assert "Traceback" not in err and "internal error" not in err, err


def test_the_cli_renders_errors_without_a_traceback_in_a_process(tmp_path: Path) -> None:
    path = tmp_path / "bad.loss"
    path.write_bytes(b"loss f(x: Real[N]) {\n    return sum((x\n}\n\xff")
    run = subprocess.run(
        [sys.executable, "-m", "lossdsl.cli", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert run.returncode == 1
    assert "error:" in run.stderr and "Traceback" not in run.stderr


# -- bugs the fuzzer found, fixed: regressions ------------------------------------------------


def _both(text: str, *args: object) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Value and gradient (of the sum) w.r.t. every input, on both backends."""
    spec = lossdsl.parse(text)
    t_in = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in args]
    t_out = spec.compile("torch")(*t_in)
    t_grad = torch.autograd.grad(t_out.sum(), t_in)
    j_fn = spec.compile("jax")
    j_in = [jnp.asarray(a, dtype=jnp.float64) for a in args]
    j_out = j_fn(*j_in)
    j_grad = jax.grad(lambda *xs: jnp.sum(j_fn(*xs)), argnums=tuple(range(len(args))))(*j_in)
    return [
        (t_out.detach().numpy(), [g.numpy() for g in t_grad]),
        (np.asarray(j_out), [np.asarray(g) for g in j_grad]),
    ]


@pytest.mark.parametrize(
    ("text", "args", "value", "grads"),
    [
        # a scalar broadcast inside a reduction: the gradient sums over the broadcast dim
        (
            "loss f(a: Real, c: Real[M]) { return sum[M](a + c) }",
            (2.0, [1.0, 2.0, 3.0]),
            12.0,
            [[3.0], [1.0, 1.0, 1.0]],
        ),
        # the loss is an input as it is (torch: autograd.Function must return a view)
        ("loss f(x: Real[N]) { return x }", ([1.0, 2.0],), [1.0, 2.0], [[1.0, 1.0]]),
        # an unpacked component the loss never uses still gets its zero gradient
        (
            "loss f(w: Real[N, 2]) { a, b = w \n return sum(b) }",
            ([[1.0, 2.0], [3.0, 4.0]],),
            6.0,
            [[[0.0, 1.0], [0.0, 1.0]]],
        ),
        # a loss of sizes only is still a tensor
        ("loss f(x: Real[N]) { return size(N) * 2 }", ([1.0, 2.0],), 4.0, [[0.0, 0.0]]),
        # array functions of sizes alone (sizes are Python ints in generated code)
        (
            "loss f(x: Real[N]) { return sum(x) * exp(size(N)) }",
            ([1.0, 1.0],),
            2 * np.exp(2),
            [[np.exp(2), np.exp(2)]],
        ),
        # softmax / log_softmax / norm over a dim the argument does not vary along
        (
            "loss f(x: Real[N], k: Real) { return sum(x * softmax[N](k + 0 * x)) }",
            ([1.0, 2.0, 3.0, 6.0], 2.0),
            3.0,
            [[0.25] * 4, 0.0],
        ),
        (
            "loss f(x: Real[N], k: Real) { return sum(x * log_softmax[N](k + 0 * x)) }",
            ([1.0, 2.0, 3.0, 6.0], 2.0),
            -12 * np.log(4),
            [[-np.log(4)] * 4, 0.0],
        ),
        (
            "loss f(x: Real[N], k: Real) { return norm[N](k + 0 * x) }",
            ([1.0, 1.0, 1.0, 1.0], -2.0),
            4.0,
            [[0.0] * 4, -2.0],
        ),
        # a choice between sizes and integers: a float tensor of the inputs' dtype (it was int64,
        # or float32 for `8 / size(N)`, and torch's backward then had no graph to run)
        (
            "loss f(x: Real[N]) { return where(sum(x) > 0, 8, size(N)) }",
            ([1.0, 2.0],),
            8.0,
            [[0.0, 0.0]],
        ),
        (
            "loss f(x: Real[N]) { return where(sum(x) > 0, 3, 8 / size(N)) }",
            ([-1.0, -2.0],),
            4.0,
            [[0.0, 0.0]],
        ),
        # c / (a + exp(u)) where exp(u) overflows: the value is 0 and so is the gradient, which
        # was inf/inf = NaN (`exp(u) / (a + exp(u))**2`); now (c/a) * sigmoid(log(a) - u)
        (
            "loss f(x: Real[N]) { return sum(4/(0.25 + exp(exp(4 + x)^1.5))) }",
            ([-3.0, -1.0, 0.5, 10.0],),
            0.045129493518370507543 + 3.2219336358963531964e-39,
            [[-0.30252881237138292249, -4.3504383471607450126e-37, 0.0, 0.0]],
        ),
        # the same where `exp(6 + log(0.25 + exp(u)))` is what the denominator adds (SymPy
        # multiplies the exps out: `(exp(u) + 0.25)*exp(6)`); at [1, 1.5] exp(u) overflows
        (
            "loss f(x: Real[N]) { w = exp(2 + x) + 4 \n"
            "return 8 / (0.25 + exp(6 + log(0.25 + exp(prod(w))))) }",
            ([-3.0, -2.5],),
            3.6222920935175360714e-11,
            [[-6.1385097766126109381e-11, -9.5963674631499330809e-11]],
        ),
        (
            "loss f(x: Real[N]) { w = exp(2 + x) + 4 \n"
            "return 8 / (0.25 + exp(6 + log(0.25 + exp(prod(w))))) }",
            ([1.0, 1.5],),
            0.0,
            [[0.0, 0.0]],
        ),
        # log(0.25 + exp(u)) where exp(u) overflows (NumPy's naive value is 0 there; the true
        # one, kept by softplus, is not): checked against mpmath
        (
            "loss f(x: Real[N]) { y = x + 6 \n z = log(0.25 + exp(prod(y))) \n"
            "return 8 / (0.25 + softplus(6 + z)) }",
            ([30.0, 30.0],),
            0.0061432136686504127472,
            [[-0.00016982583380411968431, -0.00016982583380411968431]],
        ),
        # a function of sizes alone that JAX refuses an int for (`jax.nn.sigmoid(n_N)`)
        (
            "loss f(x: Real[N]) { return sigmoid(sum(size(N))) }",
            ([1.0, 2.0],),
            1 / (1 + np.exp(-2.0)),
            [[0.0, 0.0]],
        ),
        # `prod` of a sum: the printed argument is parenthesised
        ("loss f(p: Real[N]) { return prod(p - 0.5) }", ([1.0, 2.0],), 0.75, [[1.5, 0.5]]),
    ],
)
def test_found_by_fuzzing_and_fixed(
    text: str, args: tuple[object, ...], value: object, grads: list[object]
) -> None:
    for got, got_grads in _both(text, *args):
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, np.asarray(value, dtype=float))
        for g, want in zip(got_grads, grads, strict=True):
            np.testing.assert_allclose(g, np.reshape(np.asarray(want, dtype=float), g.shape))


def _lse(a: np.ndarray) -> float:
    return float(np.log(np.exp(a).sum()))


def _softmax(a: np.ndarray) -> np.ndarray:
    return np.exp(a) / np.exp(a).sum()  # type: ignore[no-any-return]


# Once K5: SymPy folds a Piecewise out of every function in a condition (`ExprCondPair` calls
# `piecewise_fold`), tensor ops included, although its condition varied along the dims the op
# mixes: `clamp(logsumexp[S](where(x > 0, -t^2, -9)), -0.5, 0.5)` had a torch gradient of 0
# and a broadcasting ValueError under jax.grad. (body over x, y: Real[S] and t: Real; NumPy)
K5_CASES = [
    (
        "clamp(logsumexp[S](where(x > 0, -t^2, -9)), -0.5, 0.5)",
        lambda x, y, t: np.clip(_lse(np.where(x > 0, -(t**2), -9)), -0.5, 0.5),
    ),
    (
        "relu(sum[S](where(x > 0, t * y, 1)) - 1.5)",
        lambda x, y, t: max(np.where(x > 0, t * y, 1).sum() - 1.5, 0),
    ),
    (  # an `if` on a max: the condition kept the dim it reduced over (a broadcasting error)
        "if max[S](where(x > 0, t * y, -3)) > 0 then t * max[S](where(x > 0, t * y, -3)) else t^2",
        lambda x, y, t: t * np.where(x > 0, t * y, -3).max(),
    ),
    (
        "sum[S](y * relu(softmax[S](where(x > 0, t * y, -1)) - 0.2))",
        lambda x, y, t: (y * np.maximum(_softmax(np.where(x > 0, t * y, -1)) - 0.2, 0)).sum(),
    ),
    (  # CSE names `x > 0`, shared with the where inside the op: no dims to read off the name
        "sum[S](if (log_softmax[S](where(x > 0, 0.001, y)) > -1.5) or (x > 0) then t * y else y^2)",
        lambda x, y, t: np.where(
            (np.log(_softmax(np.where(x > 0, 0.001, y))) > -1.5) | (x > 0), t * y, y**2
        ).sum(),
    ),
    (  # a condition constant along S: folding it out of the sum is right, and still done
        "relu(sum[S](where(t > 0, t * y, y^2)) - 0.1)",
        lambda x, y, t: max(np.where(t > 0, t * y, y**2).sum() - 0.1, 0),
    ),
]


@pytest.mark.parametrize(("body", "reference"), K5_CASES)
def test_k5_a_where_inside_a_tensor_op_stays_inside_it(
    body: str, reference: Callable[..., float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Value and gradients, torch (eager, compiled mode's source) and JAX, against the NumPy
    reference and its central differences, in float64."""
    spec = lossdsl.parse(f"loss f(x: Real[S], y: Real[S], t: Real) {{ return {body} }}")
    args = [np.array([1.0, -1.0, -2.0, -0.5]), np.array([0.6, 1.7, -0.4, 0.9]), np.array(0.1)]
    value, h = reference(*args), 1e-6
    want = [np.zeros_like(a) for a in args]
    for k, arg in enumerate(args):
        for i in np.ndindex(arg.shape):
            up, down = list(args), list(args)
            up[k], down[k] = arg.copy(), arg.copy()
            up[k][i] += h
            down[k][i] -= h
            want[k][i] = (reference(*up) - reference(*down)) / (2 * h)
    eager = spec.compile("torch")
    monkeypatch.setattr(torch, "compile", lambda fn, *args, **kwargs: fn)  # the source as is
    for fn in (eager, spec.compile("torch", mode="compiled")):
        inputs = [torch.tensor(a, requires_grad=True) for a in args]
        out = fn(*inputs)
        np.testing.assert_allclose(out.detach().numpy(), value, rtol=1e-12)
        for g, w in zip(torch.autograd.grad(out, inputs), want, strict=True):
            np.testing.assert_allclose(g.numpy(), w, rtol=1e-6, atol=1e-8)
    j_fn = spec.compile("jax")
    inputs = [jnp.asarray(a) for a in args]
    np.testing.assert_allclose(j_fn(*inputs), value, rtol=1e-12)
    for g, w in zip(jax.grad(j_fn, argnums=(0, 1, 2))(*inputs), want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-8)


# Once K1: outputs whose value is constant along some declared dims, as SymPy leaves them
# (`x - x` is 0, `0 * x + y` is `y`), came back without those dims. (text, input shapes,
# output shape, value and gradients of `sum(weights * out)` from inputs and weights.)
K1_CASES = [
    ("loss f(x: Real[N]) { return x - x }", [(3,)], (3,), lambda x, w: (0 * x, [0 * x])),
    ("loss f(x: Real[N]) { return 0 * x }", [(3,)], (3,), lambda x, w: (0 * x, [0 * x])),
    ("loss f(x: Real[N, C]) { return x - x }", [(3, 2)], (3, 2), lambda x, w: (0 * x, [0 * x])),
    (
        "loss f(x: Real[N, C]) { return sum[C](x - x) + size(C) }",
        [(3, 2)],
        (3,),
        lambda x, w: (np.full(3, 2.0), [0 * x]),
    ),
    (  # outer broadcasting by name: [N] with [C] is [N, C], constant along N
        "loss f(x: Real[N], y: Real[C]) { return x * 0 + y }",
        [(3,), (2,)],
        (3, 2),
        lambda x, y, w: (np.broadcast_to(y, (3, 2)), [0 * x, w.sum(axis=0)]),
    ),
    (
        "loss f(x: Real[N, C], y: Real[N]) { return x - x + y^2 }",
        [(3, 2), (3,)],
        (3, 2),
        lambda x, y, w: (np.broadcast_to(y[:, None] ** 2, (3, 2)), [0 * x, 2 * y * w.sum(1)]),
    ),
    ("loss f(x: Real[N]) { return mean(x - x) }", [(3,)], (), lambda x, w: (0.0, [0 * x])),
]


@pytest.mark.parametrize(("text", "shapes", "out_shape", "want"), K1_CASES)
def test_k1_an_output_keeps_its_declared_dims(
    text: str,
    shapes: list[tuple[int, ...]],
    out_shape: tuple[int, ...],
    want: Callable[..., tuple[object, list[np.ndarray]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every backend broadcasts the value along the declared dims it is constant in (a new
    tensor, which may be written into), and its gradients sum the cotangent over them."""
    spec = lossdsl.parse(text)
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=shape) for shape in shapes]
    weights = rng.normal(size=out_shape)
    value, grads = want(*arrays, weights)
    eager = spec.compile("torch")
    monkeypatch.setattr(torch, "compile", lambda fn, *args, **kwargs: fn)  # the source as is
    for fn in (eager, spec.compile("torch", mode="compiled")):
        inputs = [torch.tensor(a, requires_grad=True) for a in arrays]
        out = fn(*inputs)
        got = torch.autograd.grad((out * torch.tensor(weights)).sum(), inputs)
        np.testing.assert_allclose(out.detach().numpy(), value)
        for g, w in zip(got, grads, strict=True):
            np.testing.assert_allclose(g.numpy(), w, atol=1e-12)
        out.detach().add_(1)  # not a broadcast view: writing into it is allowed
    batch = torch.func.vmap(eager, in_dims=(0,) + (None,) * (len(arrays) - 1))
    stacked = torch.tensor(np.stack([arrays[0]] * 2))
    assert batch(stacked, *map(torch.tensor, arrays[1:])).shape == (2, *out_shape)
    j_fn = spec.compile("jax")
    inputs = [jnp.asarray(a) for a in arrays]
    np.testing.assert_allclose(j_fn(*inputs), value)
    argnums = tuple(range(len(arrays)))
    got = jax.grad(lambda *xs: jnp.sum(j_fn(*xs) * weights), argnums=argnums)(*inputs)
    for g, w in zip(got, grads, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-12)
    batch = jax.vmap(j_fn, in_axes=(0,) + (None,) * (len(arrays) - 1))
    assert batch(jnp.stack([inputs[0]] * 2), *inputs[1:]).shape == (2, *out_shape)


# Once K4: SymPy rewrote a condition on an `if` value (`r != g` for `r = if g < y then 1
# else 2`) as `ITE(g < y, Ne(g, 1), Ne(g, 2))`, which the certificate's jets had no rule for:
# `Spec.check()` raised `lossdsl.jets.Unsupported`. Comparisons are now lowered with the `if`
# distributed over them (`lossdsl.conditions.compare`); the jets decide an `ITE` too (the
# scalar form spelt out for the certificate still builds one: the second case).
def test_k4_check_of_a_condition_on_an_if_value() -> None:
    report = lossdsl.parse(
        "loss f(y: Real[M], g: Real) {\n    r = if g < y then 1 else 2\n"
        "    return sum(if r != g then y else 2)\n}"
    ).check()
    assert {c.input: c.klass for c in report.certificates}["y"] == "smooth"
    assert [d.kind for d in report.errors] == ["zero-gradient"]  # g: only through comparisons
    report = lossdsl.parse(
        "loss f(a: Real[N], b: Real) {\n"
        "    return sum(if max[N](if a > b then a else b) > 1 then a else b)\n}"
    ).check()
    assert {c.input: c.klass for c in report.certificates} == {
        "a": "discontinuous",
        "b": "discontinuous",
    }


# Once K6: the derivative of `relu(u)` is `where(u > 0, 1, 0)`; for `u` an `if`, SymPy folded
# the `if` out of `u > 0` and, to rewrite it as an `ITE`, solved its condition
# `Eq(r + 1.25, log(1.28 * exp(r)))` with `solveset`, which raised `AttributeError`.
@pytest.mark.parametrize(
    ("text", "args", "value", "grads"),
    [
        (
            "loss f(r: Positive[i]) {\n    t = log(exp(0.25 + r))\n"
            "    return mean(relu(if t == 1.25 + r then r else t))\n}",
            ([0.5, 1.0, 2.0],),
            0.25 + 3.5 / 3,
            [[1 / 3] * 3],
        ),
        (  # relu's step over both branches of the `if`, each on both sides of 0
            "loss f(x: Real[N]) { return sum(relu(if x > 0 then x - 1 else -x - 0.5)) }",
            ([2.0, 0.5, -1.0, -0.2],),
            1.5,
            [[1.0, 0.0, -1.0, 0.0]],
        ),
        (
            "loss f(x: Real[N]) { return sum(clamp(if x > 0 then x - 1 else -x, -0.5, 0.5)) }",
            ([2.0, 0.75, -0.25, -1.0],),
            0.5 - 0.25 + 0.25 + 0.5,
            [[0.0, 1.0, -1.0, 0.0]],
        ),
    ],
)
def test_k6_relu_of_an_if_on_an_equality(
    text: str, args: tuple[object, ...], value: float, grads: list[object]
) -> None:
    for got, got_grads in _both(text, *args):
        assert float(got) == pytest.approx(value, rel=1e-12)
        for g, want in zip(got_grads, grads, strict=True):
            np.testing.assert_allclose(g, np.asarray(want, dtype=float))


K7 = """loss f(os: Prob, sc: Binary[M2], grad: NonNegative[M2]) {
    class = floor(min(grad, (-1.3 + grad)) + 0.3137)
    try = (if ((-1.3137 < grad <= 0.7713) and ((3 + class) == (4. + grad) + 0.1373))
           then expm1((1 + class)) else (os * grad))
    return mean((if (((if ((2.5e-1 + grad) < os + 0.1373) then os else -1.3) - (grad * try))
                     > (os * norm[M2](grad, eps=0.001)) + 0.1373)
                 then size(M2) else log(((sc + class)^2 + 0.5))))
}"""


def _k7(os: float, sc: np.ndarray, grad: np.ndarray) -> float:
    """K7 in NumPy."""
    cls = np.floor(np.minimum(grad, -1.3 + grad) + 0.3137)
    near = (grad > -1.3137) & (grad <= 0.7713) & (3 + cls == 4.0 + grad + 0.1373)
    attempt = np.where(near, np.expm1(1 + cls), os * grad)
    lhs = np.where(0.25 + grad < os + 0.1373, os, -1.3) - grad * attempt
    rhs = os * np.sqrt(np.sum(grad**2) + 0.001) + 0.1373
    return float(np.mean(np.where(lhs > rhs, grad.size, np.log((sc + cls) ** 2 + 0.5))))


# Once K7: `Relational.canonical` flips `-g^2*s + s > s*norm(g) + 0.1373` between two forms for
# ever, and `Piecewise` canonicalises its conditions until nothing changes: lowering recursed
# without end. Such a relation is now written with 0 on the right (`conditions.settled`).
@pytest.mark.parametrize(
    ("os", "sc", "grad"),
    [
        (0.999, [1.0, 0.0], [0.0, 0.84]),  # both branches of the outer `if`
        (0.9, [1.0, 0.0, 1.0, 0.0], [0.0, 0.3, 0.8, 1.7]),
        (0.95, [1.0, 1.0], [0.1, 0.2]),
    ],
)
def test_k7_nested_ifs_over_a_floor(os: float, sc: list[float], grad: list[float]) -> None:
    spec = lossdsl.parse(K7)
    want = _k7(os, np.array(sc), np.array(grad))
    t_os = torch.tensor(os, dtype=torch.float64, requires_grad=True)
    t_grad = torch.tensor(grad, dtype=torch.float64, requires_grad=True)
    t_out = spec.compile("torch")(t_os, torch.tensor(sc, dtype=torch.float64), t_grad)
    assert float(t_out) == pytest.approx(want, rel=1e-12)
    for g in torch.autograd.grad(t_out, [t_os, t_grad]):  # piecewise constant
        assert not g.any()
    j_fn = spec.compile("jax")
    j_sc = jnp.asarray(sc, dtype=jnp.float64)
    j_args = (jnp.asarray(os, dtype=jnp.float64), jnp.asarray(grad, dtype=jnp.float64))
    assert float(j_fn(j_args[0], j_sc, j_args[1])) == pytest.approx(want, rel=1e-12)
    for g in jax.grad(lambda a, b: j_fn(a, j_sc, b), argnums=(0, 1))(*j_args):
        assert not np.asarray(g).any()


K5_MAX = """loss f(w: Binary[M, C], d: Positive[M, C]) {
    c = (1.5 + tanh(w + d))^1.5 + (0.25 + softplus(1.25 + d))^-0.5
    r = norm[M](max[C](d))
    return sum(max[C](r * c / (1.5 + tanh(w + c))))
}"""


def test_max_over_a_binary_split_has_a_finite_gradient() -> None:
    """Once K5's second signature: the tie mask `Eq(arg, max(arg))`, which a Piecewise
    rewrote (`Eq(2 + t, m)` as `Eq(t, m - 2)`, rounding otherwise), matched no element and
    the tie split divided by 0. The mask is `ir.Same` now, compared as written."""
    f = lossdsl.parse(K5_MAX).compile("torch")
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        w = (torch.rand(3, 4, generator=gen, dtype=torch.float64) < 0.5).double()
        d = (torch.rand(3, 4, generator=gen, dtype=torch.float64) + 0.5).requires_grad_()
        (grad,) = torch.autograd.grad(f(w, d), [d])
        assert torch.isfinite(grad).all()
    # the valid-spec fuzz's seed 5591: a constant added before the max
    g = lossdsl.parse("loss g(t: Prob[K]) { return softplus(max[K](2 + t)) }").compile("torch")
    t = torch.tensor([0.3, 0.7], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(g(t), [t])
    top = torch.sigmoid(torch.tensor(2.7, dtype=torch.float64))  # d softplus(m) / dm at 2.7
    torch.testing.assert_close(grad, torch.stack([torch.zeros_like(top), top]))
