"""Text -> AST: the Lark LALR parser, a Transformer that builds spanned AST nodes, and the one
place where Lark's exceptions become :class:`~lossdsl.errors.ParseError`.

Lark's LALR parser and its non-recursive Transformer never recurse, so a 10,000-level
expression is reported as a limit, not a RecursionError.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import lark
from lark import Token, v_args
from lark.visitors import Transformer_NonRecursive
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from lossdsl import ast
from lossdsl.errors import LimitError, ParseError, Source, Span

MAX_FILE_BYTES = 256 * 1024
MAX_DEPTH = 100
MAX_STATEMENTS = 1000

# Lark terminal names -> words a user reads in "expected ..." lists.
_TERMINAL_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "INT": "an integer",
    "STRING": 'a quoted path ("other.loss")',
    "_NL": "a new line",
    "$END": "the end of the file",
    "COMPARE_OP": "a comparison",
    "ADD_OP": "`+` or `-`",
    "MUL_OP": "`*` or `/`",
    "POW_OP": "`^`",
}

# Common mistakes, labelled by example (lark's match_examples; see lark's
# examples/advanced/error_reporting_lalr.py).
_MISTAKES: dict[tuple[str, str], list[str]] = {
    ("`**` is not an operator in .loss", "write powers with `^`: `x^2`"): [
        "loss f(x: Real) { return x ** 2 }",
        "def f(x) = x ** 2",
    ],
    ("`=` cannot compare values", "compare with `==`; `=` only binds a name"): [
        "loss f(x: Real) { return if x = 0 then 1 else 2 }",
        "loss f(x: Real) { y = where(x = 0, 1, 2) }",
    ],
    ("an input needs a type", "declare it as `name: Type[dims]`, e.g. `pred: Real[N]`"): [
        "loss f(x) { return x }",
        "loss f(x, y: Real) { return x }",
    ],
    ("a block is not closed", "add the missing `}`"): [
        "loss f(x: Real) { return x",
        "loss f(x: Real) { y = x\n",
    ],
    ("`if` needs `then` and `else`", "write `if cond then a else b`"): [
        "loss f(x: Real) { return if x > 0 x else 0 }",
        "loss f(x: Real) { return if x > 0 then x }",
    ],
}


def _grammar_text() -> str:
    packaged = resources.files("lossdsl").joinpath("grammar/loss.lark")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "grammar" / "loss.lark").read_text("utf-8")


class _TooDeep(Exception):
    def __init__(self, token: Token) -> None:
        self.token = token


class _ParenNewlines:
    """Post-lexer: newlines inside ( ) and [ ] do not end a statement; brackets nest at most
    MAX_DEPTH deep (parentheses leave no node in the tree, so the builder cannot count them)."""

    always_accept = ("_NL",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        for token in stream:
            if token.type in ("LPAR", "LSQB"):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _TooDeep(token)
            elif token.type in ("RPAR", "RSQB"):
                depth = max(0, depth - 1)
            elif token.type == "_NL" and depth:
                continue
            yield token


@cache
def _lark() -> lark.Lark:
    return lark.Lark(
        _grammar_text(),
        parser="lalr",
        lexer="contextual",
        postlex=_ParenNewlines(),
        propagate_positions=True,
        maybe_placeholders=True,
    )


def _strip_nones(items: list[Any]) -> list[Any]:
    return [item for item in items if item is not None]


@v_args(meta=True)
class _Builder(Transformer_NonRecursive):
    """Parse tree -> AST. Method names are the grammar's rule names."""

    def __init__(self, source: Source) -> None:
        super().__init__()
        self.source = source
        self.depth: dict[int, int] = {}

    # -- spans and depth ---------------------------------------------------------------------

    def span(self, meta: Any) -> Span:
        if getattr(meta, "empty", True):
            return Span.whole_file(self.source)
        return Span(self.source, meta.line, meta.column, meta.end_line, meta.end_column)

    def token_span(self, token: Token) -> Span:
        return Span(self.source, token.line, token.column, token.end_line, token.end_column)

    def ident(self, token: Token) -> ast.Ident:
        return ast.Ident(str(token), self.token_span(token))

    def nested(self, node: ast.Expr, *children: Any) -> ast.Expr:
        depth = 1 + max((self.depth.get(id(c), 0) for c in children), default=0)
        if depth > MAX_DEPTH:
            raise LimitError(
                node.span,
                f"expression nested more than {MAX_DEPTH} levels deep",
                "split it into named bindings (`a = ...` on their own lines)",
            )
        self.depth[id(node)] = depth
        return node

    # -- expressions -------------------------------------------------------------------------

    def number_expr(self, meta: Any, children: list[Token]) -> ast.Expr:
        (token,) = children
        value = math.inf if token.type == "INF" else float(token)
        return self.nested(ast.NumberExpr(value, str(token), self.token_span(token)))

    def bool_expr(self, meta: Any, children: list[Token]) -> ast.Expr:
        (token,) = children
        return self.nested(ast.BoolExpr(token.type == "TRUE", self.token_span(token)))

    def name_expr(self, meta: Any, children: list[Token]) -> ast.Expr:
        (token,) = children
        return self.nested(ast.NameExpr(str(token), self.token_span(token)))

    def neg_expr(self, meta: Any, children: list[ast.Expr]) -> ast.Expr:
        return self.nested(ast.NegExpr(children[0], self.span(meta)), children[0])

    def not_expr(self, meta: Any, children: list[ast.Expr]) -> ast.Expr:
        return self.nested(ast.NotExpr(children[0], self.span(meta)), children[0])

    def binary_expr(self, meta: Any, children: list[Any]) -> ast.Expr:
        left, op, right = children
        return self.nested(ast.BinaryExpr(str(op), left, right, self.span(meta)), left, right)

    def and_expr(self, meta: Any, children: list[ast.Expr]) -> ast.Expr:
        left, right = children
        return self.nested(ast.LogicExpr("and", left, right, self.span(meta)), left, right)

    def or_expr(self, meta: Any, children: list[ast.Expr]) -> ast.Expr:
        left, right = children
        return self.nested(ast.LogicExpr("or", left, right, self.span(meta)), left, right)

    def compare_expr(self, meta: Any, children: list[Any]) -> ast.Expr:
        operands = tuple(children[0::2])
        ops = tuple(str(op) for op in children[1::2])
        return self.nested(ast.CompareExpr(operands, ops, self.span(meta)), *operands)

    def if_expr(self, meta: Any, children: list[ast.Expr]) -> ast.Expr:
        cond, then, orelse = children
        node = ast.IfExpr(cond, then, orelse, self.span(meta))
        return self.nested(node, cond, then, orelse)

    def keyword_arg(self, meta: Any, children: list[Any]) -> ast.KeywordArg:
        name, value = children
        node = ast.KeywordArg(self.ident(name), value, self.span(meta))
        self.depth[id(node)] = self.depth.get(id(value), 0)
        return node

    def arg_list(self, meta: Any, children: list[Any]) -> list[Any]:
        return children

    def dim_args(self, meta: Any, children: list[Any]) -> list[Any]:
        return children[0]

    def call_expr(self, meta: Any, children: list[Any]) -> ast.Expr:
        if len(children) == 2:  # where(...): `where` is a keyword, its call a builtin
            name, dims, items = children[0], None, children[1]
        else:
            name, dims, items = children
        items = items or []
        args = tuple(a for a in items if not isinstance(a, ast.KeywordArg))
        kwargs = tuple(a for a in items if isinstance(a, ast.KeywordArg))
        node = ast.CallExpr(
            self.ident(name),
            None if dims is None else tuple(dims),
            args,
            kwargs,
            self.span(meta),
        )
        return self.nested(node, *items, *(dims or ()))

    def subscript_expr(self, meta: Any, children: list[Any]) -> ast.Expr:
        base, items = children
        if isinstance(base, Token):
            base = self.name_expr(meta, [base])
        node = ast.SubscriptExpr(base, tuple(items), self.span(meta))
        return self.nested(node, base, *items)

    # -- declarations and statements ---------------------------------------------------------

    def dim_name(self, meta: Any, children: list[Token]) -> ast.DimRef:
        return ast.DimRef(str(children[0]), False, self.token_span(children[0]))

    def dim_literal(self, meta: Any, children: list[Token]) -> ast.DimRef:
        return ast.DimRef(str(int(children[0])), True, self.token_span(children[0]))

    def dim_list(self, meta: Any, children: list[ast.DimRef]) -> list[ast.DimRef]:
        return children

    def type_ref(self, meta: Any, children: list[Any]) -> ast.TypeRef:
        elem, dims, of = children
        return ast.TypeRef(self.ident(elem), tuple(dims or ()), of, self.span(meta))

    def input(self, meta: Any, children: list[Any]) -> ast.Input:
        name, type_ref = children
        return ast.Input(self.ident(name), type_ref, self.span(meta))

    def param_stmt(self, meta: Any, children: list[Any]) -> ast.ParamStmt:
        name, type_ref, default, condition = children
        return ast.ParamStmt(self.ident(name), type_ref, default, condition, self.span(meta))

    def const_stmt(self, meta: Any, children: list[Any]) -> ast.ConstStmt:
        name, value = children
        return ast.ConstStmt(self.ident(name), value, self.span(meta))

    def bind_stmt(self, meta: Any, children: list[Any]) -> ast.BindStmt:
        name, value = children
        return ast.BindStmt((self.ident(name),), value, self.span(meta))

    def unpack_stmt(self, meta: Any, children: list[Any]) -> ast.BindStmt:
        *names, value = children
        targets = tuple(self.ident(n) for n in names)
        return ast.BindStmt(targets, value, self.span(meta))

    def return_stmt(self, meta: Any, children: list[Any]) -> ast.ReturnStmt:
        return ast.ReturnStmt(children[0], self.span(meta))

    def block(self, meta: Any, children: list[Any]) -> list[ast.Stmt]:
        statements = _strip_nones(children)
        if len(statements) > MAX_STATEMENTS:
            raise LimitError(
                statements[MAX_STATEMENTS].span,
                f"a loss body has {len(statements)} statements; the limit is {MAX_STATEMENTS}",
                "move repeated work into `def` helpers",
            )
        return statements

    def loss_decl(self, meta: Any, children: list[Any]) -> ast.LossDecl:
        name, *inputs, body = children
        span = self.span(meta)
        doc = doc_comment(self.source, span.line)
        return ast.LossDecl(self.ident(name), tuple(_strip_nones(inputs)), tuple(body), doc, span)

    def def_decl(self, meta: Any, children: list[Any]) -> ast.DefDecl:
        name, *params, body = children
        span = self.span(meta)
        params_ = tuple(self.ident(p) for p in _strip_nones(params))
        return ast.DefDecl(self.ident(name), params_, body, doc_comment(self.source, span.line), span)

    def use_decl(self, meta: Any, children: list[Token]) -> ast.UseDecl:
        return ast.UseDecl(str(children[0])[1:-1], self.span(meta))

    def start(self, meta: Any, children: list[Any]) -> list[ast.Decl]:
        return children


