"""The Numba backend's kernels: a :class:`~derive.lower.plan.KernelPlan` printed for the kernel
template.

:func:`print_kernel` names every array of the plan by its role, prints every access, loop and
size, and every node of the kernels' schedules (products, transpose rules, sums, the time loop
and its edges), and returns a :class:`Kernel` that ``templates/numba/kernel.py.j2`` lays out.
Nothing printed here is read again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ...lower.kernels import source_operand
from ...lower.plan import (
    POINTWISE_ROWS,
    Access,
    Array,
    ArrayRole,
    Assign,
    Direction,
    Edge,
    EdgeKind,
    Extent,
    KernelPlan,
    Load,
    Loop,
    MatMul,
    Operand,
    Reduction,
    RowIndex,
    Schedule,
    SizeSource,
    Store,
    Sum,
)
from ...symbolic.declare import size_symbol
from .printer import NumbaPrinter, constant_name, count_name

__all__ = [
    "EDGE_COMMENTS",
    "Kernel",
    "Line",
    "PrintedNode",
    "PrintedSchedule",
    "access",
    "accesses",
    "allocations",
    "array_name",
    "array_shape",
    "block_views",
    "constant_lines",
    "edge_call",
    "element",
    "host_kernel",
    "loop_statement",
    "operand",
    "pointwise_reads",
    "print_kernel",
    "print_nodes",
    "print_schedule",
    "printer_sizes",
    "size_lines",
    "size_name",
    "step_rows",
]


#: An array's name in the kernels: a prefix by role, then its owner (names a declaration may
#: take cannot start with these prefixes).
_NAMES = {
    ArrayRole.INPUT: "seq_x", ArrayRole.LENGTHS: "lengths", ArrayRole.INITIAL: "init_{}",
    ArrayRole.MASK: "mask_{}",
    ArrayRole.PARAMETER: "{}", ArrayRole.SEQUENCE: "seq_{}", ArrayRole.TAPE: "save_{}",
    ArrayRole.WORKSPACE: "step_{}", ArrayRole.PROJECTION: "k_{}",
    ArrayRole.PROJECTION_ADJOINT: "dk_{}", ArrayRole.ACCUMULATOR: "buf_{}",
    ArrayRole.OUTPUT_ADJOINT: "d_seq_y", ArrayRole.FINAL_ADJOINT: "dfinal_{}",
    ArrayRole.NEXT_ADJOINT: "dnext_{}", ArrayRole.PREVIOUS_ADJOINT: "dprev_{}",
    ArrayRole.INPUT_ADJOINT: "dx", ArrayRole.PARAMETER_GRADIENT: "d_{}",
    ArrayRole.UNIT_SUM: "sum_d_{}", ArrayRole.ROW_SUM: "sum_dk_{}",
}  # fmt: skip
_ROWS = {RowIndex.STEP: "row", RowIndex.NEXT: "row + batch", RowIndex.BATCH: "b"}
_EXTENTS = {Extent.STEPS: "steps * batch", Extent.STEPS_AND_INITIAL: "(steps + 1) * batch",
            Extent.BATCH: "batch"}  # fmt: skip


@dataclass(frozen=True)
class Line:
    """One printed statement: ``target op value`` (``target`` alone, a call, where ``op`` is
    empty), ``depth`` blocks deeper than its node; ``comment`` heads a block (the equation it
    serves)."""

    target: str
    op: str
    value: str
    comment: str = ""
    depth: int = 0


@dataclass(frozen=True)
class PrintedLoop:
    size: str
    lines: tuple[Line, ...]
    zero: tuple[str, ...] = ()  # elements set to zero before each row's units
    #: a view of each block of a row, taken before the row's units (see block_views)
    views: tuple[Line, ...] = ()


@dataclass(frozen=True)
class PrintedNode:
    """A schedule's node printed: a pointwise loop, or lines; ``comment`` heads it."""

    lines: tuple[Line, ...] = ()
    loop: PrintedLoop | None = None
    comment: str = ""


@dataclass(frozen=True)
class PrintedSchedule:
    """A kernel's schedule printed: ``setup`` (workspaces, packed weights and zeroed sums its
    products and sums need), the nodes before the time loop, the loop's header and its
    nodes, and the nodes after it."""

    setup: tuple[Line, ...]
    before: tuple[PrintedNode, ...]
    header: str
    step_rows: bool  # whether the loop's products read the step's rows (``last``)
    enter: tuple[PrintedNode, ...]
    body: tuple[PrintedNode, ...]
    leave: tuple[PrintedNode, ...]
    after: tuple[PrintedNode, ...]
    dx_written: bool  # a product writes the input's gradient whole (no zeros needed)


