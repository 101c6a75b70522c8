"""Pass 2, values: the role, size and stage of every symbol the step's equations use."""

from __future__ import annotations

import sympy

from ..symbolic.declare import CellSpec
from .plan import Role, Value
from .stages import Stages

__all__ = ["classify"]

_ROLES = {"input": Role.INPUT, "prev": Role.PREVIOUS, "new": Role.NEW,
          "vector": Role.VECTOR, "dense": Role.PROJECTED, "let": Role.INTERMEDIATE,
          "scalar": Role.SCALAR, "hyper": Role.HYPER, "row": Role.ROW,
          "size": Role.SIZE, "mask": Role.MASK}  # fmt: skip


def classify(spec: CellSpec, stages: Stages) -> dict[sympy.Symbol, Value]:
    """Every symbol of the step with its :class:`Value`.

    Sizes that the equations require to be equal (MUT1's input read as an H-vector) are folded
    into one, so that a value is read by loops over that size."""
    same = dict(spec.constraints)
    sizes = {eq.target: eq.size for eq in spec.equations}
    values = {}
    for sym, quantity in spec.quantities.items():
        size = sizes.get(sym, quantity.size)
        if quantity.kind in ("scalar", "hyper", "row", "size"):  # not a vector: no size
            values[sym] = Value(sym, _ROLES[quantity.kind], None, stages.of(sym))
            continue
        values[sym] = Value(
            sym, _ROLES[quantity.kind], same.get(size, size), stages.of(sym)
        )
    return values
