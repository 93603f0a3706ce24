"""The parser: text -> AST with spans. Precedence and associativity, statements and separators,
doc comments, the limits, and a property test: any text either parses or raises a LossDSLError.
"""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lossdsl
from lossdsl import ast, errors, parser
from lossdsl.parse_errors import MISTAKES, Mistake
from lossdsl.parser import MAX_DEPTH, MAX_STATEMENTS, parse
from tests.conftest import EXAMPLES, SPECS


def returned(text: str) -> ast.Expr:
    """The expression `return`ed by a one-statement loss."""
    module = parse(f"loss f(x: Real, y: Real, z: Real) {{ return {text} }}")
    (decl,) = module.decls
    assert isinstance(decl, ast.LossDecl)
    (stmt,) = decl.body
    assert isinstance(stmt, ast.ReturnStmt)
    return stmt.value


def show(e: ast.Expr) -> str:
    """An expression fully parenthesised, to read its structure."""
    if isinstance(e, ast.NameExpr):
        return e.name
    if isinstance(e, ast.NumberExpr):
        return e.text
    if isinstance(e, ast.BoolExpr):
        return str(e.value).lower()
    if isinstance(e, ast.NegExpr):
        return f"(-{show(e.operand)})"
    if isinstance(e, ast.NotExpr):
        return f"(not {show(e.operand)})"
    if isinstance(e, (ast.BinaryExpr, ast.LogicExpr)):
        return f"({show(e.left)} {e.op} {show(e.right)})"
    if isinstance(e, ast.CompareExpr):
        parts = [show(e.operands[0])]
        for op, operand in zip(e.ops, e.operands[1:], strict=True):
            parts += [op, show(operand)]
        return "(" + " ".join(parts) + ")"
    if isinstance(e, ast.IfExpr):
        return f"(if {show(e.cond)} then {show(e.then)} else {show(e.orelse)})"
    if isinstance(e, ast.CallExpr):
        dims = f"[{', '.join(show(d) for d in e.dims)}]" if e.dims is not None else ""
        args = [show(a) for a in e.args] + [f"{k.name.name}={show(k.value)}" for k in e.kwargs]
        return f"{e.name.name}{dims}({', '.join(args)})"
    if isinstance(e, ast.SubscriptExpr):
        return f"{show(e.base)}[{', '.join(show(i) for i in e.indices)}]"
    raise AssertionError(type(e))


@pytest.mark.parametrize(
    ("text", "structure"),
    [
        ("-x^2", "(-(x ^ 2))"),
        ("x^y^z", "(x ^ (y ^ z))"),
        ("2^-1", "(2 ^ (-1))"),
        ("-x * y", "((-x) * y)"),
        ("x - y - z", "((x - y) - z)"),
        ("x / y * z", "((x / y) * z)"),
        ("x + y * z", "(x + (y * z))"),
        ("(x + y) * z", "((x + y) * z)"),
        ("x + y < z", "((x + y) < z)"),
        ("0 <= x <= 1", "(0 <= x <= 1)"),
        ("not x < y and y < z", "((not (x < y)) and (y < z))"),
        ("x < y or y < z and z < x", "((x < y) or ((y < z) and (z < x)))"),
        ("if x > 0 then x else -x", "(if (x > 0) then x else (-x))"),
        (
            "if x > 0 then 1 else if y > 0 then 2 else 3",
            "(if (x > 0) then 1 else (if (y > 0) then 2 else 3))",
        ),
        ("1 + if x > 0 then x else y", None),  # `if` is lowest: not an operand without brackets
        ("1 + (if x > 0 then x else y)", "(1 + (if (x > 0) then x else y))"),
        ("max(x, y) + sum[C](x)", "(max(x, y) + sum[C](x))"),
        ("norm[D](x - y, eps=1e-12)", "norm[D]((x - y), eps=1e-12)"),
        ("mean[N, P](x)", "mean[N, P](x)"),
        ("x[y] * softmax[C](x)[y]", "(x[y] * softmax[C](x)[y])"),
        ("(x * 2)[y]", "(x * 2)[y]"),
        ("where(x > y, x, y)", "where((x > y), x, y)"),
        ("true", "true"),
        ("-inf", "(-inf)"),
    ],
)
def test_precedence_and_associativity(text: str, structure: str | None) -> None:
    if structure is None:
        with pytest.raises(errors.ParseError):
            returned(text)
    else:
        assert show(returned(text)) == structure


