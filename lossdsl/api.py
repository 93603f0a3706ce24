"""The Python API: compose the stages (LANGUAGE.md section 8).

```python
spec = lossdsl.load("specs/focal.loss")
focal = spec.compile("torch", gamma=2.0)
```
"""

from __future__ import annotations

import functools
import json
from functools import cached_property
from pathlib import Path
from typing import Any

from lossdsl import cache, codegen, loader, runtime, sign_merge, softplus_merge
from lossdsl.checked import CheckedLoss, InputInfo, ParamInfo, children
from lossdsl.errors import BackendError, ParamError
from lossdsl.ir import LossIR
from lossdsl.lower import lower
from lossdsl.parser import parse as parse_text
from lossdsl.resolve import resolve, resolve_all, validate_param
from lossdsl.rewrite import Rewrite, rewrite

BACKENDS = ("torch", "jax")


class Spec:
    """One checked loss of a .loss file."""

    def __init__(self, checked: CheckedLoss, text: str) -> None:
        self.checked = checked
        self.text = text

    def __repr__(self) -> str:
        inputs = ", ".join(f"{i.name}: {_describe(i)}" for i in self.inputs)
        return f"<lossdsl.Spec {self.name}({inputs})>"

    @property
    def name(self) -> str:
        return self.checked.name

    @property
    def doc(self) -> str:
        return self.checked.doc

    @property
    def inputs(self) -> tuple[InputInfo, ...]:
        return self.checked.inputs

    @property
    def params(self) -> tuple[ParamInfo, ...]:
        return self.checked.params

    @cached_property
    def ir(self) -> LossIR:
        """The lowered IR (SymPy), before stability rewrites."""
        return lower(self.checked)

    @cached_property
    def _stable(self) -> tuple[LossIR, list[Rewrite]]:
        return rewrite(self.ir)

    @property
    def stable_ir(self) -> LossIR:
        """The IR after stability rewrites: what code is generated from."""
        return self._stable[0]

    @property
    def rewrites(self) -> list[Rewrite]:
        return self._stable[1]

    def check(self) -> Any:
        """The differentiability certificate, domain hazards and rewrites."""
        from lossdsl.analysis import analyse

        return analyse(self.ir, self.stable_ir, self.rewrites)

    def bind_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Validate param values; scalars are checked against type and `where`."""
        known = {p.name: p for p in self.params}
        for name in params:
            if name not in known:
                raise ParamError(
                    self.checked.span,
                    f"loss `{self.name}` has no param `{name}`",
                    f"its params are: {', '.join(known) or '(none)'}",
                )
        bound: dict[str, Any] = {}
        for info in self.params:
            value = params.get(info.name, info.default)
            if value is None:
                raise ParamError(
                    info.span,
                    f"param `{info.name}` has no default and no value was given",
                    f"pass it: `compile(..., {info.name}=...)`",
                )
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                if not info.dims and getattr(value, "ndim", 1) == 0:
                    value = float(value)  # a 0-d tensor or array for a scalar param
                elif not info.dims:
                    raise ParamError(info.span, f"param `{info.name}` must be a number", "")
                elif not hasattr(value, "shape"):
                    raise ParamError(
                        info.span,
                        f"param `{info.name}` has dims [{', '.join(info.dims)}]: it takes a "
                        f"tensor or an array, got {type(value).__name__}",
                        f"pass e.g. `torch.tensor(...)` or `numpy.asarray(...)` for `{info.name}`",
                    )
                else:
                    runtime.check_param_values(info, value)
            if isinstance(value, (int, float)):
                validate_param(info, float(value), info.span)
                value = float(value)
            bound[info.name] = value
        return bound

    def emit(
        self,
        backend: str = "torch",
        /,
        *,
        mode: str = "eager",
        params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> str:
        """The standalone module source (what `lossdsl compile` writes). ``mode="compiled"``
        (torch): the source :meth:`compile` passes through ``torch.compile``, shaped for a
        fusing compiler (functional, transcendental functions recomputed where used)."""
        _check_mode(mode)
        bound = self.bind_params({**(params or {}), **kwargs})
        return self._source(backend, bound, fused=mode == "compiled" and backend == "torch")[0]

    def _source(
        self, backend: str, bound: dict[str, Any], reference: bool = False, fused: bool = False
    ) -> tuple[str, str]:
        if backend not in BACKENDS:
            raise BackendError(
                None, f"unknown backend `{backend}`", f"choose one of: {', '.join(BACKENDS)}"
            )
        scalars = {k: v for k, v in bound.items() if isinstance(v, float)}
        kind = backend + ("-ref" if reference else "") + ("-compiled" if fused else "")
        key = cache.key(_fingerprint(self.checked), self.name, scalars, kind)

        def build() -> str:
            if backend == "torch":
                from lossdsl.backends import torch as emitter
            else:
                from lossdsl.backends import jax as emitter
            if reference:
                return emitter.emit_reference(codegen.specialise(self.ir, bound))
            plan = codegen.specialise(self.stable_ir, bound)
            plan.value = softplus_merge.merge(sign_merge.merge(plan.value, plan.loss))
            if fused:  # torch.compile fuses; in-place updates would only hide buffers from it
                plan.recompute = True
                return emitter.emit(plan, in_place=False)
            return emitter.emit(plan)

        return cache.source(key, build), key

    def compile(
        self,
        backend: str = "torch",
        /,
        *,
        mode: str = "eager",
        params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> runtime.CompiledLoss:
        """A callable ``loss(*inputs)`` built from exactly the source :meth:`emit` returns.

        Args:
            backend: "torch" or "jax".
            mode: for torch, "eager" (the generated functions as they are) or "compiled"
                (the same functions through ``torch.compile``: fused forward and backward).
            params: param values, for a loss with a param named like an argument here.
            **kwargs: param values by name.
        """
        _check_mode(mode)
        return self._load(backend, {**(params or {}), **kwargs}, reference=False, mode=mode)

    def reference(self, backend: str = "torch", **params: Any) -> runtime.CompiledLoss:
        """A direct translation of the loss as written (no rewrites, no generated gradient),
        for the framework's own autodiff: what `lossdsl verify` checks against."""
        return self._load(backend, params, reference=True)

    def _load(
        self, backend: str, params: dict[str, Any], reference: bool, mode: str = "eager"
    ) -> runtime.CompiledLoss:
        runtime.framework(backend)
        bound = self.bind_params(params)
        fused = mode == "compiled" and backend == "torch" and not reference
        source, key = self._source(backend, bound, reference, fused)
        load = None
        if fused:
            binary = tuple(
                codegen.py_name(i.name) for i in self.checked.inputs if i.elem == "Binary"
            )
            load = functools.partial(runtime.load_compiled, binary=binary)
        module = _modules.get(key)
        if module is None:
            module = (load or runtime.load_module)(source, self.name, key)
            module = _modules.setdefault(key, module)
        tensors = {k: v for k, v in bound.items() if not isinstance(v, float)}
        # The declarations are all the wrapper needs: a cache hit lowers and rewrites nothing.
        return runtime.CompiledLoss(self.checked, module, backend, tensors, load is not None)

    def torch_module(self, **params: Any) -> Any:
        """A ``torch.nn.Module`` computing this loss, with its params as buffers."""
        from lossdsl.modules import LossModule

        return LossModule(self, params)


