"""Straight-line passes shared by the emitters (lossdsl.backends.module): demand order and
`needs` gates (`schedule`), frees (`release`)."""

from __future__ import annotations

from lossdsl.backends.module import release, schedule


def test_schedule_computes_what_one_gradient_alone_needs_just_before_it() -> None:
    body = [
        "a = x*2",
        "b = torch.exp(x)",
        "c = b*3",
        "value = torch.sum(a)",
        "grad_x = (a*c) if needs[0] else None",
        "grad_y = b*y if needs[1] else None",
        "return value, grad_x, grad_y",
    ]
    assert schedule(body) == [
        "a = x*2",
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
        "a = x*2",
        "grad_x = a if needs[0] else None",
        "grad_y = a if needs[1] else None",
        "grad_z = x if needs[2] else None",
        "return grad_x, grad_y, grad_z",
    ]
    assert schedule(body)[0] == "a = (x*2) if needs[0] or needs[1] else None"
    odd = ["a = x*2", "if a: pass", "return a"]  # not one assignment a line: as it is
    assert schedule(odd) == odd
    twice = ["a = x*2", "a = a*3", "return a"]  # a name bound twice: as it is
    assert schedule(twice) == twice
