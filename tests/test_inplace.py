"""In-place updates in the eager torch `_value_and_grad` (lossdsl.backends.inplace): the same
results as the functional code, bitwise, and never a write into anything the caller or autograd
can see (inputs, views of them, saved tensors, gradients handed out)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import lossdsl  # noqa: E402
from lossdsl import codegen, runtime, sign_merge, softplus_merge  # noqa: E402
from lossdsl.backends import inplace  # noqa: E402
from lossdsl.backends import torch as torch_backend  # noqa: E402
from lossdsl.codegen import py_name  # noqa: E402
from lossdsl.sampling import hard_points, random_points  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted((ROOT / "specs").glob("*.loss")) + sorted((ROOT / "tests/examples").glob("*.loss"))
LOSSES = [
    (path, name)
    for path in FILES
    for name in re.findall(r"^loss (\w+)", path.read_text(), re.MULTILINE)
]
IDS = [f"{path.stem}:{name}" for path, name in LOSSES]


def _modules(spec: lossdsl.Spec):
    """The module as emitted (in place) and the same plan emitted functionally."""
    plan = codegen.specialise(spec.stable_ir, spec.bind_params({}))
    plan.value = softplus_merge.merge(sign_merge.merge(plan.value, plan.loss))
    functional = torch_backend.emit(plan, in_place=False)
    source = spec.emit("torch")
    assert source != functional or "_(" not in source
    ours = runtime.load_module(source, spec.name, f"inplace-{id(spec)}")
    theirs = runtime.load_module(functional, spec.name, f"functional-{id(spec)}")
    return getattr(ours, py_name(spec.name)), getattr(theirs, py_name(spec.name))


def _inputs(spec: lossdsl.Spec, arrays) -> list:
    out = []
    for info, x in zip(spec.inputs, arrays, strict=True):
        t = torch.as_tensor(x)
        out.append(t if info.elem == "Index" else t.to(torch.float64))
    return out


def _value_and_grads(f, inputs: list, spec: lossdsl.Spec):
    xs = [
        x.detach().requires_grad_() if info.differentiated else x
        for x, info in zip(inputs, spec.inputs, strict=True)
    ]
    value = f(*xs)
    wrt = [x for x, info in zip(xs, spec.inputs, strict=True) if info.differentiated]
    return value, (torch.autograd.grad(value, wrt) if value.requires_grad else ())


def _same(a, b) -> bool:
    return torch.equal(a, b) or (a.shape == b.shape and torch.equal(a.isnan(), b.isnan()))


@pytest.mark.parametrize(("path", "name"), LOSSES, ids=IDS)
def test_bitwise_equal_to_functional_and_inputs_untouched(path: Path, name: str) -> None:
    spec = lossdsl.load(path, name)
    if any(p.dims for p in spec.params):
        pytest.skip("tensor params")
    ours, theirs = _modules(spec)
    points = random_points(spec.inputs, 2, seed=11) + hard_points(spec.inputs, seed=11)
    for point in points:
        inputs = _inputs(spec, point.inputs)
        before = [x.clone() for x in inputs]
        got_value, got = _value_and_grads(ours, inputs, spec)
        want_value, want = _value_and_grads(theirs, inputs, spec)
        assert _same(got_value, want_value), point.label
        assert all(_same(g, w) for g, w in zip(got, want, strict=True)), point.label
        assert all(torch.equal(x, y) for x, y in zip(inputs, before, strict=True))


def _focal_like(n: int = 7):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, dtype=torch.float64, generator=gen)
    t = (torch.rand(n, generator=gen) < 0.5).to(torch.float64)
    return x, t


def test_broadcast_and_shared_inputs_are_never_written() -> None:
    """An input that is a broadcast view, or one tensor passed as two inputs, comes back as
    it went in, and the results are the functional code's."""
    spec = lossdsl.load(ROOT / "specs/contrastive.loss")
    ours, theirs = _modules(spec)
    gen = torch.Generator().manual_seed(2)
    row = torch.randn(1, 5, dtype=torch.float64, generator=gen)
    a = torch.randn(4, 5, dtype=torch.float64, generator=gen)
    target = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    for x1, x2 in ((row.expand(4, 5), a), (a, a), (a, row.expand(4, 5))):
        before = (row.clone(), a.clone())
        results = []
        for f in (ours, theirs):
            p = x1.detach().requires_grad_()
            q = p if x2 is x1 else x2.detach().requires_grad_()
            value = f(p, q, target)
            value.backward()
            results.append((value.detach(), p.grad.clone(), q.grad.clone()))
        assert all(torch.equal(g, w) for g, w in zip(*results, strict=True))
        assert torch.equal(row, before[0]) and torch.equal(a, before[1])
    focal = lossdsl.load(ROOT / "specs/focal.loss").compile("torch")
    x = torch.randn(1, dtype=torch.float64).expand(6).requires_grad_()
    t = torch.ones(1, dtype=torch.float64).expand(6)
    kept = (x.detach().clone(), t.clone())
    focal(x, t).backward()
    assert torch.equal(x.detach(), kept[0]) and torch.equal(t, kept[1])