@dataclass(frozen=True)
class Kernel:
    """Everything the kernel template needs, printed."""

    states: tuple[str, ...]
    params: tuple[str, ...]
    forward_sizes: tuple[Line, ...]
    backward_sizes: tuple[Line, ...]
    forward_constants: tuple[Line, ...]
    backward_constants: tuple[Line, ...]
    forward: PrintedSchedule
    infer: PrintedSchedule
    backward: PrintedSchedule
    sequences: tuple[tuple[str, str], ...]  # (name, shape) of each array allocated
    saves: tuple[tuple[str, str], ...]
    workspaces: tuple[tuple[str, str], ...]
    adjoints: tuple[tuple[str, str], ...]
    accumulators: tuple[tuple[str, str], ...]
    forward_args: tuple[str, ...]
    forward_returns: tuple[str, ...]
    backward_args: tuple[str, ...]
    backward_returns: tuple[str, ...]
    #: the runtime's functions the printed kernels call by name (activations, products)
    helpers: frozenset[str] = frozenset()
    #: the forward that keeps no tape: the arrays it keeps (name, shape), its workspaces and
    #: what it returns
    inference_saves: tuple[tuple[str, str], ...] = ()
    inference_workspaces: tuple[tuple[str, str], ...] = ()
    inference_returns: tuple[str, ...] = ()


def array_name(array: Array) -> str:
    return _NAMES[array.role].format(array.owner)


def size_name(name: str) -> str:
    return f"size_{name}"


def _multiple(count: int, size: str | None) -> str:
    """``count`` blocks of ``size`` as printed (a size of None counts columns): empty for
    none."""
    if count == 0:
        return ""
    if size is None:
        return str(count)
    return size_name(size) if count == 1 else f"{count} * {size_name(size)}"


def _width(width) -> str:
    return " + ".join(_multiple(mult, size) for mult, size in width)


def array_shape(array: Array) -> str:
    return f"({_EXTENTS[array.extent]}, {_width(array.width)})"


def _offset(block: int, size: str) -> str:
    return "j" if block == 0 else f"{_multiple(block, size)} + j"


def element(a: Access) -> tuple[str, str]:
    """``(array, index)``: the array ``a`` touches and the index of its element, printed."""
    name = array_name(a.array)
    if a.row == RowIndex.UNIT:
        return name, _offset(a.block, a.block_size)
    if a.row == RowIndex.WHOLE:
        return name, "()"
    if a.array.per_row:  # one number per row: the same element for every unit
        return name, f"{_ROWS[a.row]}, 0"
    return name, f"{_ROWS[a.row]}, {_offset(a.block, a.block_size)}"


def access(a: Access, views: dict[tuple[Array, RowIndex], str] | None = None) -> str:
    """``a`` as printed; an access of a viewed row (``views``) reads its block's view."""
    if views and (a.array, a.row) in views:
        return f"{views[a.array, a.row]}_{a.block}[j]"
    name, index = element(a)
    return f"{name}[{index}]"


def _rows(rows) -> str:
    """The printed row slice of a parameter's blocks (empty for all its rows)."""
    if rows is None or rows.whole:
        return ""
    start = _multiple(rows.first, rows.size)
    stop = _multiple(rows.first + rows.count, rows.size)
    return f"[{_slice(start, stop)}]"


def _slice(start: str, stop: str) -> str:
    """``start:stop`` spaced as the formatter spaces it (around the colon of compound
    bounds)."""
    sep = (
        ":" if " " not in start and " " not in stop else (": " if not start else " : ")
    )
    return f"{start}{sep}{stop}"


def operand(op: Operand, per_step: bool) -> str:
    """An operand as printed: a parameter's rows; an array of the steps at step t (rows
    ``first:last``, a workspace whole) or over every step; ``.T`` when transposed."""
    a = op.array
    if a.extent == Extent.NONE:
        text = array_name(a) + _rows(op.rows)
    elif (
        a.extent == Extent.BATCH
    ):  # a workspace, a state's adjoint: the step's rows alone
        text = array_name(a)
    else:
        name = array_name(a)
        nxt = a.role == ArrayRole.SEQUENCE and op.row == RowIndex.NEXT
        if per_step:
            text = f"{name}[last : last + batch]" if nxt else f"{name}[first:last]"
        elif a.role == ArrayRole.SEQUENCE:
            text = f"{name}[batch:]" if nxt else f"{name}[:-batch]"
        else:
            text = name
    return f"{text}.T" if op.transposed else text


