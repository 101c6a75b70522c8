"""Pass 6, kernels: the scheduled step placed in the kernels around it.

Each kernel is a :class:`~derive.lower.plan.Schedule`: the forward (taped or not) starts the
state sequences and runs the input projections of every step before its time loop, whose body
is the step's products and pointwise loops and whose edge carries the states of rows past their
length; the backward runs the stages in reverse, each followed by the transpose rules of its
per-step products, passes the state gradients from step to step, and after its loop sums what
it gathered over units, rows and steps and runs the weight gradients' products.

Every transpose rule is made here, by :func:`transpose_rules`, and every sum over units, rows
or steps is a :class:`~derive.lower.plan.Sum` or an accumulating store that names what it
reduces over; backends and documents print these nodes.
"""

from __future__ import annotations

from dataclasses import replace

from ..symbolic.declare import CellSpec
from .plan import (
    Access,
    Array,
    ArrayRole,
    Direction,
    Edge,
    EdgeKind,
    Extent,
    Loop,
    MatMul,
    Operand,
    Product,
    Reduction,
    RowIndex,
    Schedule,
    Stage,
    Store,
    Sum,
    TimeLoop,
)

__all__ = [
    "backward_schedule",
    "forward_schedule",
    "projection",
    "source_operand",
    "state_arrays",
    "transpose_rules",
]


def _gradient(param: Array) -> Array:
    return Array(ArrayRole.PARAMETER_GRADIENT, param.owner, Extent.NONE, param.width)


def _rows(p: Product):
    return None if p.rows.whole else p.rows


def source_operand(p: Product) -> Operand:
    """What a product reads, where the step reads it (a state's sequence one step on)."""
    return Operand(p.source.array, row=p.source.row)


def projection(p: Product) -> MatMul:
    """The product itself, in rows of the batch: ``a = v @ W[rows].T + b[rows]`` (``v @ W``
    for a transposed read)."""
    weight = Operand(p.weight, not p.dense.transposed, _rows(p))
    bias = Operand(p.bias, rows=_rows(p)) if p.bias else None
    return MatMul(p, "forward", Operand(p.result), source_operand(p), weight, bias,
                  per_step=not p.hoisted)  # fmt: skip


def transpose_rules(
    p: Product, to_weight: bool = True, to_source: bool = True
) -> tuple[MatMul, MatMul, Sum | None]:
    """The transpose rules of ``a = W v + b`` (columns; ``a = Wᵀ v`` for a transposed read):
    ``δv += Wᵀ δa`` per step (once over every step for the input), ``δW += Σ_t δa vᵀ``
    (``Σ_t v δaᵀ``) and ``δb += Σ_t δa``, in rows of the batch. ``to_weight`` and
    ``to_source`` say whether each adds to its array (else it writes it whole)."""
    adjoint, source = Operand(p.adjoint), source_operand(p)
    weight = Operand(p.weight, p.dense.transposed, _rows(p))
    gradient = Operand(_gradient(p.weight), rows=_rows(p))
    if p.dense.transposed:
        left, right = replace(source, transposed=True), adjoint
    else:
        left, right = replace(adjoint, transposed=True), source
    back = MatMul(p, "source", Operand(p.source_adjoint), adjoint, weight,
                  accumulate=to_source, per_step=not p.hoisted)  # fmt: skip
    grad = MatMul(p, "weight", gradient, left, right, accumulate=to_weight)
    bias = None
    if p.bias:
        bias = Sum(Operand(_gradient(p.bias), rows=_rows(p)), adjoint, Reduction.ROWS)
    return back, grad, bias


def state_arrays(spec: CellSpec, role: ArrayRole) -> tuple[Array, ...]:
    """One array of ``role`` a state, ``(B, size)``: its initial value, its adjoints."""
    return tuple(Array(role, s.name, Extent.BATCH, ((1, s.size),)) for s in spec.states)


def forward_schedule(spec: CellSpec, stages: tuple[Stage, ...], sequences) -> Schedule:
    """A forward kernel: the sequences start with the initial states, the input projections
    run over every step, then the time loop."""
    initial = state_arrays(spec, ArrayRole.INITIAL)
    start = tuple(
        Edge(EdgeKind.START, pair) for pair in zip(sequences, initial, strict=True)
    )
    products = [p for stage in stages for p in stage.products]
    hoisted = tuple(projection(p) for p in products if p.hoisted)
    body = [node for stage in stages
            for node in (*(projection(p) for p in stage.products if not p.hoisted),
                         *stage.forward)]  # fmt: skip
    carry = tuple(Edge(EdgeKind.CARRY, (seq,)) for seq in sequences)
    loop = TimeLoop(Direction.FORWARD, (), tuple(body), carry)
    return Schedule((*start, *hoisted), loop)


