"""Lark's syntax errors -> :class:`~lossdsl.errors.ParseError`: what was found, what was
expected (in words, not terminal names) and, for common mistakes, what to do.

Mistakes are labelled by example, as lark's ``match_examples`` does
(examples/advanced/error_reporting_lalr.py), but an example only labels an error at the same
parser state *and* the same kind of token: ``x ** 2`` and ``x * / 2`` fail in the same state,
and only the first is a ``**`` mistake.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import lark
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from lossdsl.errors import Note, ParseError, Source, Span

DOCS = "docs/language.md"
Parse = Callable[[str], object]

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
# Groups of terminals named once: "an expression" instead of ten alternatives.
_EXPR_START = frozenset({"NAME", "NUMBER", "INF", "TRUE", "FALSE", "LPAR", "MINUS", "WHERE"})
_EXPR_EXTRA = frozenset({"IF", "NOT"})
_OPERATORS = frozenset({"ADD_OP", "MUL_OP", "POW_OP", "COMPARE_OP", "AND", "OR"})
_STATEMENT_END = frozenset({"_NL", "SEMICOLON", "RBRACE"})
_STATEMENT_START = frozenset({"RETURN", "PARAM", "CONST", "RBRACE", "LOSS", "DEF", "USE"})
# Tokens whose text varies: a mistake example matches any token of the type.
_VARIABLE = frozenset({"NAME", "NUMBER", "INT", "STRING", "_NL", "$END"})


@dataclass(frozen=True)
class Mistake:
    """A common mistake: ``message`` may contain ``{found}``; ``before`` widens the span left
    over characters the mistake includes (the first `*` of `**`)."""

    message: str
    help: str
    examples: tuple[str, ...]
    before: int = 0


_L = "loss f(x: Real) {"  # most examples sit inside a loss body
_CONTINUATIONS = ("+", "-", "*", "/", "^", "<", "<=", ">", ">=", "==", "!=")
MISTAKES = (
    Mistake(
        "`**` is not an operator in .loss",
        "write powers with `^`: `x^2`",
        (f"{_L} return x ** 2 }}", "def f(x) = x ** 2"),
        before=1,
    ),
    Mistake(
        "`=` cannot compare values",
        "compare with `==`; `=` only binds a name",
        (
            f"{_L} return if x = 0 then 1 else 2 }}",
            f"{_L} return x = 0 }}",
            f"{_L} y = x = 0 }}",
            "def f(x) = x = 0",
        ),
    ),
    Mistake(
        "an input needs a type",
        "declare it as `name: Type[dims]`, e.g. `pred: Real[N]`",
        ("loss f(x) { return x }", "loss f(x, y: Real) { return x }"),
    ),
    Mistake(
        "`if` needs `then` and `else`",
        "write `if cond then a else b`",
        (
            f"{_L} return if x > 0 x else 0 }}",
            f"{_L} return if x > 0 2 else 0 }}",
            f"{_L} return if x > 0 then x }}",
            f"{_L} return if x > 0 then x\n}}",
            f"{_L} return if x > 0 then x; }}",
            f"{_L} return (if x > 0 then x) }}",
        ),
    ),
    Mistake(
        "`param` belongs inside a `loss { }` block",
        "move it into the body of the loss it configures: "
        "`loss f(...) { param gamma: Real = 2.0 ... }`",
        ("param x: Real = 1", "loss f(x: Real) { return x }\nparam x: Real = 1"),
    ),
    Mistake(
        "{found} cannot appear outside a `loss { }` block",
        "a file holds `loss`, `def` and `use` declarations; put bindings, `const` and `return` "
        "in a loss body",
        (
            "x = 1",
            "const c = 1",
            "return x",
            "loss f(x: Real) { return x }\ny = 1",
            "loss f(x: Real) { return x }\nconst c = 1",
            "loss f(x: Real) { return x }\nreturn x",
        ),
    ),
    Mistake(
        "a `def` is a single expression, not a block",
        "write `def name(a, b) = expr`; only a `loss` has a `{ }` body",
        ("def f(x) { return x }",),
    ),
    Mistake(
        "{found} has no matching opening bracket",
        "remove it, or add the opening bracket it closes",
        (
            f"{_L} return x) }}",
            f"{_L} return x] }}",
            f"{_L}\n y = x)\n return y }}",
            f"{_L}\n y = x]\n return y }}",
            "def f(x) = x)",
            "def f(x) = x]",
        ),
    ),
    Mistake(
        "a statement cannot start with {found}",
        "a new line ends a statement; to continue an expression on the next line, wrap it in `( )`",
        tuple(f"{_L}\n y = x\n {op} 1\n return y }}" for op in _CONTINUATIONS),
    ),
    Mistake(
        "expected a statement, found {found}",
        "a loss body holds `name = expr`, `param`, `const` and `return expr`; "
        "to return a value, write `return ...`",
        (
            f"{_L} x + 1 }}",
            f"{_L} x - 1 }}",
            f"{_L} x * 2 }}",
            f"{_L} x ^ 2 }}",
            f"{_L} x > 2 }}",
            f"{_L} x(1) }}",
            f"{_L} x[1] }}",
            f"{_L} 2 * x }}",
            f"{_L} (x) }}",
            f"{_L} -x }}",
            f"{_L}\n y = x\n y + 1 }}",
            f"{_L}\n y = x\n 2 * y }}",
            f"{_L}\n y = x\n (y) }}",
        ),
    ),
)

# Characters that are not .loss syntax anywhere, with what the writer probably meant.
_CHARACTERS = {
    "&": "write `and` for a logical and",
    "|": "write `or` for a logical or",
    "!": "write `not` for a logical not (and `!=` for not-equal)",
    "%": "there is no `%` operator",
    "'": 'a `use` path is written in double quotes: `use "other.loss"`',
    '"': 'a quoted path may only follow `use`, on one line: `use "other.loss"`',
    "\r": "a carriage return without a newline: save the file with LF or CRLF line endings",
}


def _describe(terminal: str, get_terminal: Callable[[str], object]) -> str:
    if terminal in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[terminal]
    try:
        pattern = get_terminal(terminal).pattern  # type: ignore[attr-defined]
    except KeyError:
        return terminal.lower()
    return f"`{pattern.value}`" if pattern.type == "str" else terminal.lower()


def expected_words(accepts: set[str], get_terminal: Callable[[str], object]) -> str:
    """``{"NAME", "NUMBER", ...}`` -> "an expression, an operator or `)`"."""
    names = {n for n in accepts if not n.startswith("__")}
    words: list[str] = []
    if names >= _EXPR_START:
        words.append("an expression")
        names -= _EXPR_START | _EXPR_EXTRA
    if len(names & _OPERATORS) >= 2:
        words.append("an operator")
        names -= _OPERATORS
    if names >= _STATEMENT_END:
        words.append("the end of the statement (a new line, `;` or `}`)")
        names -= _STATEMENT_END
    words.extend(sorted(_describe(n, get_terminal) for n in names))
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


def _key(exc: UnexpectedToken) -> tuple[object, frozenset[str], str, str]:
    """Where the parser is (its state and what it accepts there: states after an atom are
    shared by every context) and what it found (the text too, for operators and keywords)."""
    token = exc.token
    value = "" if token.type in _VARIABLE else str(token)
    accepts = frozenset(exc.accepts or exc.expected or ())
    return (getattr(exc.state, "position", None), accepts, token.type, value)


@cache
def _mistake_index(parse: Parse) -> dict[tuple[object, ...], Mistake]:
    """Parse every example once: where it failed and on what -> mistake."""
    index: dict[tuple[object, ...], Mistake] = {}
    for mistake in MISTAKES:
        for example in mistake.examples:
            try:
                parse(example)
            except UnexpectedToken as exc:
                index.setdefault(_key(exc), mistake)
            except UnexpectedInput:
                pass
    return index


def shorten(text: str, limit: int = 40) -> str:
    """Spec text quoted in a message, cut short if long."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _found_character(char: str) -> str:
    if char.isprintable() and not char.isspace():
        return f"character `{char}`"
    return f"character U+{ord(char):04X}"


