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

Where the whole function works so, :func:`block_rows` goes further and runs all of it by
blocks of rows (most losses: a computation row by row, then a mean over the rows): every
temporary is one block in size and stays in cache from the operation that writes it to the
ones that read it, a sum over the rows is the sum of its blocks' sums, and each gradient is
written into its rows of one full-size output. Focal loss at 1e6-1e7 elements: about half the
time, and the gradient is the only full-size allocation.
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
# Functions along the dims given as `dim=`: row by row where those are not the first.
_ALONG = _REDUCTIONS | {
    "torch.softmax",
    "torch.log_softmax",
    "torch.take_along_dim",
    "torch.cat",
    "torch.linalg.vector_norm",
}
# Functions of a tensor's shape (a block's, in a block) or of each element.
_SHAPED = frozenset(
    {"torch.zeros_like", "torch.ones_like", "torch.full_like", "torch.broadcast_to"}
)
# Syntax that computes elementwise (names and calls are checked on their own).
_ROW_NODES = (ast.BinOp, ast.UnaryOp, ast.Compare, ast.Constant, ast.operator, ast.unaryop)
_ROW_NODES += (ast.cmpop, ast.expr_context, ast.List)
# Reductions over the rows that a block's partial results combine into: the function again.
_PARTIAL = frozenset({"torch.sum", "torch.amax", "torch.amin"})
# In-place methods whose function can write into an output given as `out=`.
_OUT = frozenset(
    {"add", "sub", "mul", "div", "addcmul", "addcdiv", "pow", "neg", "exp", "log", "log1p"}
    | {"expm1", "sqrt", "rsqrt", "sigmoid", "reciprocal", "sign", "abs", "clamp", "tanh"}
)
_WITH_OUT = frozenset(f"torch.{name}" for name in _OUT | {"cat", "maximum", "minimum"})
_BINARY = {ast.Mult: "torch.mul", ast.Add: "torch.add", ast.Sub: "torch.sub", ast.Div: "torch.div"}


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


