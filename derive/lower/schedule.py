"""Pass 5, schedule: the pointwise loops and the products of every stage.

Within a stage, the equations of one size form one fused loop over batch rows and units. A
forward loop loads what it reads, computes its equations and stores what outlives it. A
backward loop computes the adjoints of its equations (in reverse), writes the adjoints of the
projection blocks that complete there, and adds the contributions to values completed
elsewhere. Each loop's statements go through common-subexpression elimination.
"""

from __future__ import annotations

import sympy

from ..symbolic.adjoint import adjoint_symbol, external_symbol
from ..symbolic.declare import CellSpec
from .adjoints import AdjointPlan
from .cse import eliminate
from .plan import (
    Access,
    Array,
    ArrayRole,
    Assign,
    BlockRange,
    Derivation,
    Extent,
    Load,
    Loop,
    Product,
    Reduction,
    Role,
    RowIndex,
    Stage,
    Store,
)
from .stages import Stages
from .storage import Storage

__all__ = ["schedule"]


#: Values a loop reads without loading them: parameters read in place, the kernel's scalar
#: arguments, and the sizes (constants of the kernel).
_IN_PLACE = (Role.VECTOR, Role.SCALAR, Role.HYPER, Role.SIZE)


def _over(target: Access) -> Reduction:
    """What a loop's contribution to an adjoint sums over, by its target: a vector's gradient
    (one element a unit) takes every row of every step, a scalar's everything, a mean's
    adjoint (one element a row) every unit of its row."""
    if target.row == RowIndex.WHOLE:
        return Reduction.SEQUENCE
    if target.row == RowIndex.UNIT:
        return Reduction.ROWS
    return Reduction.UNITS if target.array.per_row else Reduction.NONE


def _loads(symbols, read, values, incoming=None) -> list[Load]:
    """Loads of every symbol a loop reads but does not compute."""
    loads = []
    for sym in sorted(symbols, key=sympy.default_sort_key):
        if values.get(sym) is not None and values[sym].role in _IN_PLACE:
            continue
        if incoming is not None and sym in incoming:
            loads.append(Load(sym, incoming[sym]))
        else:
            loads.append(Load(sym, (read[sym],)))
    return loads


def _forward_loop(
    spec, stage, size, storage: Storage, first_load, taken
) -> Loop | None:
    eqs = [e for e in spec.equations if storage.values[e.target].stage == stage
           and e.size == size]  # fmt: skip
    if not eqs:
        return None
    defined = {e.target for e in eqs}
    needed = set().union(*(e.expr.free_symbols for e in eqs)) - defined
    loads = _loads(needed, storage.forward, storage.values)
    # a mean sums its units' terms into its element of the row, zeroed before the units
    means = [e for e in eqs if e.role == "mean"]
    zero = tuple(storage.kept(e.target) for e in means)
    body = eliminate([Store(storage.kept(e.target), e.expr, True, Reduction.UNITS)
                      if e in means else Assign(e.target, e.expr) for e in eqs], taken)  # fmt: skip
    stores = [Store(storage.kept(e.target), e.target) for e in eqs
              if storage.kept(e.target) and e not in means]  # fmt: skip
    # a projection's block on the tape is saved by the first loop that loads it
    for sym in sorted(needed & set(storage.tape), key=sympy.default_sort_key):
        if storage.values[sym].role != Role.PROJECTED:
            continue
        if first_load.setdefault(sym, (stage, size)) == (stage, size):
            stores.append(Store(storage.backward[sym], sym))
    return Loop(stage, size, tuple(loads + body + stores), zero=zero)


def _projection_stores(spec, stage, size, adjoints: AdjointPlan):
    stores, derivation, written = [], [], set()
    for d in spec.denses:
        if d.block_size != size:
            continue
        array = adjoints.projection_adjoint[d]
        for n, sym in enumerate(d.symbols):
            if adjoints.home[sym] != stage:
                continue
            derivation.append(Derivation("projection", sym, adjoints.complete(sym)))
            if (array, n) not in written:
                written.add((array, n))
                access = Access(array, RowIndex.STEP, n, size)
                stores.append(Store(access, adjoints.complete(sym)))
    return stores, derivation