def _innermost_open(source: Source, kinds: str, before: tuple[int, int] | None) -> Span | None:
    """The innermost bracket of ``kinds`` (e.g. ``"{"`` or ``"(["``) still open at ``before``
    (line, column), or at the end of the file; comments and quoted paths are skipped."""
    closers = {"(": ")", "[": "]", "{": "}"}
    stack: list[tuple[str, int, int]] = []
    for number, text in enumerate(source.text.splitlines(), start=1):
        code = re.sub(r'#.*|"[^"]*"', lambda m: " " * len(m.group()), text)
        for column, char in enumerate(code, start=1):
            if before is not None and (number, column) >= before:
                break
            if char in closers:
                stack.append((char, number, column))
            elif stack and char == closers[stack[-1][0]]:
                stack.pop()
    for char, line, column in reversed(stack):
        if char in kinds:
            return Span(source, line, column, line, column + 1)
    return None


def _character_error(source: Source, exc: UnexpectedCharacters) -> ParseError:
    char = source.text[exc.pos_in_stream or 0]
    line, column = max(1, exc.line or 1), max(1, exc.column or 1)
    if _CHARACTERS.get(char):
        help_ = _CHARACTERS[char]
    elif char.isalpha():
        help_ = "names are ASCII letters, digits and `_`, starting with a letter or `_`"
    else:
        help_ = f"this character is not part of the .loss syntax; see {DOCS}"
    span = Span(source, line, column, line, column + 1)
    return ParseError(span, f"unexpected {_found_character(char)}", help_)


