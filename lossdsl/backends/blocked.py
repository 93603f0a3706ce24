"""The statements that use the eager scratch buffer, run a block of rows at a time.

The in-place pass (lossdsl.backends.inplace) writes what a statement consumes at once into one
full-size scratch buffer. Where every statement that does so works row by row along the
layout's first dim (elementwise operations, reductions over other dims, in-place updates of
buffers that have that dim), this pass runs each of them over blocks of rows of about
:data:`BLOCK` elements instead, every operand with that dim sliced to the block and the
scratch buffer one block in size::

    for _rows, _scratch in _blocks:
        torch.sub(t2[_rows], target[_rows], out=_scratch)...

A step then allocates one full-size buffer fewer, and the block written into the scratch
buffer is still in cache when the next operation reads it. (Dice: one full-size allocation
per step, the gradient. With two, glibc finds both freed full-size blocks together at the top
of its heap at the next step, gives them back to the kernel, and the step faults them in
again.) A statement whose result has every dim must be an update of a buffer with the first
dim (the blocks write into its rows); one whose result lacks some dims is the concatenation of
its blocks' results (``torch.cat``). Anything else, anywhere, and the function keeps its
full-size scratch buffer.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from lossdsl.backends.module import literal, wrap

BLOCK = 1 << 17  # elements: 512 KiB of float32, a block that stays in cache between passes
BLOCKS = "_blocks"
ROWS = "_rows"
HELPERS = {
    "_row_blocks": (
        "def _row_blocks(x, elements=" + str(BLOCK) + "):",
        '    """Slices of the rows of x, each of about `elements` elements, with a view for each',
        '    of one buffer shaped like the block (all rows at once: `...`, the cheapest view)."""',
        "    rows = max(1, elements // max(1, x.numel() // max(1, x.shape[0])))",
        "    if rows >= x.shape[0]:",
        "        return [(..., x.new_empty(x.shape))]",
        "    buffer = x.new_empty((rows, *x.shape[1:]))",
        "    starts = range(0, x.shape[0], rows)",
        "    return [(slice(i, i + rows), buffer[: min(rows, x.shape[0] - i)]) for i in starts]",
    ),
}

# Operations that act on each row alone: elementwise functions (and the in-place methods of
# the same names), and reductions checked for their dims.
_ELEMENTWISE = frozenset(
    {"add", "sub", "mul", "div", "neg", "pow", "reciprocal", "addcmul", "clamp", "where"}
    | {"exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos", "tanh", "erf", "abs"}
    | {"sign", "floor", "ceil", "round", "sigmoid", "relu", "maximum", "minimum"}
)
_FUNCTIONS = frozenset(f"torch.{name}" for name in _ELEMENTWISE) | {
    "torch.nn.functional.softplus",
    "_times_sigmoid",
    "_times_sigmoid_",
}
_REDUCTIONS = frozenset({"torch.sum", "torch.amax", "torch.amin", "torch.logsumexp"})
# Syntax that computes elementwise (names and calls are checked on their own).
_ROW_NODES = (ast.BinOp, ast.UnaryOp, ast.Compare, ast.Constant, ast.operator, ast.unaryop)
_ROW_NODES += (ast.cmpop, ast.expr_context)


def block(
    body: list[str],
    scratch: str,
    dims: Callable[[str], frozenset[str] | None],
    order: tuple[str, ...],
) -> list[str] | None:
    """``body`` as the in-place pass left it, ``scratch`` its line allocating the scratch
    buffer, ``dims`` the dims of a name (``None``: not a tensor with known dims), ``order``
    the layout's dims. Returns the body with the scratch buffer's statements run by blocks,
    or ``None`` where one of them cannot be (or the layout has no dims: no rows)."""
    if not order:
        return None
    source = scratch.partition(" = ")[2].partition(".")[0]  # `_scratch = x.new_empty(x.shape)`
    out: list[str] = []
    for line in body:
        if line == scratch:
            out.append(f"{BLOCKS} = _row_blocks({source})")
        elif "_scratch" in line:
            lines = _blocked(line, dims, order[0], frozenset(order))
            if lines is None:
                return None
            out += lines
        else:
            out.append(line)
    return out