def _unit_sums(loops: list[Loop]) -> tuple[list[Loop], dict[Array, Array]]:
    """A scalar's gradient, summed over the whole sequence, summed first unit by unit.

    ``d_alpha[()] += ...`` for every unit makes each iteration wait on the one before (and a
    parallel backend race on it); into a vector of one element a unit (``Reduction.ROWS``) the
    units are independent, and the units are added up once after the time loop."""
    sums: dict[Array, Array] = {}
    out = []
    for loop in loops:
        body = []
        for st in loop.body:
            if isinstance(st, Store) and st.over is Reduction.SEQUENCE:
                owner = f"{st.target.array.owner}_{loop.size}"
                vector = Array(
                    ArrayRole.UNIT_SUM, owner, Extent.NONE, ((1, loop.size),)
                )
                sums[vector] = st.target.array
                st = replace(st, target=Access(vector, RowIndex.UNIT, 0, loop.size),
                             over=Reduction.ROWS)  # fmt: skip
            body.append(st)
        out.append(replace(loop, body=tuple(body)))
    return out, sums


def backward_schedule(spec: CellSpec, stages: tuple[Stage, ...], accumulators):
    """The backward kernel and the vectors of its unit sums: the stages in reverse in the
    time loop, then the sums and the weight gradients."""
    products = [p for stage in stages for p in stage.products]
    loops, sums = _unit_sums([lp for stage in stages for lp in stage.backward])
    writes_dx = any(isinstance(st, Store) and st.target.array.role == ArrayRole.INPUT_ADJOINT
                    for lp in loops for st in lp.body)  # fmt: skip
    hoisted = [p for p in products if p.hoisted]
    weights = [p.weight for p in products]
    rules = [transpose_rules(
        p,
        to_weight=not p.rows.whole or weights.count(p.weight) > 1,
        to_source=writes_dx or not p.hoisted or p is not hoisted[0],
    ) for p in products]  # fmt: skip
    body, by_loop, by_product = [], iter(loops), iter(rules)
    for stage in stages:  # the loops and rules of each stage, in the stages' order
        stage_loops = [next(by_loop) for _ in stage.backward]
        stage_rules = [next(by_product)[0] for _ in stage.products]
        body.insert(0, [*stage_loops, *(r for r in stage_rules if r.per_step)])
    body = [node for part in body for node in part]
    first, second = (
        state_arrays(spec, ArrayRole.NEXT_ADJOINT),
        state_arrays(spec, ArrayRole.PREVIOUS_ADJOINT),
    )
    pairs = tuple(zip(first, second, strict=True))
    enter = (*(Edge(EdgeKind.CLEAR, (a,)) for a in accumulators),
             *(Edge(EdgeKind.PASS_THROUGH, pair) for pair in pairs))  # fmt: skip
    leave = tuple(Edge(EdgeKind.HAND_BACK, pair) for pair in pairs)
    after = [Sum(Operand(sums[v]), Operand(v), Reduction.UNITS)
             for v in sorted(sums, key=lambda a: a.owner)]  # fmt: skip
    after += _bias_sums(products, rules)
    for p, (back, grad, bias) in zip(products, rules, strict=True):
        after += [grad, *([bias] if bias else []), *([back] if p.hoisted else [])]
    loop = TimeLoop(Direction.BACKWARD, enter, tuple(body), leave)
    return Schedule((), loop, tuple(after)), tuple(sorted(sums, key=lambda a: a.owner))


def _bias_sums(products, rules) -> list[Sum]:
    """An adjoint that several biases are the gradients of, summed over its rows once (a cell's
    biases are all declared or all absent, ``bias=False``: then skipped); each bias's rule
    becomes the addition of that sum."""
    served: dict[Array, list[int]] = {}
    for n, p in enumerate(products):
        if p.bias:
            served.setdefault(p.adjoint, []).append(n)
    sums = []
    for adjoint in sorted(served, key=lambda a: a.owner):
        if len(served[adjoint]) < 2:
            continue
        first = products[served[adjoint][0]]
        total = Array(ArrayRole.ROW_SUM, adjoint.owner, Extent.NONE, adjoint.width)
        sums.append(Sum(Operand(total), Operand(adjoint), Reduction.ROWS, first.bias))
        for n in served[adjoint]:
            back, grad, bias = rules[n]
            rules[n] = back, grad, replace(bias, source=Operand(total),
                                           over=Reduction.NONE, unless=products[n].bias)  # fmt: skip
    return sums