def test_retain_graph_recomputes_bitwise_and_create_graph_is_functional() -> None:
    spec = lossdsl.load(ROOT / "specs/focal.loss")
    f = spec.compile("torch")
    x, t = _focal_like()
    x.requires_grad_()
    kept = (x.detach().clone(), t.clone())
    loss = f(x, t)
    grads = []
    for _ in range(3):  # the first hands out the forward's gradient, later ones recompute
        x.grad = None
        loss.backward(retain_graph=True)
        grads.append(x.grad.clone())
    assert all(torch.equal(g, grads[0]) for g in grads)
    (g,) = torch.autograd.grad(f(x, t), x, create_graph=True)
    assert g.requires_grad  # `_grad`: another CSE of the same formula, equal to rounding
    torch.testing.assert_close(g.detach(), grads[0], rtol=1e-12, atol=1e-15)
    (hessian_diag,) = torch.autograd.grad(g.sum(), x)
    assert torch.isfinite(hessian_diag).all()
    assert torch.equal(x.detach(), kept[0]) and torch.equal(t, kept[1])


def test_only_the_joint_function_updates_in_place() -> None:
    """`_value` (also run under torch.func transforms and by compiled mode) and `_grad`
    (differentiated under create_graph=True) stay functional, and no in-place update has an
    argument of the function as its receiver."""
    for path, name in LOSSES:
        source = lossdsl.load(path, name).emit("torch")
        functions = {f.name: f for f in ast.parse(source).body if isinstance(f, ast.FunctionDef)}
        for fn in ("_value", "_grad"):
            text = ast.unparse(functions[fn])
            assert not re.search(r"\.\w+_\(|out=", text), (name, fn)
        joint = functions.get("_value_and_grad")
        if joint is None:
            continue
        args = {a.arg for a in joint.args.args}
        for node in ast.walk(joint):
            func = getattr(node, "func", None)
            if isinstance(func, ast.Attribute) and re.fullmatch(r"[a-z]\w*_", func.attr):
                receiver = func.value
                assert not (isinstance(receiver, ast.Name) and receiver.id in args), name
            for keyword in getattr(node, "keywords", []):
                if keyword.arg == "out":  # a local, or the rows of a gradient output
                    out = keyword.value
                    if isinstance(out, ast.Subscript):
                        assert ast.unparse(out.slice) == "_rows", name
                        out = out.value
                        assert isinstance(out, ast.Name) and out.id.startswith("grad_"), name
                    assert isinstance(out, ast.Name), name
                    assert out.id not in args, name


