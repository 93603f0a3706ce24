"""The scratch buffer's statements, or whole functions, run a block of rows at a time
(lossdsl.backends.blocked): which statements can be, what they become, and that the blocks
compute what the whole tensors do, in several blocks as in one."""

from __future__ import annotations

from pathlib import Path

import pytest

from lossdsl.backends import blocked

ROOT = Path(__file__).resolve().parent.parent
DIMS = {
    "x": frozenset({"N", "D"}),
    "p": frozenset({"N", "D"}),
    "g": frozenset({"N", "D"}),
    "s": frozenset({"N"}),
    "c": frozenset({"D"}),
    "k": frozenset(),
}
SCRATCH = "_scratch = x.new_empty(x.shape)"


def _block(*lines: str) -> list[str] | None:
    return blocked.block([SCRATCH, *lines], SCRATCH, DIMS.get, ("N", "D"))


def test_a_row_sum_is_the_concatenation_of_its_blocks() -> None:
    assert _block("s = torch.sum(torch.mul(x, p, out=_scratch), dim=(1,), keepdim=True)") == [
        "_blocks = _row_blocks(x)",
        "s = torch.cat([torch.sum(torch.mul(x[_rows], p[_rows], out=_scratch), dim=(1,), "
        "keepdim=True) for _rows, _scratch in _blocks])",
    ]


def test_an_update_of_a_buffer_runs_over_its_rows_then_names_it() -> None:
    (_, loop, named) = _block("p = p.mul_(torch.sub(s, x, out=_scratch)).mul_(k*s)")
    assert loop == (
        "for _rows, _scratch in _blocks:\n"
        "    p[_rows].mul_(torch.sub(s[_rows], x[_rows], out=_scratch)).mul_(k * s[_rows])"
    )
    assert named == "p = p"
    (_, gated, named) = _block("g = p.mul_(torch.neg(x, out=_scratch)) if needs[0] else None")
    assert gated.startswith("if needs[0]:\n    for _rows, _scratch in _blocks:\n        p[_rows]")
    assert named == "g = p if needs[0] else None"


@pytest.mark.parametrize(
    "line",
    [
        "s = torch.sum(torch.mul(x, p, out=_scratch), dim=(0,), keepdim=True)",  # over N
        "p = p.mul_(torch.sub(c, x, out=_scratch)).add_(c.mul_(2))",  # c updated per block
        "p = torch.mul(x, p, out=_scratch).mul_(2)",  # the result is the scratch buffer
        "p = p.mul_(torch.mul(x, y, out=_scratch))",  # y: dims unknown
        "p = p.mul_(torch.mul(x, x.T, out=_scratch))",  # an attribute
        "p = p.mul_(torch.logcumsumexp(torch.mul(x, p, out=_scratch), 1))",  # not row-wise known
        "k = torch.sum(torch.mul(x, p, out=_scratch), dim=(0, 1), keepdim=True)",
        "s = torch.sum(torch.mul(x, p, out=_scratch), dim=axes, keepdim=True)",  # unknown dims
    ],
)
def test_anything_not_row_by_row_keeps_the_full_size_buffer(line: str) -> None:
    assert _block(line) is None


def test_a_layout_without_dims_has_no_rows() -> None:
    """A loss of scalar inputs (found by tests/test_fuzz.py): its scratch buffer stays."""
    line = "a = torch.exp(torch.mul(k, k, out=_scratch)).mul_(torch.neg(k, out=_scratch))"
    assert blocked.block([SCRATCH, line], SCRATCH, DIMS.get, ()) is None


def _row_blocks():
    namespace: dict = {}
    exec("\n".join(blocked.HELPERS["_row_blocks"]), namespace)
    return namespace["_row_blocks"]


def test_row_blocks_cover_every_row_once() -> None:
    torch = pytest.importorskip("torch")
    row_blocks = _row_blocks()
    x = torch.zeros(10, 3)
    blocks = row_blocks(x, elements=12)  # 4 rows a block
    assert [(b.start, b.stop) for b, _ in blocks] == [(0, 4), (4, 8), (8, 12)]
    assert [tuple(s.shape) for _, s in blocks] == [(4, 3), (4, 3), (2, 3)]
    assert all(s.data_ptr() == blocks[0][1].data_ptr() for _, s in blocks)  # one buffer
    assert [tuple(x[b].shape) for b, _ in blocks] == [(4, 3), (4, 3), (2, 3)]
    ((every, buffer),) = row_blocks(x)  # small: one block, every row
    assert every is ... and tuple(buffer.shape) == (10, 3)
    ((every, buffer),) = row_blocks(torch.zeros(0, 3))
    assert every is ... and tuple(buffer.shape) == (0, 3)
    assert len(row_blocks(torch.zeros(3, 5), elements=1)) == 3  # at least a row a block


SPECS = sorted(path.stem for path in (ROOT / "specs").glob("*.loss"))


def _load_all(path: Path) -> list:
    import lossdsl

    return lossdsl.load_all(path)


LOSSES = [(ROOT / "specs" / f"{name}.loss", name) for name in SPECS] + [
    (path, spec.name)
    for path in sorted((ROOT / "tests" / "examples").glob("*.loss"))
    for spec in _load_all(path)
]


