"""What an emitted module may contain, checked on its syntax tree (LANGUAGE.md section 7: spec
text reaches emitted source only as validated identifiers, numbers and escaped docstrings).

At top level: the module docstring, ``import torch`` (or ``import jax``, ``jax.numpy as jnp``,
``jax.scipy.special``), ``class LossInputError(ValueError)``, the private ``_value``,
``_grad``, ``_value_and_grad``, ``_joint``, ``_unit``, ``_function`` and the
``_times_sigmoid``/``_times_sigmoid_`` and ``_row_blocks`` helpers (torch) or
``_<loss>``/``_<loss>_jvp`` (JAX) functions, the private ``_...Function`` class and its
``_...Plain`` subclass (torch) and the public loss function.
Anywhere: no other import, no ``del`` but of a local name, no ``global``, no access to dunder
attributes, no call of a builtin that reaches outside the computation, and string literals only
as docstrings or inside ``raise LossInputError(...)`` messages. (In-place updates such as
``t3.mul_(x)`` or ``torch.sub(1, t3, out=t3)`` are ordinary method calls and keyword arguments.)
"""

from __future__ import annotations

import ast
import re

from lossdsl.codegen import py_name

IMPORTS: dict[str, set[tuple[str, str | None]]] = {
    "torch": {("torch", None)},
    "jax": {("jax", None), ("jax.numpy", "jnp"), ("jax.scipy.special", None)},
}
FORBIDDEN_NAMES = frozenset(
    {"__import__", "eval", "exec", "compile", "open", "getattr", "setattr", "delattr"}
    | {"globals", "locals", "vars", "input", "breakpoint", "exit", "quit", "help", "memoryview"}
    | {"os", "sys", "subprocess", "builtins", "__builtins__", "importlib", "pickle", "shutil"}
    | {"socket", "ctypes"}
)


class UnsafeModule(AssertionError):
    pass


def _fail(why: str, node: ast.AST | None = None) -> UnsafeModule:
    where = f" (line {getattr(node, 'lineno', '?')})" if node is not None else ""
    return UnsafeModule(f"emitted module: {why}{where}")


def check_module(source: str, backend: str, loss: str) -> ast.Module:
    """Raise :class:`UnsafeModule` unless ``source`` is a module of the allowed shape."""
    tree = ast.parse(source)
    body = list(tree.body)
    if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)):
        raise _fail("does not open with a docstring")
    public = py_name(loss)
    allowed_functions = {
        "_value",
        "_grad",
        "_value_and_grad",
        "_joint",
        "_unit",
        "_function",
        "_times_sigmoid",
        "_times_sigmoid_",
        "_row_blocks",
        f"_{public}",
        f"_{public}_jvp",
        public,
    }
    for statement in body[1:]:
        _check_top(statement, backend, allowed_functions)
    names = [n.name for n in body if isinstance(n, ast.FunctionDef)]
    if public not in names or len(names) != len(set(names)):
        raise _fail(f"public function `{public}` missing or a function defined twice: {names}")
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        _check_node(node, docstrings)
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef):
            _check_free_names(function)
    return tree


def _check_free_names(function: ast.FunctionDef) -> None:
    """A spec name may be a local (`sys` as an input is a parameter); what may not happen is a
    forbidden name that is *not* local, i.e. a builtin or a global."""
    bound = {a.arg for a in (*function.args.args, *function.args.kwonlyargs)}
    bound |= {
        n.id for n in ast.walk(function) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES and node.id not in bound:
            raise _fail(f"refers to the global `{node.id}`", node)


def _check_top(node: ast.stmt, backend: str, functions: set[str]) -> None:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if (alias.name, alias.asname) not in IMPORTS[backend]:
                raise _fail(f"imports `{alias.name}`", node)
    elif isinstance(node, ast.ClassDef):
        if node.name == "LossInputError":
            bases = [ast.unparse(b) for b in node.bases]
            if bases != ["ValueError"] or len(node.body) != 1:
                raise _fail("LossInputError is not a plain ValueError subclass", node)
        elif backend == "torch" and re.fullmatch(r"_\w*Function", node.name):
            if [ast.unparse(b) for b in node.bases] != ["torch.autograd.Function"]:
                raise _fail(f"class `{node.name}` is not a torch.autograd.Function", node)
        elif backend == "torch" and re.fullmatch(r"_\w*Plain", node.name):
            if [ast.unparse(b) for b in node.bases] != [node.name[: -len("Plain")] + "Function"]:
                raise _fail(f"class `{node.name}` does not derive from its Function", node)
        else:
            raise _fail(f"defines class `{node.name}`", node)
    elif isinstance(node, ast.FunctionDef):
        if node.name not in functions:
            raise _fail(f"defines function `{node.name}`", node)
        for decorator in node.decorator_list:
            text = ast.unparse(decorator)
            if text not in ("jax.custom_jvp", "staticmethod") and not re.fullmatch(
                r"_\w+\.defjvp", text
            ):
                raise _fail(f"decorator `{text}`", node)
    else:
        raise _fail(f"top-level `{type(node).__name__}`", node)


def _docstrings(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _check_node(node: ast.AST, docstrings: set[int]) -> None:
    if isinstance(node, (ast.ImportFrom, ast.Global, ast.Nonlocal, ast.Lambda)):
        raise _fail(f"uses `{type(node).__name__}`", node)
    if isinstance(node, ast.Delete) and not all(isinstance(t, ast.Name) for t in node.targets):
        raise _fail("deletes something other than a local name", node)
    if isinstance(node, (ast.Import)) and node.col_offset:
        raise _fail("imports inside a function", node)
    if isinstance(node, ast.Attribute) and node.attr.startswith("__"):
        raise _fail(f"accesses `.{node.attr}`", node)
    if isinstance(node, ast.Raise):
        call = node.exc
        ok = isinstance(call, ast.Call) and ast.unparse(call.func) == "LossInputError"
        if not ok:
            raise _fail(f"raises `{ast.unparse(call) if call else ''}`", node)
        for inner in ast.walk(node):
            if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
                docstrings.add(id(inner))  # a message: data, never code
    if isinstance(node, ast.Call) and ast.unparse(node.func) == "float" and node.args:
        (arg,) = node.args
        if isinstance(arg, ast.Constant) and arg.value in ("inf", "-inf", "nan"):
            docstrings.add(id(arg))  # float('inf'): the printer's spelling of infinity
    # ast.walk visits a node before its children, so the strings of a message or of
    # float('inf') are registered before they are reached.
    is_string = isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes))
    if is_string and id(node) not in docstrings:
        assert isinstance(node, ast.Constant)
        raise _fail(f"string literal {node.value!r} outside a docstring or message", node)
