"""Pass 3, storage: where each value lives after the loop that computes it.

The smallest tape: a value is saved per step only when the backward pass reads it, or when it
is the source of a per-step projection (its weight gradient is a product over all steps).
States are kept as whole sequences. A value that only a later forward loop of the same step
reads lives in a per-step workspace; every other value stays inside its loop. A mean has one
column, one number per batch row.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from ..symbolic.adjoint import Adjoint
from .plan import (
    POINTWISE_ROWS,
    Access,
    Array,
    ArrayRole,
    Extent,
    Role,
    RowIndex,
    Value,
)
from .stages import Stages

__all__ = ["Storage", "choose_storage", "mask_arrays", "projection_key"]


def projection_key(spec, dense) -> str:
    """A projection's name, with its blocks where two projections share a name."""
    same = [d for d in spec.denses if d.name == dense.name]
    return dense.name if len(same) == 1 else f"{dense.name}_{'_'.join(dense.blocks)}"


@dataclass(frozen=True)
class Storage:
    """Where the forward loops and the backward loops read each value."""

    values: dict[sympy.Symbol, Value]
    forward: dict[sympy.Symbol, Access]
    backward: dict[sympy.Symbol, Access]
    sequences: dict[str, Array]  # state name -> its sequence
    tape: tuple[sympy.Symbol, ...]
    workspaces: tuple[sympy.Symbol, ...]

    def kept(self, sym: sympy.Symbol) -> Access | None:
        """Where the loop that computes ``sym`` stores it (None: it stays in the loop)."""
        if self.values[sym].role == Role.NEW or sym in self.workspaces:
            return self.forward[sym]
        if sym in self.tape:
            return self.backward[sym]
        return None


def _arrays(spec, values):
    sequences = {
        s.name: Array(ArrayRole.SEQUENCE, s.name, Extent.STEPS_AND_INITIAL,
                      ((1, values[s.new].size),))
        for s in spec.states
    }  # fmt: skip
    fixed = {
        spec.input: Access(Array(ArrayRole.INPUT, "x", Extent.STEPS), RowIndex.STEP)
    }
    for s in spec.states:
        fixed[s.prev] = Access(sequences[s.name], RowIndex.STEP)
        fixed[s.new] = Access(sequences[s.name], RowIndex.NEXT)
    for sym, (p, block) in spec.pointwise.items():
        array = Array(ArrayRole.PARAMETER, p.name, Extent.NONE, p.shape_formula())
        fixed[sym] = Access(array, POINTWISE_ROWS[p.kind], block, p.block_size)
    for mask in mask_arrays(spec, values):
        per_step = mask.extent == Extent.STEPS
        fixed[sympy.Symbol(mask.owner)] = Access(
            mask, RowIndex.STEP if per_step else RowIndex.BATCH
        )
    return sequences, fixed


def mask_arrays(spec, values) -> tuple[Array, ...]:
    """Each mask's array: a row per (step, batch row) when drawn per step, per batch row
    when drawn per sequence."""
    return tuple(
        Array(ArrayRole.MASK, m.name,
              Extent.STEPS if m.per == "step" else Extent.BATCH,
              ((1, values[m.symbol].size),))
        for m in spec.masks
    )  # fmt: skip


def _projection_reads(spec):
    reads = {}
    for d in spec.denses:
        hoisted = d.source == spec.input
        width = ((len(d.blocks), d.block_size),)
        array = Array(ArrayRole.PROJECTION, projection_key(spec, d),
                      Extent.STEPS if hoisted else Extent.BATCH, width)  # fmt: skip
        row = RowIndex.STEP if hoisted else RowIndex.BATCH
        for n, sym in enumerate(d.symbols):
            reads[sym] = Access(array, row, n, d.block_size)
    return reads


def choose_storage(
    adjoint: Adjoint, stages: Stages, values, inference: bool = False
) -> Storage:
    """Where every value lives for the forward that keeps a tape; with ``inference``, for the
    forward that keeps none: only the outputs outlive their step, and a value a later loop or
    product of the same step reads lives in a workspace."""
    spec = adjoint.spec
    sequences, fixed = _arrays(spec, values)
    computed = [*stages.dense_of, *(eq.target for eq in spec.equations)]
    # an output that is not a state is read from the tape, as a state's from its sequence
    on_tape = {spec.output_symbol}
    if not inference:
        on_tape |= set(adjoint.saved) | stages.per_step_sources
    tape = tuple(s for s in computed if s in on_tape and values[s].role != Role.NEW)
    later = {
        s
        for eq in spec.equations
        for s in eq.expr.free_symbols
        if values[s].role in (Role.INTERMEDIATE, Role.ROW)
        and stages.of(s) < stages.of_target[eq.target]
    }
    if inference:  # the source of a per-step product, computed by an earlier stage
        later |= {s for s in stages.per_step_sources if values[s].role != Role.NEW}
    workspaces = tuple(s for s in computed if s in later and s not in tape)
    forward = {**fixed, **_projection_reads(spec)}
    backward = dict(fixed)
    for sym in tape:
        array = Array(ArrayRole.TAPE, sym.name, Extent.STEPS, ((1, values[sym].size),))
        backward[sym] = Access(array, RowIndex.STEP)
        if values[sym].role in (Role.INTERMEDIATE, Role.ROW):
            forward[sym] = backward[sym]
    for sym in workspaces:
        array = Array(
            ArrayRole.WORKSPACE, sym.name, Extent.BATCH, ((1, values[sym].size),)
        )
        forward[sym] = Access(array, RowIndex.BATCH)
    return Storage(values, forward, backward, sequences, tape, workspaces)
