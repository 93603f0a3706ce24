"""The command line: exit codes (0 clean, 1 errors, 2 usage), how a diagnostic is rendered, no
traceback without --debug, and `lossdsl compile` writing a module."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lossdsl.cli import main
from tests.conftest import EXAMPLES, ROOT

SPECS = ROOT / "specs"

BAD = "loss f(x: Real[N]) {\n    y = mean(x)\n    return y + z\n}\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit:  # argparse exits for usage errors
        code = int(exit.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_check_examples_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", *map(str, sorted(EXAMPLES.glob("*.loss"))))
    assert code == 0
    assert "focal" in out


def test_check_a_directory(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", str(EXAMPLES))
    assert code == 0
    assert "detection" in out


def test_check_renders_a_diagnostic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.loss"
    path.write_text(BAD)
    code, _, err = run(capsys, "check", str(path))
    assert code == 1
    expected = (
        f"{path}:3:16: error: undefined name `z`\n"
        "        return y + z\n"
        "                   ^\n"
        "help: bind it first (`name = ...`) or declare it as an input or param"
    )
    assert expected in err


def test_check_underlines_the_whole_span(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "arity.loss"
    path.write_text("loss f(x: Real) {\n\treturn clamp(x, 0)\n}\n")
    code, _, err = run(capsys, "check", str(path))
    assert code == 1
    # a tab in the source line stays a tab under it, so the caret lines up
    assert "    \treturn clamp(x, 0)\n    \t       ^~~~~~~~~~~\n" in err


def test_check_notes_where_a_name_was_first_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rebind.loss"
    path.write_text("loss f(x: Real) {\n    y = x\n    y = 2\n    return y\n}\n")
    code, _, err = run(capsys, "check", str(path))
    assert code == 1
    assert f"{path}:3:5: error: `y` is already bound" in err
    assert f"{path}:2:5: note: first bound here" in err


def test_check_json_carries_the_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.loss"
    path.write_text(BAD)
    code, out, _ = run(capsys, "check", "--json", str(path))
    assert code == 1
    (entry,) = json.loads(out)["files"]
    (error,) = entry["errors"]
    assert (error["kind"], error["line"], error["column"]) == ("ResolveError", 3, 16)
    assert error["message"] == "undefined name `z`"


def test_check_keeps_going_after_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.loss"
    path.write_text(BAD)
    code, out, err = run(capsys, "check", str(path), str(EXAMPLES / "huber.loss"))
    assert code == 1
    assert "undefined name `z`" in err
    assert "huber" in out


def test_control_characters_never_reach_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "esc.loss"
    path.write_text("loss f(x: Real) { return x \x1b[31m }\n")
    code, _, err = run(capsys, "check", str(path))
    assert code == 1
    assert "unexpected character U+001B" in err
    assert "\x1b" not in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["check"],
        ["frobnicate"],
        ["check", "--no-such-option", "x.loss"],
        ["compile", str(EXAMPLES / "huber.loss")],  # --target is required
        ["compile", str(EXAMPLES / "huber.loss"), "--target", "tensorflow"],
    ],
    ids=["nothing", "no-files", "unknown-command", "unknown-option", "no-target", "bad-target"],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "usage:" in err


def test_missing_file_is_not_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check", str(tmp_path / "nope.loss"))
    assert code in (1, 2)
    assert "nope.loss" in err


def test_compile_writes_a_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    out_path = tmp_path / "huber_torch.py"
    code, _, err = run(
        capsys, "compile", str(EXAMPLES / "huber.loss"), "--target", "torch", "-o", str(out_path)
    )
    assert code == 0
    assert f"wrote {out_path}" in err
    source = out_path.read_text()
    compile(source, str(out_path), "exec")  # valid Python
    assert "import torch" in source


def test_compile_to_stdout_with_a_param(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    code, out, _ = run(
        capsys, "compile", str(EXAMPLES / "focal.loss"), "--target", "torch", "--param", "gamma=0.5"
    )
    assert code == 0
    assert "gamma = 0.5" in out


def test_compile_emits_the_compiled_mode_source(capsys: pytest.CaptureFixture[str]) -> None:
    import lossdsl

    code, out, _ = run(
        capsys, "compile", str(SPECS / "tversky.loss"), "--target", "torch", "--mode", "compiled"
    )
    assert code == 0
    spec = lossdsl.load(SPECS / "tversky.loss")
    assert out == spec.emit("torch", mode="compiled") != spec.emit("torch")


def test_compile_reports_a_bad_param(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, "compile", str(EXAMPLES / "focal.loss"), "--target", "torch", "--param", "alpha=2"
    )
    assert code == 1
    assert "param `alpha` = 2 violates `where 0 <= alpha <= 1`" in err


def test_compile_reports_a_spec_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.loss"
    path.write_text(BAD)
    code, _, err = run(capsys, "compile", str(path), "--target", "torch")
    assert code == 1
    assert f"{path}:3:16: error: undefined name `z`" in err


def test_console_script_in_a_real_process(tmp_path: Path) -> None:
    path = tmp_path / "deep.loss"
    path.write_text("loss f(x: Real) { return " + "-" * 10_000 + "x }\n")
    result = subprocess.run(
        [sys.executable, "-m", "lossdsl.cli", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert f"{path}:1:9926: error: expression nested more than 100 levels deep" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
