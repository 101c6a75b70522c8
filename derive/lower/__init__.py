"""Lowering: one derived cell step scheduled into arrays, loops and products, as plain data.

:func:`lower` runs six passes, each a small function over plain dataclasses:

1. :func:`~derive.lower.stages.assign_stages`: split the step where a projection reads a value
   computed inside it;
2. :func:`~derive.lower.values.classify`: the role, size and stage of every symbol;
3. :func:`~derive.lower.storage.choose_storage`: what the forward pass saves (exactly what the
   backward pass reads) and where every value is read; and for the forward that keeps no
   tape (inference), what outlives its loop;
4. :func:`~derive.lower.adjoints.plan_adjoints`: where each adjoint completes, which ones gather
   in accumulators, which projections share an adjoint array;
5. :func:`~derive.lower.schedule.schedule`: the loops (through common-subexpression
   elimination) and the products of every stage; the inference forward's too;
6. :mod:`~derive.lower.kernels`: each kernel as a schedule of nodes: its time loop (direction,
   the state bookkeeping that masks rows past their length), the products' transpose rules and
   the sums over units, rows and steps.

The result, a :class:`~derive.lower.plan.KernelPlan`, holds no printed code: the Numba emitter
and the derivation document each print it their own way.
"""

from __future__ import annotations

from ..symbolic.adjoint import Adjoint
from .adjoints import plan_adjoints
from .kernels import backward_schedule, forward_schedule, state_arrays
from .plan import Array, ArrayRole, Extent, Inference, KernelPlan, SizeSource
from .schedule import schedule
from .stages import assign_stages
from .storage import Storage, choose_storage, mask_arrays
from .values import classify

__all__ = ["KernelPlan", "lower"]


def lower(adjoint: Adjoint) -> KernelPlan:
    """Schedule the derived step."""
    spec = adjoint.spec
    stages = assign_stages(spec)
    values = classify(spec, stages)
    storage = choose_storage(adjoint, stages, values)
    adjoints = plan_adjoints(adjoint, stages, storage)
    planned = schedule(spec, stages, storage, adjoints)
    inference = _inference(adjoint, stages, values, adjoints)
    sequences = tuple(storage.sequences.values())
    tape = tuple(storage.backward[s].array for s in storage.tape)
    shared = tuple(dict.fromkeys(adjoints.projection_adjoint.values()))
    workspaces = tuple(storage.forward[s].array for s in storage.workspaces)
    signature = _signature(spec, sequences, tape, mask_arrays(spec, values))
    arrays = (*sequences, *tape, *shared, *adjoints.accumulators.values(), *workspaces,
              *(p.result for stage in planned for p in stage.products))  # fmt: skip
    used = _sizes_used(arrays, planned)
    accumulators = tuple(adjoints.accumulators.values())
    backward, unit_sums = backward_schedule(spec, planned, accumulators)
    return KernelPlan(
        spec=spec,
        values=values,
        stages=planned,
        sequences=sequences,
        tape=tape,
        saved=storage.tape,
        workspaces=workspaces,
        adjoints=shared,
        accumulators=accumulators,
        **signature,
        forward_sizes=_size_sources(spec, ArrayRole.INITIAL, used),
        backward_sizes=_size_sources(spec, ArrayRole.FINAL_ADJOINT, used),
        saved_per_step=_saved_per_step(spec, storage),
        hypers=tuple(hp.name for hp in spec.hypers),
        output=storage.forward[spec.output_symbol].array,
        inference=inference,
        forward=forward_schedule(spec, planned, sequences),
        backward=backward,
        unit_sums=unit_sums,
    )


def _inference(adjoint, stages, values, adjoints) -> Inference:
    """The forward that keeps no tape: the same stages, each value kept only as long as the
    step reads it."""
    spec = adjoint.spec
    storage = choose_storage(adjoint, stages, values, inference=True)
    planned = schedule(spec, stages, storage, adjoints, inference=True)
    tape = tuple(storage.backward[s].array for s in storage.tape)
    return Inference(
        stages=planned,
        tape=tape,
        workspaces=tuple(storage.forward[s].array for s in storage.workspaces),
        returns=(*storage.sequences.values(), *tape),
        output=storage.forward[spec.output_symbol].array,
        schedule=forward_schedule(spec, planned, tuple(storage.sequences.values())),
    )


def _signature(spec, sequences, tape, masks) -> dict:
    x = Array(ArrayRole.INPUT, "x", Extent.STEPS, ((1, spec.input_size),))
    lengths = Array(ArrayRole.LENGTHS, "lengths", Extent.NONE)
    params = tuple(
        Array(ArrayRole.PARAMETER, p.name, Extent.NONE, p.shape_formula())
        for p in spec.params
    )
    gradients = tuple(
        Array(ArrayRole.PARAMETER_GRADIENT, p.name, Extent.NONE, p.shape_formula())
        for p in spec.params
    )
    returns = (*sequences, *tape)
    output = spec.output_size
    dys = Array(ArrayRole.OUTPUT_ADJOINT, "y", Extent.STEPS, ((1, output),))
    return {
        "forward_args": (x, lengths, *state_arrays(spec, ArrayRole.INITIAL), *params,
                         *masks),
        "forward_returns": returns,
        "backward_args": (dys, *state_arrays(spec, ArrayRole.FINAL_ADJOINT), x, lengths,
                          *params, *returns, *masks),
        "backward_returns": (Array(ArrayRole.INPUT_ADJOINT, "x", Extent.STEPS),
                             *state_arrays(spec, ArrayRole.NEXT_ADJOINT), *gradients),
    }  # fmt: skip


def _sizes_used(arrays, stages) -> set[str]:
    used = {size for a in arrays for _, size in a.width}
    for stage in stages:
        used |= {loop.size for loop in (*stage.forward, *stage.backward)}
        used |= {p.rows.size for p in stage.products if not p.rows.whole}
    return used


def _size_sources(
    spec, state_role: ArrayRole, used: set[str]
) -> tuple[SizeSource, ...]:
    """How a kernel reads each size it uses from its arguments' shapes."""
    sources = [
        SizeSource(spec.input_size, Array(ArrayRole.INPUT, "x", Extent.STEPS), 1)
    ]
    for s in spec.states:
        sources.append(SizeSource(s.size, Array(state_role, s.name, Extent.BATCH), 1))
    for p in spec.params:
        array = Array(ArrayRole.PARAMETER, p.name, Extent.NONE)
        for axis, (mult, size) in enumerate(p.shape_formula()):
            sources.append(SizeSource(size, array, axis, mult))
    chosen = {}
    for source in sources:
        if source.size in used:
            chosen.setdefault(source.size, source)
    return tuple(chosen.values())


def _saved_per_step(spec, storage: Storage) -> tuple[tuple[int, str], ...]:
    per_size: dict[str, int] = {}
    for sym in storage.tape:
        size = storage.values[sym].size
        per_size[size] = per_size.get(size, 0) + 1
    for s in spec.states:
        per_size[s.size] = per_size.get(s.size, 0) + 1
    # a size of None: the values of one number per row (means)
    return tuple(
        sorted(
            ((n, s) for s, n in per_size.items()),
            key=lambda item: (item[0], item[1] or ""),
        )
    )
