"""Pass 1, stages: split the step where a projection reads a value computed inside it.

A projection of the input, of a previous state or of a vector runs before any pointwise loop
(stage 0); a projection that reads an equation's target (GRU-Cho's ``W (r ⊙ h)``, or a new
state) can only run after the loop that computes it, so it starts the next stage. A mean over
the units is known once its loop has visited every unit, so what reads it starts the next stage
too. An equation runs in the earliest stage where everything it reads is known.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from ..symbolic.adjoint import Term
from ..symbolic.declare import CellSpec, Dense

__all__ = ["Stages", "assign_stages"]


@dataclass(frozen=True)
class Stages:
    """The stage of every equation target and every projection."""

    spec: CellSpec
    of_target: dict[sympy.Symbol, int]
    of_dense: dict[Dense, int]
    dense_of: dict[sympy.Symbol, Dense]  # a projection's block symbol -> its projection

    @property
    def count(self) -> int:
        return 1 + max([0, *self.of_target.values(), *self.of_dense.values()])

    def of(self, sym: sympy.Symbol) -> int:
        """The stage whose forward loops compute ``sym`` (0 for what the step is given)."""
        if sym in self.dense_of:
            return self.of_dense[self.dense_of[sym]]
        return self.of_target.get(sym, 0)

    @property
    def per_step_sources(self) -> set[sympy.Symbol]:
        """What the step's per-step projections read (every source but the input)."""
        return {d.source for d in self.spec.denses if d.source != self.spec.input}

    def of_use(self, term: Term) -> int:
        """The stage of the equation that ``term`` differentiates."""
        return self.of_target[self.spec.equations[term.use].target]


def assign_stages(spec: CellSpec) -> Stages:
    dense_of = {sym: d for d in spec.denses for sym in d.symbols}
    of_target: dict[sympy.Symbol, int] = {}

    def dense_stage(d: Dense) -> int:
        return of_target[d.source] + 1 if d.source in of_target else 0

    means = {eq.target for eq in spec.means}

    def stage(sym):  # the first stage whose loops can read sym
        if sym in dense_of:
            return dense_stage(dense_of[sym])
        return of_target.get(sym, 0) + (sym in means)

    for eq in spec.equations:
        of_target[eq.target] = max((stage(s) for s in eq.expr.free_symbols), default=0)
    of_dense = {d: dense_stage(d) for d in spec.denses}
    return Stages(spec, of_target, of_dense, dense_of)
