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
from lark.exceptions import UnexpectedInput
from lark.visitors import Transformer_NonRecursive

from lossdsl import ast
from lossdsl.errors import LimitError, Note, ParseError, Source, Span
from lossdsl.parse_errors import parse_error, shorten

MAX_FILE_BYTES = 256 * 1024
MAX_DEPTH = 100
MAX_STATEMENTS = 1000
MAX_DIM_DIGITS = 9


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
        cache=True,  # parser tables pickled in the temp dir: no LALR rebuild per process
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
        return token_span(self.source, token)

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
        if math.isinf(value) and token.type != "INF":
            raise ParseError(
                self.token_span(token),
                f"the number `{shorten(str(token))}` is too large for a 64-bit float "
                "(the largest is about 1.8e308)",
                "write `inf` for infinity, or rescale the quantity",
            )
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
        check_arguments(items)
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
        # Not int(): a literal of thousands of digits must not trip Python's int-size guard.
        digits = str(children[0]).lstrip("0") or "0"
        if len(digits) > MAX_DIM_DIGITS:
            raise LimitError(
                self.token_span(children[0]),
                f"the literal dim `{shorten(digits)}` is too large (at most "
                f"{MAX_DIM_DIGITS} digits)",
                "a literal dim is a small fixed size like `4`; name a large dim (`N`) instead",
            )
        return ast.DimRef(digits, True, self.token_span(children[0]))

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
        return ast.DefDecl(
            self.ident(name), params_, body, doc_comment(self.source, span.line), span
        )

    def use_decl(self, meta: Any, children: list[Token]) -> ast.UseDecl:
        return ast.UseDecl(str(children[0])[1:-1], self.span(meta))

    def start(self, meta: Any, children: list[Any]) -> list[ast.Decl]:
        return children


def token_span(source: Source, token: Token) -> Span:
    line, column = token.line or 1, token.column or 1
    return Span(source, line, column, token.end_line or line, token.end_column or column + 1)


def check_arguments(items: list[Any]) -> None:
    """Keyword arguments come last, each at most once (as in Python)."""
    given: dict[str, ast.KeywordArg] = {}
    for item in items:
        if isinstance(item, ast.KeywordArg):
            first = given.setdefault(item.name.name, item)
            if first is not item:
                raise ParseError(
                    item.name.span,
                    f"keyword argument `{item.name.name}` is given twice",
                    "remove one of them",
                    (Note(first.span, "first given here"),),
                )
        elif given:
            keyword = next(iter(given.values()))
            raise ParseError(
                item.span,
                f"positional argument after the keyword argument `{keyword.span.text}`",
                "put keyword arguments last; to compare two values, write `==`",
            )


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
    text = text.removeprefix("\ufeff")  # a byte-order mark is not part of the program
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
        span = token_span(source, exc.token)
        raise LimitError(
            span,
            f"brackets nested more than {MAX_DEPTH} levels deep",
            "split the expression into named bindings (`a = ...` on their own lines)",
        ) from None
    except UnexpectedInput as exc:
        raise parse_error(source, exc, parser.parse, parser.get_terminal) from None
    except lark.exceptions.VisitError as exc:
        raise exc.orig_exc from None
    return ast.Module(source, tuple(decls))
