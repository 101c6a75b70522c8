"""Pass 4, adjoints: where each value's adjoint completes and where contributions gather.

A value's adjoint is one statement in the backward loop of its *home* stage: an equation's
target at the stage that computes it, a projection's block at the first stage that reads it
(the backward pass visits stages in reverse, so that is where its last contribution arrives).
Contributions computed elsewhere in the step (from a later stage's loops, or from the transpose
rule of a projection that reads the value) are gathered in a per-step accumulator and read in
the home loop as the value's *incoming* adjoint, together with what a new state receives from
the next step and the loss. Contributions to what the step does not compute (previous states,
the input, vector and scalar parameters) are added straight into their gradient arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import sympy

from ..symbolic.adjoint import Adjoint, external_symbol
from ..symbolic.declare import Dense
from .plan import POINTWISE_ROWS, Access, Array, ArrayRole, Extent, Role, RowIndex
from .stages import Stages
from .storage import Storage, projection_key

__all__ = ["AdjointPlan", "plan_adjoints"]


@dataclass(frozen=True)
class AdjointPlan:
    adjoint: Adjoint
    stages: Stages
    home: dict[sympy.Symbol, int]
    incoming: dict[sympy.Symbol, tuple[Access, ...]]
    accumulators: dict[sympy.Symbol, Array]
    projection_adjoint: dict[Dense, Array]
    gradient: dict[
        sympy.Symbol, Access
    ]  # where contributions to what the step is given go

    def part(
        self, sym: sympy.Symbol, stage: int, size: str | None = None
    ) -> sympy.Expr:
        """The contributions to ``sym``'s adjoint computed in ``stage``'s backward loops (in its
        loop over ``size`` alone, when given)."""
        equations = self.adjoint.spec.equations
        return sympy.Add(*(
            t.expr for t in self.adjoint.terms.get(sym, ())
            if self.stages.of_use(t) == stage and size in (None, equations[t.use].size)
        ))  # fmt: skip

    def complete(self, sym: sympy.Symbol) -> sympy.Expr:
        """``sym``'s whole adjoint, as its home loop computes it."""
        part = self.part(sym, self.home[sym])
        return part + external_symbol(sym) if sym in self.incoming else part

    def contribution_target(self, sym: sympy.Symbol) -> Access:
        """Where a loop other than ``sym``'s home adds to its adjoint."""
        if sym in self.gradient:
            return self.gradient[sym]
        array = self.accumulators[sym]
        return Access(array, RowIndex.BATCH, 0, array.width[0][1])


def _homes(adjoint: Adjoint, stages: Stages, values) -> dict[sympy.Symbol, int]:
    homes = {eq.target: stages.of_target[eq.target] for eq in adjoint.spec.equations}
    for sym, dense in stages.dense_of.items():
        uses = [stages.of_use(t) for t in adjoint.terms.get(sym, ())]
        homes[sym] = min(uses, default=stages.of_dense[dense])
    return homes


def _gradients(adjoint: Adjoint, storage: Storage) -> dict[sympy.Symbol, Access]:
    spec = adjoint.spec
    dx = Array(ArrayRole.INPUT_ADJOINT, "x", Extent.STEPS)
    targets = {spec.input: Access(dx, RowIndex.STEP)}
    for s in spec.states:
        array = Array(ArrayRole.PREVIOUS_ADJOINT, s.name, Extent.BATCH,
                      storage.sequences[s.name].width)  # fmt: skip
        targets[s.prev] = Access(array, RowIndex.BATCH)
    for sym, (p, block) in spec.pointwise.items():
        array = Array(
            ArrayRole.PARAMETER_GRADIENT, p.name, Extent.NONE, p.shape_formula()
        )
        targets[sym] = Access(array, POINTWISE_ROWS[p.kind], block, p.block_size)
    return targets


def _incoming(spec, values, buffered, accumulators) -> dict:
    incoming = {}
    for sym in values:
        sources = []
        if values[sym].role == Role.NEW:
            state = next(s for s in spec.states if s.new == sym)
            width = ((1, values[sym].size),)
            sources.append(Access(Array(ArrayRole.NEXT_ADJOINT, state.name, Extent.BATCH,
                                        width), RowIndex.BATCH))  # fmt: skip
        if sym == spec.output_symbol:  # what the loss sends the output
            width = ((1, values[sym].size),)
            out = Array(ArrayRole.OUTPUT_ADJOINT, "y", Extent.STEPS, width)
            sources.append(Access(out, RowIndex.STEP))
        if sym in buffered:
            sources.append(Access(accumulators[sym], RowIndex.BATCH))
        if sources:
            incoming[sym] = tuple(sources)
    return incoming


def _shared_adjoints(spec, complete, homes) -> dict[Dense, Array]:
    """A projection's adjoint array, shared by projections whose block adjoints agree (the
    LSTM's input and recurrent projections have the same adjoint)."""
    arrays, seen = {}, {}
    for d in spec.denses:
        signature = (
            d.block_size,
            tuple((homes[s], complete(s)) for s in d.symbols),
        )
        width = ((len(d.blocks), d.block_size),)
        own = Array(
            ArrayRole.PROJECTION_ADJOINT, projection_key(spec, d), Extent.STEPS, width
        )
        arrays[d] = seen.setdefault(signature, own)
    return arrays


def plan_adjoints(adjoint: Adjoint, stages: Stages, storage: Storage) -> AdjointPlan:
    spec, values = adjoint.spec, storage.values
    homes = _homes(adjoint, stages, values)
    elsewhere = {
        sym
        for sym, terms in adjoint.terms.items()
        if sym in homes and any(stages.of_use(t) != homes[sym] for t in terms)
    }
    computed = [*(eq.target for eq in spec.equations), *stages.dense_of]
    sources = stages.per_step_sources
    buffered = [s for s in computed if s in sources or s in elsewhere]
    accumulators = {
        s: Array(ArrayRole.ACCUMULATOR, s.name, Extent.BATCH, ((1, values[s].size),))
        for s in buffered
    }
    incoming = _incoming(spec, values, set(buffered), accumulators)
    plan = AdjointPlan(adjoint, stages, homes, incoming, accumulators, {},
                       _gradients(adjoint, storage))  # fmt: skip
    return replace(
        plan, projection_adjoint=_shared_adjoints(spec, plan.complete, homes)
    )
