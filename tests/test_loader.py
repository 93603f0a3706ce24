"""The loader: reading files, following `use` (relative paths, cycles, depth), what a `use`
makes visible, and files that cannot be read. Files are built under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

import lossdsl
from lossdsl import errors, loader, parser
from tests.conftest import EXAMPLES

SQUARE = "def sq(a) = a * a\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_use_is_relative_to_the_file_that_says_it(tmp_path: Path) -> None:
    write(tmp_path / "lib" / "shapes" / "sq.loss", SQUARE)
    write(
        tmp_path / "lib" / "mse.loss",
        'use "shapes/sq.loss"\nloss mse(x: Real[N]) { return mean(sq(x)) }\n',
    )
    main = write(
        tmp_path / "main.loss", 'use "lib/mse.loss"\nloss f(y: Real[M]) { return 2 * mse(y) }\n'
    )
    spec = lossdsl.load(main)
    assert spec.name == "f"
    assert [i.dims for i in spec.inputs] == [("M",)]


def test_use_with_parent_directory(tmp_path: Path) -> None:
    write(tmp_path / "common" / "sq.loss", SQUARE)
    main = write(
        tmp_path / "losses" / "main.loss",
        'use "../common/sq.loss"\nloss f(x: Real) { return sq(x) }\n',
    )
    assert lossdsl.load(main).name == "f"


def test_example_detection_uses_iou() -> None:
    scope = loader.load_file(EXAMPLES / "detection.loss")
    assert set(scope.losses) == {"iou", "bce", "detection"}
    assert scope.own == ["bce", "detection"]
    assert scope.height == 2


def test_only_the_used_files_own_names_are_visible(tmp_path: Path) -> None:
    write(tmp_path / "a.loss", SQUARE)
    write(tmp_path / "b.loss", 'use "a.loss"\ndef quad(a) = sq(sq(a))\n')
    main = write(tmp_path / "main.loss", 'use "b.loss"\nloss f(x: Real) { return sq(x) }\n')
    with pytest.raises(errors.ResolveError, match="unknown function `sq`"):
        lossdsl.load(main)
    ok = write(tmp_path / "ok.loss", 'use "b.loss"\nloss f(x: Real) { return quad(x) }\n')
    spec = lossdsl.load(ok)
    x = spec.ir.input_symbols["x"]
    assert spec.ir.output == x**4


def test_used_loss_can_be_loaded_by_name(tmp_path: Path) -> None:
    assert lossdsl.load(EXAMPLES / "detection.loss", "iou").name == "iou"
    assert lossdsl.load(EXAMPLES / "detection.loss").name == "detection"  # the last one


def test_the_same_file_used_twice_is_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "sq.loss", SQUARE)
    write(tmp_path / "b.loss", 'use "sq.loss"\ndef b(a) = sq(a)\n')
    write(tmp_path / "c.loss", 'use "./sq.loss"\ndef c(a) = sq(a)\n')
    main = write(
        tmp_path / "main.loss",
        'use "b.loss"\nuse "c.loss"\nuse "sq.loss"\nuse "sq.loss"\n'
        "loss f(x: Real) { return b(x) + c(x) + sq(x) }\n",
    )
    parsed: list[str] = []
    real_parse = loader.parse

    def counting_parse(text: str, filename: str = "<string>") -> object:
        parsed.append(Path(filename).name)
        return real_parse(text, filename)

    monkeypatch.setattr(loader, "parse", counting_parse)
    spec = lossdsl.load(main)
    assert sorted(parsed) == ["b.loss", "c.loss", "main.loss", "sq.loss"]
    x = spec.ir.input_symbols["x"]
    assert spec.ir.output == 3 * x**2


def test_use_chain_of_sixteen_files_is_allowed(tmp_path: Path) -> None:
    for k in range(15):
        write(tmp_path / f"f{k}.loss", f'use "f{k + 1}.loss"\ndef h{k}(a) = h{k + 1}(a)\n')
    write(tmp_path / "f15.loss", "def h15(a) = a\n")
    main = write(tmp_path / "main.loss", 'use "f0.loss"\nloss f(x: Real) { return h0(x) }\n')
    with pytest.raises(errors.LimitError, match="deeper than 16 files"):
        lossdsl.load(main)  # main + f0..f15 is 17 files
    assert loader.load_file(tmp_path / "f0.loss").height == 16


def test_use_chain_limit_counts_files_loaded_before(tmp_path: Path) -> None:
    """A file first reached by a short chain is still too deep at the end of a long one."""
    for k in range(15):
        write(tmp_path / f"f{k}.loss", f'use "f{k + 1}.loss"\n')
    write(tmp_path / "f15.loss", SQUARE)
    main = write(tmp_path / "main.loss", 'use "f14.loss"\nuse "f0.loss"\n')
    with pytest.raises(errors.LimitError) as info:
        loader.load_file(main)
    assert info.value.span is not None
    # f13 -> f14 -> f15 after main -> f0 -> ... -> f13 is 17 files; f14 was loaded first by main
    assert (Path(info.value.span.source.name).name, info.value.span.line) == ("f13.loss", 1)


def test_use_cycle_names_the_chain(tmp_path: Path) -> None:
    write(tmp_path / "a.loss", 'use "b.loss"\n')
    write(tmp_path / "b.loss", 'use "c.loss"\n')
    write(tmp_path / "c.loss", '\nuse "a.loss"\n')
    with pytest.raises(errors.SourceError) as info:
        loader.load_file(tmp_path / "a.loss")
    error = info.value
    assert error.message == "`use` cycle: a.loss -> b.loss -> c.loss -> a.loss"
    assert error.span is not None
    assert (Path(error.span.source.name).name, error.span.line, error.span.column) == (
        "c.loss",
        2,
        1,
    )
    assert [Path(n.span.source.name).name for n in error.notes] == ["b.loss", "a.loss"]


def test_missing_used_file_points_at_the_use(tmp_path: Path) -> None:
    main = write(tmp_path / "main.loss", 'loss f(x: Real) { return x }\nuse "gone.loss"\n')
    with pytest.raises(errors.SourceError) as info:
        lossdsl.load(main)
    assert info.value.message == f"no such file `{tmp_path / 'gone.loss'}`"
    assert info.value.span is not None
    assert (info.value.span.line, info.value.span.column) == (2, 1)


def test_used_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.loss").mkdir()
    main = write(tmp_path / "main.loss", 'use "dir.loss"\n')
    with pytest.raises(errors.SourceError, match="is a directory"):
        lossdsl.load(main)


def test_non_utf8_file_points_at_the_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "bad.loss"
    path.write_bytes(b"loss f(x: Real) {\n  return x  # na\xefve\n}\n")
    with pytest.raises(errors.SourceError) as info:
        lossdsl.load(path)
    assert "byte 0xef at offset 34" in info.value.message
    assert info.value.span is not None
    assert (info.value.span.line, info.value.span.column) == (2, 17)
    assert info.value.help == "save the file as UTF-8"


def test_utf8_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bom.loss"
    path.write_bytes(b"\xef\xbb\xbfloss f(x: Real) { return x }\n")
    assert lossdsl.load(path).name == "f"
    assert lossdsl.parse("\ufeffloss f(x: Real) { return x }").name == "f"


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.loss", "")
    with pytest.raises(errors.ResolveError, match="declares no `loss`") as info:
        lossdsl.load(path)
    assert info.value.span is not None
    assert (info.value.span.line, info.value.span.column) == (1, 1)
    with pytest.raises(errors.ResolveError, match="declares no `loss` and no `def`"):
        lossdsl.load_all(path)


def test_a_file_of_helpers_is_a_library(tmp_path: Path) -> None:
    path = write(tmp_path / "lib.loss", SQUARE)
    assert lossdsl.load_all(path) == []
    with pytest.raises(errors.ResolveError, match="declares no `loss`"):
        lossdsl.load(path)


def test_size_limit_is_256_kib(tmp_path: Path) -> None:
    head = "loss f(x: Real) { return x }\n"
    fits = write(tmp_path / "fits.loss", head + "#" * (parser.MAX_FILE_BYTES - len(head)))
    assert lossdsl.load(fits).name == "f"
    over = write(tmp_path / "over.loss", head + "#" * (parser.MAX_FILE_BYTES - len(head) + 1))
    with pytest.raises(errors.LimitError, match="at most 256 KiB"):
        lossdsl.load(over)


def test_one_megabyte_file(tmp_path: Path) -> None:
    path = write(tmp_path / "big.loss", "loss f(x: Real) { return x }\n" + "x" * (1 << 20))
    with pytest.raises(errors.LimitError) as info:
        lossdsl.load(path)
    assert info.value.message.startswith(f"`{path}` is 1.0 MB")
    assert info.value.span is not None
    assert (info.value.span.line, info.value.span.column) == (1, 1)
    assert info.value.render().startswith(f"{path}:1:1: error: ")


def test_parse_text_uses_relative_to_its_filename(tmp_path: Path) -> None:
    write(tmp_path / "sq.loss", SQUARE)
    text = 'use "sq.loss"\nloss f(x: Real) { return sq(x) }'
    spec = lossdsl.parse(text, filename=str(tmp_path / "virtual.loss"))
    assert spec.name == "f"


def test_names_are_declared_once_across_used_files(tmp_path: Path) -> None:
    write(tmp_path / "a.loss", SQUARE)
    write(tmp_path / "b.loss", "def sq(a) = a ^ 2\n")
    main = write(
        tmp_path / "main.loss", 'use "a.loss"\nuse "b.loss"\nloss f(x: Real) { return sq(x) }\n'
    )
    with pytest.raises(errors.ResolveError) as info:
        lossdsl.load(main)
    error = info.value
    assert error.message == "`sq` is declared twice"
    assert error.span is not None
    assert Path(error.span.source.name).name == "b.loss"
    assert Path(error.notes[0].span.source.name).name == "a.loss"