def block_rows(
    body: list[str],
    scratch: str | None,
    dims: Callable[[str], frozenset[str] | None],
    order: tuple[str, ...],
    source: str | None,
) -> list[str] | None:
    """``body`` as the in-place pass left it (the return last), ``scratch`` its line allocating
    the scratch buffer (if it has one), ``dims`` the dims of a name, ``order`` the layout's
    dims, ``source`` an argument with every dim (its rows are the blocks'). Returns the whole
    function run by blocks of rows, or ``None`` where some statement does not allow it.

    Statements that read no rows stay before the loop (or after it, where they read what it
    sums). A statement with the first dim runs in the loop, its arguments sliced to the
    block; a gradient it returns is written into its rows of a full-size output. A sum (max,
    min) over the rows becomes a list of its blocks' results, combined after the loop; the
    loop may not read what is computed from it."""
    if not order or source is None:
        return None
    first = order[0]
    *lines, end = body
    returned = ast.parse(end).body[0]
    if not (isinstance(returned, ast.Return) and isinstance(returned.value, ast.Tuple)):
        return None
    outputs = {e.id for e in returned.value.elts if isinstance(e, ast.Name)}
    before: list[str] = []  # statements that read no rows
    allocate: list[str] = []  # the full-size outputs, and the lists of partial results
    loop: list[tuple[str, ...]] = []  # statements: (statement, gate), or else a second one
    after: list[str] = []
    local: set[str] = set()  # names made in the loop: one block each
    late: set[str] = set()  # names made after it
    for line in lines:
        if line == scratch:
            continue
        tree = ast.parse(line).body[0]
        if not (isinstance(tree, ast.Assign) and isinstance(tree.targets[0], ast.Name)):
            return None
        name, value, gate = tree.targets[0].id, tree.value, None
        if isinstance(value, ast.IfExp) and _is_none(value.orelse):  # `x if needs[k] else None`
            gate, value = ast.unparse(value.test), value.body
        reads = _names(value)
        rowed = _reads(value, dims, first, local)
        result = dims(name)
        if result is None and isinstance(value, ast.Name):  # an alias (`grad_x = t3`)
            result = dims(value.id)
        if result is None and name in outputs:  # a gradient (`torch.cat` of its columns)
            result = dims(name.removeprefix("grad_"))
        if not rowed:
            if reads & late:
                after.append(line)
                late.add(name)
            elif (loop and _updates_a_name(value)) or (result is not None and first in result):
                return None  # moved before the loop, it would run before what it follows
            else:
                before.append(line)
            continue
        if reads & late:
            return None
        if result is not None and first in result:
            rows = _Rows(dims, first, frozenset(local))
            text = rows.visit(value)
            if rows.failed:
                return None
            if result != frozenset(order):  # a row's own sum or norm: not elementwise
                return None
            if name in outputs:
                like = name.removeprefix("grad_")
                if not (name.startswith("grad_") and first in (dims(like) or ())):
                    return None
                several = f"{gate} and len({BLOCKS}) > 1" if gate else f"len({BLOCKS}) > 1"
                allocate.append(f"{name} = {like}.new_empty({like}.shape) if {several} else None")
                into = _into(text, f"{name}[{ROWS}]")
                loop.append((f"{name} = {ast.unparse(text)}", f"{name} is None", into, gate))
            else:
                loop.append((_gated(f"{name} = {ast.unparse(text)}", gate),))
                local.add(name)
            continue
        partials = _Partials(dims, first, frozenset(local), len(allocate))
        rest = partials.visit(value)
        if partials.failed or not partials.found or _reads(rest, dims, first, local):
            return None
        for part, call, combine in partials.found:
            allocate.append(f"{part}s = []")
            loop.append((f"{part}s.append({call})", gate) if gate else (f"{part}s.append({call})",))
            joined = f"{combine}(torch.cat({part}s), dim=0, keepdim=True)"
            after.append(_gated(f"{part} = {part}s[0] if len({part}s) == 1 else {joined}", gate))
        after.append(_gated(f"{name} = {ast.unparse(rest)}", gate))
        late.add(name)
    if not loop:
        return None
    body_lines = "\n".join(_statement(entry) for entry in loop)
    header = f"for {ROWS}, _scratch in {BLOCKS}:"
    blocks = f"{BLOCKS} = _row_blocks({source})"
    return [*before, blocks, *allocate, f"{header}\n{body_lines}", *after, end]


def _statement(entry: tuple[str, ...]) -> str:
    """A statement of the loop: ``(statement,)``, ``(statement, gate)``, or a gradient's
    ``(its own result, whether that is the output, a write into the output's rows, gate)``:
    with one block, the block's result is the output (no full-size buffer to write into)."""
    if len(entry) == 1:
        return wrap(f"    {entry[0]}")
    if len(entry) == 2:
        return f"    if {entry[1]}:\n{wrap(f'        {entry[0]}')}"
    own, alone, into, gate = entry
    lead = "        " if gate else "    "
    chosen = (
        f"{lead}if {alone}:\n{wrap(f'{lead}    {own}')}\n{lead}else:\n{wrap(f'{lead}    {into}')}"
    )
    return f"    if {gate}:\n{chosen}" if gate else chosen


def _gated(line: str, gate: str | None) -> str:
    return f"{line} if {gate} else None" if gate else line