def _call(name: str, *args: str) -> Line:
    return Line(f"{name}({', '.join(args)})", "", "")


def _line(printer: NumbaPrinter, target: str, op: str, expr, comment: str = "") -> Line:
    return Line(target, op, printer.statement(expr), comment)


def loop_statement(printer: NumbaPrinter, st, views) -> Line:
    if isinstance(st, Load):
        return Line(
            st.target.name, "=", " + ".join(access(a, views) for a in st.sources)
        )
    if isinstance(st, Assign):
        comment = ""
        if st.equation is not None:
            comment = f"adjoint of {st.equation.target} = {st.equation.expr}"
        return _line(printer, st.target.name, "=", st.expr, comment)
    return _line(
        printer, access(st.target, views), "+=" if st.accumulate else "=", st.expr
    )


def accesses(st) -> tuple[Access, ...]:
    if isinstance(st, Load):
        return st.sources
    return (st.target,) if isinstance(st, Store) else ()


def block_views(loop: Loop) -> dict[tuple[Array, RowIndex], str]:
    """The rows a loop touches in more than one block, each with the stem of its blocks'
    views.

    ``dk[row, 2 * size_H + j]`` and ``dk[row, j]`` in one loop are one array at a distance
    known only at run time: LLVM then finds the loop's memory dependences unsafe and leaves it
    scalar. Through a view of each block taken before the row's units (``row_dk_2 =
    dk[row, 2 * size_H : 3 * size_H]``) every access is ``view[j]``, and the loop vectorises.
    """
    touched = [a for st in loop.body for a in accesses(st)
               if a.row in _ROWS and not a.array.per_row]  # fmt: skip
    blocked = {(a.array, a.row) for a in touched if a.block}
    return {
        key: f"row_{array_name(key[0])}" + ("_next" if key[1] == RowIndex.NEXT else "")
        for key in sorted(blocked, key=lambda k: (array_name(k[0]), k[1].value))
    }


def _view_lines(loop: Loop, views) -> tuple[Line, ...]:
    blocks = {(views[a.array, a.row], a.block): a for st in loop.body for a in accesses(st)
              if (a.array, a.row) in views}  # fmt: skip
    lines = []
    for (stem, block), a in sorted(blocks.items(), key=lambda item: item[0]):
        start, stop = _multiple(block, a.block_size), _multiple(block + 1, a.block_size)
        where = f"{array_name(a.array)}[{_ROWS[a.row]}, {_slice(start, stop)}]"
        lines.append(Line(f"{stem}_{block}", "=", where))
    return tuple(lines)


def _loop(printer: NumbaPrinter, loop: Loop) -> PrintedLoop:
    views = block_views(loop)
    return PrintedLoop(size_name(loop.size),
                       tuple(loop_statement(printer, st, views) for st in loop.body),
                       tuple(access(a) for a in loop.zero), _view_lines(loop, views))  # fmt: skip


#: The comment heading a run of one kind of edge.
EDGE_COMMENTS = {
    EdgeKind.START: "the sequences start with the initial states",
    EdgeKind.CARRY: "a row past its length carries its states through unchanged",
    EdgeKind.PASS_THROUGH: "a row past its length passes its state gradients through; the "
    "step sees zeros",
    EdgeKind.HAND_BACK: "the step's state gradients pass to the step before it",
    EdgeKind.CLEAR: "",
}
#: The runtime's function for an edge reads the step where it masks by length.
_EDGE_STEP = {
    EdgeKind.CARRY: ("t", "batch", "lengths"),
    EdgeKind.PASS_THROUGH: ("t", "lengths"),
}


def edge_call(edge: Edge) -> Line:
    args = (*map(array_name, edge.arrays), *_EDGE_STEP.get(edge.kind, ()))
    return _call(f"_runtime.{edge.kind.value}", *args)


def _key(mm: MatMul) -> str:
    return array_name(mm.product.result).removeprefix("k_")


