"""The CUDA backend's kernels: a :class:`~derive.lower.plan.KernelPlan` printed as CUDA kernels
and the host functions that launch them.

Each pointwise loop of a schedule is one CUDA kernel, a thread per (batch row, unit); the
elements it sums over its units (a mean) are set to zero by a kernel of their own before it.
A statement that adds to an element other threads add to (``Store.over``: a row's units, every
row, every step) adds atomically; every other element is a thread's own. The time loop, the
products, the bookkeeping at a step's edges and the sums run on the host, each a launch of the
package's runtime (``templates/cuda/runtime.py.j2``), in the order of the plan's nodes.
Arrays, operands and edges are named and printed as the Numba backend prints them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...lower.plan import (
    ArrayRole,
    KernelPlan,
    Load,
    Loop,
    MatMul,
    Reduction,
    RowIndex,
    Schedule,
    Store,
    Sum,
)
from ..numba.kernel import (
    Kernel,
    Line,
    PrintedNode,
    PrintedSchedule,
    access,
    accesses,
    array_name,
    array_shape,
    element,
    host_kernel,
    loop_statement,
    operand,
    pointwise_reads,
    print_schedule,
    printer_sizes,
    size_name,
)
from ..numba.printer import constant_name, count_name
from .printer import CudaPrinter

__all__ = ["CudaLoop", "CudaModule", "print_module"]


@dataclass(frozen=True)
class CudaLoop:
    """One pointwise loop as a CUDA kernel ``name(first, batch, *params)``: ``lines`` run in
    the thread of unit ``j`` of row ``b`` (``row = first + b``) while ``j < size``; ``zero``
    (elements of ``zero_params``) is set to zero by the kernel ``name + "_zero"`` first."""

    name: str
    params: tuple[str, ...]
    size: str
    lines: tuple[Line, ...]
    zero: tuple[str, ...] = ()
    zero_params: tuple[str, ...] = ()
    #: whether the kernel (and the zeroing one) touches a row of the step (``row``), not
    #: the batch's alone
    step_row: bool = True
    zero_step_row: bool = True

    @property
    def signature(self) -> tuple[str, ...]:
        return ("first", "batch", *self.params)

    @property
    def zero_signature(self) -> tuple[str, ...]:
        return ("first", "batch", *self.zero_params)


@dataclass(frozen=True)
class CudaModule:
    """Everything the CUDA kernel template needs: the host side printed as the Numba
    backend's :class:`Kernel` (its schedules launch the loops), and the loops' kernels."""

    host: Kernel
    loops: tuple[CudaLoop, ...]


class _Context:
    """What the printing of one direction's kernels shares: the printer whose constants the
    host functions define, the sizes they read, and the loops printed so far."""

    def __init__(self, plan: KernelPlan, prefix: str, sizes: tuple[str, ...]):
        self.plan, self.prefix, self.sizes = plan, prefix, sizes
        self.printer = self._printer()
        self.loops: list[CudaLoop] = []

    def _printer(self) -> CudaPrinter:
        spec = self.plan.spec
        return CudaPrinter(pointwise_reads(spec), printer_sizes(spec))

    def loop(self, loop: Loop) -> PrintedNode:
        """The loop's kernel, added to :attr:`loops`, and the host lines that launch it."""
        printer = self._printer()
        lines = tuple(line for st in loop.body for line in _statement(printer, st))
        _absorb(self.printer, printer)
        arrays, hypers = _reads(self.plan, loop)
        numbers = sorted(constant_name(c) for c in printer.constants)
        numbers += sorted(count_name(s) for s in printer.counts)
        params = (*self.sizes, *numbers, *hypers, *arrays)
        name = f"_{self.prefix}_{len(self.loops)}"
        zero = tuple(access(a) for a in loop.zero)
        zero_params = tuple(sorted({array_name(a.array) for a in loop.zero}))
        touched = [*loop.zero, *(a for st in loop.body for a in accesses(st))]
        printed = CudaLoop(name, params, size_name(loop.size), lines, zero, zero_params,
                           _step_row(touched), _step_row(loop.zero))  # fmt: skip
        self.loops.append(printed)
        launches = []
        if zero:
            rows = "_runtime.rows(batch)"
            launches.append(_launch(f"{name}_zero", rows, printed.zero_signature))
        grid = f"_runtime.grid({size_name(loop.size)}, batch)"
        launches.append(_launch(name, grid, printed.signature))
        return PrintedNode(tuple(launches))


def _absorb(into: CudaPrinter, printer: CudaPrinter) -> None:
    """``printer``'s constants, counts and helpers added to ``into``'s."""
    for name in ("constants", "counts", "helpers"):
        getattr(into, name).update(getattr(printer, name))


def _launch(name: str, grid: str, signature) -> Line:
    return Line(f"{name}[{grid}]({', '.join(signature)})", "", "")


