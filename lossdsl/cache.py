"""The compile cache: emitted module source keyed by a hash of (the name and text of every file
the loss is built from, loss, params, backend, lossdsl's own code), in memory and on disk.

The disk directory is ``$LOSSDSL_CACHE_DIR`` or ``~/.cache/lossdsl``; if it cannot be written
(read-only, missing permissions, a path under a regular file) the cache silently stays in
memory. Writes go to a temporary file renamed into place, so concurrent processes and threads
never read half a file; every entry starts with a checksum line of its text, and an entry that
does not match it (truncated, edited, corrupted) is ignored and rebuilt. Threads asking for the
same key wait on one per-key lock, so a source is built once per process.

Cached entries are Python that lossdsl executes: the directory is created private to its user
(mode 0o700), and should be trusted like any other directory of importable code.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from lossdsl import __version__

_HEADER = "# lossdsl-cache sha256="
_lock = threading.Lock()
_memory: dict[str, str] = {}
_key_locks: dict[str, threading.Lock] = {}


@functools.cache
def _compiler_hash() -> str:
    """A hash of lossdsl's own code, so a changed compiler never reuses stale output."""
    digest = hashlib.sha256(__version__.encode())
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")) + sorted(package.parent.glob("grammar/*.lark")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    configured = os.environ.get("LOSSDSL_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "lossdsl"


def key(sources: str, loss: str, params: dict[str, object], backend: str) -> str:
    """The key of an emitted source. ``sources`` must name everything the source depends on
    beyond the other arguments: the name and text of the loss's file and of the files it uses
    (the emitted docstring names the file; a used helper is inlined)."""
    payload = json.dumps(
        {
            "text": sources,
            "loss": loss,
            "params": params,
            "backend": backend,
            "v": _compiler_hash(),
        },
        sort_keys=True,
        default=repr,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def source(cache_key: str, build: Callable[[], str]) -> str:
    """The cached source for a key, building (once, even across threads) if absent."""
    if cache_key in _memory:
        return _memory[cache_key]
    with _lock:
        key_lock = _key_locks.setdefault(cache_key, threading.Lock())
    with key_lock:
        if cache_key in _memory:
            return _memory[cache_key]
        text = _read(cache_key)
        if text is None:
            text = build()
            _write(cache_key, text)
        _memory[cache_key] = text
        return text


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read(cache_key: str) -> str | None:
    """The entry's text, or None if it is missing, unreadable or fails its checksum."""
    path = cache_dir() / f"{cache_key}.py"
    try:
        stored = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    header, newline, text = stored.partition("\n")
    if not newline or header != _HEADER + _checksum(text):
        return None
    return text


def _write(cache_key: str, text: str) -> None:
    directory = cache_dir()
    tmp: str | None = None
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"{_HEADER}{_checksum(text)}\n{text}")
        os.replace(tmp, directory / f"{cache_key}.py")
        tmp = None
    except OSError:
        pass  # read-only or unwritable cache: memory only
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def clear_memory() -> None:
    """Forget in-memory entries (tests use it to measure cold and warm paths)."""
    with _lock:
        _memory.clear()