@pytest.mark.parametrize(("path", "name"), LOSSES, ids=lambda v: v if isinstance(v, str) else "")
def test_several_blocks_compute_what_one_does(path: Path, name: str) -> None:
    """The emitted eager module with one row a block against the functional module (every
    library spec and example the blocks apply to), in
    float64, at random valid inputs: the same values and gradients, up to the rounding of
    sums taken in another order (a sum over the rows is the sum of its blocks' sums)."""
    torch = pytest.importorskip("torch")
    import lossdsl
    from lossdsl import codegen, runtime, sign_merge, softplus_merge
    from lossdsl.backends import torch as torch_backend
    from lossdsl.sampling import random_points

    spec = lossdsl.load(path, name)
    source = spec.emit("torch")
    if "_row_blocks(" not in source:
        pytest.skip(f"{name}: not run by blocks")
    ours = runtime.load_module(source, spec.name, f"blocked-{name}")
    ours._row_blocks.__defaults__ = (1,)
    plan = codegen.specialise(spec.stable_ir, spec.bind_params({}))
    plan.value = softplus_merge.merge(sign_merge.merge(plan.value, plan.loss))
    theirs = runtime.load_module(torch_backend.emit(plan, in_place=False), name, f"f-{name}")
    for point in random_points(spec.inputs, 2, seed=3):
        results = []
        for module in (ours, theirs):
            xs = [
                torch.as_tensor(x) if info.elem == "Index" else torch.tensor(x).double()
                for info, x in zip(spec.inputs, point.inputs, strict=True)
            ]
            for x, info in zip(xs, spec.inputs, strict=True):
                x.requires_grad_(info.differentiated)
            value = getattr(module, spec.name)(*xs)
            wrt = [x for x in xs if x.requires_grad]
            results.append((value, torch.autograd.grad(value, wrt)))
        (value, grads), (want_value, want) = results
        torch.testing.assert_close(value, want_value, rtol=1e-13, atol=1e-15)
        for g, w in zip(grads, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-13, atol=1e-15)


def test_elementwise_library_specs_run_by_blocks_whole() -> None:
    """Which library specs run all of their eager `_value_and_grad` by blocks of rows: those
    whose temporaries are all elementwise (a row's own sums and norms, as in giou, triplet
    or dice, keep the rest of the function whole: blocks of them cost more Python than
    they save here)."""
    import lossdsl

    whole = {
        name
        for name in SPECS
        if "_part0s.append(" in lossdsl.load(ROOT / "specs" / f"{name}.loss").emit("torch")
    }
    assert whole == {
        *("bce_with_logits", "cross_entropy", "focal", "gaussian_nll", "hinge", "huber"),
        *("kl_div", "log_cosh", "mae", "margin_ranking", "mse", "poisson_nll", "quantile"),
        "smooth_l1",
    }


WHOLE = {
    "x": frozenset({"N", "D"}),
    "y": frozenset({"N", "D"}),
    "a": frozenset({"N", "D"}),
    "b": frozenset({"N", "D"}),
    "grad_x": frozenset({"N", "D"}),
    "s": frozenset({"N"}),
    "k": frozenset(),
    "m": frozenset(),
    "value": frozenset(),
}


def _whole(*lines: str) -> list[str] | None:
    body = [*lines, "return value, grad_x, None"]
    return blocked.block_rows(body, None, WHOLE.get, ("N", "D"), "x")


def test_a_whole_function_by_blocks() -> None:
    out = _whole(
        "k = torch.as_tensor(0.5, dtype=dtype)",
        "a = x - y",
        "value = torch.sum(a * a, dim=(0, 1), keepdim=True).mul_(k)",
        "grad_x = a.mul_(k) if needs[0] else None",
    )
    assert out is not None
    before, blocks, parts, grad, loop, part, value, end = out
    assert before == "k = torch.as_tensor(0.5, dtype=dtype)"
    assert (blocks, parts) == ("_blocks = _row_blocks(x)", "_part0s = []")
    assert grad == "grad_x = x.new_empty(x.shape) if needs[0] and len(_blocks) > 1 else None"
    assert loop.split("\n") == [
        "for _rows, _scratch in _blocks:",
        "    a = x[_rows] - y[_rows]",
        "    _part0s.append(torch.sum(a * a, dim=(0, 1), keepdim=True))",
        "    if needs[0]:",
        "        if grad_x is None:",
        "            grad_x = a.mul_(k)",
        "        else:",
        "            torch.mul(a, k, out=grad_x[_rows])",
    ]
    assert part.startswith("_part0 = _part0s[0] if len(_part0s) == 1 else torch.sum(torch.cat(")
    assert (value, end) == ("value = _part0.mul_(k)", "return value, grad_x, None")


@pytest.mark.parametrize(
    "lines",
    [
        # a row's own sum among the temporaries: not elementwise
        ("s = torch.sum(x, dim=(1,), keepdim=True)", "grad_x = x * s"),
        # the loop would read what is computed from the sum over the rows
        ("m = torch.sum(x, dim=(0, 1), keepdim=True)", "grad_x = x * m"),
        # moved before the loop, an update of `k` would come before the loop's read of it
        ("k = torch.as_tensor(2.0, dtype=dtype)", "a = x * k", "m = k.mul_(3)", "grad_x = a"),
        # a reduction over the rows the blocks cannot combine
        ("value = torch.logsumexp(x, dim=(0, 1), keepdim=True)", "grad_x = x"),
        # a sum without keepdim: its blocks' results would not line up
        ("value = torch.sum(x, dim=(0, 1))", "grad_x = x"),
    ],
)
def test_not_a_whole_function_by_blocks(lines: tuple[str, ...]) -> None:
    assert _whole(*lines) is None