def _runtime_call(printer: NumbaPrinter, name: str, *args: str) -> Line:
    """A call of the runtime's function ``name``, which the module then imports."""
    printer.helpers.add(name)
    return _call(name, *args)


def _kept_index(operand_text: str, params: tuple[str, ...] | None) -> int | None:
    """Where in ``params`` the matrix ``operand_text`` is, when it is a whole parameter read
    as it is and the kernel takes its panels packed (``params`` not None); else None."""
    if params is None or operand_text not in params:
        return None
    return params.index(operand_text)


def _matmul(printer: NumbaPrinter, mm: MatMul, params=None) -> PrintedNode:
    """A product: one step's rows through the runtime's packed product, or every step's
    through the runtime's ``_times_transpose``, ``_times`` or ``_times_rows`` (by tiles or
    BLAS, as timed on the processor)."""
    left, right = operand(mm.left, mm.per_step), operand(mm.right, mm.per_step)
    out = operand(mm.out, mm.per_step)
    if mm.per_step:
        packed = f"packed_{_key(mm)}"
        if mm.rule == "forward":
            bias = operand(mm.bias, True) if mm.bias else "no_bias"
            return PrintedNode(
                (_runtime_call(printer, "_product", left, packed, bias, out),)
            )
        source = operand(source_operand(mm.product), True)
        comment = f"transpose rule of {right} @ {source}"
        add = _runtime_call(printer, "_product_add", left, packed, out)
        return PrintedNode((add,), comment=comment)
    if mm.rule == "forward":
        product = f"np.dot({left}, {right})"
        if mm.right.transposed:  # the runtime's, in BLAS's faster order for few rows
            printer.helpers.add("_times_transpose")
            matrix = operand(replace(mm.right, transposed=False), False)
            product = f"_times_transpose({left}, {matrix})"
            index = _kept_index(matrix, params)
            if index is not None:  # by the panels the caller packed, where it did
                printer.helpers.add("_times_transpose_kept")
                product = f"_times_transpose_kept({left}, {matrix}, panels, {index})"
        lines = [Line(out, "=", product)]
        if mm.bias:
            lines.append(
                _runtime_call(printer, "_add_bias", out, operand(mm.bias, False))
            )
        return PrintedNode(
            tuple(lines), comment="the input projection of every step at once"
        )
    if mm.left.transposed and mm.right.transposed:
        return PrintedNode((_call("np.dot", left, right, out),))
    # by tiles where they win (the runtime's ``tile_rows``): an input's gradient, rows times
    # a matrix, or a weight's, a sum over every row; into ``out`` or added to it
    add = "1" if mm.accumulate else "0"
    if not mm.left.transposed:
        return PrintedNode((_runtime_call(printer, "_times", left, right, out, add),))
    rows = operand(replace(mm.left, transposed=False), False)
    return PrintedNode((_runtime_call(printer, "_times_rows", rows, right, out, add),))


def _sum(node: Sum) -> PrintedNode:
    """A sum over units (a loop), over every row (the runtime's ``add_rows``), or a sum made
    once added (skipped where the cell has no biases)."""
    target, source = operand(node.target, False), operand(node.source, False)
    if node.over is Reduction.UNITS:
        size = size_name(node.source.array.width[0][1])
        return PrintedNode(
            (Line(f"for j in range({size}):", "", ""),
             Line(f"{target}[()]", "+=", f"{source}[j]", depth=1)),
            comment=f"{target}: its terms, summed unit by unit in the loops, added up",
        )  # fmt: skip
    if node.over is Reduction.ROWS:
        add = _call("_runtime.add_rows", target, source, "steps * batch")
        if node.target.array.role != ArrayRole.ROW_SUM:
            return PrintedNode((add,))
        width = f"{source}.shape[1] if {array_name(node.unless)}.shape[0] else 0"
        return PrintedNode(
            (Line(target, "=", f"np.zeros({width}, seq_x.dtype)"), add),
            comment=f"{source} summed over the rows once, for every bias it is the "
            "gradient of (none without biases)",
        )
    return PrintedNode(
        (Line("grad", "=", target), Line("if grad.shape[0]:", "", ""),
         Line("grad", "+=", source, depth=1)),
    )  # fmt: skip


