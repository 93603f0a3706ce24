"""``torch.nn.Module`` wrappers for compiled losses (``Spec.torch_module``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from lossdsl.api import Spec


class LossModule(torch.nn.Module):
    """A compiled loss as a module. Its params are buffers, so ``.to(device)`` moves tensor
    params with the model; scalar params are fixed when the module is created (they are
    compiled into the generated code) and their buffers record the values used."""

    def __init__(self, spec: Spec, params: dict[str, Any]) -> None:
        super().__init__()
        bound = spec.bind_params(params)
        self.spec_name = spec.name
        self._tensor_params: dict[str, str] = {}
        for name, value in bound.items():
            attr = name if not hasattr(self, name) else f"{name}_"
            self.register_buffer(attr, torch.as_tensor(value))
            if not isinstance(value, float):
                self._tensor_params[name] = attr
        self.loss = spec.compile("torch", **bound)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        tensors = {name: getattr(self, attr) for name, attr in self._tensor_params.items()}
        return self.loss(*inputs, **tensors)  # type: ignore[no-any-return]

    def extra_repr(self) -> str:
        return f"loss={self.spec_name}"
