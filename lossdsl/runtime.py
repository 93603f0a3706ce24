"""Turning emitted source into callables: exec it once, wrap the public function so that user
mistakes (shapes, dtypes, class indices, tensor params) become :class:`CallError`s naming the
input's declaration.
"""

from __future__ import annotations

import inspect
import linecache
import sys
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

from lossdsl.checked import CheckedLoss, InputInfo, ParamInfo
from lossdsl.codegen import py_name
from lossdsl.errors import BackendError, CallError, ParamError, Span


def load_module(source: str, name: str, cache_key: str) -> ModuleType:
    """Execute emitted source as a module (registered with linecache for tracebacks)."""
    filename = f"<lossdsl {name} {cache_key[:12]}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = ModuleType(f"lossdsl_generated_{name}_{cache_key[:12]}")
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)
    sys.modules[module.__name__] = module  # torch.compile re-imports functions' modules by name
    return module


def load_compiled(
    source: str, name: str, cache_key: str, binary: tuple[str, ...] = ()
) -> ModuleType:
    """The torch module again, its `_value`, `_grad` and (for a scalar loss) `_value_and_grad`
    run through `torch.compile` (fused kernels, recompiled per shape and dtype by dynamo's
    guards); where no compiler works on this machine they fall back, with a warning, to the
    same functions run eagerly. The forward functions also check the inputs named in
    ``binary`` (the Python names of `Binary` inputs) inside the compiled graph, where the check
    shares the pass that reads them anyway."""
    module = load_module(source, name, cache_key + "_compiled")
    for function in ("_value", "_grad", "_value_and_grad"):
        if function in module.__dict__:
            fn = module.__dict__[function]
            checked = binary and function != "_grad"  # `_grad` runs after a checked forward
            module.__dict__[function] = (
                _with_binary_check(fn, binary) if checked else _compile_with_fallback(fn)
            )
    return module


