"""In-place updates of private temporaries in the eager torch ``_value_and_grad``.

Every node of a printed expression allocates a fresh tensor: ``t4*(t3*torch.sigmoid(x) -
target*torch.sigmoid(t0))`` makes five full-size buffers, each new page of which the kernel
must fault in and zero. This pass rewrites a statement so that an operation writes into an
operand that nobody else can see, and at full size allocates nothing::

    torch.sigmoid(x).mul_(t3).sub_(torch.sigmoid(t0).mul_(target)).mul_(t4)

An operand may be updated in place only if it is

- a fresh result computed within the same statement (a kernel's output, referenced by the
  expression alone), or a local name bound once to such a result that this statement uses for
  the last time, exactly once, and that nothing else aliases (a name that ever reaches a view,
  an unknown call, the return statement or another name never counts), and
- of the operation's result shape and dtype: a float tensor of the computation's dtype with the
  result's dims (broadcasting must not enlarge it; a 0-d tensor, a Python number, a boolean or
  integer tensor never qualifies).

Shapes follow from the layout (see lossdsl.codegen.Layout): every tensor has one axis per dim
of the loss, with size 1 along the dims it lacks, so a value's shape is its set of dims, which
this pass infers from the inputs' declarations through the printed operations. An expression
it does not recognise is left as it is, and every name in it is treated as aliased.

A full-size buffer allocated only to be consumed at once (the argument of a reduction or of an
in-place update: ``torch.sum(p*target, ...)``, ``p.mul_(t - target)``) is written instead into
one scratch buffer per call, ``_scratch = x.new_empty(x.shape)``, where two or more such
allocations share it (``torch.mul(p, target, out=_scratch)``): fewer fresh pages to fault in
(Dice at 100 x 10000 float32: four full-size allocations per step down to two, page faults
per step from about 1000 to 0, 4.7 -> 3.6 ms). Python evaluates ``r.mul_(a)`` as ``r``, then
``a``, then the update, so uses never overlap as long as nothing inside such an operand
writes into the scratch buffer too; such an operand keeps its own allocation.

Updates are bitwise identical to the functional operations they replace (``a - b`` into ``b`` is
``torch.sub(a, b, out=b)``, ``1 / b`` is ``b.reciprocal_()``). One fusion changes rounding:
``a + b*c`` and ``a - b*c`` of float tensors become ``a.addcmul_(b, c)`` (``value=-1``), which
needs no buffer for ``b*c`` (a full-size one where ``b`` or ``c`` is) and rounds once, not twice
(torch's CPU kernel is a fused multiply-add); and ``a * torch.sigmoid(-u)`` becomes one kernel,
``_times_sigmoid_(a, u, -1)`` (:data:`HELPERS`), within a few ulps of the two operations. The
functional code gets the same fusions, as ``torch.addcmul(a, b, c)`` and ``_times_sigmoid``,
from the same pass with ``in_place=False``, so that both agree bitwise and the in-place code can
be tested against it. Only the eager forward pass uses
this: under ``torch.func`` transforms the module runs its functional ``_value`` and ``_grad``
instead (a batched operand cannot be written into an unbatched buffer), and ``_grad``, which
autograd differentiates under ``create_graph=True``, stays functional.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass

from lossdsl.backends import blocked
from lossdsl.backends.module import literal, needs_gate

FLOAT = "float"  # a tensor of the computation's dtype with known dims
SCALAR = "scalar"  # a Python number or a 0-d tensor of the computation's dtype
BOOL = "bool"
INT = "int"
OTHER = "other"  # anything else: never updated, never updates

# torch.<name>(x) -> x.<name>_(), elementwise, same dtype.
_UNARY = frozenset(
    {"exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos", "tanh", "erf", "abs"}
    | {"sign", "floor", "ceil", "round", "sigmoid", "relu"}
)
_REDUCTIONS = frozenset(
    {"torch.sum", "torch.amax", "torch.amin", "torch.logsumexp", "torch.linalg.vector_norm"}
)
_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)  # what float tensors compute
_FUNCTIONS = {ast.Add: "torch.add", ast.Sub: "torch.sub", ast.Mult: "torch.mul"}
_FUNCTIONS |= {ast.Div: "torch.div", ast.Pow: "torch.pow"}
SCRATCH = "_scratch"  # a buffer with every dim, for what a statement consumes at once
OUT = "\0"  # in `Value.alloc`: where the name of the buffer to write into goes


# The module-level functions the rewritten code may call (lossdsl.backends.torch.emit adds
# them where it does). softplus's backward at beta = sign computes a * z / (z + 1) with
# z = exp(sign * u), a * sigmoid(sign * u) without cancellation at either end, and returns a
# itself where sign * u exceeds the threshold, beyond which sigmoid rounds to 1 (exp(-20) is
# below float32's half ulp of 1, exp(-40) below float64's; a * z cannot overflow for |a| up
# to about 1e29 and 1e290). Within 3.2 float32 ulps of a * sigmoid(-u) computed in float64
# over u in [-100, 80] (the product as two operations: 2.7).
HELPERS = {
    "_times_sigmoid": (
        "def _times_sigmoid(a, u, sign):",
        '    """a * sigmoid(sign * u) in one pass: softplus\'s backward kernel."""',
        "    threshold = 40.0 if a.dtype == torch.float64 else 20.0",
        "    return torch.ops.aten.softplus_backward(a, u, sign, threshold)",
    ),
    "_times_sigmoid_": (
        "def _times_sigmoid_(a, u, sign):",
        '    """a * sigmoid(sign * u) in one pass, written into a: softplus\'s backward kernel."""',
        "    threshold = 40.0 if a.dtype == torch.float64 else 20.0",
        "    kernel = torch.ops.aten.softplus_backward.grad_input  # its out= form",
        "    return kernel(a, u, sign, threshold, grad_input=a)",
    ),
}


