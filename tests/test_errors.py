"""One test per kind of error a spec can have: each asserts the error's class, its message, the
line and column it points at, and that `lossdsl check` reports it as a diagnostic (exit code 1,
`FILE:LINE:COL: error: ...`) with no Python traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import lossdsl
from lossdsl import errors
from lossdsl.cli import main


def case(name: str, text: str, kind: str, message: str, line: int, column: int) -> Any:
    return pytest.param(text, kind, message, line, column, id=name)


# (source text, error class, message substring, line, column)
INLINE = [
    case(
        "syntax_unexpected_character",
        "loss f(x: Real) { return x $ 2 }",
        "ParseError",
        "unexpected character `$`",
        1,
        28,
    ),
    case(
        "syntax_power_with_stars",
        "loss f(x: Real) { return x ** 2 }",
        "ParseError",
        "`**` is not an operator",
        1,
        28,
    ),
    case(
        "syntax_assignment_as_comparison",
        "loss f(x: Real) {\n    return if x = 0 then 1 else 2\n}",
        "ParseError",
        "`=` cannot compare values",
        2,
        17,
    ),
    case(
        "syntax_input_without_type",
        "loss f(x, y: Real) { return y }",
        "ParseError",
        "an input needs a type",
        1,
        9,
    ),
    case(
        "syntax_unclosed_block",
        "loss f(x: Real) {\n    return x\n",
        "ParseError",
        "the file ended inside a `{ }` block",
        2,
        13,
    ),
    case(
        "syntax_if_without_else",
        "loss f(x: Real) { return if x > 0 then x }",
        "ParseError",
        "`if` needs `then` and `else`",
        1,
        42,
    ),
    case(
        "syntax_param_at_top_level",
        "param gamma: Real = 2.0\nloss f(x: Real) { return x }",
        "ParseError",
        "`param` belongs inside a `loss { }` block",
        1,
        1,
    ),
    case(
        "syntax_binding_at_top_level",
        "loss f(x: Real) { return x }\ny = 2",
        "ParseError",
        "`y` cannot appear outside a `loss { }` block",
        2,
        1,
    ),
    case(
        "syntax_def_with_block",
        "def sq(x) { return x^2 }",
        "ParseError",
        "a `def` is a single expression",
        1,
        11,
    ),
    case(
        "syntax_unmatched_paren",
        "loss f(x: Real) { return exp(x)) }",
        "ParseError",
        "`)` has no matching opening bracket",
        1,
        32,
    ),
    case(
        "syntax_bracket_left_open",
        "loss f(x: Real) {\n    y = exp(x\n    return y\n}",
        "ParseError",
        "unexpected `return`: a `(` is still open",
        3,
        5,
    ),
    case(
        "syntax_line_starts_with_operator",
        "loss f(x: Real, y: Real) {\n    z = x\n        + y\n    return z\n}",
        "ParseError",
        "a statement cannot start with `+`",
        3,
        9,
    ),
    case(
        "syntax_expression_as_statement",
        "loss f(x: Real) {\n    x + 1\n}",
        "ParseError",
        "expected a statement, found `+`",
        2,
        7,
    ),
    case(
        "syntax_keyword_given_twice",
        "loss f(x: Real[D]) { return norm[D](x, eps=1e-6, eps=1e-9) }",
        "ParseError",
        "keyword argument `eps` is given twice",
        1,
        50,
    ),
    case(
        "syntax_positional_after_keyword",
        "loss f(x: Real[D]) { return norm[D](eps=1e-6, x) }",
        "ParseError",
        "positional argument after the keyword argument `eps=1e-6`",
        1,
        47,
    ),
    case(
        "syntax_number_too_large",
        "loss f(x: Real) { return x * 1e999 }",
        "ParseError",
        "the number `1e999` is too large",
        1,
        30,
    ),
    case(
        "syntax_c_style_and",
        "loss f(x: Real) { return if x > 0 && x < 1 then x else 0 }",
        "ParseError",
        "unexpected character `&`",
        1,
        35,
    ),
    case(
        "syntax_non_ascii_name",
        "loss f(x: Real) {\n    \u00e9 = x\n    return \u00e9\n}",
        "ParseError",
        "unexpected character `\u00e9`",
        2,
        5,
    ),
    case(
        "undefined_name",
        "loss f(x: Real) {\n    return x + y\n}",
        "ResolveError",
        "undefined name `y`",
        2,
        16,
    ),
    case(
        "undefined_name_in_helper",
        "def g(a) = a + b\nloss f(x: Real) { return g(x) }",
        "ResolveError",
        "undefined name `b`",
        1,
        16,
    ),
    case(
        "dim_used_as_value",
        "loss f(x: Real[N]) { return sum(x) / N }",
        "ResolveError",
        "`N` is a dim, not a value",
        1,
        38,
    ),
    case(
        "rebinding",
        "loss f(x: Real) {\n    y = x\n    y = 2 * x\n    return y\n}",
        "ResolveError",
        "`y` is already bound",
        3,
        5,
    ),
    case(
        "rebinding_an_input",
        "loss f(x: Real) {\n    x = 2\n    return x\n}",
        "ResolveError",
        "`x` is already bound",
        2,
        5,
    ),
    case(
        "input_declared_twice",
        "loss f(x: Real, x: Real) { return x }",
        "ResolveError",
        "input `x` is declared twice",
        1,
        17,
    ),
    case(
        "loss_declared_twice",
        "loss f(x: Real) { return x }\nloss f(y: Real) { return y }",
        "ResolveError",
        "`f` is declared twice",
        2,
        6,
    ),
    case(
        "reserved_word_as_name",
        "loss f(x: Real) {\n    then = x\n    return x\n}",
        "ResolveError",
        "`then` is a reserved word",
        2,
        5,
    ),
    case(
        "loss_shadows_builtin",
        "loss sum(x: Real) { return x }",
        "ResolveError",
        "`sum` would shadow the builtin function",
        1,
        6,
    ),
    case(
        "dim_mismatch_in_reduction",
        "loss f(x: Real[N]) { return sum[C](x) }",
        "ShapeError",
        "`sum[C]` reduces over `C`, but `x` is Real[N]",
        1,
        33,
    ),
    case(
        "dim_listed_twice",
        "loss f(x: Real[N]) { return mean[N, N](x) }",
        "ShapeError",
        "`mean` lists dim `N` twice",
        1,
        37,
    ),
    case(
        "dim_twice_in_input",
        "loss f(x: Real[N, N]) { return sum(x) }",
        "ShapeError",
        "dim `N` appears twice in `x`",
        1,
        16,
    ),
    case(
        "unpack_without_literal_dim",
        "loss f(box: Real[N, 4]) {\n    x1, y1, x2 = box\n    return sum(x1)\n}",
        "ShapeError",
        "unpacking 3 names needs a literal dim of size 3",
        2,
        18,
    ),
    case(
        "loss_call_dims_conflict",
        "loss g(a: Real[N], b: Real[N]) { return sum(a * b) }\n"
        "loss f(x: Real[M], y: Real[K]) { return g(x, y) }",
        "ShapeError",
        "dim `N` would be both `M` and `K`",
        2,
        46,
    ),
    case(
        "loss_call_rank_mismatch",
        "loss g(a: Real[N]) { return sum(a) }\nloss f(x: Real[M, K]) { return g(x) }",
        "ShapeError",
        "input `a` is declared [N], but this argument has dims [M, K]",
        2,
        34,
    ),
    case(
        "param_default_violates_type",
        "loss f(x: Real) {\n    param margin: Positive = -1\n    return x * margin\n}",
        "ParamError",
        "param `margin` = -1 is not > 0",
        2,
        30,
    ),
    case(
        "param_default_violates_where",
        "loss f(x: Real) {\n    param alpha: Real = 2 where 0 <= alpha <= 1\n"
        "    return x * alpha\n}",
        "ParamError",
        "param `alpha` = 2 violates `where 0 <= alpha <= 1`",
        2,
        25,
    ),
    case(
        "param_default_not_a_number",
        "loss f(x: Real) {\n    param a: Real = x\n    return x * a\n}",
        "ResolveError",
        "the default of param `a` must be a number",
        2,
        21,
    ),
    case(
        "param_where_uses_input",
        "loss f(x: Real) {\n    param a: Real = 1 where a > x\n    return x * a\n}",
        "ResolveError",
        "can only use `a`, numbers and consts, but `x` is an input",
        2,
        29,
    ),
    case(
        "param_of_binary_type",
        "loss f(x: Real) {\n    param k: Binary = 1\n    return x * k\n}",
        "ElementTypeError",
        "a param cannot be of type `Binary`",
        2,
        14,
    ),
    case(
        "param_dim_not_of_an_input",
        "loss f(x: Real[N]) {\n    param w: Real[C] = 1\n    return sum(x)\n}",
        "ShapeError",
        "dim `C` of param `w` is not a dim of any input",
        2,
        19,
    ),
    case(
        "unknown_function",
        "loss f(x: Real) { return sigmod(x) }",
        "ResolveError",
        "unknown function `sigmod`",
        1,
        26,
    ),
    case(
        "unknown_element_type",
        "loss f(x: Rael) { return x }",
        "ElementTypeError",
        "unknown element type `Rael`",
        1,
        11,
    ),
    case(
        "builtin_wrong_arity",
        "loss f(x: Real) { return clamp(x, 0) }",
        "ArityError",
        "`clamp` takes 3 arguments, got 2",
        1,
        26,
    ),
    case(
        "helper_wrong_arity",
        "def sq(a) = a * a\nloss f(x: Real) { return sq(x, x) }",
        "ArityError",
        "helper `sq` takes 1 argument, got 2",
        2,
        26,
    ),
    case(
        "loss_call_wrong_arity",
        "loss g(a: Real, b: Real) { return a * b }\nloss f(x: Real) { return g(x) }",
        "ArityError",
        "loss `g` takes 2 arguments, got 1",
        2,
        26,
    ),
    case(
        "reduction_wrong_arity",
        "loss f(x: Real[N]) { return sum(x, x) }",
        "ArityError",
        "`sum` takes one argument here, got 2",
        1,
        29,
    ),
    case(
        "index_used_as_number",
        "loss f(x: Real[N, C], t: Index[N] of C) { return mean(x[t] * t) }",
        "ElementTypeError",
        "`t` is an `Index` and cannot be used as a number",
        1,
        62,
    ),
    case(
        "subscript_by_a_number",
        "loss f(x: Real[N, C], y: Real[N]) { return mean(x[y]) }",
        "ElementTypeError",
        "`x[...]` needs an `Index`, but `y` is Real[N]",
        1,
        51,
    ),
    case(
        "index_without_of",
        "loss f(x: Real[N, C], t: Index[N]) { return mean(x[t]) }",
        "ElementTypeError",
        "`Index` input `t` needs the dim it indexes",
        1,
        26,
    ),
    case(
        "index_of_unknown_dim",
        "loss f(x: Real[N], t: Index[N] of C) { return mean(x) }",
        "ShapeError",
        "dim `C` is not a dim of any input",
        1,
        35,
    ),
    case(
        "subscript_base_lacks_dim",
        "loss f(x: Real[N], z: Real[N, C], t: Index[N] of C) { return mean(x[t]) }",
        "ShapeError",
        "`x` has no dim `C` for `t` to index",
        1,
        67,
    ),
    case(
        "onehot_of_a_number",
        "loss f(x: Real[N, C]) { return sum(onehot(x)) }",
        "ElementTypeError",
        "`onehot` needs an `Index`",
        1,
        43,
    ),
    case(
        "number_passed_as_index",
        "loss g(l: Real[N, C], t: Index[N] of C) { return sum(l[t]) }\n"
        "loss f(x: Real[N, C]) { return g(x, x) }",
        "ElementTypeError",
        "input `t` of loss `g` is an `Index`",
        2,
        37,
    ),
    case(
        "no_return",
        "loss f(x: Real) {\n    y = x\n}",
        "ResolveError",
        "loss `f` has no `return`",
        1,
        6,
    ),
    case(
        "statement_after_return",
        "loss f(x: Real) {\n    return x\n    y = x\n}",
        "ResolveError",
        "statement after `return`",
        3,
        5,
    ),
    case(
        "helper_recursion",
        "def g(a) = g(a) + 1\nloss f(x: Real) { return g(x) }",
        "ResolveError",
        "helper `g` calls itself",
        1,
        12,
    ),
    case(
        "loss_recursion",
        "loss f(x: Real) { return f(x) }",
        "ResolveError",
        "loss `f` calls itself",
        1,
        26,
    ),
    case(
        "const_not_a_number",
        "loss f(x: Real) {\n    const c = 2 * x\n    return c\n}",
        "ResolveError",
        "a `const` must be a number",
        2,
        15,
    ),
    case(
        "const_divides_by_zero",
        "loss f(x: Real) {\n    const c = 1 / (2 - 2)\n    return c * x\n}",
        "ResolveError",
        "a `const` divides by zero",
        2,
        15,
    ),
    case(
        "where_not_a_comparison",
        "loss f(x: Real) {\n    param a: Real = 1 where a + 1\n    return a * x\n}",
        "ElementTypeError",
        "a `where` condition must be a comparison",
        2,
        29,
    ),
    case(
        "number_as_condition",
        "loss f(x: Real) { return if x then 1 else 0 }",
        "ElementTypeError",
        "`x` is a number, not a condition",
        1,
        29,
    ),
    case(
        "loss_call_unknown_param",
        "loss g(a: Real) {\n    param k: Real = 1\n    return a * k\n}\n"
        "loss f(x: Real) { return g(x, kk=2) }",
        "ResolveError",
        "loss `g` has no param `kk`",
        5,
        31,
    ),
    case(
        "loss_call_param_violates_where",
        "loss g(a: Real) {\n    param k: Real = 1 where k > 0\n    return a * k\n}\n"
        "loss f(x: Real) { return g(x, k=-2) }",
        "ParamError",
        "param `k` = -2 violates `where k > 0`",
        5,
        31,
    ),
    case(
        "loss_call_missing_param",
        "loss g(a: Real) {\n    param k: Real\n    return a * k\n}\n"
        "loss f(x: Real) { return g(x) }",
        "ResolveError",
        "loss `g` needs a value for its param `k`",
        5,
        26,
    ),
    case(
        "clamp_bounds_reversed",
        "loss f(x: Real) { return clamp(x, 1, -1) }",
        "ResolveError",
        "`clamp` has lower bound 1 above its upper bound -1",
        1,
        26,
    ),
    case(
        "softmax_without_dim",
        "loss f(x: Real[N, C]) { return sum(softmax(x)) }",
        "ShapeError",
        "`softmax` normalises over exactly one dim",
        1,
        36,
    ),
    case(
        "size_of_a_value",
        "loss f(x: Real[N]) { return sum(x) / size(x) }",
        "ShapeError",
        "`size` needs a dim name",
        1,
        43,
    ),
    case(
        "value_called_as_function",
        "loss f(x: Real) {\n    g = 2 * x\n    return g(x)\n}",
        "ResolveError",
        "`g` is a value, not a function",
        3,
        12,
    ),
    case(
        "nesting_brackets_over_limit",
        "loss f(x: Real) { return " + "(" * 101 + "x" + ")" * 101 + " }",
        "LimitError",
        "brackets nested more than 100 levels deep",
        1,
        126,
    ),
    case(
        "nesting_10000_levels",
        "loss f(x: Real) { return " + "-" * 10000 + "x }",
        "LimitError",
        "expression nested more than 100 levels deep",
        1,
        9926,
    ),
    case(
        "nesting_10000_brackets",
        "loss f(x: Real) { return " + "exp(" * 10000 + "x" + ")" * 10000 + " }",
        "LimitError",
        "brackets nested more than 100 levels deep",
        1,
        429,
    ),
    case(
        "too_many_statements",
        "loss f(x: Real) {\n" + "".join(f"    y{i} = x\n" for i in range(1001)) + "    return x\n}",
        "LimitError",
        "a loss body has 1002 statements; the limit is 1000",
        1002,
        5,
    ),
    case(
        "nesting_through_bindings",
        "loss f(x: Real) {\n    y0 = x\n"
        + "".join(f"    y{i} = sin(y{i - 1})\n" for i in range(1, 120))
        + "    return y119\n}",
        "LimitError",
        "nested more than 100 levels deep once bindings",
        102,
        12,
    ),
    case(
        "helpers_chain_too_deep",
        "def h0(a) = a\n"
        + "".join(f"def h{i}(a) = h{i - 1}(a)\n" for i in range(1, 40))
        + "loss f(x: Real) { return h39(x) }",
        "LimitError",
        "helpers and losses call each other more than 32 levels deep",
        9,
        13,
    ),
    case(
        "helpers_expand_too_much",
        "def h0(a) = a\n"
        + "".join(f"def h{i}(a) = h{i - 1}(a) + h{i - 1}(a + 1)\n" for i in range(1, 30))
        + "loss f(x: Real) { return h29(x) }",
        "LimitError",
        "grows past 100000 operations",
        4,
        28,
    ),
    case("empty_file", "", "ResolveError", "declares no `loss`", 1, 1),
    case("only_comments", "# nothing here yet\n", "ResolveError", "declares no `loss`", 1, 1),
]


@pytest.mark.parametrize(("text", "kind", "message", "line", "column"), INLINE)
def test_error_in_source_text(text: str, kind: str, message: str, line: int, column: int) -> None:
    with pytest.raises(errors.LossDSLError) as info:
        lossdsl.parse(text, "spec.loss")
    error = info.value
    assert type(error).__name__ == kind
    assert message in error.message
    assert error.span is not None
    assert (error.span.line, error.span.column) == (line, column)
    assert error.help, "every error says what to do"
    rendered = error.render()
    assert rendered.startswith(f"spec.loss:{line}:{column}: error: ")


@pytest.mark.parametrize(("text", "kind", "message", "line", "column"), INLINE)
def test_error_reported_by_the_cli(
    text: str,
    kind: str,
    message: str,
    line: int,
    column: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "spec.loss"
    path.write_text(text, encoding="utf-8")
    assert main(["check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert f"{path}:{line}:{column}: error: " in err
    assert message in err
    assert "help: " in err
    assert "Traceback" not in out + err


# --- errors about files: each builds its files under tmp_path ------------------------------------


def use_cycle(tmp: Path) -> Path:
    (tmp / "a.loss").write_text('use "b.loss"\nloss a(x: Real) { return x }\n')
    (tmp / "b.loss").write_text('# b uses a back\nuse "a.loss"\nloss b(x: Real) { return x }\n')
    return tmp / "a.loss"


def use_self(tmp: Path) -> Path:
    (tmp / "a.loss").write_text('loss a(x: Real) { return x }\nuse "./a.loss"\n')
    return tmp / "a.loss"


def missing_used_file(tmp: Path) -> Path:
    (tmp / "main.loss").write_text('\n  use "lib/nope.loss"\nloss f(x: Real) { return x }\n')
    return tmp / "main.loss"


def non_utf8(tmp: Path) -> Path:
    (tmp / "latin1.loss").write_bytes(b"# caf\xe9\nloss f(x: Real) {\n  return x # \xff\n}\n")
    return tmp / "latin1.loss"


def non_utf8_used(tmp: Path) -> Path:
    (tmp / "bad.loss").write_bytes(b"loss g(x: Real) { return x }\n# \xe9t\xe9\n")
    (tmp / "main.loss").write_text('use "bad.loss"\nloss f(x: Real) { return g(x) }\n')
    return tmp / "main.loss"


def one_megabyte(tmp: Path) -> Path:
    text = "loss f(x: Real) { return x }\n" + ("# padding\n" * 110_000)
    (tmp / "big.loss").write_text(text)
    return tmp / "big.loss"


def one_megabyte_used(tmp: Path) -> Path:
    (tmp / "big.loss").write_text("#" * (1 << 20))
    (tmp / "main.loss").write_text('use "big.loss"\nloss f(x: Real) { return x }\n')
    return tmp / "main.loss"


def empty(tmp: Path) -> Path:
    (tmp / "empty.loss").write_text("")
    return tmp / "empty.loss"


def use_chain_too_deep(tmp: Path) -> Path:
    for k in range(20):
        (tmp / f"f{k}.loss").write_text(f'use "f{k + 1}.loss"\n' if k < 19 else "")
    return tmp / "f0.loss"


def error_inside_used_file(tmp: Path) -> Path:
    (tmp / "lib.loss").write_text("def sq(a) = a * b\n")
    (tmp / "main.loss").write_text('use "lib.loss"\nloss f(x: Real) { return sq(x) }\n')
    return tmp / "main.loss"


def name_clash_with_used_file(tmp: Path) -> Path:
    (tmp / "lib.loss").write_text("loss f(x: Real) { return x }\n")
    (tmp / "main.loss").write_text('use "lib.loss"\n\nloss f(y: Real) { return y }\n')
    return tmp / "main.loss"


# (builder, error class, message substring, file the error is in, line, column)
FILES = [
    (use_cycle, "SourceError", "`use` cycle: a.loss -> b.loss -> a.loss", "b.loss", 2, 1),
    (use_self, "SourceError", "`use` cycle: a.loss -> a.loss", "a.loss", 2, 1),
    (missing_used_file, "SourceError", "no such file `", "main.loss", 2, 3),
    (non_utf8, "SourceError", "is not valid UTF-8 (byte 0xe9 at offset 5)", "latin1.loss", 1, 6),
    (non_utf8_used, "SourceError", "is not valid UTF-8 (byte 0xe9", "bad.loss", 2, 3),
    (one_megabyte, "LimitError", "a .loss file may be at most 256 KiB", "big.loss", 1, 1),
    (one_megabyte_used, "LimitError", "is 1.0 MB; a .loss file may be at most", "main.loss", 1, 1),
    (empty, "ResolveError", "declares no `loss`", "empty.loss", 1, 1),
    (use_chain_too_deep, "LimitError", "`use` chain deeper than 16 files", "f15.loss", 1, 1),
    (error_inside_used_file, "ResolveError", "undefined name `b`", "lib.loss", 1, 17),
    (name_clash_with_used_file, "ResolveError", "`f` is declared twice", "main.loss", 3, 6),
]


@pytest.mark.parametrize(
    ("build", "kind", "message", "where", "line", "column"),
    [pytest.param(*f, id=f[0].__name__) for f in FILES],
)
def test_error_about_files(
    build: Callable[[Path], Path],
    kind: str,
    message: str,
    where: str,
    line: int,
    column: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = build(tmp_path)
    with pytest.raises(errors.LossDSLError) as info:
        lossdsl.load(path)
    error = info.value
    assert type(error).__name__ == kind
    assert message in error.message
    assert error.span is not None
    assert Path(error.span.source.name).name == where
    assert (error.span.line, error.span.column) == (line, column)
    assert main(["check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert f"{error.span.source.name}:{line}:{column}: error: " in err
    assert message in err
    assert "Traceback" not in out + err


def test_missing_file_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["check", str(tmp_path / "nope.loss")])
    out, err = capsys.readouterr()
    assert code in (1, 2)
    assert "nope.loss" in err
    assert "Traceback" not in out + err
    with pytest.raises(errors.SourceError, match="no such file"):
        lossdsl.load(tmp_path / "nope.loss")


def test_error_in_used_file_notes_the_use_line(tmp_path: Path) -> None:
    with pytest.raises(errors.ResolveError) as info:
        lossdsl.load(error_inside_used_file(tmp_path))
    rendered = info.value.render()
    assert "main.loss:2:26: note: inlined from here" in rendered


def test_parse_error_in_used_file_notes_the_use_line(tmp_path: Path) -> None:
    (tmp_path / "lib.loss").write_text("def sq(a) = a ** 2\n")
    (tmp_path / "main.loss").write_text('\nuse "lib.loss"\nloss f(x: Real) { return sq(x) }\n')
    with pytest.raises(errors.ParseError) as info:
        lossdsl.load(tmp_path / "main.loss")
    assert info.value.span is not None
    assert (info.value.span.line, info.value.span.column) == (1, 15)
    notes = [(n.span.source.name, n.span.line, n.message) for n in info.value.notes]
    assert notes == [(str(tmp_path / "main.loss"), 2, "in `lib.loss`, used here")]


def test_at_least_25_kinds_of_bad_input() -> None:
    assert len(INLINE) + len(FILES) >= 25
    kinds = {p.values[1] for p in INLINE} | {f[1] for f in FILES}
    assert kinds >= {
        "ParseError",
        "ResolveError",
        "ShapeError",
        "ElementTypeError",
        "ArityError",
        "ParamError",
        "LimitError",
        "SourceError",
    }
