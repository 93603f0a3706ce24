"""Codegen safety (issue #7): spec text crafted to break out of the emitted Python either is a
clear ``LossDSLError`` or yields a module of the allowed shape (tests/fuzz/modcheck.py: it
imports only torch / jax, defines only the loss's own functions and classes, reaches no
dangerous builtin or dunder attribute, and holds strings only as docstrings and messages), and
the loss still computes what the spec says.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import lossdsl
from lossdsl import cli
from tests.conftest import EXAMPLES, SPECS
from tests.fuzz.modcheck import UnsafeModule, check_module

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

BACKENDS = ("torch", "jax")

# Python builtins and keywords, the emitted code's own names, names of torch / jax / their
# modules, dunders: as inputs, bindings, params, helpers, losses, dims and components.
HOSTILE = (
    *("__import__", "os", "sys", "eval", "exec", "open", "__builtins__", "__class__", "print"),
    *("float", "tuple", "str", "len", "range", "getattr", "globals", "vars", "compile", "input"),
    *("torch", "jax", "jnp", "F", "np", "math", "LossInputError", "_value", "_grad", "grad"),
    *("needs", "ctx", "self", "cls", "lambda", "import", "class", "None", "True", "match"),
    *("type", "dtype", "dtype_device", "t0", "_cse0", "value", "out", "inputs", "output"),
    *("primals", "tangents", "apply", "forward", "backward", "setup_context", "reshape"),
    *("generate_vmap_rule", "custom_jvp", "defjvp", "shape", "__name__", "_f", "f", "nn"),
)
GROUPS = [HOSTILE[k : k + 8] for k in range(0, len(HOSTILE), 8)]


def emit_checked(spec: lossdsl.Spec) -> dict[str, str]:
    sources = {b: spec.emit(b) for b in BACKENDS}
    for backend, source in sources.items():
        check_module(source, backend, spec.name)
    return sources


def values(spec: lossdsl.Spec, *arrays: np.ndarray) -> list[float]:
    """The loss on both backends (float64), which must agree."""
    t = spec.compile("torch")(*(torch.as_tensor(a) for a in arrays))
    j = spec.compile("jax")(*(jnp.asarray(a) for a in arrays))
    return [float(t), float(j)]


@pytest.mark.parametrize(
    "path", sorted(SPECS.glob("*.loss")) + sorted(EXAMPLES.glob("*.loss")), ids=lambda p: p.name
)
def test_every_library_module_has_the_allowed_shape(path: Path) -> None:
    for spec in lossdsl.load_all(path):
        emit_checked(spec)


@pytest.mark.parametrize("names", GROUPS, ids=lambda g: ",".join(g[:2]))
def test_hostile_input_names(names: tuple[str, ...]) -> None:
    decl = ", ".join(f"{n}: Real[N]" for n in names)
    body = " + ".join(f"{k + 1} * {n}" for k, n in enumerate(names))
    spec = lossdsl.parse(f"loss loss_(x0: Real[N], {decl}) {{ return sum(x0 * ({body})) }}")
    emit_checked(spec)
    arrays = [np.full(2, 1.0 + k) for k in range(len(names) + 1)]
    want = 2 * sum((k + 1) * (k + 2) for k in range(len(names)))
    assert values(spec, *arrays) == [want, want]


@pytest.mark.parametrize("names", GROUPS, ids=lambda g: ",".join(g[:2]))
def test_hostile_binding_param_and_const_names(names: tuple[str, ...]) -> None:
    a, b, *rest = names
    lines = [f"param {a}: Real = 2", f"const {b} = 3"]
    previous = "x"
    for name in rest:
        lines.append(f"{name} = {previous} + {a} * {b}")
        previous = name
    spec = lossdsl.parse("loss g(x: Real) {\n" + "\n".join(lines) + f"\nreturn {previous}\n}}")
    emit_checked(spec)
    assert values(spec, np.array(1.0)) == [1.0 + 6 * len(rest)] * 2


@pytest.mark.parametrize("name", [n for n in HOSTILE if n not in ("x",)])
def test_hostile_loss_helper_and_dim_names(name: str) -> None:
    text = (
        f"def {name}_h(a) = a * 2\n"
        f"loss {name}(x: Real[{name}], b: Real[{name}, 2]) {{\n"
        f"    p, q = b\n"
        f"    return sum({name}_h(x) + p) * size({name})\n"
        "}\n"
    )
    try:
        spec = lossdsl.parse(text)
    except lossdsl.LossDSLError:
        return  # refused clearly (e.g. a name the language reserves): fine
    emit_checked(spec)
    x, b = np.array([1.0, 2.0]), np.array([[1.0, 5.0], [2.0, 7.0]])
    assert values(spec, x, b) == [18.0, 18.0]


@pytest.mark.parametrize(
    "doc",
    [
        '"""; import os; os.system("echo pwned"); """',
        "'''; __import__('os').system('x'); '''",
        '\\"""\\\\"""\\',
        "a trailing backslash \\",
        "\\N{BULLET} \\x00 \\u2028 {__import__('os')} %s {{}}",
        "unicode: λ ∑ ✓ \u202e reversed \u200b zero width 😀",
        "control \x00 \x1b[31m \x7f \x0b \x0c chars",
        "a line\u2028separator and a paragraph\u2029separator",
    ],
)
def test_doc_comments_stay_data(doc: str) -> None:
    text = f"# {doc}\n# second line\nloss f(x: Real[N]) {{ return sum(x) }}\n"
    spec = lossdsl.parse(text)
    sources = emit_checked(spec)
    for source in sources.values():
        tree = ast.parse(source)
        nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.FunctionDef))]
        docs = [ast.get_docstring(n, clean=False) for n in nodes]
        assert any("second line" in (d or "") for d in docs)
    fn = spec.compile("torch")
    assert "second line" in (fn.__doc__ or "")
    assert float(fn(torch.tensor([1.0, 2.0]))) == 3.0


def test_a_hostile_filename_stays_data() -> None:
    name = 'evil"""\nimport os; os.system("x")\n"""\\'
    spec = lossdsl.parse("loss f(x: Real[N]) { return sum(x) }", filename=name)
    emit_checked(spec)


@pytest.mark.parametrize("value", [float("nan"), "__import__('os')", True, None, [1.0], object()])
def test_bad_param_values_are_param_errors(value: object) -> None:
    spec = lossdsl.parse("loss f(x: Real[N]) { param k: Real = 1\n return sum(x) * k }")
    with pytest.raises(lossdsl.ParamError):
        spec.emit("torch", k=value)


@pytest.mark.parametrize("value", [float("inf"), -float("inf"), 1e308, -0.0, 5e-324])
def test_extreme_param_values_compile_to_clean_modules(value: float) -> None:
    spec = lossdsl.parse("loss f(x: Real[N]) { param k: Real = 1\n return sum(x) * k }")
    for backend in BACKENDS:
        check_module(spec.emit(backend, k=value), backend, "f")


def test_cli_param_values_are_numbers_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "f.loss"
    path.write_text("loss f(x: Real[N]) { param k: Real = 1\n return sum(x) * k }\n")
    with pytest.raises(SystemExit, match="needs a number"):
        cli.main(["compile", str(path), "--target", "torch", "--param", "k=__import__('os')"])
    assert "Traceback" not in capsys.readouterr().err


def test_a_used_file_of_python_is_a_parse_error(tmp_path: Path) -> None:
    (tmp_path / "evil.loss").write_text("import os\nos.system('echo pwned')\n")
    (tmp_path / "main.loss").write_text('use "evil.loss"\nloss f(x: Real) { return x }\n')
    with pytest.raises(lossdsl.ParseError):
        lossdsl.load(tmp_path / "main.loss")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("loss f(_x: Real[N], v_x: Real[N]) { return sum(_x * v_x) }", "both be `v_x`"),
        ("loss f(x: Real[N], d_x: Real[N]) { return sum(x * d_x) }", "both be `d_x`"),
        ("loss f(x: Real[N], grad_x: Real) { return sum(x) * grad_x }", "both be `grad_x`"),
        ("loss f(n_N: Real, x: Real[N]) { return sum(x) * n_N }", "both be `n_N`"),
        ("loss f(b: Real[N, 2], b__0: Real[N]) { p, q = b\n return sum(p * b__0) }", "b__0"),
    ],
)
def test_names_that_collide_in_python_are_refused_clearly(text: str, message: str) -> None:
    spec = lossdsl.parse(text)
    for backend in BACKENDS:
        with pytest.raises(lossdsl.ResolveError, match=message):
            spec.emit(backend)


def test_the_checker_rejects_what_it_should() -> None:
    """The module checker itself: each breakout it exists to catch is caught."""
    good = lossdsl.parse("loss f(x: Real[N]) { return sum(x) }").emit("torch")
    bad = [
        good.replace("import torch\n", "import torch\nimport os\n"),
        good.replace("import torch\n", "import torch\nfrom os import system\n"),
        good + "\nx = __import__('os')\n",
        good + "\ndef helper():\n    return 1\n",
        good.replace("return (_value(x).reshape(()),)", "return (eval('x'),)"),
        good.replace("return (_value(x).reshape(()),)", "return (x.__class__,)"),
        good.replace("    return _function()", "    print('x')\n    return _function()"),
        good.replace("class _FPlain(_FFunction):", "class _FPlain(torch.autograd.Function):"),
    ]
    for source in bad:
        assert source != good
        with pytest.raises(UnsafeModule):
            check_module(source, "torch", "f")