def _into(node: ast.expr, out: str) -> str:
    """A statement writing ``node``'s value into ``out``: its last operation given ``out=``
    where it has one, else a copy."""
    target = ast.keyword("out", ast.parse(out, mode="eval").body)
    if isinstance(node, ast.Call):
        func = node.func
        method = isinstance(func, ast.Attribute) and func.attr.endswith("_")
        if method and func.attr[:-1] in _OUT:  # type: ignore[union-attr]
            name = f"torch.{func.attr[:-1]}"  # type: ignore[union-attr]
            args = [func.value, *node.args]  # type: ignore[union-attr]
            call = ast.Call(ast.parse(name, mode="eval").body, args, [*node.keywords, target])
            return ast.unparse(call)
        known = ast.unparse(func) in _WITH_OUT
        if known and not any(k.arg == "out" for k in node.keywords):
            return ast.unparse(ast.Call(func, node.args, [*node.keywords, target]))
    binary = isinstance(node, ast.BinOp) and type(node.op) in _BINARY
    if binary and not isinstance(node.left, ast.Constant):  # type: ignore[union-attr]
        function = ast.parse(_BINARY[type(node.op)], mode="eval").body  # type: ignore[union-attr]
        return ast.unparse(ast.Call(function, [node.left, node.right], [target]))  # type: ignore[union-attr]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        function = ast.parse("torch.neg", mode="eval").body
        return ast.unparse(ast.Call(function, [node.operand], [target]))
    return f"{out} = {ast.unparse(node)}"


def _reads(
    node: ast.AST, dims: Callable[[str], frozenset[str] | None], first: str, local: set[str]
) -> bool:
    return any(n == "_scratch" or n in local or first in (dims(n) or ()) for n in _names(node))


def _names(node: ast.AST) -> set[str]:
    """The names ``node`` reads the values of: not those it only asks the shape, dtype or
    device of (``n_N = logits.shape[0]`` reads no rows)."""
    metadata = isinstance(node, ast.Attribute) and node.attr in ("shape", "dtype", "device")
    if metadata and isinstance(node.value, ast.Name):  # type: ignore[attr-defined]
        return set()
    if isinstance(node, ast.Name):
        return {node.id}
    return set().union(*(_names(child) for child in ast.iter_child_nodes(node)))


class _Partials(ast.NodeTransformer):
    """Replaces each sum (max, min) over the rows with the name of its combined blocks'
    results; ``found``: (that name, the call on a block, the function combining them)."""

    def __init__(
        self,
        dims: Callable[[str], frozenset[str] | None],
        first: str,
        local: frozenset[str],
        count: int,
    ) -> None:
        self.dims = dims
        self.first = first
        self.local = local
        self.count = count
        self.failed = False
        self.found: list[tuple[str, str, str]] = []

    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = ast.unparse(node.func)
        keywords = {k.arg: k.value for k in node.keywords}
        axes = literal(keywords.get("dim"))
        if func not in _PARTIAL or not isinstance(axes, tuple) or 0 not in axes:
            return self.generic_visit(node)
        keep = keywords.get("keepdim")
        if not (isinstance(keep, ast.Constant) and keep.value is True) or len(node.args) != 1:
            self.failed = True
            return node
        rows = _Rows(self.dims, self.first, self.local)
        node.args = [rows.visit(node.args[0])]
        self.failed |= rows.failed
        name = f"_part{self.count + len(self.found)}"
        self.found.append((name, ast.unparse(node), func))
        return ast.Name(name, ast.Load())


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
        return [_gated(f"{name} = {joined}", gate)]
    if base is None:
        return None
    # one statement, header and body, so that `del`s after its last uses follow all of it
    if gate is None:
        return [f"{loop}\n{wrap(f'    {text}')}", f"{name} = {base}"]
    updates = f"if {gate}:\n    {loop}\n{wrap(f'        {text}')}"
    return [updates, f"{name} = {base} if {gate} else None"]