@dataclass(frozen=True)
class Value:
    """What the pass knows of an expression: its kind, its dims (``None``: unknown), its
    rewritten source, and whether it is a buffer this statement may update."""

    kind: str
    dims: frozenset[str] | None
    text: str
    fresh: bool = False
    atom: bool = True  # needs no parentheses as the receiver of a method call
    # Where a fresh buffer came from: the allocating operation's source and the same written
    # into a given buffer (``OUT`` in place of its name), e.g. ("a - b", "torch.sub(a, b,
    # out=OUT)"); the value's source starts with that operation's (or with it parenthesised).
    alloc: tuple[str, str] | None = None

    def receiver(self) -> str:
        return self.text if self.atom else f"({self.text})"

    def updated(self, text: str) -> Value:
        """The result of an in-place method called on this value: the same buffer."""
        return Value(FLOAT, self.dims, text, True, alloc=self.alloc)


@dataclass(frozen=True)
class Leaf:
    kind: str
    dims: frozenset[str] = frozenset()


def rewrite(
    body: list[str],
    leaves: dict[str, Leaf],
    order: tuple[str, ...],
    in_place: bool = True,
    blocks: bool = True,
) -> list[str]:
    """``body``: the unindented statements of a straight-line function, one a line, printed
    from expressions (before ``release`` and ``finish``); ``leaves``: the kinds and dims of the
    names the function gets (arguments, sizes, component slices); ``order``: the layout's dims.
    Returns the statements with in-place updates where they are safe; with ``in_place=False``,
    only with the multiply-add fusion (functional code that rounds as the in-place code does).
    With ``blocks``, the scratch buffer's statements run by blocks of rows where they can
    (lossdsl.backends.blocked)."""
    trees: list[ast.stmt | None] = []
    for line in body:
        try:
            (tree,) = ast.parse(line).body
        except SyntaxError:  # not one statement: leave it, and everything in it, alone
            tree = None
        trees.append(tree)
    uses = [_loads(tree) if tree is not None else Counter() for tree in trees]
    last: dict[str, int] = {}
    for i, counts in enumerate(uses):
        for name in counts:
            last[name] = i
    assigned = Counter(
        t.id
        for tree in trees
        if isinstance(tree, ast.Assign)
        for t in tree.targets
        if isinstance(t, ast.Name)
    )
    # First pass: what every name is, and which names are ever aliased.
    survey = _Walker(leaves, order, in_place)
    owned: dict[str, Value] = {}
    for line, tree in zip(body, trees, strict=True):
        if tree is None:
            survey.escaped |= set(re.findall(r"[A-Za-z_]\w*", line))
            continue
        result = survey.statement(line, tree)
        if isinstance(tree, ast.Assign) and result is not None:
            (target,) = tree.targets
            assert isinstance(target, ast.Name)
            survey.known[target.id] = result
            if result.fresh and result.kind == FLOAT and target.id not in leaves:
                owned[target.id] = result
    owned = {
        name: v
        for name, v in owned.items()
        if assigned[name] == 1 and name not in survey.escaped and name in last
    }
    # Second pass: rewrite, updating an owned name only at its last use, and writing what a
    # statement consumes at once into a scratch buffer where that saves allocations (where two
    # or more full-size buffers would each be allocated for one use).

    def rewritten(scratch: str | None) -> tuple[list[str], int]:
        out = []
        walker = _Walker(leaves, order, in_place)
        walker.scratch = scratch is not None
        for i, (line, tree) in enumerate(zip(body, trees, strict=True)):
            if tree is None:
                out.append(line)
                continue
            walker.mutable = {  # used here for the last time, and once
                name for name, count in uses[i].items() if count == 1 and last.get(name) == i
            } & set(owned)
            before = walker.scratch_uses
            result = walker.statement(line, tree)
            if walker.scratch_uses > before and scratch is not None:
                out.append(scratch)  # before the first statement that writes into it
                scratch = None
            if isinstance(tree, ast.Assign) and result is not None:
                (target,) = tree.targets
                assert isinstance(target, ast.Name)
                walker.known[target.id] = survey.known[target.id]
                out.append(f"{target.id} = {result.text}")
            else:
                out.append(walker.rewritten if walker.rewritten is not None else line)
        return out, walker.scratch_uses

    def dims(name: str) -> frozenset[str] | None:
        value = survey.known.get(name) or leaves.get(name)
        return value.dims if value is not None and value.kind != OTHER else None

    source = _full_argument(leaves, frozenset(order), set(assigned)) if in_place else None
    if source is not None and SCRATCH not in last:
        scratch = f"{SCRATCH} = {source}.new_empty({source}.shape)"
        out, scratch_uses = rewritten(scratch)
        whole = blocked.block_rows(out, scratch, dims, order, source) if blocks else None
        if whole is not None:
            return whole
        if scratch_uses >= 2:
            return (blocked.block(out, scratch, dims, order) if blocks else None) or out
    return rewritten(None)[0]


