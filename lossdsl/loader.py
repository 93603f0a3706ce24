"""Files -> parsed modules: reading .loss files, following `use`, and the module's namespace.

A `use "other.loss"` path is relative to the file that says it. Cycles and over-deep chains of
`use` are errors that name the chain; an error inside a used file notes the `use` lines that
led to it. Each file is read and parsed once per load, however many files use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from lossdsl import ast, builtins
from lossdsl.errors import LimitError, LossDSLError, Note, ResolveError, Source, SourceError, Span
from lossdsl.parser import MAX_FILE_BYTES, parse

MAX_USE_DEPTH = 16  # files in a chain of `use`, counting the one loaded


@dataclass
class ModuleScope:
    """What one file can call: its own defs and losses and those of the files it uses."""

    module: ast.Module
    # name -> (declaration, the scope its body resolves in: its own file's)
    defs: dict[str, tuple[ast.DefDecl, ModuleScope]] = field(default_factory=dict)
    losses: dict[str, tuple[ast.LossDecl, ModuleScope]] = field(default_factory=dict)
    own: list[str] = field(default_factory=list)  # names declared in this file itself
    height: int = 1  # files in the longest chain of `use` starting here


def read_source(path: Path, span: Span | None = None, name: str | None = None) -> Source:
    """Read a .loss file as UTF-8; ``span`` is the `use` that asked for it, if any, and
    ``name`` how diagnostics call the file (default: ``path``)."""
    name = name or str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SourceError(span, f"no such file `{name}`", "check the path") from None
    except IsADirectoryError:
        raise SourceError(span, f"`{name}` is a directory", "name a .loss file") from None
    except OSError as exc:
        raise SourceError(span, f"cannot read `{name}`: {exc.strerror}", "check the path") from None
    if len(data) > MAX_FILE_BYTES:
        raise LimitError(
            span or Span.whole_file(Source(name, "")),
            f"`{name}` is {len(data) / 1e6:.1f} MB; a .loss file may be at most "
            f"{MAX_FILE_BYTES // 1024} KiB",
            "split it into several files joined with `use`",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        source = Source(name, data.decode("utf-8", "replace"))
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SourceError(
            Span(source, line, column, line, column + 1),
            f"`{name}` is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            "save the file as UTF-8",
        ) from None
    return Source(name, text.removeprefix("\ufeff"))


def load_file(path: str | Path) -> ModuleScope:
    source = read_source(Path(path))
    return scope_of(parse(source.text, source.name))


def scope_of(
    module: ast.Module,
    stack: tuple[Path, ...] = (),
    loaded: dict[Path, ModuleScope] | None = None,
) -> ModuleScope:
    """Build a module's namespace, loading the files it uses (recursively, cycle-checked).

    Args:
        module: the parsed file; its `use` paths are relative to its source's folder.
        stack: the files whose `use` led here, outermost first.
        loaded: files already loaded in this load, by resolved path.
    """
    here = Path(module.source.name)
    stack = (*stack, here.resolve())
    loaded = {} if loaded is None else loaded
    scope = ModuleScope(module)
    seen: dict[str, ast.Ident] = {}
    for decl in module.decls:
        if isinstance(decl, ast.UseDecl):
            used = _load_used(decl, here.parent, stack, loaded)
            scope.height = max(scope.height, used.height + 1)
            for name in used.own:  # what that file declares itself, not what it uses
                if name in used.losses:
                    _declare(scope.losses, seen, used.losses[name][0].name, used.losses[name])
                else:
                    _declare(scope.defs, seen, used.defs[name][0].name, used.defs[name])
    for decl in module.decls:
        if isinstance(decl, ast.LossDecl):
            _declare(scope.losses, seen, decl.name, (decl, scope))
            scope.own.append(decl.name.name)
        elif isinstance(decl, ast.DefDecl):
            _declare(scope.defs, seen, decl.name, (decl, scope))
            scope.own.append(decl.name.name)
    return scope


def _declare(table: dict, seen: dict[str, ast.Ident], ident: ast.Ident, entry: tuple) -> None:  # type: ignore[type-arg]
    name = ident.name
    if name in builtins.RESERVED:
        raise ResolveError(ident.span, f"`{name}` is a reserved word", "choose another name")
    if name in builtins.ALL:
        raise ResolveError(
            ident.span,
            f"`{name}` would shadow the builtin function {builtins.signature(name)}",
            "choose another name",
        )
    if name in seen and seen[name] is not ident:
        raise ResolveError(
            ident.span,
            f"`{name}` is declared twice",
            "rename one of them",
            (Note(seen[name].span, "first declared here"),),
        )
    seen[name] = ident
    table[name] = entry


def _load_used(
    decl: ast.UseDecl, base: Path, stack: tuple[Path, ...], loaded: dict[Path, ModuleScope]
) -> ModuleScope:
    path = (base / decl.path).resolve()
    if path in stack:
        chain = " -> ".join(p.name for p in (*stack[stack.index(path) :], path))
        raise SourceError(decl.span, f"`use` cycle: {chain}", "remove one of the `use` lines")
    height = loaded[path].height if path in loaded else 1
    if len(stack) + height > MAX_USE_DEPTH:
        raise LimitError(
            decl.span,
            f"`use` chain deeper than {MAX_USE_DEPTH} files",
            "use the files you need directly from this one",
        )
    if path in loaded:
        return loaded[path]
    shown = str(base / decl.path)
    try:
        source = read_source(path, decl.span, shown)
        used = scope_of(parse(source.text, shown), stack, loaded)
    except LossDSLError as exc:
        if exc.span is None or exc.span.source.name == decl.span.source.name:
            raise
        note = Note(decl.span, f"in `{decl.path}`, used here")
        raise replace(exc, notes=(*exc.notes, note)) from None
    loaded[path] = used
    return used