@pytest.mark.parametrize(
    ("text", "value"),
    [("2", 2.0), ("0.25", 0.25), ("1e-7", 1e-7), ("2.5E+3", 2500.0), (".5", 0.5), ("3.", 3.0)],
)
def test_numbers(text: str, value: float) -> None:
    number = returned(text)
    assert isinstance(number, ast.NumberExpr)
    assert number.value == value
    assert number.text == text


def test_inf_is_a_number() -> None:
    number = returned("inf")
    assert isinstance(number, ast.NumberExpr) and math.isinf(number.value)


def test_spans_are_one_based_and_cover_the_construct() -> None:
    module = parse("loss f(x: Real) {\n    y = exp(x) + 1\n    return y\n}\n", "s.loss")
    (decl,) = module.decls
    assert isinstance(decl, ast.LossDecl)
    bind = decl.body[0]
    assert isinstance(bind, ast.BindStmt)
    assert (bind.span.line, bind.span.column, bind.span.end_column) == (2, 5, 19)
    assert bind.span.text == "y = exp(x) + 1"
    add = bind.value
    assert isinstance(add, ast.BinaryExpr) and add.span.text == "exp(x) + 1"
    assert isinstance(add.left, ast.CallExpr) and add.left.name.span.text == "exp"
    assert decl.span.location == "s.loss:1:1"
    assert decl.inputs[0].type.span.text == "Real"


def test_statements_end_at_newlines_or_semicolons() -> None:
    module = parse("loss f(x: Real) { y = x; z = y\n\n  ; return z; }")
    (decl,) = module.decls
    assert isinstance(decl, ast.LossDecl)
    assert [type(s).__name__ for s in decl.body] == ["BindStmt", "BindStmt", "ReturnStmt"]


def test_newlines_inside_brackets_continue_a_statement() -> None:
    text = (
        "loss f(\n  x: Real[N],\n  y: Real[N]\n) {\n"
        "  return mean(\n    x *\n    y\n  ) + sum[\n N](x)\n}"
    )
    (decl,) = parse(text).decls
    assert isinstance(decl, ast.LossDecl)
    assert len(decl.inputs) == 2
    assert show(decl.body[0].value) == "(mean((x * y)) + sum[N](x))"  # type: ignore[union-attr]


def test_windows_line_endings_and_tabs() -> None:
    (decl,) = parse("loss f(x: Real) {\r\n\ty = x\r\n\treturn y\r\n}\r\n").decls
    assert isinstance(decl, ast.LossDecl)
    assert len(decl.body) == 2


def test_doc_comments_are_the_comment_lines_directly_above() -> None:
    text = (
        "# not attached: a blank line follows\n\n"
        "# Squared error.\n#   indented line\n#\nloss mse(x: Real) { return x^2 }  # trailing\n"
        "# A helper.\ndef sq(a) = a * a\n\nloss bare(x: Real) { return x }\n"
    )
    mse, sq, bare = parse(text).decls
    assert isinstance(mse, ast.LossDecl) and mse.doc == "Squared error.\n  indented line\n"
    assert isinstance(sq, ast.DefDecl) and sq.doc == "A helper."
    assert isinstance(bare, ast.LossDecl) and bare.doc == ""


def test_declarations_in_any_order() -> None:
    text = 'loss g(x: Real) { return h(x) }\ndef h(a) = a + 1\nuse "other.loss"\n'
    kinds = [type(d).__name__ for d in parse(text).decls]
    assert kinds == ["LossDecl", "DefDecl", "UseDecl"]