def _blocked(
    line: str, dims: Callable[[str], frozenset[str] | None], first: str, full: frozenset[str]
) -> list[str] | None:
    tree = ast.parse(line).body[0]
    if not (isinstance(tree, ast.Assign) and isinstance(tree.targets[0], ast.Name)):
        return None
    name, value = tree.targets[0].id, tree.value
    gate = None
    if isinstance(value, ast.IfExp) and _is_none(value.orelse):  # `x if needs[k] else None`
        gate, value = ast.unparse(value.test), value.body
    base = _base(value, dims, first)  # (before the names in `value` are sliced)
    rows = _Rows(dims, first)
    text = ast.unparse(rows.visit(value))
    result = dims(name)
    if rows.failed or result is None or first not in result:
        return None
    loop = f"for {ROWS}, _scratch in {BLOCKS}:"
    if result != full:  # a row sum or the like: the blocks' results, joined
        joined = f"torch.cat([{text} {loop[:-1]}])"
        return [f"{name} = {joined}" + (f" if {gate} else None" if gate else "")]
    if base is None:
        return None
    # one statement, header and body, so that `del`s after its last uses follow all of it
    if gate is None:
        return [f"{loop}\n{wrap(f'    {text}')}", f"{name} = {base}"]
    updates = f"if {gate}:\n    {loop}\n{wrap(f'        {text}')}"
    return [updates, f"{name} = {base} if {gate} else None"]


class _Rows(ast.NodeTransformer):
    """Slices every name with the first dim to the block's rows; ``failed`` where something
    in the expression does not act on each row alone."""

    def __init__(self, dims: Callable[[str], frozenset[str] | None], first: str) -> None:
        self.dims = dims
        self.first = first
        self.failed = False

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if not isinstance(node, _ROW_NODES):
            self.failed = True
            return node
        return super().generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in ("_scratch", "dtype"):
            return node
        dims = self.dims(node.id)
        if dims is None:
            self.failed = True
        elif self.first in dims:
            return ast.Subscript(node, ast.Name(ROWS, ast.Load()), ast.Load())
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = ast.unparse(node.func)
        keywords = {k.arg: k.value for k in node.keywords}
        if func in _REDUCTIONS:
            axes = literal(keywords.get("dim"))
            if not isinstance(axes, tuple) or 0 in axes:
                self.failed = True
                return node
        elif func not in _FUNCTIONS and not self._row_method(node):
            self.failed = True
            return node
        out = keywords.get("out")
        if out is not None and not self._rowwise_target(out):
            self.failed = True
            return node
        node.args = [self.visit(a) for a in node.args]
        node.keywords = [
            ast.keyword(k.arg, k.value if k.arg == "dim" else self.visit(k.value))
            for k in node.keywords
        ]
        if isinstance(node.func, ast.Attribute) and func not in _FUNCTIONS | _REDUCTIONS:
            node.func = ast.Attribute(self.visit(node.func.value), node.func.attr, ast.Load())
        return node

    def _row_method(self, node: ast.Call) -> bool:
        """An in-place elementwise method (``.mul_(...)``) of a block's own rows: of a fresh
        result, or of a name with the first dim (a name without it would be updated once
        per block)."""
        func = node.func
        if not (isinstance(func, ast.Attribute) and func.attr.endswith("_")):
            return False
        if func.attr[:-1] not in _ELEMENTWISE:
            return False
        return self._rowwise_target(func.value)

    def _rowwise_target(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Name):
            dims = self.dims(node.id)
            return node.id == "_scratch" or (dims is not None and self.first in dims)
        return True


def _base(node: ast.expr, dims: Callable[[str], frozenset[str] | None], first: str) -> str | None:
    """The name of the buffer an expression's result is (a chain of in-place updates of it),
    if that is a name with the first dim other than the scratch buffer."""
    while True:
        if isinstance(node, ast.Name):
            found = dims(node.id)
            ok = node.id != "_scratch" and found is not None and first in found
            return node.id if ok else None
        if not isinstance(node, ast.Call):
            return None
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr.endswith("_"):
            node = func.value
        elif isinstance(func, ast.Name) and func.id == "_times_sigmoid_":
            node = node.args[0]
        else:
            out = {k.arg: k.value for k in node.keywords}.get("out")
            if out is None:
                return None
            node = out


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None