def _full_argument(leaves: dict[str, Leaf], full: frozenset[str], local: set[str]) -> str | None:
    """An argument with every dim, to allocate the scratch buffer like (``new_empty``: of the
    computation's dtype and device, contiguous); ``None`` where there is none."""
    for name, leaf in leaves.items():
        if leaf.kind == FLOAT and leaf.dims == full and name not in local:
            return name
    return None


def _loads(tree: ast.AST) -> Counter[str]:
    return Counter(
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    )


class _Walker:
    def __init__(self, leaves: dict[str, Leaf], order: tuple[str, ...], in_place: bool) -> None:
        self.leaves = leaves
        self.order = order
        self.in_place = in_place
        self.known: dict[str, Value] = {}
        self.mutable: set[str] = set()  # owned names this statement uses for the last time
        self.escaped: set[str] = set()
        self.source = b""
        self.rewritten: str | None = None
        self.full = frozenset(order)
        self.scratch = False  # whether consumed operands may be written into SCRATCH
        self.scratch_uses = 0

    # --- statements -----------------------------------------------------------------------

    def statement(self, line: str, tree: ast.stmt) -> Value | None:
        """The value an assignment binds (its text rewritten); for any other statement
        ``None``, its rewritten source in ``self.rewritten``, and every name in it aliased."""
        self.source = line.encode()
        self.rewritten = None
        if (
            isinstance(tree, ast.Assign)
            and len(tree.targets) == 1
            and isinstance(tree.targets[0], ast.Name)
        ):
            name = tree.targets[0].id
            if name in self.leaves:  # a size or a component slice: as the caller says
                self.escaped |= set(_loads(tree.value))
                leaf = self.leaves[name]
                return Value(leaf.kind, leaf.dims, self._segment(tree.value))
            if isinstance(tree.value, ast.Name):  # another name for the same tensor
                return self.opaque(tree.value)
            if needs_gate(tree.value) is not None:  # `t = X if needs[k] else None`: every
                return self._gated(tree.value)  # reader of t runs only where t is X
            return self.value(tree.value)
        if isinstance(tree, ast.Return) and tree.value is not None:
            self.rewritten = f"return {self.opaque(tree.value).text}"
            return None
        self.escaped |= set(_loads(tree))
        return None

    def _gated(self, node: ast.IfExp) -> Value:
        if isinstance(node.body, ast.Name):  # another name for the same tensor: aliased
            return self.opaque(node)
        x = self.value(node.body)
        test = self.opaque(node.test)
        text = self._splice(node, _changed([node.test, node.body], [test, x]))
        return Value(x.kind, x.dims, text, x.fresh, atom=False)

    # --- expressions ----------------------------------------------------------------------

    def _segment(self, node: ast.AST) -> str:
        return self.source[node.col_offset : node.end_col_offset].decode()  # type: ignore[attr-defined]

    def _splice(self, node: ast.AST, children: list[tuple[ast.AST, Value]]) -> str:
        """The node's own source with its children's rewritten sources in place."""
        start = node.col_offset  # type: ignore[attr-defined]
        text, pos = b"", start
        for child, value in sorted(children, key=lambda c: c[0].col_offset):  # type: ignore[attr-defined]
            text += self.source[pos : child.col_offset] + value.text.encode()  # type: ignore[attr-defined]
            pos = child.end_col_offset  # type: ignore[attr-defined]
        return (text + self.source[pos : node.end_col_offset]).decode()  # type: ignore[attr-defined]

    def opaque(self, node: ast.AST) -> Value:
        """An expression this pass does not model: names directly in it are aliased (it may
        keep or return them), subexpressions are rewritten on their own."""
        if isinstance(node, ast.Name):
            self.escaped.add(node.id)
            return Value(OTHER, None, node.id)
        if isinstance(node, ast.Constant):
            return Value(OTHER, None, self._segment(node))
        if isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):  # views, metadata
            self.escaped |= set(_loads(node))
            return Value(OTHER, None, self._segment(node))
        if isinstance(node, ast.Call):
            func = node.func
            children = [(a, self.opaque(a)) for a in node.args]
            children += [(k.value, self.opaque(k.value)) for k in node.keywords]
            if isinstance(func, ast.Attribute) and not isinstance(func.value, ast.Name):
                children.append((func.value, self.opaque(func.value)))
            elif not isinstance(func, ast.Name):
                self.escaped |= set(_loads(func))
            return Value(OTHER, None, self._splice(node, children))
        if isinstance(node, (ast.Tuple, ast.List)):
            children = [(e, self.opaque(e)) for e in node.elts]
            return Value(OTHER, None, self._splice(node, children))
        if isinstance(node, ast.IfExp):
            children = [(c, self.opaque(c)) for c in (node.test, node.body, node.orelse)]
            return Value(OTHER, None, self._splice(node, children))
        if isinstance(node, ast.BoolOp):
            children = [(v, self.opaque(v)) for v in node.values]
            return Value(OTHER, None, self._splice(node, children), atom=False)
        if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Compare)):
            result = self.value(node)
            return Value(OTHER, None, result.text, atom=result.atom)
        self.escaped |= set(_loads(node))
        return Value(OTHER, None, self._segment(node))

    def value(self, node: ast.expr) -> Value:
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return Value(SCALAR, frozenset(), self._segment(node))
        if isinstance(node, ast.UnaryOp):
            return self._unary(node)
        if isinstance(node, ast.BinOp):
            return self._binary(node)
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
            values = [self.value(p) for p in parts]
            dims = _union(values)
            return Value(BOOL, dims, self._splice(node, _changed(parts, values)), True, False)
        if isinstance(node, ast.Call):
            return self._call(node)
        return self.opaque(node)

    def _name(self, name: str) -> Value:
        if name in self.known:
            v = self.known[name]
            return Value(v.kind, v.dims, name, fresh=name in self.mutable)
        if name in self.leaves:
            leaf = self.leaves[name]
            return Value(leaf.kind, leaf.dims, name)
        self.escaped.add(name)  # dtype, needs, ...: nothing this pass updates
        return Value(OTHER, None, name)

    def _unary(self, node: ast.UnaryOp) -> Value:
        operand = self.value(node.operand)
        text = self._splice(node, _changed([node.operand], [operand]))
        if isinstance(node.op, ast.USub):
            if operand.kind == SCALAR:
                return Value(SCALAR, frozenset(), text, atom=False)
            if operand.kind == FLOAT and self._owns(operand):
                return operand.updated(f"{operand.receiver()}.neg_()")
            if operand.kind == FLOAT:
                alloc = (text, f"torch.neg({operand.text}, out={OUT})")
                return Value(FLOAT, operand.dims, text, True, False, alloc)
            return Value(operand.kind, operand.dims, text, True, False)
        if isinstance(node.op, ast.Invert):
            return Value(BOOL, operand.dims, text, True, False)
        return Value(OTHER, None, text, atom=False)

    def _consumed(self, v: Value) -> str:
        """The source of an operand that the enclosing operation consumes as soon as it is
        computed (the argument of an in-place update or of a reduction, one of the factors
        of a multiply-add): where it is a full-size buffer allocated for it, that allocation
        writes into the scratch buffer instead, unless something within it already does (it
        would still be in use).

        Python evaluates ``r.mul_(a)`` as ``r``, then ``a``, then the update, and a
        reduction's argument just before the reduction, so the scratch buffer is in use only
        from the start of such an operand to the end of its consumer: uses never overlap,
        and a statement may write into it several times (allocating nothing at full size)."""
        if not (self.scratch and v.fresh and v.alloc and v.kind == FLOAT and v.dims == self.full):
            return v.text
        site, out = v.alloc
        if SCRATCH in v.text:
            return v.text
        # the allocation itself, or methods called on it: `(a - b).mul_(c)`, `f(x).mul_(c)`
        if v.text == site:
            rest = ""
        elif v.text.startswith(f"({site})."):
            rest = v.text[len(site) + 2 :]
        elif site.endswith(")") and v.text.startswith(f"{site}."):
            rest = v.text[len(site) :]
        else:
            return v.text
        self.scratch_uses += 1
        return out.replace(OUT, SCRATCH) + rest

    def _owns(self, v: Value) -> bool:
        """Whether to write into ``v``: every decision is taken as if in place (``fresh``), so
        that the functional code (``in_place=False``) rounds as the in-place code does."""
        return v.fresh and self.in_place

    def _binary(self, node: ast.BinOp) -> Value:
        fused = self._multiply_add(node)
        if fused is None:
            fused = self._times_sigmoid(node)
        if fused is not None:
            return fused
        return self._arithmetic(node, self.value(node.left), self.value(node.right))

    def _times_sigmoid(self, node: ast.BinOp) -> Value | None:
        """``a * torch.sigmoid(-u)`` (``u`` a name) as ``_times_sigmoid_(a, u, -1)`` where ``a``
        has the result's dims and is fresh, else as ``_times_sigmoid(a, u, -1)``: one pass
        over ``a`` and ``u`` (softplus's backward kernel, :data:`HELPERS`) instead of a
        negation, a sigmoid and a product, and no buffer for ``sigmoid(-u)``. ``None``: not
        that pattern."""
        if not isinstance(node.op, ast.Mult):
            return None
        sigmoid_right = _negated_name_in_sigmoid(node.right)
        if sigmoid_right is None and _negated_name_in_sigmoid(node.left) is None:
            return None
        other, sigmoid = (node.left, node.right) if sigmoid_right else (node.right, node.left)
        a = self.value(other)
        u = self._name(_negated_name_in_sigmoid(sigmoid) or "")
        if a.kind != FLOAT or u.kind != FLOAT or a.dims is None or u.dims is None:
            s = self.value(sigmoid)  # as it would have been: `a` is taken once either way
            return self._arithmetic(node, a, s) if sigmoid_right else self._arithmetic(node, s, a)
        if self._owns(a) and u.dims <= a.dims:
            return a.updated(f"_times_sigmoid_({a.text}, {u.text}, -1)")
        text = f"_times_sigmoid({self._consumed(a)}, {u.text}, -1)"
        return Value(FLOAT, a.dims | u.dims, text, True)

    def _multiply_add(self, node: ast.BinOp) -> Value | None:
        """``a + b*c``, ``b*c + a`` or ``a - b*c`` as ``addcmul`` where ``a`` has the result's
        dims and either is fresh or the product has no fresh full-size operand to write into
        (``b.mul_(c).add_(a)`` is then as lean). ``None``: not that pattern."""
        op = type(node.op)
        if op is ast.Add and _is_product(node.right):
            addend, product = node.left, node.right
        elif op is ast.Add and _is_product(node.left):
            addend, product = node.right, node.left
        elif op is ast.Sub and _is_product(node.right):
            addend, product = node.left, node.right
        else:
            return None
        assert isinstance(product, ast.BinOp)
        b, c = self.value(product.left), self.value(product.right)
        a = self.value(addend)
        dims = _union([a, b, c])
        tensors = all(v.kind == FLOAT and v.dims is not None for v in (a, b, c))
        lean = a.fresh or not any(v.fresh and v.dims == dims for v in (b, c))
        if tensors and a.dims == dims and lean:
            # b and c are both read by the one call: at most one of them uses the scratch
            b_text = self._consumed(b) if SCRATCH not in c.text else b.text
            c_text = self._consumed(c) if SCRATCH not in b_text else c.text
            args = f"{b_text}, {c_text}" + (", value=-1" if op is ast.Sub else "")
            if self._owns(a):
                return a.updated(f"{a.receiver()}.addcmul_({args})")
            text = f"torch.addcmul({a.text}, {args})"
            return Value(FLOAT, dims, text, True, alloc=(text, f"{text[:-1]}, out={OUT})"))
        # not fused: the product and the sum as they are, from the values already taken
        times = self._arithmetic(product, b, c)
        if addend is node.left:
            return self._arithmetic(node, a, times)
        return self._arithmetic(node, times, a)

    def _arithmetic(self, node: ast.BinOp, left: Value, right: Value) -> Value:
        op = type(node.op)
        text = self._splice(node, _changed([node.left, node.right], [left, right]))
        kinds = {left.kind, right.kind}
        if kinds == {SCALAR}:
            return Value(SCALAR, frozenset(), text, atom=False)
        if op in (ast.BitAnd, ast.BitOr) and kinds <= {BOOL}:
            return Value(BOOL, _union([left, right]), text, True, False)
        if op not in _ARITHMETIC or OTHER in kinds or FLOAT not in kinds:
            return Value(OTHER, None, text, atom=False)  # int or bool arithmetic: not modelled
        dims = _union([left, right])
        if dims is None:
            return Value(OTHER, None, text, atom=False)

        def fits(v: Value) -> bool:
            return self._owns(v) and v.kind == FLOAT and v.dims == dims

        into_left = fits(left) and (op != ast.Pow or right.kind == SCALAR)
        into_right = self._into_right(op, node, left.text, right) if fits(right) else None
        # A name at its last use stays alive to the end of the statement: writing into it
        # rather than into a fresh result lets that result go at once.
        if into_right and (not into_left or (_is_name(node.right) and not _is_name(node.left))):
            into_right = self._into_right(op, node, self._consumed(left), right)
            assert into_right is not None
            if into_right.startswith(right.receiver() + "."):  # right's buffer, updated
                return right.updated(into_right)
            return Value(FLOAT, dims, into_right, True)  # into a name's buffer
        if into_left:
            name = {ast.Add: "add_", ast.Sub: "sub_", ast.Mult: "mul_", ast.Div: "div_"}
            call = f"{left.receiver()}.{name.get(op, 'pow_')}({self._consumed(right)})"
            return left.updated(call)
        alloc = (text, f"{_FUNCTIONS[op]}({left.text}, {right.text}, out={OUT})")
        return Value(FLOAT, dims, text, True, False, alloc)

    @staticmethod
    def _into_right(op: type, node: ast.BinOp, left: str, right: Value) -> str | None:
        """``left op right`` (``left``: its source) written into ``right``, bitwise the same,
        if that can be said."""
        if op in (ast.Add, ast.Mult):  # commutative, also in floating point
            return f"{right.receiver()}.{'add_' if op == ast.Add else 'mul_'}({left})"
        if op == ast.Div and left == "1":
            return f"{right.receiver()}.reciprocal_()"
        if op in (ast.Sub, ast.Div) and _is_name(node.right):
            # the name is the buffer: written once, read by the kernel before it writes
            function = "torch.sub" if op == ast.Sub else "torch.div"
            return f"{function}({left}, {right.text}, out={right.text})"
        return None

    def _call(self, node: ast.Call) -> Value:
        func = ast.unparse(node.func)
        args, keywords = node.args, {k.arg: k.value for k in node.keywords}
        if func.startswith("torch.") and func[6:] in _UNARY and len(args) == 1 and not keywords:
            x = self.value(args[0])
            if x.kind != FLOAT:
                return self.opaque(node)
            if self._owns(x):
                return x.updated(f"{x.receiver()}.{func[6:]}_()")
            text = self._splice(node, _changed(args, [x]))
            if func == "torch.relu":  # the one of them without an out= form
                return Value(FLOAT, x.dims, text, True)
            return self._allocated(x.dims, text)
        if func == "float" and len(args) == 1 and literal(args[0]) in ("inf", "-inf", "nan"):
            return Value(SCALAR, frozenset(), self._segment(node))
        if func == "torch.nn.functional.softplus" and len(args) == 1 and not keywords:
            return self._elementwise(node, args)
        if func == "torch.clamp" and args:
            x = self.value(args[0])
            bounds = [*args[1:], *keywords.values()]
            if x.kind != FLOAT or not all(_is_number(b) for b in bounds):
                return self.opaque(node)
            if self._owns(x):  # the bounds are numbers: the result has x's shape
                rest = [self._segment(a) for a in args[1:]]
                rest += [f"{k.arg}={self._segment(k.value)}" for k in node.keywords]
                return x.updated(f"{x.receiver()}.clamp_({', '.join(rest)})")
            return self._allocated(x.dims, self._splice(node, _changed(args[:1], [x])))
        if func in ("torch.maximum", "torch.minimum") and not keywords:
            v = self._elementwise(node, args)
            return self._allocated(v.dims, v.text) if v.kind == FLOAT else v
        if func == "torch.where" and not keywords:  # its out= form takes no Python numbers
            return self._elementwise(node, args)
        if func in _REDUCTIONS and len(args) == 1 and _keep_dims(keywords):
            x = self.value(args[0])
            axes = literal(keywords.get("dim"))
            if x.kind != FLOAT or x.dims is None or not isinstance(axes, tuple):
                return self.opaque(node)
            dims = x.dims - {self.order[a] for a in axes}
            x = Value(x.kind, x.dims, self._consumed(x))
            return Value(FLOAT, dims, self._splice(node, _changed(args, [x])), True)
        if func in ("torch.softmax", "torch.log_softmax") and len(args) == 1:
            x = self.value(args[0])
            if x.kind != FLOAT:
                return self.opaque(node)
            return Value(FLOAT, x.dims, self._splice(node, _changed(args, [x])), True)
        if func == "torch.take_along_dim" and len(args) == 2 and set(keywords) == {"dim"}:
            x, index = self.value(args[0]), self.value(args[1])
            axis = literal(keywords["dim"])
            if x.kind != FLOAT or x.dims is None or index.dims is None or not isinstance(axis, int):
                return self.opaque(node)
            dims = (x.dims - {self.order[axis]}) | index.dims
            text = self._splice(node, _changed(args, [x, index]))
            return Value(FLOAT, dims, text, True)
        if func == "torch.as_tensor" and len(args) == 1 and set(keywords) == {"dtype"}:
            x = self.value(args[0])
            if x.kind == SCALAR and ast.unparse(keywords["dtype"]) == "dtype":
                return Value(SCALAR, frozenset(), self._splice(node, _changed(args, [x])))
            return self.opaque(node)
        if (  # a mask as the computation's dtype: a new tensor (of a float one, an alias)
            isinstance(node.func, ast.Attribute)
            and node.func.attr == "to"
            and len(args) == 1
            and not keywords
            and ast.unparse(args[0]) == "dtype"
        ):
            x = self.value(node.func.value)
            if x.kind in (BOOL, INT):
                text = self._splice(node, _changed([node.func.value], [x]))
                return Value(FLOAT, x.dims, text, True)
            return self.opaque(node)
        if (  # a one-hot's class positions, torch.arange(n_C, ...).reshape((1, n_C))
            isinstance(node.func, ast.Attribute)
            and node.func.attr == "reshape"
            and isinstance(node.func.value, ast.Call)
            and ast.unparse(node.func.value.func) == "torch.arange"
            and len(args) == 1
            and isinstance(args[0], ast.Tuple)
            and len(args[0].elts) == len(self.order)
        ):
            sizes = [ast.unparse(e) for e in args[0].elts]
            dims = frozenset(d for d, size in zip(self.order, sizes, strict=True) if size != "1")
            if all(size in ("1", f"n_{d}") for d, size in zip(self.order, sizes, strict=True)):
                return Value(INT, dims, self._segment(node), True)
        return self.opaque(node)

    @staticmethod
    def _allocated(dims: frozenset[str] | None, call: str) -> Value:
        """A function call that writes a new float tensor, and takes ``out=``."""
        return Value(FLOAT, dims, call, True, alloc=(call, f"{call[:-1]}, out={OUT})"))

    def _elementwise(self, node: ast.Call, args: list[ast.expr]) -> Value:
        """A function that writes a new tensor of its broadcast arguments' dims."""
        values = [self.value(a) for a in args]
        text = self._splice(node, _changed(args, values))
        tensors = [v for v in values if v.kind != SCALAR]
        if not tensors or any(v.kind not in (FLOAT, BOOL) for v in tensors):
            return Value(OTHER, None, text)
        kind = FLOAT if any(v.kind == FLOAT for v in values[-2:]) else OTHER
        return Value(kind, _union(values) if kind == FLOAT else None, text, True)


