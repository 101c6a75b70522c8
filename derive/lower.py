"""Lowering: schedule one derived cell step into loops and matrix products, as plain data.

The schedule:

* projections whose source is the input ``x`` run for all time steps at once, as one matrix
  product before the time loop (forward) and after it (``δx``, ``δW``);
* projections of a state or of an intermediate run once per step;
* a step is split into *stages*: a projection that reads an intermediate (GRU-Cho's
  ``W (r ⊙ h)``) can only run after the pointwise loop that computes it, so it starts a new stage;
* within a stage, the pointwise equations of one size form one fused loop over batch and units;
* the forward pass saves, per step, every value the backward expressions read (states are kept
  as whole sequences ``(T + 1, B, ·)``);
* an adjoint that receives contributions from several loops (a previous state, a value read by a
  later stage) is accumulated in a buffer; the others are computed where they complete.

Everything the templates need arrives here already printed.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from .adjoint import Adjoint, adjoint_symbol, external_symbol
from .declare import CellSpec, Dense
from .functions import relu, relu_step
from .printing import NumbaPrinter, constant_name

__all__ = ["Derivation", "KernelPlan", "Line", "Loop", "Projection", "lower"]


@dataclass(frozen=True)
class Line:
    """One statement: ``target op value``; ``comment`` heads a block (the equation it serves)."""

    target: str
    op: str
    value: str
    comment: str = ""
    terms: tuple[
        tuple[str, str], ...
    ] = ()  # the value's terms with signs, for line wrapping


@dataclass(frozen=True)
class Derivation:
    """One symbolic statement of the backward step, in the order the kernel computes it.

    ``kind`` is ``adjoint`` (``δtarget = expr``, complete), ``projection`` (the adjoint of a
    projection's block, which its transpose rule reads) or ``accumulate`` (``δtarget += expr``,
    a contribution to a previous state, the input, a vector parameter or an earlier stage).
    """

    kind: str
    target: sympy.Symbol
    expr: sympy.Expr


@dataclass(frozen=True)
class Loop:
    """A fused pointwise loop over ``batch`` and ``size`` units."""

    stage: int
    size: str
    lines: tuple[Line, ...]
    derivation: tuple[Derivation, ...] = ()


@dataclass(frozen=True)
class Projection:
    """A dense product ``source @ weight[rows].T (+ bias[rows])`` and its transpose rules."""

    dense: Dense
    key: str  # name of the forward result array (k_<key>) and of its adjoint (dk_<key>)
    adjoint: str  # the array that holds its adjoint (shared when two projections' adjoints agree)
    weight: str
    bias: str | None
    rows: str  # printed slice of the weight's rows, empty for all of them
    width: str  # printed number of rows
    stage: int
    hoisted: bool  # source is the input: one product over all steps
    source_seq: str  # the source over all steps, (T, B, cols)
    source_step: str  # the source at step t, (B, cols)
    source_adjoint: str  # where δsource accumulates (per step) or "dx" (hoisted)
    cols: str


@dataclass(frozen=True)
class Stage:
    index: int
    projections: tuple[Projection, ...]
    forward: tuple[Loop, ...]
    backward: tuple[Loop, ...]


@dataclass(frozen=True)
class Array:
    """A kernel array: ``name`` with printed ``shape``."""

    name: str
    shape: str


@dataclass(frozen=True)
class KernelPlan:
    """Everything the kernel template needs, printed."""

    spec: CellSpec
    states: tuple[str, ...]
    params: tuple[str, ...]
    forward_sizes: tuple[
        Line, ...
    ]  # how each kernel reads the sizes from its arguments
    backward_sizes: tuple[Line, ...]
    forward_constants: tuple[Line, ...]
    backward_constants: tuple[Line, ...]
    stages: tuple[Stage, ...]
    sequences: tuple[Array, ...]  # state sequences, (T + 1, B, size)
    saves: tuple[Array, ...]  # values saved per step for the backward pass
    saved_symbols: tuple[sympy.Symbol, ...]  # the same values, as symbols of the step
    adjoints: tuple[Array, ...]  # per-step adjoints of projections, (T, B, rows)
    accumulators: tuple[
        Array, ...
    ]  # per-step adjoint buffers (buf_*), zeroed at each step
    forward_args: tuple[str, ...]
    forward_returns: tuple[str, ...]
    backward_args: tuple[str, ...]
    backward_returns: tuple[str, ...]
    output: str
    saved_per_step: tuple[
        tuple[int, str], ...
    ]  # (count, size) of saved scalars per batch row


def _size(name: str) -> str:
    return f"size_{name}"


def _offset(block: int, size: str) -> str:
    if block == 0:
        return "j"
    if block == 1:
        return f"{_size(size)} + j"
    return f"{block} * {_size(size)} + j"


def _rows(first: int, count: int, total: int, size: str) -> tuple[str, str]:
    """The printed row slice (empty when all rows) and the printed row count."""

    def bound(n):
        return "" if n == 0 else _size(size) if n == 1 else f"{n} * {_size(size)}"

    width = bound(count)
    if first == 0 and count == total:
        return "", width
    start, stop = bound(first), bound(first + count)
    sep = (
        ":"
        if (" " not in start and " " not in stop)
        else (": " if not start else " : ")
    )
    return f"[{start}{sep}{stop}]", width


def lower(adjoint: Adjoint) -> KernelPlan:
    """Schedule the derived step and print its code."""
    spec = adjoint.spec
    q = spec.quantities
    eq_index = {eq.target: n for n, eq in enumerate(spec.equations)}
    dense_of = {sym: d for d in spec.denses for sym in d.symbols}
    dense_sources = {d.source for d in spec.denses}

    # -- stages ---------------------------------------------------------------------------
    stage_of: dict[sympy.Symbol, int] = {}

    def dense_stage_of(d):
        return 0 if d.source not in eq_index else stage_of[d.source] + 1

    def stage(sym):
        if sym in dense_of:
            return dense_stage_of(dense_of[sym])
        return stage_of.get(sym, 0)  # the input, previous states and vectors: stage 0

    for eq in spec.equations:
        stage_of[eq.target] = max((stage(s) for s in eq.expr.free_symbols), default=0)
    dense_stage = {d: dense_stage_of(d) for d in spec.denses}
    n_stages = 1 + max([*stage_of.values(), *dense_stage.values()])

    def use_stage(term):
        return stage_of[spec.equations[term.use].target]

    # -- what crosses loops --------------------------------------------------------------------
    later_uses = {
        v
        for v, ts in adjoint.terms.items()
        if v in eq_index or v in dense_of
        if any(
            use_stage(t) > (stage_of[v] if v in eq_index else dense_stage[dense_of[v]])
            for t in ts
        )
    }
    saved_fwd = set(adjoint.saved) | dense_sources
    # values read by a later forward stage must outlive their loop
    for eq in spec.equations:
        for sym in eq.expr.free_symbols:
            if (sym in eq_index or sym in dense_of) and stage(sym) < stage_of[
                eq.target
            ]:
                saved_fwd.add(sym)
    state_new = {st.new: st for st in spec.states}
    candidates = [
        *(sym for d in spec.denses for sym in d.symbols),
        *(e.target for e in spec.equations),
    ]
    saves = tuple(
        sym for sym in candidates if sym in saved_fwd and sym not in state_new
    )
    state_prev = {st.prev: st for st in spec.states}

    # (I, H): the input is read unit by unit as an H-vector
    same_size = dict(spec.constraints)

    def size_of(sym):
        size = q[sym].size if sym in q else spec.equations[eq_index[sym]].size
        return same_size.get(size, size)

    def forward_value(sym):
        """Where the backward pass (or a later forward loop) reads a forward value.

        Sequences are flat, one row per (step, batch row): ``row = t * batch + b``; a state
        sequence starts with the initial state, so its value at t lies ``batch`` rows on."""
        if sym == spec.input:
            return "seq_x[row, j]"
        if sym in state_prev:
            return f"seq_{state_prev[sym].name}[row, j]"
        if sym in state_new:
            return f"seq_{state_new[sym].name}[row + batch, j]"
        return f"save_{sym.name}[row, j]"

    indexed = {p.name: f"{p.name}[j]" for p in spec.params if p.kind == "vector"}

    # -- projections -------------------------------------------------------------------------
    keys: dict[Dense, str] = {}
    for d in spec.denses:
        same = [o for o in spec.denses if o.name == d.name]
        keys[d] = d.name if len(same) == 1 else f"{d.name}_{'_'.join(d.blocks)}"

    def dense_read(sym):
        d = dense_of[sym]
        blk = d.symbols.index(sym)
        arr = f"k_{keys[d]}[row, {_offset(blk, d.block_size)}]" if d.source == spec.input \
            else f"k_{keys[d]}[b, {_offset(blk, d.block_size)}]"  # fmt: skip
        return arr  # the projection's bias is already added to it

    # The adjoint of each projection output, per block: shared arrays where they agree.
    def complete_adjoint(sym, home):
        total = sum(
            (t.expr for t in adjoint.terms.get(sym, ()) if use_stage(t) == home),
            sympy.Integer(0),
        )
        return total + external_symbol(sym) if _external(sym) else total

    def _external(sym):
        return sym in state_new or sym in dense_sources or sym in later_uses

    adjoint_array: dict[Dense, str] = {}
    seen: dict[tuple, str] = {}
    for d in spec.denses:
        signature = (
            dense_stage[d],
            d.block_size,
            tuple(complete_adjoint(s, dense_stage[d]) for s in d.symbols),
        )
        adjoint_array[d] = seen.setdefault(signature, f"dk_{keys[d]}")

    def source_arrays(d):
        src = d.source
        if src == spec.input:
            return "seq_x", "seq_x[first:last]", "dx"
        if src in state_prev:
            name = state_prev[src].name
            return f"seq_{name}[:-batch]", f"seq_{name}[first:last]", f"dprev_{name}"
        if src in state_new:
            name = state_new[src].name
            return (
                f"seq_{name}[batch:]",
                f"seq_{name}[last : last + batch]",
                f"buf_{src.name}",
            )
        return f"save_{src.name}", f"save_{src.name}[first:last]", f"buf_{src.name}"

    projections = []
    for d in spec.denses:
        rows, width = _rows(
            d.first_block, len(d.blocks), len(spec.param(d.weight).blocks), d.block_size
        )
        seq, step, dsrc = source_arrays(d)
        projections.append(Projection(
            dense=d, key=keys[d], adjoint=adjoint_array[d], weight=d.weight, bias=d.bias, rows=rows, width=width,
            stage=dense_stage[d], hoisted=d.source == spec.input, source_seq=seq, source_step=step,
            source_adjoint=dsrc, cols=_size(spec.param(d.weight).cols),
        ))  # fmt: skip

    printer = NumbaPrinter(indexed)
    back_printer = NumbaPrinter(indexed)

    # -- forward loops -------------------------------------------------------------------------
    def forward_loop(s, size):
        eqs = [e for e in spec.equations if stage_of[e.target] == s and e.size == size]
        if not eqs:
            return None
        defined = {e.target for e in eqs}
        needed = (
            set().union(*(e.expr.free_symbols for e in eqs))
            - defined
            - set(map(sympy.Symbol, indexed))
        )
        loads = []
        for sym in sorted(needed, key=sympy.default_sort_key):
            value = dense_read(sym) if sym in dense_of else forward_value(sym)
            loads.append(Line(sym.name, "=", value))
        body = _cse_lines(printer, [(e.target.name, "=", e.expr, "") for e in eqs])
        stores = []
        for e in eqs:
            if e.target in state_new:
                stores.append(Line(forward_value(e.target), "=", e.target.name))
            elif e.target in saved_fwd:
                stores.append(Line(f"save_{e.target.name}[row, j]", "=", e.target.name))
        for sym in sorted(needed & set(saves), key=sympy.default_sort_key):
            if sym in dense_of:
                stores.append(Line(f"save_{sym.name}[row, j]", "=", sym.name))
        return Loop(s, _size(size), tuple(loads + body + stores))

    # -- backward loops ------------------------------------------------------------------------
    def backward_loop(s, size):
        eqs = [e for e in spec.equations if stage_of[e.target] == s and e.size == size]
        denses = [
            d for d in spec.denses if dense_stage[d] == s and d.block_size == size
        ]
        statements = []
        derivation = []
        for e in reversed(eqs):
            total = complete_adjoint(e.target, s)
            derivation.append(Derivation("adjoint", e.target, total))
            statements.append(
                (
                    adjoint_symbol(e.target).name,
                    "=",
                    total,
                    f"adjoint of {_eq_comment(e)}",
                )
            )
        stores = []
        written = set()
        for d in denses:
            block_adjoints = [complete_adjoint(sym, s) for sym in d.symbols]
            derivation += [
                Derivation("projection", sym, adj)
                for sym, adj in zip(d.symbols, block_adjoints, strict=True)
            ]
            if adjoint_array[d] in written:
                continue
            written.add(adjoint_array[d])
            for blk, adj in enumerate(block_adjoints):
                stores.append(
                    (f"{adjoint_array[d]}[row, {_offset(blk, size)}]", "=", adj, "")
                )
        # contributions to values completed elsewhere: previous states, the input, vector
        # parameters, and values of earlier stages
        for var, ts in adjoint.terms.items():
            if (
                var in eq_index
                and stage_of[var] == s
                or var in dense_of
                and dense_stage[dense_of[var]] == s
            ):
                continue
            part = sum(
                (t.expr for t in ts if use_stage(t) == s and size_of(var) == size),
                sympy.Integer(0),
            )
            if part == 0:
                continue
            stores.append(
                (_accumulator(spec, var, state_prev, indexed), "+=", part, "")
            )
            derivation.append(Derivation("accumulate", var, part))
        if not statements and not stores:
            return None
        lines = _cse_lines(back_printer, statements + stores)
        defined = {adjoint_symbol(e.target) for e in eqs}
        free = set()
        for st in statements + stores:
            free |= st[2].free_symbols
        loads = []
        for sym in sorted(
            free - defined - set(map(sympy.Symbol, indexed)), key=sympy.default_sort_key
        ):
            if sym.name.startswith("acc_"):
                var = sympy.Symbol(sym.name.removeprefix("acc_"))
                loads.append(
                    Line(
                        sym.name,
                        "=",
                        _external_read(spec, var, state_new, dense_sources, later_uses),
                    )
                )
            else:
                loads.append(Line(sym.name, "=", forward_value(sym)))
        return Loop(s, _size(size), tuple(loads + lines), tuple(derivation))

    sizes_used = sorted(
        {e.size for e in spec.equations} | {d.block_size for d in spec.denses}
    )
    stages = []
    for s in range(n_stages):
        fwd = tuple(lp for size in sizes_used if (lp := forward_loop(s, size)))
        bwd = tuple(lp for size in sizes_used if (lp := backward_loop(s, size)))
        stages.append(Stage(s, tuple(p for p in projections if p.stage == s), fwd, bwd))

    # -- arrays and signatures -----------------------------------------------------------------
    sequences = tuple(
        Array(f"seq_{st.name}", f"((steps + 1) * batch, {_size(st.size)})")
        for st in spec.states
    )
    save_arrays = tuple(
        Array(f"save_{s.name}", f"(steps * batch, {_size(size_of(s))})") for s in saves
    )
    adjoint_arrays = []
    for p in projections:
        if p.adjoint not in [a.name for a in adjoint_arrays]:
            adjoint_arrays.append(Array(p.adjoint, f"(steps * batch, {p.width})"))
    accumulators = tuple(
        Array(f"buf_{v.name}", f"(batch, {_size(size_of(v))})")
        for v in [*[e.target for e in spec.equations], *dense_of]
        if (v in dense_sources or v in later_uses) and v not in state_new
    )
    params = spec.param_names
    states = spec.state_names
    forward_args = ("seq_x", "lengths", *[f"init_{s}" for s in states], *params)
    forward_returns = (*[a.name for a in sequences], *[a.name for a in save_arrays])
    backward_args = (
        "d_seq_y",
        *[f"dfinal_{s}" for s in states],
        "seq_x",
        "lengths",
        *params,
        *forward_returns,
    )
    backward_returns = (
        "dx",
        *[f"dnext_{s}" for s in states],
        *[f"d_{p}" for p in params],
    )
    per_step = {}
    for s in saves:
        per_step[size_of(s)] = per_step.get(size_of(s), 0) + 1
    for st in spec.states:
        per_step[st.size] = per_step.get(st.size, 0) + 1
    return KernelPlan(
        spec=spec, states=states, params=params,
        forward_sizes=_size_lines(spec, "init_"), backward_sizes=_size_lines(spec, "dfinal_"),
        forward_constants=_constant_lines(printer), backward_constants=_constant_lines(back_printer),
        stages=tuple(stages), sequences=sequences, saves=save_arrays, saved_symbols=saves, adjoints=tuple(adjoint_arrays),
        accumulators=accumulators, forward_args=forward_args, forward_returns=forward_returns,
        backward_args=backward_args, backward_returns=backward_returns, output=spec.output,
        saved_per_step=tuple(sorted((n, s) for s, n in per_step.items())),
    )  # fmt: skip


def _eq_comment(eq) -> str:
    return f"{eq.target} = {eq.expr}"


def _constant_lines(printer: NumbaPrinter) -> tuple[Line, ...]:
    """Typed constants of a kernel: ``real`` is the kernel's float type."""
    return tuple(
        Line(constant_name(c), "=", f"real({c})") for c in sorted(printer.constants)
    )