LEAVES = {
    "x": inplace.Leaf(inplace.FLOAT, frozenset({"N", "D"})),
    "w": inplace.Leaf(inplace.FLOAT, frozenset({"N"})),
    "i": inplace.Leaf(inplace.INT, frozenset({"N"})),
    "n_N": inplace.Leaf(inplace.SCALAR),
}


def _rewrite(*lines: str) -> list[str]:
    return inplace.rewrite(list(lines), LEAVES, ("N", "D"))


def test_rewrite_updates_fresh_buffers_of_the_result_shape() -> None:
    assert _rewrite("a = torch.exp(x)*x*2", "return a") == [
        "a = torch.exp(x).mul_(x).mul_(2)",
        "return a",
    ]
    # a temporary at its last use takes the update; its earlier uses read it as it was
    assert _rewrite("a = torch.exp(x)", "b = a*a", "c = a + w", "return b, c") == [
        "a = torch.exp(x)",
        "b = a*a",
        "c = a.add_(w)",
        "return b, c",
    ]
    # `a - b` and `a / b` into b (bitwise the same); `1 / b` is reciprocal_
    assert _rewrite("a = x*2", "b = 1 - a", "return b")[1] == "b = torch.sub(1, a, out=a)"
    assert _rewrite("a = x*2", "b = 1 / a", "return b")[1] == "b = a.reciprocal_()"


def test_rewrite_never_writes_inputs_views_smaller_or_integer_tensors() -> None:
    unchanged = [
        ("a = -x", "return a"),  # an input
        ("a = w*2", "b = a*x", "return b"),  # a [N] buffer cannot hold the [N, D] result
        ("a = x*2", "b = torch.broadcast_to(a, x.shape)", "c = a*3", "return b, c"),  # a view
        ("a = x*2", "b = a", "c = a*3", "return b, c"),  # another name for it
        ("a = x*2", "b = a if needs[0] else None", "c = -a", "return b, c"),  # a gated one
        ("a = x*2", "return a*3, a"),  # returned
        ("a = i*2", "b = a*w", "return b"),  # integers
        ("a = (x > 0)", "b = -a", "return b"),  # booleans
        ("t = torch.as_tensor(1 / n_N, dtype=dtype)", "b = t*2", "return b"),  # 0-d
        ("a = x[:, 0:1]", "b = a*2", "return b"),  # a slice of an input
        ("a = x*2", "b = f(a)", "c = a*3", "return b, c"),  # an unknown function
    ]
    for body in unchanged:
        out = _rewrite(*body)
        assert not any(re.search(r"\.\w+_\(|out=", line) for line in out), (body, out)
    # a fresh result may take the update, never the input beside it
    assert _rewrite("a = (x*2)*w", "return a")[0] == "a = (x*2).mul_(w)"
    assert _rewrite("a = w*(x*2)", "return a")[0] == "a = (x*2).mul_(w)"