_modules: dict[str, Any] = {}


def _check_mode(mode: str) -> None:
    if mode not in ("eager", "compiled"):
        raise BackendError(None, f"unknown mode `{mode}`", "use mode='eager' or 'compiled'")


def _fingerprint(checked: CheckedLoss) -> str:
    """Every file the loss is built from, by name and text: what its emitted source depends on
    (the file it names in its docstring, and the helpers and losses it `use`s from others)."""
    sources = {info.span.source for info in (*checked.inputs, *checked.params)}
    if checked.span is not None:
        sources.add(checked.span.source)
    seen: set[int] = set()
    stack = [checked.output]
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            sources.add(node.span.source)
            stack.extend(children(node))
    return json.dumps(sorted((s.name, s.text) for s in sources))


def _describe(info: InputInfo) -> str:
    dims = f"[{', '.join(info.dims)}]" if info.dims else ""
    return f"{info.elem}{dims}" + (f" of {info.of}" if info.of else "")


def load(path: str | Path, name: str | None = None) -> Spec:
    """Load one loss from a .loss file (the only one, the last one, or the one named)."""
    scope = loader.load_file(path)
    return Spec(resolve(scope, name), scope.module.source.text)


def load_all(path: str | Path) -> list[Spec]:
    """Every loss a .loss file declares itself."""
    scope = loader.load_file(path)
    return [Spec(c, scope.module.source.text) for c in resolve_all(scope)]


def parse(text: str, filename: str = "<string>", name: str | None = None) -> Spec:
    """Load one loss from source text; `use` paths are relative to ``filename``'s folder."""
    scope = loader.scope_of(parse_text(text, filename))
    return Spec(resolve(scope, name), text)
