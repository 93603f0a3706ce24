"""Resource limits (issue #7): adversarial specs end in a clear ``LimitError`` with a span, fast,
never in a RecursionError, a memory blow-up or an exponential SymPy computation.

Limits: file size (parser.MAX_FILE_BYTES), bracket and expression nesting (parser.MAX_DEPTH),
statements per body (parser.MAX_STATEMENTS), `use` depth (loader.MAX_USE_DEPTH), inlining
growth (resolve_expr.MAX_NODES), the loss's size as one tree once bindings and helpers are
substituted (resolve_expr.MAX_TREE), and the structural simplification budget of
derive.tidy (expressions over its size are left unsimplified).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sympy

import lossdsl
from lossdsl import derive, ir, loader, parser, resolve_expr
from tests.fuzz.harness import time_limit

SECONDS = 10.0  # every refusal below takes milliseconds; this only turns a hang into a failure


@contextmanager
def quick() -> Iterator[None]:
    start = time.perf_counter()
    with time_limit(SECONDS):
        yield
    assert time.perf_counter() - start < SECONDS


def refused(text: str, message: str, line: int | None = None) -> lossdsl.LimitError:
    with quick(), pytest.raises(lossdsl.LimitError, match=message) as info:
        lossdsl.parse(text)
    error = info.value
    assert error.span is not None and error.render()
    if line is not None:
        assert error.span.line == line
    return error


def loss(body: str, inputs: str = "x: Real[N]") -> str:
    return f"loss f({inputs}) {{\n{body}\n}}\n"


# -- nesting -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [parser.MAX_DEPTH + 1, 10_000])
@pytest.mark.parametrize(
    "shape",
    [
        lambda n: "(" * n + "x" + ")" * n,
        lambda n: "sum(" * n + "x" + ")" * n,
        lambda n: "-" * n + "x",
        lambda n: "if x > 0 then " * n + "x" + " else x" * n,
        lambda n: "x" + "^x" * n,
        lambda n: "x" + " + x" * n,
        lambda n: "(" * n,  # unbalanced: the limit, not a parse error deep inside
    ],
    ids=["parens", "calls", "negations", "ifs", "powers", "sums", "unclosed"],
)
def test_deep_nesting_is_a_limit_error(shape: object, n: int) -> None:
    body = "    return " + shape(n)  # type: ignore[operator]
    with quick(), pytest.raises(lossdsl.LossDSLError) as info:
        lossdsl.parse(loss(body))
    assert isinstance(info.value, (lossdsl.LimitError, lossdsl.ParseError))
    assert isinstance(info.value, lossdsl.LimitError) or "(" not in body[:20]
    assert info.value.render()


def test_nesting_at_the_limit_compiles() -> None:
    depth = parser.MAX_DEPTH - 5
    spec = lossdsl.parse(loss("    return sum(" + "(" * depth + "x" + ")" * depth + ")"))
    with quick():
        spec.emit("torch")


def test_a_chain_of_bindings_deeper_than_the_limit_is_refused_at_its_line() -> None:
    n = parser.MAX_DEPTH + 20
    body = "\n".join(f"    a{i + 1} = sin(a{i})" for i in range(n)) + f"\n    return sum(a{n})"
    refused(loss(body, "a0: Real[N]"), "nested more than", line=parser.MAX_DEPTH + 1)


def test_no_recursion_error_with_a_small_recursion_limit() -> None:
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(400)
    try:
        refused(loss("    return " + "(" * 5000 + "x" + ")" * 5000), "nested more than")
    finally:
        sys.setrecursionlimit(old)


# -- size --------------------------------------------------------------------------------------


def test_a_file_over_the_size_limit_is_refused_from_text() -> None:
    text = loss("    return sum(x)") + "#" * parser.MAX_FILE_BYTES
    refused(text, "may be at most")


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.loss"
    path.write_bytes(b"# " + b"x" * (parser.MAX_FILE_BYTES + 10))
    with quick(), pytest.raises(lossdsl.LimitError, match="may be at most"):
        lossdsl.load(path)


def test_too_many_statements() -> None:
    body = "\n".join(f"    a{i} = x * {i}" for i in range(parser.MAX_STATEMENTS + 1))
    refused(loss(body + "\n    return sum(x)"), "statements")


def test_huge_number_literals_are_parse_errors_not_overflows() -> None:
    with quick(), pytest.raises(lossdsl.ParseError, match="too large"):
        lossdsl.parse(loss("    return sum(x) * 1e999"))
    spec = lossdsl.parse(loss("    return sum(x) * " + "9" * 300))  # a big float is fine
    assert spec.name == "f"


def test_a_literal_dim_of_thousands_of_digits_does_not_trip_int_conversion() -> None:
    with quick(), pytest.raises(lossdsl.LossDSLError):
        lossdsl.parse(loss("    return sum(x)", "x: Real[" + "7" * 5000 + "]"))


# -- `use` -------------------------------------------------------------------------------------


def test_a_use_chain_deeper_than_the_limit(tmp_path: Path) -> None:
    n = loader.MAX_USE_DEPTH + 3
    for i in range(n):
        nxt = f'use "m{i + 1}.loss"\n' if i + 1 < n else ""
        (tmp_path / f"m{i}.loss").write_text(f"{nxt}def h{i}(a) = a * 2\n")
    (tmp_path / "main.loss").write_text('use "m0.loss"\nloss f(x: Real) { return h0(x) }\n')
    with quick(), pytest.raises(lossdsl.LimitError, match="`use` chain deeper") as info:
        lossdsl.load(tmp_path / "main.loss")
    assert info.value.span is not None


def test_a_use_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.loss").write_text('use "b.loss"\nloss f(x: Real) { return x }\n')
    (tmp_path / "b.loss").write_text('use "a.loss"\ndef g(a) = a\n')
    with quick(), pytest.raises(lossdsl.SourceError, match="cycle"):
        lossdsl.load(tmp_path / "a.loss")


def test_a_file_that_uses_itself(tmp_path: Path) -> None:
    (tmp_path / "a.loss").write_text('use "a.loss"\nloss f(x: Real) { return x }\n')
    with quick(), pytest.raises(lossdsl.SourceError, match="cycle"):
        lossdsl.load(tmp_path / "a.loss")


# -- growth by inlining and sharing ------------------------------------------------------------


def test_helpers_that_double_thirty_times_are_refused() -> None:
    defs = "def h0(a) = a * a + 1\n" + "".join(
        f"def h{i}(a) = h{i - 1}(a) + h{i - 1}(a + 1)\n" for i in range(1, 31)
    )
    refused(defs + "loss f(x: Real) { return h30(x) }", "grows past")


def test_bindings_that_share_a_value_exponentially_are_refused() -> None:
    # Small as a graph (30 statements), 3^30 nodes as a tree: SymPy would never finish.
    body = "\n".join(f"    a{i + 1} = a{i} * a{i} + sin(a{i})" for i in range(30))
    error = refused(loss(body + "\n    return sum(a30)", "a0: Real[N]"), "grows past")
    assert error.span is not None and "sum(a30)" in error.span.text


def test_a_loss_within_the_tree_limit_compiles_quickly() -> None:
    body = "\n".join(f"    a{i + 1} = a{i} * a{i} + sin(a{i})" for i in range(6))
    spec = lossdsl.parse(loss(body + "\n    return sum(a6)", "a0: Real[N]"))
    with quick():
        spec.emit("torch")
        spec.emit("jax")


def test_the_limits_leave_room_for_every_library_spec() -> None:
    from tests.conftest import EXAMPLES, SPECS

    for path in [*SPECS.glob("*.loss"), *EXAMPLES.glob("*.loss")]:
        for spec in lossdsl.load_all(path):
            checker = resolve_expr.ExprChecker([])
            depth, size = checker.measure(spec.checked.output)
            assert depth * 4 < parser.MAX_DEPTH and size * 20 < resolve_expr.MAX_TREE, path


# -- the simplification budget -----------------------------------------------------------------


def test_tidy_leaves_a_big_expression_as_it_is_and_quickly() -> None:
    x = ir.leaf("x", ("N",))
    expr: sympy.Expr = x
    for _ in range(60):  # a shared graph whose tree has 3^60 nodes (built unevaluated: fast)
        square = sympy.Mul(expr, expr, evaluate=False)
        expr = sympy.Add(square, sympy.sin(expr, evaluate=False), evaluate=False)
    with quick():
        assert derive.tidy(expr) is expr


def test_tidy_still_simplifies_small_expressions() -> None:
    p, g = sympy.Symbol("p", positive=True), sympy.Symbol("g", positive=True)
    assert derive.tidy(p ** (g - 1) * p) == p**g