def doc_comment(source: Source, line: int) -> str:
    """The comment lines directly above ``line``, without their ``#``."""
    lines: list[str] = []
    number = line - 1
    while number >= 1 and source.line(number).lstrip().startswith("#"):
        text = source.line(number).lstrip()[1:]
        lines.append(text[1:] if text.startswith(" ") else text)
        number -= 1
    return "\n".join(reversed(lines))


def parse(text: str, filename: str = "<string>") -> ast.Module:
    """Parse .loss source text into an :class:`ast.Module`.

    Raises:
        ParseError: the text is not valid .loss syntax (with what was expected, in words).
        LimitError: the text is over the size, nesting or statement limits.
    """
    source = Source(filename, text)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        raise LimitError(
            Span.whole_file(source),
            f"`{filename}` is {size / 1e6:.1f} MB; a .loss file may be at most "
            f"{MAX_FILE_BYTES // 1024} KiB",
            "split it into several files joined with `use`",
        )
    parser = _lark()
    try:
        tree = parser.parse(text)
        decls = _Builder(source).transform(tree)
    except _TooDeep as exc:
        token = exc.token
        span = Span(source, token.line, token.column, token.line, token.column + 1)
        raise LimitError(
            span,
            f"brackets nested more than {MAX_DEPTH} levels deep",
            "split the expression into named bindings (`a = ...` on their own lines)",
        ) from None
    except UnexpectedInput as exc:
        raise _parse_error(source, exc) from None
    except lark.exceptions.VisitError as exc:
        raise exc.orig_exc from None
    return ast.Module(source, tuple(decls))