def _negated_name_in_sigmoid(node: ast.expr) -> str | None:
    """``u`` for ``torch.sigmoid(-u)`` with ``u`` a name, else ``None``."""
    if (
        isinstance(node, ast.Call)
        and ast.unparse(node.func) == "torch.sigmoid"
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], ast.UnaryOp)
        and isinstance(node.args[0].op, ast.USub)
        and isinstance(node.args[0].operand, ast.Name)
    ):
        return node.args[0].operand.id
    return None


def _changed(nodes: list[ast.expr], values: list[Value]) -> list[tuple[ast.AST, Value]]:
    return list(zip(nodes, values, strict=True))


def _is_name(node: ast.expr) -> bool:
    return isinstance(node, ast.Name)


def _is_product(node: ast.expr) -> bool:
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult)


def _union(values: list[Value]) -> frozenset[str] | None:
    dims: frozenset[str] = frozenset()
    for v in values:
        if v.kind == SCALAR:
            continue
        if v.dims is None:
            return None
        dims |= v.dims
    return dims


def _is_number(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float))


def _keep_dims(keywords: dict[str | None, ast.expr]) -> bool:
    keep = keywords.get("keepdim")
    exact = set(keywords) == {"dim", "keepdim"}
    return exact and isinstance(keep, ast.Constant) and keep.value is True
