"""The constructs that are not smooth: kinks (abs, relu, max, min, clamp), steps (floor,
ceil, round, sign, comparisons as numbers) and branches (`if`, `where`, chained comparisons,
`and`/`or`/`not`), mixed into :class:`tests.fuzz.specgen.Builder`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tests.fuzz import reference as ref
from tests.fuzz.choose import Chooser
from tests.fuzz.exprs import Expr, clip, combine, compared, greater, maximum, minimum


class Branches:
    """Drawn only when the builder is not restricted to smooth constructs."""

    c: Chooser

    def expr(self, depth: int) -> Expr:
        raise NotImplementedError

    def live(self, e: Expr) -> Expr:
        raise NotImplementedError

    def kink(self, depth: int) -> Expr:
        a = self.live(self.expr(depth))
        form = self.c.choice(("abs", "relu", "max", "min", "clamp"))
        if form in ("abs", "relu"):
            return combine(f"{form}({a.text})", [a], ref.ELEMENTWISE[form], smooth=False, atom=True)
        if form == "clamp":
            lo, hi = self.c.choice(((-1.0, 0.5), (0.25, 2.0), (-0.5, 0.5)))
            text = f"clamp({a.text}, {lo}, {hi})"
            return combine(text, [a], lambda x: clip(x, lo, hi), smooth=False, atom=True)
        b = self.live(self.expr(depth))
        fn = maximum if form == "max" else minimum
        return combine(f"{form}({a.text}, {b.text})", [a, b], fn, smooth=False, atom=True)

    def step(self, depth: int) -> Expr:
        # Offsets that no sum of the generator's numbers can cancel keep ties away.
        a = self.live(self.expr(depth))
        form, offset = self.c.choice(
            (("floor", 0.3137), ("ceil", -0.2913), ("round", 0.1371), ("sign", -0.2377))
        )
        if self.c.chance(0.25):
            text = f"({a.text} > {offset})"
            return combine(text, [a], lambda x: greater(x, offset).astype(float), smooth=False)
        fn = ref.ELEMENTWISE[form]
        text = f"{form}({a.text} + {offset})"
        return combine(text, [a], lambda x: fn(x + offset), smooth=False, atom=True)

    def condition(self, depth: int) -> Expr:
        a, b = self.live(self.expr(depth)), self.live(self.expr(depth))
        forms = ("compare", "compare", "chain", "and", "or", "not")
        form = self.c.choice(forms if depth > 0 else forms[:3])
        if form == "chain":
            return combine(
                f"(-1.3137 < {a.text} <= 0.7713)",
                [a],
                lambda x: greater(x, -1.3137) & ~greater(x, 0.7713),
            )
        if form in ("and", "or", "not"):
            c1, c2 = self.condition(depth - 1), self.condition(depth - 1)
            if form == "not":
                return combine(f"(not {c1.text})", [c1], np.logical_not)
            fn = np.logical_and if form == "and" else np.logical_or
            return combine(f"({c1.text} {form} {c2.text})", [c1, c2], fn)
        op = self.c.choice(("<", "<=", ">", ">=", "!=", "=="))
        fns: dict[str, Callable[[Any, Any], Any]] = {
            "<": np.less,
            "<=": np.less_equal,
            ">": np.greater,
            ">=": np.greater_equal,
            "!=": np.not_equal,
            "==": np.equal,
        }
        text = f"({a.text} {op} {b.text} + 0.1373)"
        return combine(text, [a, b], lambda x, y: compared(fns[op], x, y + 0.1373))

    def select(self, depth: int) -> Expr:
        cond, a, b = self.condition(depth), self.expr(depth), self.expr(depth)
        if self.c.chance(0.5):
            text = f"(if {cond.text} then {a.text} else {b.text})"
        else:
            text = f"where({cond.text}, {a.text}, {b.text})"
        return combine(
            text, [cond, a, b], np.where, smooth=False, positive=a.positive and b.positive
        )