def _statement(printer: CudaPrinter, st) -> tuple[Line, ...]:
    """A statement of a loop as lines of its kernel, as the Numba backend prints it; an
    addition to an element that other threads add to is atomic."""
    if not isinstance(st, Store) or st.over is Reduction.NONE:
        return (loop_statement(printer, st, None),)
    name, index = element(st.target)
    index = f"({index})" if "," in index else index
    return (
        Line("_term", "=", printer.statement(st.expr)),
        Line(f"cuda.atomic.add({name}, {index}, _term)", "", ""),
    )


def _step_row(accesses) -> bool:
    return any(a.row in (RowIndex.STEP, RowIndex.NEXT) for a in accesses)


def _reads(plan: KernelPlan, loop: Loop) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The arrays a loop's kernel touches and the hyperparameters it reads, each sorted."""
    arrays = {array_name(a.array) for a in loop.zero}
    symbols = set()
    for st in loop.body:
        if isinstance(st, Load):
            arrays |= {array_name(a.array) for a in st.sources}
            continue
        if isinstance(st, Store):
            arrays.add(array_name(st.target.array))
        symbols |= {s.name for s in st.expr.free_symbols}
    pointwise = {sym.name: p.name for sym, (p, _) in plan.spec.pointwise.items()}
    arrays |= {pointwise[s] for s in symbols if s in pointwise}
    hypers = tuple(h for h in plan.hypers if h in symbols)
    return tuple(sorted(arrays)), hypers


def _matmul(mm: MatMul) -> PrintedNode:
    """A product through the runtime's: one step's rows or every step's; a product that
    makes its result allocates it first."""
    per_step = mm.per_step
    out = operand(mm.out, per_step)
    args = [out, operand(mm.left, per_step), operand(mm.right, per_step)]
    if mm.bias:
        args.append(operand(mm.bias, per_step))
    if mm.accumulate:
        args.append("accumulate=True")
    lines = [Line(f"_runtime.product({', '.join(args)})", "", "")]
    comment = ""
    if mm.rule == "forward" and not per_step:
        allocate = f"cuda.device_array({array_shape(mm.out.array)}, seq_x.dtype)"
        lines.insert(0, Line(out, "=", allocate))
        comment = "the input projection of every step at once"
    return PrintedNode(tuple(lines), comment=comment)


def _sum(node: Sum) -> PrintedNode:
    """A sum over units, over every row, or a sum made once added (skipped where the cell has
    no biases), each a launch of the runtime."""
    target, source = operand(node.target, False), operand(node.source, False)
    if node.over is Reduction.UNITS:
        return PrintedNode((Line(f"_runtime.add_units({target}, {source})", "", ""),))
    if node.over is Reduction.ROWS:
        add = Line(f"_runtime.add_rows({target}, {source}, steps * batch)", "", "")
        if node.target.array.role != ArrayRole.ROW_SUM:
            return PrintedNode((add,))
        width = f"{source}.shape[1] if {array_name(node.unless)}.shape[0] else 0"
        zeros = Line(target, "=", f"_runtime.zeros({width}, seq_x.dtype)")
        return PrintedNode((zeros, add), comment=f"{source} summed over the rows once")
    return PrintedNode((Line(f"_runtime.add({target}, {source})", "", ""),))


def _node(context: _Context, node) -> PrintedNode:
    if isinstance(node, Loop):
        return context.loop(node)
    if isinstance(node, MatMul):
        return _matmul(node)
    return _sum(node)


def _setup(schedule: Schedule) -> tuple[Line, ...]:
    """Before the time loop: each per-step product's result, and the unit sums zeroed."""
    lines = []
    for mm in schedule.loop.body:
        if isinstance(mm, MatMul) and mm.rule == "forward":
            shape = array_shape(mm.out.array)
            lines.append(
                Line(
                    operand(mm.out, True),
                    "=",
                    f"cuda.device_array({shape}, seq_x.dtype)",
                )
            )
    for node in schedule.after:
        if isinstance(node, Sum) and node.over is Reduction.UNITS:
            a = node.source.array
            zeros = f"_runtime.zeros({size_name(a.width[0][1])}, seq_x.dtype)"
            lines.append(Line(array_name(a), "=", zeros))
    return tuple(lines)


def _schedule(context: _Context, schedule: Schedule) -> PrintedSchedule:
    return print_schedule(schedule, _setup(schedule), lambda node: _node(context, node))


def print_module(plan: KernelPlan) -> CudaModule:
    """Print ``plan`` for the CUDA kernel template."""

    def sizes(sources):  # the sizes the host function reads (size_lines prints them)
        return tuple(size_name(s.size) for s in sources)

    forward = _Context(plan, "forward", sizes(plan.forward_sizes))
    infer = _Context(plan, "infer", sizes(plan.forward_sizes))
    backward = _Context(plan, "backward", sizes(plan.backward_sizes))
    printed = (_schedule(forward, plan.forward), _schedule(infer, plan.inference.schedule),
               _schedule(backward, plan.backward))  # fmt: skip
    _absorb(forward.printer, infer.printer)  # the host defines both forwards' constants
    host = host_kernel(plan, forward.printer, backward.printer, printed)
    return CudaModule(host, (*forward.loops, *infer.loops, *backward.loops))