def _end_of_file_error(source: Source, expected: str) -> ParseError:
    lines = source.text.splitlines() or [""]
    line, column = len(lines), len(lines[-1]) + 1
    span = Span(source, line, column, line, column + 1)
    brace = _innermost_open(source, "{", None)
    if brace is not None:
        note = Note(brace, "this `{` is never closed")
        return ParseError(
            span, "the file ended inside a `{ }` block", "add the missing `}`", (note,)
        )
    help_ = f"the file ended early; expected {expected}" if expected else f"see {DOCS}"
    return ParseError(span, "unexpected end of file", help_)


def _labelled(exc: UnexpectedToken, span: Span, found: str, parse: Parse) -> ParseError | None:
    """The error as a common mistake, if it is one."""
    if exc.state is None:
        return None
    mistake = _mistake_index(parse).get(_key(exc))
    if mistake is None:
        return None
    if mistake.before and span.column > mistake.before:
        span = Span(
            span.source, span.line, span.column - mistake.before, span.line, span.end_column
        )
    message = mistake.message.replace("{found}", found)
    if "{found}" not in mistake.message and not mistake.before:
        message += f" (found {found})"
    return ParseError(span, message, mistake.help)


def parse_error(
    source: Source, exc: UnexpectedInput, parse: Parse, get_terminal: Callable[[str], object]
) -> ParseError:
    """The one place a Lark syntax error becomes a :class:`ParseError`."""
    if isinstance(exc, UnexpectedCharacters):
        return _character_error(source, exc)
    accepts = set(getattr(exc, "accepts", None) or getattr(exc, "expected", None) or ())
    expected = expected_words(accepts, get_terminal)
    token: lark.Token | None = getattr(exc, "token", None)
    if token is None or token.type in ("$END", "<EOF>"):
        return _end_of_file_error(source, expected)
    line, column = max(1, getattr(exc, "line", 1) or 1), max(1, getattr(exc, "column", 1) or 1)
    at_newline = token.type == "_NL"
    found = "end of line" if at_newline else f"`{shorten(str(token))}`"
    span = Span(source, line, column, line, column + (1 if at_newline else len(str(token))))
    if isinstance(exc, UnexpectedToken):
        labelled = _labelled(exc, span, found, parse)
        if labelled is not None:
            return labelled
    if token.type in _STATEMENT_START and accepts & {"RPAR", "RSQB"}:
        bracket = _innermost_open(source, "([", (line, column))
        if bracket is not None:
            closer = ")" if bracket.text == "(" else "]"
            return ParseError(
                span,
                f"unexpected {found}: a `{bracket.text}` is still open",
                f"close it with `{closer}` before the statement ends",
                (Note(bracket, "opened here"),),
            )
    help_ = f"expected {expected} here" if expected else f"see the syntax in {DOCS}"
    if at_newline and accepts & (_EXPR_START | _OPERATORS | {"THEN", "ELSE", "RPAR", "RSQB"}):
        help_ += "; to continue an expression on the next line, wrap it in `( )`"
    return ParseError(span, f"unexpected {found}", help_)
