"""The resolver: checked types (element kind and dims, broadcast by name), params and consts,
helpers and loss calls inlined with their dims unified, and which loss of a file is chosen."""

from __future__ import annotations

import pytest

import lossdsl
from lossdsl import checked, errors
from lossdsl.checked import Kind
from tests.conftest import EXAMPLES


def check(text: str, name: str | None = None) -> checked.CheckedLoss:
    return lossdsl.parse(text, "spec.loss", name).checked


def output_type(text: str) -> checked.Type:
    return check(text).output.type


@pytest.mark.parametrize(
    ("inputs", "expr", "dims"),
    [
        ("a: Real[N, C], b: Real[N]", "a + b", ("N", "C")),
        ("a: Real[N], b: Real[C]", "a * b", ("N", "C")),
        ("a: Real[C], b: Real[N, C]", "a - b", ("C", "N")),
        ("a: Real[N, C], b: Real", "a / b", ("N", "C")),
        ("a: Real[N, C]", "sum[C](a)", ("N",)),
        ("a: Real[N, C]", "mean(a)", ()),
        ("a: Real[N, C, D]", "max[N, D](a)", ("C",)),
        ("a: Real[N, C]", "norm[C](a, eps=1e-12)", ("N",)),
        ("a: Real[N, C]", "softmax[C](a)", ("N", "C")),
        ("a: Real[N, C], t: Index[N] of C", "a[t]", ("N",)),
        ("a: Real[C], t: Index[N] of C", "a[t]", ("N",)),
        ("a: Real[N, C], t: Index[N] of C", "onehot(t) * a", ("N", "C")),
        ("a: Real[N, C]", "a > 0", ("N", "C")),
        ("a: Real[N], b: Real[C]", "if a > 0 then b else 0", ("N", "C")),
        ("a: Real[N, 4]", "sum[4](a) / size(4)", ("N",)),
        ("a: Real[N]", "sum(a) / size(N)", ()),
    ],
)
def test_dims_broadcast_by_name(inputs: str, expr: str, dims: tuple[str, ...]) -> None:
    assert output_type(f"loss f({inputs}) {{ return {expr} }}").dims == dims


def test_canonical_dim_order_is_first_appearance() -> None:
    loss = check("loss f(b: Real[C], a: Real[N, C, D]) { return sum(a * b) }")
    assert loss.dims == ("C", "N", "D")


def test_inputs_record_types() -> None:
    loss = check("loss f(l: Real[N, C], t: Index[N] of C, m: Binary[N], p: Prob) { return p }")
    assert [(i.name, i.elem, i.dims, i.of) for i in loss.inputs] == [
        ("l", "Real", ("N", "C"), None),
        ("t", "Index", ("N",), "C"),
        ("m", "Binary", ("N",), None),
        ("p", "Prob", (), None),
    ]
    assert [i.differentiated for i in loss.inputs] == [True, False, False, True]


def test_comparisons_are_bool_until_used_as_numbers() -> None:
    text = "loss f(x: Real) {{ return {} }}"
    assert output_type(text.format("(x > 0) * 2")).kind is Kind.VALUE
    node = check(text.format("x > 0")).output
    assert isinstance(node, checked.Apply) and node.op == "if"  # 1 where true, else 0


def test_comparison_chain_is_a_conjunction() -> None:
    node = check("loss f(x: Real) { return if 0 <= x < 1 then x else 0 }").output
    assert isinstance(node, checked.Apply) and node.op == "if"
    cond = node.args[0]
    assert isinstance(cond, checked.Apply) and cond.op == "and"
    assert [a.op for a in cond.args] == ["le", "lt"]  # type: ignore[union-attr]


def test_comparisons_compare_again_as_numbers() -> None:
    assert output_type("loss f(x: Real) { return (x > 0) > 0 }").dims == ()


def test_index_compares_as_an_integer() -> None:
    text = "loss f(x: Real[N, C], t: Index[N] of C) { return sum(if t == 0 then x[t] else 0) }"
    assert output_type(text).dims == ()


def test_params_defaults_conditions_and_dims() -> None:
    loss = check(EXAMPLES.joinpath("cross_entropy.loss").read_text())
    weight, smoothing = loss.params
    assert (weight.name, weight.elem, weight.dims, weight.default) == (
        "weight",
        "Positive",
        ("C",),
        1.0,
    )
    assert smoothing.condition_text == "0 <= smoothing < 1"
    assert smoothing.default == 0.0


def test_required_param_has_no_default() -> None:
    (k,) = check("loss f(x: Real) {\n param k: Real\n return k * x\n}").params
    assert k.default is None


def test_consts_fold_to_numbers() -> None:
    text = "loss f(x: Real) {\n const a = 2 ^ 3\n const b = max(a, 10) - abs(-1)\n return b * x\n}"
    node = check(text).output
    assert isinstance(node, checked.Apply)
    constant = node.args[0]
    assert isinstance(constant, checked.Constant) and constant.value == 9.0