def _accumulator(spec, var, state_prev, indexed) -> str:
    if var == spec.input:
        return "dx[row, j]"
    if var in state_prev:
        return f"dprev_{state_prev[var].name}[b, j]"
    if var.name in indexed:
        return f"d_{var.name}[j]"
    return f"buf_{var.name}[b, j]"


def _external_read(spec, var, state_new, dense_sources, later_uses) -> str:
    parts = []
    if var in state_new:
        name = state_new[var].name
        parts.append(f"dnext_{name}[b, j]")
        if name == spec.output:
            parts.append("d_seq_y[row, j]")
    if var in dense_sources or var in later_uses:
        parts.append(f"buf_{var.name}[b, j]")
    return " + ".join(parts)


def _size_lines(spec: CellSpec, state_prefix: str) -> tuple[Line, ...]:
    first = spec.states[0]
    lines = [
        Line("batch", "=", f"{state_prefix}{first.name}.shape[0]"),
        Line("steps", "=", "seq_x.shape[0] // batch"),
    ]
    known = {"I"}
    for st in spec.states:
        if st.size not in known:
            lines.append(Line(_size(st.size), "=", f"{state_prefix}{st.name}.shape[1]"))
            known.add(st.size)
    for p in spec.params:
        for axis, (mult, size) in enumerate(p.shape_formula()):
            if size not in known:
                value = f"{p.name}.shape[{axis}]" + (f" // {mult}" if mult != 1 else "")
                lines.append(Line(_size(size), "=", value))
                known.add(size)
    return tuple(lines)