def test_what_a_statement_consumes_at_once_shares_one_scratch_buffer() -> None:
    """Full-size buffers allocated only to be consumed at once (a reduction's argument, the
    operand of an in-place update) are written into one scratch buffer, in turn, where that
    saves two or more allocations; never where something inside is using it. (Here the
    full-size buffer: tests/test_blocked.py runs such statements by blocks of rows.)"""

    def _rewrite(*lines: str) -> list[str]:
        return inplace.rewrite(list(lines), LEAVES, ("N", "D"), blocks=False)

    body = [
        "a = torch.sigmoid(x)",
        "s = torch.sum(a*x, dim=(1,), keepdim=True)",
        "g = a*(s - x)*torch.exp(-x)",
        "return s, g",
    ]
    assert _rewrite(*body) == [
        "a = torch.sigmoid(x)",
        "_scratch = x.new_empty(x.shape)",
        "s = torch.sum(torch.mul(a, x, out=_scratch), dim=(1,), keepdim=True)",
        "g = a.mul_(torch.sub(s, x, out=_scratch)).mul_(torch.neg(x, out=_scratch).exp_())",
        "return s, g",
    ]
    # functional code allocates each; one use alone saves nothing: no scratch
    functional = inplace.rewrite(body, LEAVES, ("N", "D"), in_place=False)
    assert not any("_scratch" in line for line in functional)
    assert not any("_scratch" in line for line in _rewrite(*body[:2], "return s"))
    # the outer sum's argument is in use while the inner one is computed: only the inner
    # one is written into the scratch buffer
    nested = "b = torch.sum(x*w*torch.sum(x*w, dim=(1,), keepdim=True), dim=(1,), keepdim=True)"
    out = _rewrite(nested, "c = torch.sum(x*x, dim=(1,), keepdim=True)", "return b, c")
    assert out[1] == (
        "b = torch.sum((x*w).mul_(torch.sum(torch.mul(x, w, out=_scratch), dim=(1,),"
        " keepdim=True)), dim=(1,), keepdim=True)"
    )
    assert out[2] == "c = torch.sum(torch.mul(x, x, out=_scratch), dim=(1,), keepdim=True)"
    # a multiply-add reads both factors at once: one of them at most uses the scratch buffer
    product = [*body[:2], "g = a - (x*2)*(x*3)", "return s, g"]
    assert _rewrite(*product)[3] == "g = a.addcmul_(torch.mul(x, 2, out=_scratch), x*3, value=-1)"
    # every allocation it takes has an out= form (torch.relu has none)
    calls = [f"torch.{function}(x)" for function in sorted(inplace._UNARY)]
    calls += ["torch.clamp(x, min=0.7)", "torch.maximum(x, 1 - x)", "-x", "x**2", "2**x"]
    calls += ["1 - x", "x / 3", "x + x*x", "x - 1"]
    for call in calls:
        lines = [f"{n} = torch.sum({call}, dim=(1,), keepdim=True)" for n in "ab"]
        out = _rewrite(*lines, "return a, b")
        if call == "torch.relu(x)":
            assert not any("_scratch" in line for line in out)
            continue
        assert sum(line.count("out=_scratch") for line in out) == 2, out
        functional = inplace.rewrite([*lines, "return a, b"], LEAVES, ("N", "D"), in_place=False)
        x = torch.rand(3, 4, dtype=torch.float64) + 0.5
        got, want = {"torch": torch, "x": x}, {"torch": torch, "x": x}
        exec("\n".join(out[:-1]), got)
        exec("\n".join(functional[:-1]), want)
        assert torch.equal(got["b"], want["b"]), call
    # buffers smaller than every dim: none
    small = ["s = torch.sum(w*w, dim=(0,), keepdim=True)", "t = w*2*torch.sum(w*3)", "return s, t"]
    assert not any("_scratch" in line for line in _rewrite(*small))


def test_the_scratch_buffer_leaves_values_and_gradients_bitwise_alike() -> None:
    spec = lossdsl.load(ROOT / "specs/dice.loss")
    source = spec.emit("torch")
    assert source.count("out=_scratch") == 2  # p*target, the gradient's factor a - target
    assert "_blocks = _row_blocks(logits)" in source  # the scratch buffer one block in size
    ours, theirs = _modules(spec)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, dtype=torch.float64, generator=gen)
    target = (torch.rand(5, 7, generator=gen) > 0.5).double()
    got = _value_and_grads(ours, [logits, target], spec)
    want = _value_and_grads(theirs, [logits, target], spec)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1][0], want[1][0])


