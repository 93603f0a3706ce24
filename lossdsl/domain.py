"""Points of a loss's declared domain, for the certificate's lines (:mod:`lossdsl.certify`):
inputs drawn by element type, params at their default first and then at other values their
type and `where` condition allow.
"""

from __future__ import annotations

import math
import random

import sympy

from lossdsl import ir
from lossdsl.bounds import ELEMENT_TYPES, Interval, param_interval
from lossdsl.checked import NotConstant, ParamInfo, evaluate_constant
from lossdsl.scalar import Scalar

_SPECIAL = (0.0, 0.5, 1.0, 2.0)  # param values worth trying: edges of typical conditions
_REACH = 4.0  # how far along a line a crossing is looked for


class Sampler:
    """Random points for the elements of one scalarized loss.

    Args:
        loss: the loss (declared types of inputs and params).
        scalar: its scalar form (which element belongs to which leaf).
        rng: the source of randomness (seeded by the caller: reports are reproducible).
    """

    def __init__(self, loss: ir.LossIR, scalar: Scalar, rng: random.Random) -> None:
        self.rng = rng
        self.scalar = scalar
        self.types: dict[sympy.Symbol, str] = {}
        self.params: dict[sympy.Symbol, ParamInfo] = {}
        # box -> position -> element, for inputs unpacked as (x1, y1, x2, y2)
        self.boxes: dict[tuple[str, tuple[int, ...]], dict[int, sympy.Symbol]] = {}
        inputs = {s: i for i in loss.inputs for s in loss.leaves_of(i.name)}
        params = {loss.param_symbols[p.name]: p for p in loss.params}
        for element, (leaf, index) in scalar.elements.items():
            if leaf in inputs:
                self.types[element] = inputs[leaf].elem
            elif leaf in params:
                self.params[element] = params[leaf]
            base, dim, position = loss.components.get(leaf, ("", "", 0))
            if dim == "4" and self.types.get(element) == "Real":
                self.boxes.setdefault((base, index), {})[position] = element
        self.trained = {s for s, elem in self.types.items() if elem in _TRAINED}

    def differentiated(self, element: sympy.Symbol) -> bool:
        return element in self.trained

    def inside(self, element: sympy.Symbol, value: float) -> bool:
        """Whether ``value`` is in the open interior of the element's declared domain."""
        domain = ELEMENT_TYPES.get(self.types.get(element, "Real"), ELEMENT_TYPES["Real"])
        return domain.lo < value < domain.hi

    def point(self, first: bool) -> dict[sympy.Symbol, float]:
        values = {s: self.draw(elem) for s, elem in self.types.items()}
        chosen: dict[str, float] = {}
        for element, info in self.params.items():
            if info.name not in chosen or info.dims:
                chosen[info.name] = self.param(info, first)
            values[element] = chosen[info.name]
        if self.rng.random() < 0.8:  # valid, often overlapping boxes: where IoU kinks live
            for corners in self.boxes.values():
                values.update(self.box(corners))
        return values

    def box(self, corners: dict[int, sympy.Symbol]) -> dict[sympy.Symbol, float]:
        x1, y1 = self.rng.uniform(0.0, 1.0), self.rng.uniform(0.0, 1.0)
        x2, y2 = x1 + self.rng.uniform(0.2, 1.5), y1 + self.rng.uniform(0.2, 1.5)
        return {corners[k]: v for k, v in enumerate((x1, y1, x2, y2)) if k in corners}

    def draw(self, elem: str) -> float:
        rng = self.rng
        if elem == "Binary":
            return float(rng.random() < 0.5)
        if elem == "Prob":
            return rng.uniform(0.05, 0.95)
        if elem in ("Positive", "NonNegative"):
            return math.exp(rng.uniform(-1.5, 1.5))
        return rng.uniform(-2.0, 2.0)

    def param(self, info: ParamInfo, first: bool) -> float:
        if first and info.default is not None:
            return float(info.default)
        domain = param_interval(info)
        for _ in range(20):
            value = self.rng.choice(_SPECIAL) if self.rng.random() < 0.3 else self.draw(info.elem)
            if _contains(domain, value) and _allowed(info, value):
                return value
        return float(info.default) if info.default is not None else 1.0

    def t_range(self, point: dict, direction: dict) -> tuple[float, float]:
        """The ``t`` for which ``point + t * direction`` stays inside every declared domain."""
        lo, hi = -_REACH, _REACH
        for element, d in direction.items():
            domain = ELEMENT_TYPES[self.types[element]]
            for edge in (domain.lo, domain.hi):
                if math.isinf(edge) or d == 0:
                    continue
                t = (edge - point[element]) / d
                if t > 0:
                    hi = min(hi, t * 0.999)
                else:
                    lo = max(lo, t * 0.999)
        return lo, hi


_TRAINED = frozenset({"Real", "Positive", "NonNegative", "Prob"})


def _contains(domain: Interval, value: float) -> bool:
    above = value > domain.lo or (value == domain.lo and not domain.lo_open)
    below = value < domain.hi or (value == domain.hi and not domain.hi_open)
    return above and below


def _allowed(info: ParamInfo, value: float) -> bool:
    if info.condition is None:
        return True
    try:
        return bool(evaluate_constant(info.condition, {info.name: value}))
    except (NotConstant, ArithmeticError, ValueError):
        return False


__all__ = ["Sampler"]