class _Rows(ast.NodeTransformer):
    """Slices every name with the first dim to the block's rows (but ``local`` names, made in
    the block); ``failed`` where something in the expression does not act on each row alone.
    A part that reads no rows at all (``torch.arange(n_C)``) is left as it is, unless it
    updates a name in place (which would happen once per block)."""

    def __init__(
        self,
        dims: Callable[[str], frozenset[str] | None],
        first: str,
        local: frozenset[str] = frozenset(),
    ) -> None:
        self.dims = dims
        self.first = first
        self.local = local
        self.failed = False

    def visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, ast.expr) and self._constant(node):
            self.failed |= _updates_a_name(node)
            return node
        return super().visit(node)

    def _constant(self, node: ast.expr) -> bool:
        """Whether ``node`` reads no rows: only known names without the first dim (or the
        module, the dtype and the device), no local and not the scratch buffer."""
        for n in ast.walk(node):
            if not isinstance(n, ast.Name) or n.id in ("torch", "dtype", "dtype_device"):
                continue
            dims = self.dims(n.id)
            if n.id == "_scratch" or n.id in self.local or dims is None or self.first in dims:
                return False
        return True

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if not isinstance(node, _ROW_NODES):
            self.failed = True
            return node
        return super().generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in ("_scratch", "dtype") or node.id in self.local:
            return node
        dims = self.dims(node.id)
        if dims is None:
            self.failed = True
        elif self.first in dims:
            return ast.Subscript(node, ast.Name(ROWS, ast.Load()), ast.Load())
        return node

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        """``x[:, 0:1]``, ``x[..., None]``: the rows stay the first dim, all of them."""
        index = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        whole = isinstance(index[0], ast.Slice) and not any(
            (index[0].lower, index[0].upper, index[0].step)
        )
        trailing = _is_ellipsis(index[0]) and all(_is_none(i) for i in index[1:])
        if not (len(index) > 1 and (whole or trailing)):
            self.failed = True
            return node
        return ast.Subscript(self.visit(node.value), node.slice, node.ctx)

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if node.attr not in ("shape", "dtype", "device"):
            self.failed = True
            return node
        return ast.Attribute(self.visit(node.value), node.attr, node.ctx)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = ast.unparse(node.func)
        keywords = {k.arg: k.value for k in node.keywords}
        if func in _ALONG:
            axes = literal(keywords.get("dim"))
            axes = (axes,) if isinstance(axes, int) else axes
            if not isinstance(axes, tuple) or any(not isinstance(a, int) or a <= 0 for a in axes):
                self.failed = True
                return node
        elif func not in _FUNCTIONS | _SHAPED and not self._row_method(node):
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
        if isinstance(node.func, ast.Attribute) and func not in _FUNCTIONS | _ALONG | _SHAPED:
            node.func = ast.Attribute(self.visit(node.func.value), node.func.attr, ast.Load())
        return node

    def _row_method(self, node: ast.Call) -> bool:
        """An elementwise method: a cast (``.to(dtype)``), a new result, or an update in place
        (``.mul_(...)``) of a block's own rows: of a fresh result, a block's local, or a name
        with the first dim (a name without it would be updated once per block)."""
        func = node.func
        if not isinstance(func, ast.Attribute):
            return False
        if func.attr == "to" or func.attr in _ELEMENTWISE:
            return True
        if not func.attr.endswith("_") or func.attr[:-1] not in _ELEMENTWISE:
            return False
        return self._rowwise_target(func.value)

    def _rowwise_target(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Name):
            dims = self.dims(node.id)
            return node.id in ("_scratch", *self.local) or (dims is not None and self.first in dims)
        return True


def _updates_a_name(node: ast.AST) -> bool:
    """Whether ``node`` writes into a name: ``x.mul_(...)``, ``torch.mul(..., out=x)``."""
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            if any(k.arg == "out" for k in n.keywords):
                return True
            func = n.func
            if isinstance(func, ast.Attribute) and func.attr.endswith("_"):
                root = func.value
                while isinstance(root, ast.Call) and isinstance(root.func, ast.Attribute):
                    root = root.func.value
                if isinstance(root, ast.Name):
                    return True
    return False


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


def _is_ellipsis(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is Ellipsis
