"""Source spans and the one exception family every stage raises.

Every user-facing problem is a :class:`LossDSLError` carrying the :class:`Span` it is about, so
the CLI and the API render the same ``FILE:LINE:COL: error: message`` block with the source line,
a ``^~~~`` underline and a ``help:`` line.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Source:
    """The text of one ``.loss`` file, kept so diagnostics can quote its lines."""

    name: str
    text: str

    def line(self, number: int) -> str:
        # Lines end at "\n" only, as the lexer counts them: str.splitlines() would also split
        # at \x0b, \x0c, \x1c-\x1e, \x85, \u2028 and \u2029 and misplace every later line.
        lines = self.text.split("\n")
        return lines[number - 1].removesuffix("\r") if 0 < number <= len(lines) else ""


@dataclass(frozen=True, slots=True)
class Span:
    """A region of a source file: 1-based lines and columns, end exclusive."""

    source: Source
    line: int
    column: int
    end_line: int
    end_column: int

    @property
    def location(self) -> str:
        return f"{self.source.name}:{self.line}:{self.column}"

    @property
    def text(self) -> str:
        """The spec text this span covers (first line only for multi-line spans)."""
        line = self.source.line(self.line)
        end = self.end_column - 1 if self.end_line == self.line else len(line)
        return line[self.column - 1 : end]

    def underline(self) -> str:
        """The source line and a caret underline under the whole span (first line only);
        empty when there is no line to show (an empty file, a file too large to read)."""
        line = self.source.line(self.line)
        if not line.strip():
            return ""
        end = self.end_column if self.end_line == self.line else len(line) + 1
        width = max(1, min(end - self.column, 80))
        start = max(0, self.column - 61)  # keep long lines readable: a window around the span
        shown = "".join(_printable(ch) for ch in line[start : start + 160])
        # Tabs stay tabs under the line, so the caret lines up however wide a tab is shown.
        indent = "".join("\t" if ch == "\t" else " " for ch in shown[: self.column - 1 - start])
        marker = indent + "^" + "~" * (width - 1)
        return f"    {shown}\n    {marker}"

    @staticmethod
    def whole_file(source: Source) -> Span:
        return Span(source, 1, 1, 1, 1)


def _printable(ch: str) -> str:
    """A character of spec text as shown in a terminal: control characters become U+FFFD, so
    a diagnostic can never carry escape sequences (and stays one column per character)."""
    return ch if ch.isprintable() or ch == "\t" else "\ufffd"


@dataclass(frozen=True, slots=True)
class Note:
    """A secondary span in a diagnostic ("defined here")."""

    span: Span
    message: str


@dataclass(eq=False)
class LossDSLError(Exception):
    """Root of every error lossdsl raises about a spec, a call or a param value.

    Args:
        span: where in the spec the problem is (``None`` only for errors with no source).
        message: what is wrong, with the construct in backticks.
        help: what to do about it.
        notes: secondary spans, e.g. where a name was first defined.
    """

    span: Span | None
    message: str
    help: str = ""
    notes: tuple[Note, ...] = field(default_factory=tuple)
    severity = "error"

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        return render(self.severity, self.span, self.message, self.help, self.notes)

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "severity": self.severity,
            "kind": type(self).__name__,
            "message": self.message,
            "help": self.help,
        }
        if self.span is not None:
            data.update(
                file=self.span.source.name,
                line=self.span.line,
                column=self.span.column,
                end_line=self.span.end_line,
                end_column=self.span.end_column,
            )
        return data


def render(
    severity: str, span: Span | None, message: str, help: str = "", notes: tuple[Note, ...] = ()
) -> str:
    """Render a diagnostic the way compilers do: location, message, caret, help."""
    head = f"{span.location}: " if span is not None else ""
    parts = [f"{head}{severity}: {message}"]
    if span is not None and span.underline():
        parts.append(span.underline())
    for note in notes:
        shown = note.span.underline()
        parts.append(
            f"{note.span.location}: note: {note.message}" + (f"\n{shown}" if shown else "")
        )
    if help:
        parts.append(f"help: {help}")
    return "\n".join(parts)


class ParseError(LossDSLError):
    """The text is not valid .loss syntax."""


class SourceError(LossDSLError):
    """A file cannot be read: missing, not UTF-8, too large, or a `use` cycle."""


class ResolveError(LossDSLError):
    """An undefined, reserved or rebound name."""


class ShapeError(LossDSLError):
    """Dims that do not line up: broadcasting, reductions, unpacking, loss calls."""


class ElementTypeError(LossDSLError):
    """A value of the wrong element type (e.g. an `Index` used in arithmetic)."""


class ArityError(LossDSLError):
    """A function, helper or loss called with the wrong number of arguments."""


class ParamError(LossDSLError):
    """A param value that violates its type or its `where` condition."""


class LimitError(LossDSLError):
    """A spec beyond a resource limit (nesting depth, size, statements, `use` depth)."""


class CallError(LossDSLError):
    """A compiled loss called with inputs that do not match its declaration."""


class BackendError(LossDSLError):
    """A backend cannot compile a construct, or its framework is not installed."""