def test_inputs_types_dims_and_index() -> None:
    (decl,) = parse(
        "loss f(box: Real[N, 4], t: Index[N] of C, s: Real, l: Real[N, C]) { return s }"
    ).decls
    assert isinstance(decl, ast.LossDecl)
    box, t, s, _ = decl.inputs
    assert [(d.name, d.literal) for d in box.type.dims] == [("N", False), ("4", True)]
    assert t.type.elem.name == "Index" and t.type.of is not None and t.type.of.name == "C"
    assert s.type.dims == ()


def test_params_consts_and_unpacking() -> None:
    text = """loss f(box: Real[N, 4]) {
        param alpha: Prob = 0.25 where 0 <= alpha <= 1
        param w: Positive[N]
        const eps = 1e-7
        x1, y1, x2, y2 = box
        return mean(x2 - x1) * alpha + eps
    }"""
    (decl,) = parse(text).decls
    assert isinstance(decl, ast.LossDecl)
    alpha, w, eps, unpack, _ = decl.body
    assert isinstance(alpha, ast.ParamStmt) and alpha.default is not None
    assert alpha.condition is not None and alpha.condition.span.text == "0 <= alpha <= 1"
    assert isinstance(w, ast.ParamStmt) and w.default is None and w.condition is None
    assert isinstance(eps, ast.ConstStmt)
    assert isinstance(unpack, ast.BindStmt)
    assert [t.name for t in unpack.targets] == ["x1", "y1", "x2", "y2"]


def test_literal_dims_are_normalised() -> None:
    (decl,) = parse("loss f(x: Real[N, 004]) { return sum(x) }").decls
    assert isinstance(decl, ast.LossDecl)
    assert decl.inputs[0].type.dims[1].name == "4"


def test_ast_nodes_are_frozen() -> None:
    number = returned("1")
    with pytest.raises(AttributeError):
        number.value = 2.0  # type: ignore[misc]


# --- limits ------------------------------------------------------------------------------------


def nested_brackets(depth: int) -> str:
    return "loss f(x: Real) { return " + "(" * depth + "x" + ")" * depth + " }"


def nested_expression(depth: int) -> str:
    return "loss f(x: Real) { return " + "-" * (depth - 1) + "x }"  # x itself is one level


def test_nesting_limit_is_exact() -> None:
    parse(nested_brackets(MAX_DEPTH))
    with pytest.raises(errors.LimitError, match="brackets nested more than 100"):
        parse(nested_brackets(MAX_DEPTH + 1))
    parse(nested_expression(MAX_DEPTH))
    with pytest.raises(errors.LimitError, match="expression nested more than 100"):
        parse(nested_expression(MAX_DEPTH + 1))


def test_ten_thousand_levels_is_a_limit_not_a_crash() -> None:
    for text in (nested_brackets(10_000), nested_expression(10_000)):
        with pytest.raises(errors.LimitError):
            parse(text)
    with pytest.raises(errors.LimitError):
        parse("loss f(x: Real) { return " + "x^" * 10_000 + "x }")


def test_statement_limit_is_exact() -> None:
    def body(n: int) -> str:
        return "loss f(x: Real) {\n" + "y = x\n" * (n - 1) + "return x\n}"

    (decl,) = parse(body(MAX_STATEMENTS)).decls
    assert isinstance(decl, ast.LossDecl) and len(decl.body) == MAX_STATEMENTS
    with pytest.raises(errors.LimitError, match="the limit is 1000"):
        parse(body(MAX_STATEMENTS + 1))


def test_huge_literal_dim_is_a_limit() -> None:
    with pytest.raises(errors.LimitError, match="too large"):
        parse("loss f(x: Real[" + "9" * 5000 + "]) { return sum(x) }")


# --- every shipped spec parses -----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    sorted(EXAMPLES.glob("*.loss")) + sorted(SPECS.glob("*.loss")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_shipped_specs_parse(path: object) -> None:
    module = parse(path.read_text(encoding="utf-8"), str(path))  # type: ignore[attr-defined]
    assert module.decls


# --- property: any text parses or raises a LossDSLError --------------------------------------