class NotBinary(Exception):
    """A `Binary` input of a compiled forward holds a value other than 0 and 1."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _with_binary_check(fn: Callable[..., Any], binary: tuple[str, ...]) -> Callable[..., Any]:
    """``fn`` compiled together with max(|x * (1 - x)|) of each `Binary` argument (0 exactly
    when every element is 0 or 1; NaN fails too), raising :class:`NotBinary` after the call.
    While tracing or under torch.func transforms (no concrete values) ``fn`` runs unchecked."""
    import torch

    names = list(inspect.signature(fn).parameters)
    where = [(names.index(n), n) for n in binary if n in names]

    def with_violations(*args: Any) -> Any:
        return fn(*args), [torch.amax(torch.abs(args[i] * (1 - args[i]))) for i, _ in where]

    joint = _compile_with_fallback(with_violations)
    plain = _compile_with_fallback(fn)

    def call(*args: Any) -> Any:
        if not _eager("torch", args) or any(args[i].numel() == 0 for i, _ in where):
            return plain(*args)
        out, violations = joint(*args)
        for (_, name), violation in zip(where, violations, strict=True):
            if not bool(violation == 0):
                raise NotBinary(name)
        return out

    return call


def _compile_with_fallback(fn: Callable[..., Any]) -> Callable[..., Any]:
    import torch

    state = {"fn": torch.compile(fn)}

    def call(*args: Any) -> Any:
        try:
            return state["fn"](*args)
        except Exception as exc:  # no working compiler here: run the same code eagerly
            if state["fn"] is fn:
                raise
            warnings.warn(
                f"lossdsl: torch.compile failed ({type(exc).__name__}); running eager",
                stacklevel=2,
            )
            state["fn"] = fn
            return fn(*args)

    return call


def _framework(backend: str) -> Any:
    try:
        if backend == "torch":
            import torch

            return torch
        import jax

        return jax
    except ImportError:
        raise BackendError(
            None,
            f"the {backend} backend needs `{backend}`, which is not installed",
            f"pip install 'lossdsl[{backend}]'",
        ) from None


class CompiledLoss:
    """A compiled loss: call it with the declared inputs, positionally."""

    def __init__(
        self,
        loss: CheckedLoss,
        module: ModuleType,
        backend: str,
        tensor_params: dict[str, Any],
        fused_checks: bool = False,
    ) -> None:
        self.loss = loss
        self.fused_checks = fused_checks  # Binary inputs checked in the compiled graph
        self.module = module
        self.backend = backend
        self.fn: Callable[..., Any] = getattr(module, py_name(loss.name))
        self.tensor_params = tensor_params
        self.__doc__ = self.fn.__doc__
        self.__name__ = loss.name

    def __repr__(self) -> str:
        return f"<lossdsl {self.backend} loss {self.loss.name}>"

    def __call__(self, *inputs: Any, **tensor_params: Any) -> Any:
        declared = self.loss.inputs
        if len(inputs) != len(declared):
            names = ", ".join(i.name for i in declared)
            raise CallError(
                self.loss.span,
                f"`{self.loss.name}` takes {len(declared)} inputs ({names}), got {len(inputs)}",
                "pass the inputs positionally, in declared order",
            )
        params = {**self.tensor_params, **tensor_params}
        if _eager(self.backend, inputs):
            _check_indices(self.backend, declared, inputs)
            if not self.fused_checks:  # compiled mode checks Binary inputs in its graph
                _check_binary(declared, inputs)
            _check_tensor_params(self.backend, self.loss, inputs, params)
        try:
            return self.fn(*inputs, **{py_name(k): v for k, v in params.items()})
        except self.module.LossInputError as exc:
            raise CallError(_span_for(declared, str(exc)), str(exc), _HELP) from None
        except NotBinary as exc:
            (info,) = [i for i in declared if py_name(i.name) == exc.name]
            raise _not_binary(info) from None


_HELP = "pass tensors with the declared dims (the same size for the same dim name)"


def _span_for(declared: tuple[InputInfo, ...], message: str) -> Span | None:
    for info in reversed(declared):
        if f"`{info.name}`" in message:
            return info.span
    return declared[0].span if declared else None


def _eager(backend: str, inputs: tuple[Any, ...]) -> bool:
    """Value checks need concrete data: skip them while tracing (torch.compile, vmap, jit)."""
    if backend == "torch":
        import torch

        if torch.compiler.is_compiling():
            return False
        return not any(
            isinstance(x, torch.Tensor) and torch._C._functorch.is_functorch_wrapped_tensor(x)
            for x in inputs
        )
    import jax

    return not any(isinstance(x, jax.core.Tracer) for x in inputs)


def _check_binary(declared: tuple[InputInfo, ...], inputs: tuple[Any, ...]) -> None:
    """A `Binary` input holds 0s and 1s: the loss is compiled for exactly those values (the
    Binary split selects a branch by `t == 1`), so anything else would be a silent wrong
    answer."""
    for info, x in zip(declared, inputs, strict=True):
        if info.elem != "Binary" or not hasattr(x, "shape") or getattr(x, "size", 1) == 0:
            continue
        if hasattr(x, "numel") and x.numel() == 0:
            continue
        if not _is_binary(x):
            raise _not_binary(info)


def _not_binary(info: InputInfo) -> CallError:
    return CallError(
        info.span,
        f"input `{info.name}` is Binary but holds values other than 0 and 1",
        f"pass 0/1 labels; for soft labels declare `{info.name}` as `Prob`",
    )


def _is_binary(x: Any) -> bool:
    """Whether every element is 0 or 1. For a torch float tensor: whether r = x - x*x (one
    fused multiply-add) is 0 everywhere, by the sum of its magnitudes: r is exactly 0 at 0
    and 1, positive in (0, 1), negative outside [0, 1] and NaN at NaN or inf, so no range
    check is needed first. A large tensor is done a chunk at a time into one
    reused buffer (no full-size temporary to fault in on every call). At 1e4-1e7 elements
    this took 0.45-0.84x the time of the check before it (the range, then sum(x * (1 - x))
    in chunks), which took about a quarter of `((x == 0) | (x == 1)).all()`.
    (Compiled mode checks inside its own graph instead: :func:`_with_binary_check`.)"""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(x, torch.Tensor):
        return bool(((x == 0) | (x == 1)).all())
    flat = x.reshape(-1)
    if flat.dtype == torch.bool:
        return True
    if not flat.is_floating_point():
        low, high = torch.aminmax(flat)
        return bool(low >= 0 and high <= 1)
    if flat.numel() <= _CHUNK:
        return _no_residual(torch, flat)
    buffer = torch.empty(_CHUNK, dtype=flat.dtype, device=flat.device)
    return all(_no_residual(torch, c, buffer[: c.numel()]) for c in flat.split(_CHUNK))


def _no_residual(torch: Any, x: Any, out: Any = None) -> bool:
    """Whether x - x*x (written into ``out`` if given) is 0 everywhere: whether the sum of its
    magnitudes is 0. A sum of terms >= 0 is 0 only if every term is (a partial sum never
    rounds back to 0; too large a one is inf), NaN stays NaN (true), and `abs_` and `sum`
    take 0.55-0.85x the time of one `aminmax` here (its kernel is slower than both)."""
    return not torch.addcmul(x, x, x, value=-1, out=out).abs_().sum().item()


_CHUNK = 1 << 17  # elements: 512 KiB of float32, a buffer that stays in cache between passes


def _check_indices(backend: str, declared: tuple[InputInfo, ...], inputs: tuple[Any, ...]) -> None:
    if not any(info.elem == "Index" for info in declared):
        return  # (every call comes here: no work for losses without class indices)
    sizes = _sizes(declared, inputs)
    for info, x in zip(declared, inputs, strict=True):
        if info.elem != "Index" or info.of not in sizes or not hasattr(x, "shape"):
            continue
        if getattr(x, "size", 1) == 0 or (backend == "torch" and x.numel() == 0):
            continue
        if hasattr(x, "dtype") and "int" not in str(x.dtype):
            continue  # the emitted code reports the dtype
        low, high = int(x.min()), int(x.max())
        if low < 0 or high >= sizes[info.of]:
            bad = low if low < 0 else high
            raise CallError(
                info.span,
                f"input `{info.name}` holds class index {bad}, outside [0, {sizes[info.of]}) "
                f"for dim `{info.of}`",
                f"class indices must be 0 <= {info.name} < size({info.of})",
            )


def _sizes(declared: tuple[InputInfo, ...], inputs: tuple[Any, ...]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for info, x in zip(declared, inputs, strict=True):
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) == len(info.dims):
            for dim, n in zip(info.dims, shape, strict=True):
                sizes.setdefault(dim, int(n))
    return sizes


def _check_tensor_params(
    backend: str, loss: CheckedLoss, inputs: tuple[Any, ...], params: dict[str, Any]
) -> None:
    if not params:
        return
    sizes = _sizes(loss.inputs, inputs)
    for info in loss.params:
        if info.name not in params:
            continue
        value = params[info.name]
        want = tuple(sizes.get(d, -1) for d in info.dims)
        shape = tuple(getattr(value, "shape", ()))
        if shape != want:
            raise ParamError(
                info.span,
                f"param `{info.name}` must have shape {want} ({', '.join(info.dims)}), got {shape}",
                "pass one value per position of its dims, or a scalar at compile time",
            )
        check_param_values(info, value)


def check_param_values(info: ParamInfo, value: Any) -> None:
    empty = getattr(value, "size", 1) == 0
    lowest = 0.0 if empty else float(value.min())
    highest = 0.0 if empty else float(value.max())
    rules = {
        "Positive": (lowest > 0, lowest),
        "NonNegative": (lowest >= 0, lowest),
        "Prob": (lowest >= 0 and highest <= 1, lowest if lowest < 0 else highest),
    }
    ok, bad = rules.get(info.elem, (True, 0.0))
    if not ok:
        raise ParamError(
            info.span,
            f"param `{info.name}` has value {bad:g}, but its type is `{info.elem}`",
            "fix the values of the tensor",
        )


def framework(backend: str) -> Any:
    return _framework(backend)
