"""Straight-line passes shared by the emitters (lossdsl.backends.module): demand order and
`needs` gates (`schedule`), frees (`release`); the entry function's result."""

from __future__ import annotations

import lossdsl
from lossdsl.backends.module import release, schedule


def test_schedule_computes_what_one_gradient_alone_needs_just_before_it() -> None:
    body = [
        "a = torch.sin(x)",
        "b = torch.exp(x)",
        "c = b*3",
        "value = torch.sum(a)",
        "grad_x = (a*c) if needs[0] else None",
        "grad_y = b*y if needs[1] else None",
        "return value, grad_x, grad_y",
    ]
    assert schedule(body) == [
        "a = torch.sin(x)",
        "value = torch.sum(a)",
        "b = torch.exp(x)",  # both gradients read it: no gate (one of them is asked for)
        "c = (b*3) if needs[0] else None",  # only grad_x reads it
        "grad_x = (a*c) if needs[0] else None",
        "grad_y = b*y if needs[1] else None",
        "return value, grad_x, grad_y",
    ]
    # the frees follow: a and c go after grad_x, not at the end
    assert release(schedule(body))[4:6] == ["grad_x = (a*c) if needs[0] else None", "del a, c"]


def test_schedule_gates_by_every_gradient_that_reads_and_keeps_anything_else() -> None:
    body = [
        "a = torch.sin(x)",
        "grad_x = a if needs[0] else None",
        "grad_y = a if needs[1] else None",
        "grad_z = x if needs[2] else None",
        "return grad_x, grad_y, grad_z",
    ]
    assert schedule(body)[0] == "a = (torch.sin(x)) if needs[0] or needs[1] else None"
    odd = ["a = x*2", "if a: pass", "return a"]  # not one assignment a line: as it is
    assert schedule(odd) == odd
    twice = ["a = x*2", "a = a*3", "return a"]  # a name bound twice: as it is
    assert schedule(twice) == twice


def test_schedule_recomputes_one_operation_on_the_arguments_for_each_later_reader() -> None:
    """`d = w - y` read early and late: the late reader gets its own `d_2`, computed right
    before it, instead of `d` held in between: one more pass, one buffer fewer at the peak
    (three alive at `h = f*g`, not four). Where no fewer are alive at once, no copy."""
    body = [
        "w = x[:, 0:1]",
        "d = w - y",
        "value = torch.sum(d)",
        "f = torch.exp(x)",
        "g = torch.sin(x)",
        "h = f*g",
        "grad_x = (h*d) if needs[0] else None",
        "return value, grad_x",
    ]
    assert schedule(body) == [
        "w = x[:, 0:1]",
        "d = w - y",  # a slice of an argument counts as one
        "value = torch.sum(d)",
        "f = torch.exp(x)",
        "g = torch.sin(x)",
        "h = f*g",
        "d_2 = w - y",
        "grad_x = (h*d_2) if needs[0] else None",
        "return value, grad_x",
    ]
    # a temporary named like a keyword argument: only the name is renamed
    named = [
        "dim = x - y",
        "value = torch.sum(dim)",
        "f = torch.exp(x)",
        "g = torch.sin(x)",
        "h = f*g",
        "grad_x = (torch.sum(h, dim=(1,), keepdim=True)*dim) if needs[0] else None",
        "return value, grad_x",
    ]
    assert schedule(named)[-2] == (
        "grad_x = (torch.sum(h, dim=(1,), keepdim=True)*dim_2) if needs[0] else None"
    )
    close = ["d = x - y", "value = torch.sum(d)", "grad_x = d*2 if needs[0] else None"]
    assert schedule([*close, "return value, grad_x"]) == [*close, "return value, grad_x"]
    deeper = ["a = torch.exp(x)", "b = a - y", "c = b*b", "return b, c"]  # b reads a temporary
    assert schedule(deeper) == deeper


def test_entry_broadcasts_a_value_along_the_declared_dims_it_lacks() -> None:
    """`x - x` for `x: Real[N, C]` (SymPy: 0) is computed once, then spread over both dims
    into a new tensor; `0 * x + y` for `y: Real[C]` only over `N`; an output that has all
    its dims is only reshaped."""
    zero = lossdsl.parse("loss f(x: Real[N, C]) { return x - x }")
    assert zero.emit("torch").rstrip().splitlines()[-2:] == [
        "    value = _function().apply(x, needs)[0]",
        "    return torch.broadcast_to(value, (n_N, n_C)).contiguous()",
    ]
    assert zero.emit("jax").rstrip().splitlines()[-2:] == [
        "    value = _f(x)",
        "    return jnp.broadcast_to(value, (n_N, n_C))",
    ]
    # its core is a constant of x's dtype: no unused `dtype = x.dtype` (`dtype=` is no read)
    assert "dtype = x.dtype" not in zero.emit("torch") + zero.emit("jax")
    row = lossdsl.parse("loss f(x: Real[N, C]) { return sum[C](x - x) }").emit("jax")
    assert (
        row.rstrip().splitlines()[-1]
        == "    return jnp.broadcast_to(value, (n_N, 1)).reshape((n_N,))"
    )
    outer = lossdsl.parse("loss f(x: Real[N], y: Real[C]) { return 0 * x + y }").emit("jax")
    assert outer.rstrip().splitlines()[-1] == "    return jnp.broadcast_to(value, (n_N, n_C))"
    whole = lossdsl.parse("loss f(x: Real[N]) { return x^2 }").emit("jax")
    assert whole.rstrip().splitlines()[-1] == "    return _f(x).reshape((n_N,))"