KEYWORDS = "loss def param const return where if then else and or not use true false inf"
NAMES = "Real Positive NonNegative Prob Binary Index of N C D 4 x y t sum mean max norm softmax"
MORE_NAMES = "log exp sigmoid clamp onehot size f g"
SYMBOLS = "( ) [ ] { } , : ; = == != < <= > >= + - * / ^ ** 0 1 2.5 1e-3 1e400"
TOKENS = [
    *KEYWORDS.split(),
    *NAMES.split(),
    *MORE_NAMES.split(),
    *SYMBOLS.split(),
    '"a.loss"',
    "\n",
    "#c\n",
    "$",
    "\x00",
]
token_soup = st.lists(st.sampled_from(TOKENS), max_size=60).map(" ".join)
printable = st.text(st.characters(min_codepoint=9, max_codepoint=0x2FF), max_size=200)


def parses_or_reports(text: str) -> None:
    try:
        spec = lossdsl.parse(text, "fuzz.loss")
    except errors.LossDSLError as error:
        error.render()  # rendering never fails either
        return
    assert spec.name


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(printable)
def test_random_text_parses_or_raises_lossdsl_error(text: str) -> None:
    parses_or_reports(text)


@FUZZ
@given(token_soup)
def test_random_tokens_parse_or_raise_lossdsl_error(text: str) -> None:
    parses_or_reports(text)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=30).map(" ".join))
def test_random_loss_bodies_parse_or_raise_lossdsl_error(body: str) -> None:
    parses_or_reports(f"loss f(x: Real[N], t: Index[N] of C, y: Real[N, C]) {{\n{body}\n}}")


EXAMPLE_TEXTS = [p.read_text(encoding="utf-8") for p in sorted(EXAMPLES.glob("*.loss"))]


@st.composite
def mutated_example(draw: st.DrawFn) -> str:
    """An example spec with a few random edits: near-valid text reaches the resolver."""
    text = draw(st.sampled_from(EXAMPLE_TEXTS)).replace('use "iou.loss"', "")
    for _ in range(draw(st.integers(1, 3))):
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, min(len(text), start + 12)))
        text = text[:start] + draw(st.sampled_from(["", *TOKENS])) + text[end:]
    return text


@FUZZ
@given(mutated_example())
def test_mutated_examples_parse_or_raise_lossdsl_error(text: str) -> None:
    parses_or_reports(text)


def test_documented_limits_match_the_code() -> None:
    from lossdsl import loader, resolve_expr

    doc = (EXAMPLES.parent.parent / "docs" / "language.md").read_text(encoding="utf-8")
    assert f"| file size | {parser.MAX_FILE_BYTES // 1024} KiB |" in doc
    assert f"| bracket nesting | {MAX_DEPTH} levels" in doc
    assert f"| statements in a loss body | {MAX_STATEMENTS} |" in doc
    assert f"| `use` chain | {loader.MAX_USE_DEPTH} files" in doc
    assert (
        f"| helpers and losses calling each other | {resolve_expr.MAX_INLINE_DEPTH} levels |" in doc
    )
    assert f"{resolve_expr.MAX_NODES:,} operations" in doc


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.message[:30])
def test_every_labelled_mistake_example_gets_its_label(mistake: Mistake) -> None:
    pattern = re.escape(mistake.message).replace(re.escape("{found}"), ".+")
    for example in mistake.examples:
        with pytest.raises(errors.ParseError) as info:
            parse(example)
        assert re.match(pattern, info.value.message), (example, info.value.message)
        assert info.value.help == mistake.help


def test_a_label_needs_the_same_kind_of_token() -> None:
    """`x * / 2` fails where `x ** 2` does, but is not a `**` mistake."""
    with pytest.raises(errors.ParseError) as info:
        returned("x * / 2")
    assert info.value.message == "unexpected `/`"
    assert info.value.help == "expected an expression here"


def test_expected_tokens_are_described_in_words() -> None:
    with pytest.raises(errors.ParseError) as info:
        returned("1 2")
    assert info.value.help == (
        "expected an operator or the end of the statement (a new line, `;` or `}`) here"
    )
    with pytest.raises(errors.ParseError) as info:
        parse("loss f(x Real) { return x }")
    assert info.value.help == "expected `:` here"