def _contributions(stage, size, adjoints: AdjointPlan, values):
    """``δv += …`` for every variable whose adjoint this loop adds to but does not complete (a
    scalar parameter takes a part from every loop that reads it)."""
    stores, derivation = [], []
    for var in adjoints.adjoint.terms:
        shared = values[var].size is None
        if adjoints.home.get(var) == stage or not (shared or values[var].size == size):
            continue
        part = adjoints.part(var, stage, size if shared else None)
        if part != 0:
            target = adjoints.contribution_target(var)
            stores.append(Store(target, part, True, _over(target)))
            derivation.append(Derivation("accumulate", var, part))
    return stores, derivation


def _backward_loop(spec, stage, size, storage: Storage, adjoints: AdjointPlan, taken):
    eqs = [e for e in spec.equations if storage.values[e.target].stage == stage
           and e.size == size]  # fmt: skip
    statements, derivation = [], []
    for e in reversed(eqs):
        total = adjoints.complete(e.target)
        derivation.append(Derivation("adjoint", e.target, total))
        statements.append(Assign(adjoint_symbol(e.target), total, e))
    projections, projected = _projection_stores(spec, stage, size, adjoints)
    contributions, contributed = _contributions(stage, size, adjoints, storage.values)
    statements += projections + contributions
    if not statements:
        return None
    body = eliminate(statements, taken)
    defined = {adjoint_symbol(e.target) for e in eqs}
    free = set().union(*(st.expr.free_symbols for st in statements)) - defined
    incoming = {external_symbol(v): a for v, a in adjoints.incoming.items()}
    loads = _loads(free, storage.backward, storage.values, incoming)
    return Loop(stage, size, tuple(loads + body),
                tuple(derivation + projected + contributed))  # fmt: skip


def _products(spec: CellSpec, stages: Stages, storage: Storage, adjoints: AdjointPlan,
              inference: bool = False):  # fmt: skip
    products = []
    for d in spec.denses:
        weight = spec.param(d.weight)
        hoisted = d.source == spec.input
        # where the forward keeps the source: on the tape, or in a workspace without one
        source = (storage.forward if inference else storage.backward)[d.source]
        # the input and previous states take their adjoint in their gradient arrays; a value
        # the step computes, in its accumulator
        source_adjoint = adjoints.contribution_target(d.source).array
        rows = BlockRange(
            d.first_block, len(d.blocks), len(weight.blocks), weight.block_size
        )
        param = Array(
            ArrayRole.PARAMETER, d.weight, Extent.NONE, weight.shape_formula()
        )
        bias = None
        if d.bias:
            b = spec.param(d.bias)
            bias = Array(ArrayRole.PARAMETER, d.bias, Extent.NONE, b.shape_formula())
        result = storage.forward[d.symbols[0]].array
        products.append(Product(d, param, bias, rows, stages.of_dense[d], hoisted, source,
                                result, adjoints.projection_adjoint[d], source_adjoint))  # fmt: skip
    return products


def schedule(spec: CellSpec, stages: Stages, storage: Storage, adjoints: AdjointPlan,
             inference: bool = False):  # fmt: skip
    """The stages of the step: products, forward loops and backward loops; with
    ``inference`` (``storage`` keeping no tape), products and forward loops alone."""
    sizes = sorted(
        {e.size for e in spec.equations} | {d.block_size for d in spec.denses}
    )
    taken = {sym.name for sym in storage.values}
    taken |= {adjoint_symbol(s).name for s in storage.values}
    taken |= {external_symbol(s).name for s in storage.values}
    products = _products(spec, stages, storage, adjoints, inference)
    first_load: dict = {}
    out = []
    for s in range(stages.count):
        fwd = [
            _forward_loop(spec, s, size, storage, first_load, taken) for size in sizes
        ]
        bwd = [] if inference else [
            _backward_loop(spec, s, size, storage, adjoints, taken) for size in sizes
        ]  # fmt: skip
        out.append(Stage(s, tuple(p for p in products if p.stage == s),
                         tuple(lp for lp in fwd if lp), tuple(lp for lp in bwd if lp)))  # fmt: skip
    return tuple(out)