def test_helpers_are_inlined_and_shapes_flow_through() -> None:
    text = "def sq(a) = a * a\nloss f(x: Real[N, C], y: Real[N]) { return sq(x - y) }"
    loss = check(text)
    assert loss.output.type.dims == ("N", "C")
    assert isinstance(loss.output, checked.Apply) and loss.output.op == "mul"


def test_a_helper_called_twice_with_the_same_argument_is_shared() -> None:
    loss = check("def sq(a) = a * a\nloss f(x: Real) { return sq(x) + sq(x) }")
    node = loss.output
    assert isinstance(node, checked.Apply)
    assert node.args[0] is node.args[1]


def test_helpers_see_their_own_files_names_not_the_callers() -> None:
    with pytest.raises(errors.ResolveError, match="undefined name `x`"):
        check("def g(a) = a + x\nloss f(x: Real) { return g(x) }")


def test_loss_calls_unify_dims_by_position() -> None:
    text = """
    loss pair(a: Real[N, D], b: Real[N, D]) { return mean(norm[D](a - b)) }
    loss f(u: Real[B, E], v: Real[B, E]) { return pair(u, v) }
    """
    loss = check(text, "f")
    assert loss.output.type.dims == ()
    assert loss.dims == ("B", "E")


def test_loss_calls_pair_equal_dim_names_first() -> None:
    text = """
    loss g(a: Real[N, C]) { return sum[C](a) }
    loss f(x: Real[K, N]) { return g(x) }
    """
    # the callee's N is the caller's N; its C takes the remaining K
    assert check(text, "f").output.type.dims == ("N",)


def test_loss_call_params_by_keyword() -> None:
    text = (
        EXAMPLES.joinpath("focal.loss").read_text()
        + """
    loss mix(l: Real[N], t: Binary[N]) {
        param g: Real = 1.0
        return focal(l, t, gamma=g) + focal(l, t, alpha=0.5)
    }"""
    )
    loss = check(text, "mix")
    assert [p.name for p in loss.params] == ["g"]  # the callee's params are resolved away


def test_loss_call_kwarg_may_be_a_tensor_with_the_params_dims() -> None:
    text = (
        EXAMPLES.joinpath("cross_entropy.loss").read_text()
        + """
    loss weighted(x: Real[B, K], y: Index[B] of K, w: Positive[K]) {
        return cross_entropy(x, y, weight=w)
    }"""
    )
    assert check(text, "weighted").output.type.dims == ()


def test_which_loss_is_chosen() -> None:
    text = "loss a(x: Real) { return x }\nloss b(x: Real) { return 2 * x }"
    assert check(text).name == "b"  # the last one
    assert check(text, "a").name == "a"
    with pytest.raises(errors.ResolveError, match="has no loss `c`") as info:
        check(text, "c")
    assert "choose one of: a, b" in info.value.help


def test_resolve_all_checks_every_own_loss() -> None:
    specs = lossdsl.load_all(EXAMPLES / "detection.loss")
    assert [s.name for s in specs] == ["bce", "detection"]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.loss")), ids=lambda p: p.name)
def test_every_example_resolves(path: object) -> None:
    for spec in lossdsl.load_all(path):  # type: ignore[arg-type]
        assert spec.checked.output.type.kind is Kind.VALUE
        assert spec.checked.output.type.dims == ()  # every example is a reduced loss


def test_unpacking_a_literal_dim() -> None:
    loss = check("loss f(box: Real[N, 4]) {\n x1, y1, x2, y2 = box\n return x2 - x1\n}")
    node = loss.output
    assert isinstance(node, checked.Apply)
    parts = node.args
    assert all(isinstance(p, checked.Component) for p in parts)
    assert [p.position for p in parts] == [2, 0]  # type: ignore[union-attr]
    assert node.type.dims == ("N",)


def test_param_value_checked_at_the_call_site_of_an_inlined_loss() -> None:
    text = EXAMPLES.joinpath("focal.loss").read_text() + (
        "\nloss bad(l: Real[N], t: Binary[N]) { return focal(l, t, alpha=1.5) }\n"
    )
    with pytest.raises(errors.ParamError, match="violates `where 0 <= alpha <= 1`") as info:
        check(text, "bad")
    assert info.value.span is not None and info.value.span.text == "alpha=1.5"


def test_validate_param() -> None:
    spec = lossdsl.load(EXAMPLES / "focal.loss")
    gamma, alpha = spec.params
    from lossdsl.resolve import validate_param

    validate_param(alpha, 0.0, None)
    validate_param(alpha, 1.0, None)
    with pytest.raises(errors.ParamError, match=r"param `alpha` = 1\.5 violates"):
        validate_param(alpha, 1.5, None)
    with pytest.raises(errors.ParamError, match="param `gamma` = -1 violates `where gamma >= 0`"):
        validate_param(gamma, -1.0, None)
    with pytest.raises(errors.ParamError, match="is not a number"):
        validate_param(gamma, float("nan"), None)