def test_rewrite_multiplies_by_sigmoid_of_a_negated_name_in_one_kernel() -> None:
    """`a * torch.sigmoid(-u)` is softplus's backward kernel at beta = -1, written into `a`
    where `a` is fresh and has the result's dims, else into a new tensor (also functionally);
    anything else (a number times it, a sigmoid of an expression) is left as it was."""
    body = ("a = torch.exp(x)*torch.sigmoid(-x)", "b = torch.sigmoid(-x)*x", "return a, b")
    assert _rewrite(*body) == [
        "a = _times_sigmoid_(torch.exp(x), x, -1)",
        "b = _times_sigmoid(x, x, -1)",
        "return a, b",
    ]
    functional = inplace.rewrite(list(body), LEAVES, ("N", "D"), in_place=False)
    assert functional[0] == "a = _times_sigmoid(torch.exp(x), x, -1)"
    # `a` smaller than the result (it broadcasts): a new tensor
    assert _rewrite("a = torch.exp(w)*torch.sigmoid(-x)", "return a")[0] == (
        "a = _times_sigmoid(torch.exp(w), x, -1)"
    )
    assert _rewrite("a = 2*torch.sigmoid(-x)", "return a")[0] == "a = (-x).sigmoid_().mul_(2)"
    assert _rewrite("a = x*torch.sigmoid(-(x*w))", "return a")[0] == (
        "a = (x*w).neg_().sigmoid_().mul_(x)"
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_times_sigmoid_is_as_accurate_as_the_product(dtype: torch.dtype) -> None:
    """The helpers against a * sigmoid(-u) (float32: computed in float64; float64: the two
    operations): within 4 ulps over u in [-100, 80] where the result is a normal number, a
    itself where sigmoid(-u) rounds to 1, 0 at u = inf, NaN at NaN."""
    namespace: dict = {"torch": torch}
    for helper in inplace.HELPERS.values():
        exec("\n".join(helper), namespace)
    gen = torch.Generator().manual_seed(0)
    u = torch.linspace(-100, 80, 40001, dtype=torch.float64)
    a = torch.rand(40001, dtype=torch.float64, generator=gen) * 4 - 2
    got = namespace["_times_sigmoid"](a.to(dtype), u.to(dtype), -1)
    if dtype == torch.float32:
        exact = a.float().double() * torch.sigmoid(-u.float().double())
        normal = exact.abs() > torch.finfo(dtype).tiny
        ulps = ((got.double() - exact).abs() / exact.abs())[normal] / torch.finfo(dtype).eps
        assert ulps.max() < 4
    else:  # float64 has no wider type here: against the unfused product
        want = a * torch.sigmoid(-u)
        normal = want.abs() > torch.finfo(dtype).tiny
        ulps = ((got - want).abs() / want.abs())[normal] / torch.finfo(dtype).eps
        assert ulps.max() < 4
    into = a.to(dtype).clone()
    assert namespace["_times_sigmoid_"](into, u.to(dtype), -1) is into
    assert torch.equal(into, got)
    ends = torch.tensor([-50.0, float("nan"), float("inf"), -float("inf")], dtype=dtype)
    out = namespace["_times_sigmoid"](torch.full((4,), 3.0, dtype=dtype), ends, -1)
    assert out[0] == 3 and out[1].isnan() and out[2] == 0 and out[3] == 3


def test_rewrite_fuses_multiply_adds_alike_in_place_and_functionally() -> None:
    """`a + b*c` and `a - b*c` become addcmul: no buffer for the product; the functional code
    (in_place=False) fuses the same ones, so that both round once, alike."""
    body = ("a = torch.exp(x)", "b = a + x*w", "c = torch.exp(x) - x*x", "return b, c")
    assert _rewrite(*body) == [
        "a = torch.exp(x)",
        "b = a.addcmul_(x, w)",
        "c = torch.exp(x).addcmul_(x, x, value=-1)",
        "return b, c",
    ]
    functional = inplace.rewrite(list(body), LEAVES, ("N", "D"), in_place=False)
    assert functional == [
        "a = torch.exp(x)",
        "b = torch.addcmul(a, x, w)",
        "c = torch.addcmul(torch.exp(x), x, x, value=-1)",
        "return b, c",
    ]
    # the addend is an input, the product's operands are not fresh: one result either way
    assert _rewrite("b = x + x*w", "return b")[0] == "b = torch.addcmul(x, x, w)"
    assert _rewrite("b = x*w + x", "return b")[0] == "b = torch.addcmul(x, x, w)"
    # not fused: a product written into its fresh full-size operand is as lean, an addend
    # smaller than the result cannot take it, numbers and products on the left of `-` stay
    assert _rewrite("b = w + torch.exp(x)*x", "return b")[0] == "b = torch.exp(x).mul_(x).add_(w)"
    assert _rewrite("b = x + torch.exp(x)*w", "return b")[0] == "b = torch.exp(x).mul_(w).add_(x)"
    assert _rewrite("b = torch.exp(x) + 2*x", "return b")[0] == "b = torch.exp(x).add_(2*x)"
    assert _rewrite("b = x*w - torch.exp(x)", "return b")[0] == "b = (x*w).sub_(torch.exp(x))"


def test_fused_multiply_add_is_within_an_ulp_of_the_unfused() -> None:
    """What the fusion changes: one rounding instead of two (torch's CPU addcmul is a fused
    multiply-add): they differ by at most the product's rounding and the sum's."""
    gen = torch.Generator().manual_seed(3)
    a, b, c = (torch.randn(10_000, dtype=torch.float64, generator=gen) for _ in range(3))
    fused, unfused = torch.addcmul(a, b, c), a + b * c
    bound = torch.finfo(torch.float64).eps * ((b * c).abs() + unfused.abs())
    assert torch.all((fused - unfused).abs() <= bound)
    assert torch.equal(torch.addcmul(a, b, c, value=-1), -torch.addcmul(-a, b, c))


@pytest.mark.parametrize("name", ["giou", "triplet", "cosine_embedding"])
def test_a_gradient_is_the_same_whichever_other_inputs_require_grad(name: str) -> None:
    """Statements only unrequested gradients read are skipped (module.schedule gates them by
    `needs`); what runs computes the same, bitwise, as when every gradient is asked for."""
    spec = lossdsl.load(ROOT / f"specs/{name}.loss")
    ours, theirs = _modules(spec)
    (point,) = random_points(spec.inputs, 1, seed=5)
    inputs = _inputs(spec, point.inputs)
    wrt = [k for k, info in enumerate(spec.inputs) if info.differentiated]
    full = []
    for f in (ours, theirs):
        xs = [x.detach().requires_grad_(k in wrt) for k, x in enumerate(inputs)]
        f(*xs).backward()
        full.append([xs[k].grad for k in wrt])
    assert all(torch.equal(g, w) for g, w in zip(*full, strict=True))
    for k in wrt:
        xs = [x.detach().requires_grad_(j == k) for j, x in enumerate(inputs)]
        ours(*xs).backward()
        assert torch.equal(xs[k].grad, full[0][wrt.index(k)]), k
        assert all(xs[j].grad is None for j in wrt if j != k)


def test_unrequested_gradients_cost_nothing() -> None:
    """GIoU's gradient with respect to the target shares terms with the prediction's but
    needs a dozen of its own: with only the prediction requiring grad, they never run."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.calls += 1
            return func(*args, **(kwargs or {}))

    giou = lossdsl.load(ROOT / "specs/giou.loss").compile("torch")
    gen = torch.Generator().manual_seed(4)
    lo = torch.rand(6, 2, dtype=torch.float64, generator=gen)
    boxes = [torch.cat([lo, lo + 1 + torch.rand(6, 2, dtype=torch.float64, generator=gen)], 1)]
    boxes.append(boxes[0].flip(0))
    counts = []
    for both in (True, False):
        pred, target = (b.clone().requires_grad_(k == 0 or both) for k, b in enumerate(boxes))
        with Count() as count:
            giou(pred, target).backward()
        counts.append(count.calls)
    assert counts[1] < counts[0] - 12, counts