def print_nodes(nodes, other) -> tuple[PrintedNode, ...]:
    """Nodes printed in order, ``other(node)`` printing each that is not an edge; a run of
    edges of one kind under one comment."""
    out, previous = [], None
    for node in nodes:
        if isinstance(node, Edge):
            comment = EDGE_COMMENTS[node.kind] if node.kind != previous else ""
            out.append(PrintedNode((edge_call(node),), comment=comment))
            previous = node.kind
            continue
        previous = None
        out.append(other(node))
    return tuple(out)


def _node(printer: NumbaPrinter, node, params=None) -> PrintedNode:
    if isinstance(node, Loop):
        return PrintedNode(loop=_loop(printer, node))
    if isinstance(node, MatMul):
        return _matmul(printer, node, params)
    return _sum(node)


def _setup(printer: NumbaPrinter, schedule: Schedule, params=None) -> tuple[Line, ...]:
    """What the schedule's products and sums need before its time loop: a per-step product's
    result workspace and its weight packed once (or, with ``params``, the parameters' names,
    taken from the panels the caller packed where it did), an empty bias, the unit sums
    zeroed."""
    lines = []
    per_step = [mm for mm in schedule.loop.body if isinstance(mm, MatMul)]
    for mm in per_step:
        packed = operand(replace(mm.right, transposed=not mm.right.transposed), True)
        if mm.rule == "forward":
            width = _multiple(len(mm.product.dense.blocks), mm.product.dense.block_size)
            what = (
                f"the workspace of the per-step product with {packed}, and the weight"
                " packed once"
            )
            empty = f"np.empty((batch, {width}), seq_x.dtype)"
            lines.append(Line(operand(mm.out, True), "=", empty, what))
        pack = f"_pack({packed}, batch, steps)"
        index = _kept_index(packed, params) if mm.rule == "forward" else None
        if index is None:
            printer.helpers.add("_pack")
        else:
            printer.helpers.add("_pack_kept")
            pack = f"_pack_kept({packed}, batch, steps, panels, {index})"
        lines.append(Line(f"packed_{_key(mm)}", "=", pack))
    if any(mm.rule == "forward" and mm.bias is None for mm in per_step):
        lines.append(Line("no_bias", "=", "np.empty(0, seq_x.dtype)"))
    for node in schedule.after:
        if isinstance(node, Sum) and node.over is Reduction.UNITS:
            a = node.source.array
            lines.append(
                Line(
                    array_name(a),
                    "=",
                    f"np.zeros({size_name(a.width[0][1])}, seq_x.dtype)",
                )
            )
    return tuple(lines)


def step_rows(loop) -> bool:
    return any(op.array.extent in (Extent.STEPS, Extent.STEPS_AND_INITIAL)
               for mm in loop.body if isinstance(mm, MatMul)
               for op in (mm.left, mm.out))  # fmt: skip


#: The backward kernel's last argument: whether the input's gradient is wanted. Where it is
#: not (an input that needs none, as a framework's autograd says), every product into ``dx``
#: is skipped; ``dx`` then holds nothing to read, and the interface hands out None.
INPUT_GRAD = "input_grad"


def _into_dx(node) -> bool:
    """Whether ``node`` is a product into the input's gradient."""
    return isinstance(node, MatMul) and node.out.array.role == ArrayRole.INPUT_ADJOINT


def _wanted(node, printed: PrintedNode) -> PrintedNode:
    """``printed`` as it is, or, for a product into the input's gradient, run only where
    :data:`INPUT_GRAD` asks for it."""
    if not _into_dx(node):
        return printed
    lines = tuple(replace(line, depth=line.depth + 1) for line in printed.lines)
    return replace(printed, lines=(Line(f"if {INPUT_GRAD}:", "", ""), *lines))


def print_schedule(schedule: Schedule, setup, other) -> PrintedSchedule:
    """``schedule`` printed: ``setup`` its lines before the time loop, ``other(node)`` each of
    its nodes that is not an edge."""
    loop = schedule.loop
    header = ("for t in range(steps):" if loop.direction is Direction.FORWARD
              else "for t in range(steps - 1, -1, -1):")  # fmt: skip
    dx = any(_into_dx(n) and not n.accumulate for n in schedule.after)

    def nodes(run):
        return print_nodes(run, lambda node: _wanted(node, other(node)))

    return PrintedSchedule(
        setup=tuple(setup), before=nodes(schedule.before), header=header,
        step_rows=step_rows(loop), enter=nodes(loop.enter), body=nodes(loop.body),
        leave=nodes(loop.leave), after=nodes(schedule.after), dx_written=dx,
    )  # fmt: skip