def _cse_lines(printer: NumbaPrinter, statements) -> list[Line]:
    """CSE over a loop's statements; each temporary is printed just before its first use."""
    exprs = [st[2] for st in statements]
    temps, reduced = sympy.cse(
        exprs, symbols=sympy.numbered_symbols("tmp"), order="canonical"
    )
    names = _temp_names(temps)
    rename = {t: sympy.Symbol(names[t]) for t, _ in temps}
    temp_expr = {rename[t]: e.xreplace(rename) for t, e in temps}
    reduced = _lift_conditionals(
        [e.xreplace(rename) for e in reduced], temp_expr, set(names.values())
    )
    lines: list[Line] = []
    emitted: set[sympy.Symbol] = set()

    def emit_temps(expr):
        for sym in sorted(expr.free_symbols, key=sympy.default_sort_key):
            if sym in temp_expr and sym not in emitted:
                emit_temps(temp_expr[sym])
                emitted.add(sym)
                lines.append(_line(printer, sym.name, "=", temp_expr[sym]))

    for (target, op, _, comment), expr in zip(statements, reduced, strict=True):
        emit_temps(expr)
        lines.append(_line(printer, target, op, expr, comment))
    return lines


def _lift_conditionals(exprs, temp_expr, taken) -> list:
    """Give every ReLU (and ReLU step) inside a larger expression a line of its own.

    A conditional expression reads best, and formats predictably, as a whole right-hand side:
    ``relu_step_c = const_1 if c > const_0 else const_0``. ``temp_expr`` gains the new
    temporaries; the expressions are returned with the conditionals replaced.
    """
    lifted: dict[sympy.Expr, sympy.Symbol] = {}

    def lift(node):
        if node in lifted:
            return lifted[node]
        inner = node.func(*(_replace(a) for a in node.args))
        arg = inner.args[0]
        name = f"{node.func.__name__}_{arg.name}" if arg.is_Symbol else ""
        if not name or name in taken:
            name = f"tmp_{node.func.__name__}{len(lifted)}"
        taken.add(name)
        lifted[node] = sympy.Symbol(name)
        temp_expr[lifted[node]] = inner
        return lifted[node]

    def _replace(expr):
        nodes = sorted(expr.atoms(relu, relu_step), key=sympy.count_ops)
        return expr.xreplace({n: lift(n) for n in nodes})

    def top(expr):
        if isinstance(expr, (relu, relu_step)):
            return expr.func(*(_replace(a) for a in expr.args))
        return _replace(expr)

    for sym in list(temp_expr):
        temp_expr[sym] = top(temp_expr[sym])
    return [top(e) for e in exprs]


def _line(printer: NumbaPrinter, target: str, op: str, expr, comment: str = "") -> Line:
    return Line(
        target, op, printer.statement(expr), comment, tuple(printer.terms(expr))
    )


def _temp_names(temps) -> dict:
    """Readable names for CSE temporaries: ``tanh_c_new`` for ``tanh(c_new)``, else ``tmpN``."""
    names = {}
    taken = set()
    for n, (sym, expr) in enumerate(temps):
        name = f"tmp{n}"
        if (
            isinstance(expr, sympy.Function)
            and len(expr.args) == 1
            and expr.args[0].is_Symbol
        ):
            candidate = f"{type(expr).__name__}_{expr.args[0].name}"
            if candidate not in taken:
                name = candidate
        taken.add(name)
        names[sym] = name
    return names