def _describe(terminal: str) -> str:
    if terminal in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[terminal]
    try:
        pattern = _lark().get_terminal(terminal).pattern
    except KeyError:
        return terminal.lower()
    return f"`{pattern.value}`" if pattern.type == "str" else terminal.lower()


def _expected(exc: UnexpectedInput) -> str:
    names = getattr(exc, "accepts", None) or getattr(exc, "expected", None) or set()
    words = sorted({_describe(n) for n in names if not n.startswith("__")})
    if not words:
        return ""
    if len(words) > 8:
        return "an expression or a statement"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _parse_error(source: Source, exc: UnexpectedInput) -> ParseError:
    line = max(1, getattr(exc, "line", 1) or 1)
    column = max(1, getattr(exc, "column", 1) or 1)
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        token = exc.token
        found = "a new line" if token.type == "_NL" else f"`{token}`"
        end = column + (len(str(token)) if token.type != "_NL" else 1)
        span = Span(source, line, column, line, end)
    elif isinstance(exc, UnexpectedCharacters):
        found = f"character `{source.text[exc.pos_in_stream]}`"
        span = Span(source, line, column, line, column + 1)
    else:
        lines = source.text.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
        found = "the end of the file"
        span = Span(source, line, column, line, column + 1)
    label = _match_mistake(exc)
    expected = _expected(exc)
    if label is not None:
        message, help_ = label
        return ParseError(span, f"{message} (found {found})", help_)
    message = f"unexpected {found}"
    help_ = f"expected {expected} here" if expected else "check the syntax in LANGUAGE.md section 4"
    if isinstance(exc, UnexpectedEOF) or (
        isinstance(exc, UnexpectedToken) and exc.token.type == "$END"
    ):
        help_ = f"the file ended early; expected {expected}" if expected else help_
    return ParseError(span, message, help_)


def _match_mistake(exc: UnexpectedInput) -> tuple[str, str] | None:
    if isinstance(exc, UnexpectedCharacters):
        return None
    try:
        label = exc.match_examples(_lark().parse, _MISTAKES, use_accepts=True)
    except Exception:  # a labelling failure must never hide the real parse error
        return None
    return label  # type: ignore[no-any-return]