def _schedule(
    printer: NumbaPrinter, schedule: Schedule, params=None
) -> PrintedSchedule:
    """``schedule`` printed; with ``params`` (the kernel's parameters, by name), its products
    read the panels of a caller's ``panels`` argument where it gives them."""
    return print_schedule(
        schedule,
        _setup(printer, schedule, params),
        lambda node: _node(printer, node, params),
    )


def size_lines(sources: tuple[SizeSource, ...], batch_from: str) -> tuple[Line, ...]:
    lines = [Line("batch", "=", f"{batch_from}.shape[0]"),
             Line("steps", "=", "seq_x.shape[0] // batch")]  # fmt: skip
    for s in sources:
        divide = f" // {s.divisor}" if s.divisor != 1 else ""
        lines.append(
            Line(
                size_name(s.size), "=", f"{array_name(s.array)}.shape[{s.axis}]{divide}"
            )
        )
    return tuple(lines)


def constant_lines(printer: NumbaPrinter) -> tuple[Line, ...]:
    """Typed constants of a kernel: ``real`` is the kernel's float type."""
    numbers = [
        Line(
            constant_name(c), "=", f"real({c.p} / {c.q})" if c.q != 1 else f"real({c})"
        )
        for c in sorted(printer.constants)
    ]
    counts = [Line(count_name(size), "=", f"real({size_name(size)})")
              for size in sorted(printer.counts)]  # fmt: skip
    return tuple(numbers + counts)


def allocations(arrays) -> tuple[tuple[str, str], ...]:
    return tuple((array_name(a), array_shape(a)) for a in arrays)


def pointwise_reads(spec) -> dict[str, str]:
    """How a loop reads each vector and scalar parameter the pointwise equations use: in place,
    by its name in the equations."""
    return {
        sym.name: access(Access(Array(ArrayRole.PARAMETER, p.name), POINTWISE_ROWS[p.kind], block,
                                p.block_size))
        for sym, (p, block) in spec.pointwise.items()
    }  # fmt: skip


def printer_sizes(spec) -> dict[str, str]:
    """A size's symbol -> the size, for a printer."""
    return {size_symbol(s.name).name: s.name for s in spec.sizes}


def host_kernel(plan: KernelPlan, forward, backward, printed) -> Kernel:
    """The :class:`Kernel` of ``plan`` whose schedules are ``printed`` (forward, inference,
    backward), with the constants and helpers of the printers ``forward`` (the forward's and
    the inference's) and ``backward``."""
    inference = plan.inference
    first = plan.spec.states[0].name

    def names(arrays):
        return tuple(array_name(a) for a in arrays)

    return Kernel(
        states=plan.spec.state_names, params=plan.spec.param_names,
        forward_sizes=size_lines(plan.forward_sizes, f"init_{first}"),
        backward_sizes=size_lines(plan.backward_sizes, f"dfinal_{first}"),
        forward_constants=constant_lines(forward), backward_constants=constant_lines(backward),
        forward=printed[0], infer=printed[1], backward=printed[2],
        sequences=allocations(plan.sequences), saves=allocations(plan.tape),
        workspaces=allocations(plan.workspaces), adjoints=allocations(plan.adjoints),
        accumulators=allocations(plan.accumulators),
        forward_args=names(plan.forward_args) + plan.hypers,
        forward_returns=names(plan.forward_returns),
        backward_args=names(plan.backward_args) + plan.hypers,
        backward_returns=names(plan.backward_returns),
        inference_saves=allocations(inference.tape),
        inference_workspaces=allocations(inference.workspaces),
        inference_returns=names(inference.returns),
        helpers=frozenset(forward.helpers | backward.helpers),
    )  # fmt: skip


def print_kernel(plan: KernelPlan) -> Kernel:
    """Print ``plan`` for the kernel template."""
    reads, sizes = pointwise_reads(plan.spec), printer_sizes(plan.spec)
    forward, backward = NumbaPrinter(reads, sizes), NumbaPrinter(reads, sizes)
    # every schedule printed before the constants are listed
    inference = _schedule(forward, plan.inference.schedule, plan.spec.param_names)
    printed = (_schedule(forward, plan.forward), inference,
               _schedule(backward, plan.backward))  # fmt: skip
    return host_kernel(plan, forward, backward, printed)
