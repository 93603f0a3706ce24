"""The compile cache (lossdsl/cache.py): one build per key across threads, a disk directory
that may be unwritable (memory only then), and entries that are checked before they are used.

Tests run as root here, where ``chmod 0o500`` does not stop writes; an unwritable directory is
made instead as a path *under a regular file* (``mkdir`` fails with NotADirectoryError) and by
making the write itself fail (monkeypatched ``mkstemp`` / ``os.replace``). The chmod variant
runs only for non-root users.
"""

from __future__ import annotations

import os
import stat
import threading
import time
import uuid
from pathlib import Path

import pytest

import lossdsl
from lossdsl import cache

SPEC = "loss f(x: Real[N], y: Real[N]) {{\n    # {tag}\n    return mean((x - y)^2)\n}}\n"


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("LOSSDSL_CACHE_DIR", str(folder))
    return folder


def fresh_key() -> str:
    return uuid.uuid4().hex


def fresh_spec() -> str:
    """A spec text no other test has compiled, so nothing is served from memory."""
    return SPEC.format(tag=uuid.uuid4().hex)


def test_two_threads_asking_for_one_key_build_it_once(cache_dir: Path) -> None:
    key, calls, results = fresh_key(), [], []
    barrier = threading.Barrier(2)

    def build() -> str:
        calls.append(threading.get_ident())
        time.sleep(0.2)  # long enough for the other thread to arrive and wait
        return "# built\n"

    def worker() -> None:
        barrier.wait()
        results.append(cache.source(key, build))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(calls) == 1
    assert results == ["# built\n", "# built\n"]
    assert (cache_dir / f"{key}.py").is_file()


def test_two_threads_compiling_the_same_spec_get_working_losses(cache_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    text, losses, errors = fresh_spec(), [], []
    barrier = threading.Barrier(2)

    def worker() -> None:
        try:
            barrier.wait()
            losses.append(lossdsl.parse(text).compile("torch"))
        except Exception as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(losses) == 2
    x, y = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])
    assert float(losses[0](x, y)) == float(losses[1](x, y)) == 2.5
    assert len(list(cache_dir.glob("*.py"))) == 1  # one entry, written once


def test_a_failing_build_releases_the_key_for_every_thread(cache_dir: Path) -> None:
    key, seen = fresh_key(), []
    barrier = threading.Barrier(2)

    def build() -> str:
        time.sleep(0.1)
        raise lossdsl.BackendError(None, "cannot build")

    def worker() -> None:
        barrier.wait()
        try:
            cache.source(key, build)
        except lossdsl.BackendError as exc:
            seen.append(exc.message)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert seen == ["cannot build", "cannot build"]  # no deadlock, no half-written entry
    assert not list(cache_dir.glob("*"))
    assert cache.source(key, lambda: "# later\n") == "# later\n"


def test_a_cache_path_under_a_regular_file_falls_back_to_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a regular file")
    monkeypatch.setenv("LOSSDSL_CACHE_DIR", str(blocker / "cache"))
    spec = lossdsl.parse(fresh_spec())
    first = spec.emit("torch")
    assert spec.emit("torch") == first  # served from memory
    assert blocker.read_text() == "a regular file"
    torch = pytest.importorskip("torch")
    loss = spec.compile("torch")
    assert float(loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0]))) == 2.5


@pytest.mark.parametrize("failing", ["tempfile.mkstemp", "os.replace"])
def test_a_failing_write_falls_back_to_memory_and_leaves_no_temp_files(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    module, name = failing.split(".")
    monkeypatch.setattr(f"lossdsl.cache.{module}.{name}", refuse)
    key = fresh_key()
    assert cache.source(key, lambda: "# text\n") == "# text\n"
    assert cache.source(key, lambda: "# never built\n") == "# text\n"  # memory
    assert not [p for p in cache_dir.glob("*") if p.suffix == ".tmp"]


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores directory modes"
)
def test_a_read_only_directory_falls_back_to_memory(cache_dir: Path) -> None:
    cache_dir.mkdir(mode=0o500)
    key = fresh_key()
    assert cache.source(key, lambda: "# text\n") == "# text\n"
    assert not list(cache_dir.iterdir())


def test_a_read_only_directory_still_serves_its_entries(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = fresh_key()
    cache.source(key, lambda: "# stored\n")
    cache.clear_memory()
    monkeypatch.setattr("lossdsl.cache.tempfile.mkstemp", _refuse)
    assert cache.source(key, lambda: "# rebuilt\n") == "# stored\n"


def _refuse(*args: object, **kwargs: object) -> None:
    raise PermissionError(13, "Permission denied")


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # truncated
        lambda text: text.replace("stored", "edited"),  # changed after writing
        lambda text: "import os\n",  # no checksum line at all
        lambda text: "",  # empty
    ],
    ids=["truncated", "edited", "no-header", "empty"],
)
def test_a_damaged_entry_is_ignored_and_rebuilt(cache_dir: Path, damage: object) -> None:
    key = fresh_key()
    cache.source(key, lambda: "# stored\nx = 1\n")
    path = cache_dir / f"{key}.py"
    path.write_text(damage(path.read_text()))  # type: ignore[operator]
    cache.clear_memory()
    assert cache.source(key, lambda: "# rebuilt\n") == "# rebuilt\n"
    cache.clear_memory()
    assert cache.source(key, lambda: "# not again\n") == "# rebuilt\n"  # repaired on disk


def test_an_entry_that_is_not_utf8_is_rebuilt(cache_dir: Path) -> None:
    key = fresh_key()
    cache_dir.mkdir()
    (cache_dir / f"{key}.py").write_bytes(b"\xff\xfe garbage")
    assert cache.source(key, lambda: "# rebuilt\n") == "# rebuilt\n"


def test_the_cache_directory_is_created_private(cache_dir: Path) -> None:
    cache.source(fresh_key(), lambda: "# text\n")
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700


def test_compiled_source_is_the_cached_source(cache_dir: Path) -> None:
    spec = lossdsl.parse(fresh_spec())
    text = spec.emit("torch")
    (entry,) = cache_dir.glob("*.py")
    header, _, body = entry.read_text().partition("\n")
    assert header.startswith("# lossdsl-cache sha256=") and body == text


def test_the_same_text_at_two_paths_names_its_own_file(cache_dir: Path, tmp_path: Path) -> None:
    text = fresh_spec()
    for name in ("a.loss", "b.loss"):
        (tmp_path / name).write_text(text)
    sources = [lossdsl.load(tmp_path / name).emit("torch") for name in ("a.loss", "b.loss")]
    assert "a.loss" in sources[0] and "b.loss" in sources[1]


def test_editing_a_used_file_invalidates_the_cache(cache_dir: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    helper, main = tmp_path / "helper.loss", tmp_path / "main.loss"
    main.write_text(f'# {uuid.uuid4().hex}\nuse "helper.loss"\nloss f(x: Real) {{ return h(x) }}\n')
    for factor in (2.0, 3.0):
        helper.write_text(f"def h(a) = a * {factor}\n")
        assert float(lossdsl.load(main).compile("torch")(torch.tensor(1.0))) == factor
