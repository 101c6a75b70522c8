"""The Numba backend: a :class:`~derive.lower.plan.KernelPlan` printed as Numba source.

:class:`NumbaPrinter` prints SymPy expressions, one scalar per unit, for a kernel compiled for
float32 and float64 alike (overrides are ``_print_<Function>`` methods; printed code is never
edited as text afterwards). :func:`print_kernel` names every array of the plan by its role,
prints every access, loop, product and size, and returns a :class:`Kernel` that the kernel
template lays out. Nothing printed here is read again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import sympy
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.pycode import PythonCodePrinter

from ..lower.plan import (
    POINTWISE_ROWS,
    Access,
    Array,
    ArrayRole,
    Assign,
    Extent,
    KernelPlan,
    Load,
    Loop,
    Product,
    RowIndex,
    SizeSource,
    Store,
)
from ..symbolic.activations import FUNCTIONS, descriptor, missing_forms
from ..symbolic.declare import size_symbol

__all__ = [
    "KERNEL_FORMS",
    "Conditional",
    "Kernel",
    "Line",
    "NumbaPrinter",
    "constant_name",
    "count_name",
    "print_kernel",
]


def _conditional_relu(arg: str, constant) -> str:
    # "<=" rather than ">" so that NaN propagates, as in torch.relu
    zero = constant(0)
    return f"{zero} if {arg} <= {zero} else {arg}"


def _conditional_step(arg: str, constant) -> str:
    return f"{constant(1)} if {arg} > {constant(0)} else {constant(0)}"


def _conditional_elu(arg: str, constant) -> str:
    return f"{arg} if {arg} > {constant(0)} else _expm1({arg})"


def _conditional_elu_slope(arg: str, constant) -> str:
    # 1 + min(y, 0); NaN propagates through the sum
    one = constant(1)
    return f"{one} if {arg} > {constant(0)} else {arg} + {one}"


def _conditional_hard_sigmoid(arg: str, constant) -> str:
    zero, one, three = constant(0), constant(1), constant(3)
    inner = (
        f"{arg} * {constant(sympy.Rational(1, 6))} + {constant(sympy.Rational(1, 2))}"
    )
    return f"{zero} if {arg} <= -{three} else ({one} if {arg} >= {three} else {inner})"


def _conditional_hard_sigmoid_slope(arg: str, constant) -> str:
    zero = constant(0)
    inside = f"{arg} > {zero} and {arg} < {constant(1)}"
    return f"{constant(sympy.Rational(1, 6))} if {inside} else {zero}"


@dataclass(frozen=True)
class Conditional:
    """An activation printed as an expression of its argument: ``rule(arg, constant)``, with
    ``constant(value)`` printing a typed constant; ``helpers`` are the runtime functions the
    expression calls."""

    rule: Callable[[str, Callable], str]
    helpers: tuple[str, ...] = ()


#: How the Numba backend prints each activation: the name of the runtime helper it calls (the
#: package's ``_runtime.py`` defines it), or a :class:`Conditional`. One line an activation.
KERNEL_FORMS: dict[str, str | Conditional] = {
    "sigmoid": "_sigmoid",
    "tanh": "_tanh",
    "exp": "_exp",
    "log": "_log",
    "sin": "_sin",
    "cos": "_cos",
    "softplus": "_softplus",
    "relu": Conditional(_conditional_relu),
    "relu_step": Conditional(_conditional_step),
    "elu": Conditional(_conditional_elu, ("_expm1",)),
    "elu_slope": Conditional(_conditional_elu_slope),
    "hard_sigmoid": Conditional(_conditional_hard_sigmoid),
    "hard_sigmoid_slope": Conditional(_conditional_hard_sigmoid_slope),
}
missing_forms(KERNEL_FORMS, "Numba backend")


def kernel_form(expr) -> str | Conditional | None:
    """The Numba form of an activation's application (None for anything else)."""
    activation = descriptor(expr)
    return None if activation is None else KERNEL_FORMS[activation.name]


def constant_name(value: sympy.Number) -> str:
    """The name of a typed constant (``const_1``, ``const_1_2`` for 1/2)."""
    if value.is_Integer:
        return f"const_{int(value)}"
    if value.is_Rational:
        return f"const_{value.p}_{value.q}"
    raise ValueError(
        f"the kernel printer takes integer and rational constants only, got {value}"
    )


#: An operand the formatter counts as simple: a name, a number, an attribute, with its sign.
_SIMPLE = re.compile(r"-?(?:[A-Za-z_][\w.]*|\d+(?:\.\d*)?)")


def count_name(size: str) -> str:
    """The typed constant holding the number of units of ``size`` (``const_H``)."""
    return f"const_{size}"


class NumbaPrinter(PythonCodePrinter):
    """Prints one scalar per unit, for a kernel compiled for float32 and float64 alike.

    Numbers become typed constants (``const_1``, defined once per kernel as ``real(1)``), so a
    float32 kernel never widens to double; the activations call the module's inlined helpers.
    """

    printmethod = "_numbacode"

    def __init__(
        self, indexed: dict[str, str] | None = None, sizes: dict[str, str] | None = None
    ):
        super().__init__({"fully_qualified_modules": False, "standard": "python3"})
        self.indexed = indexed or {}
        self.sizes = (
            sizes or {}
        )  # a size's symbol -> the size: a typed constant (a mean's N)
        self.constants: set[sympy.Number] = set()
        self.counts: set[str] = set()  # the sizes the printed code reads as constants
        self.helpers: set[str] = set()  # the kernel helpers the printed code calls

    def _constant(self, value) -> str:
        # an exact number stays as it is: nsimplify writes a rational of large terms as a
        # product of radicals (81*2**(18/175)*... for one of many terms summed)
        value = sympy.sympify(value)
        value = value if value.is_Rational else sympy.nsimplify(value)
        if value < 0:
            return f"-{self._constant(-value)}"
        self.constants.add(value)
        return constant_name(value)

    def _print_Integer(self, expr):
        return self._constant(expr)

    _print_Rational = _print_Integer
    _print_Half = _print_Integer
    _print_One = _print_Integer
    _print_Zero = _print_Integer
    _print_NegativeOne = _print_Integer

    def _print_Float(self, expr):
        raise ValueError(
            f"a declaration must use exact numbers (Integer, Rational), not the float {expr}"
        )

    def _print_Symbol(self, expr):
        if expr.name in self.sizes:
            self.counts.add(self.sizes[expr.name])
            return count_name(self.sizes[expr.name])
        return self.indexed.get(expr.name, expr.name)

    def _print_Mul(self, expr):
        # spaces around "*" and "/", as the formatter writes them
        coeff, rest = expr.as_coeff_Mul()
        sign = ""
        if coeff.is_negative:
            sign, coeff = "-", -coeff
        factors = [] if coeff == 1 else [coeff]
        factors += list(rest.as_ordered_factors()) if rest != 1 else []
        num, den = [], []
        for f in factors:
            if f.is_Pow and f.exp.is_Rational and f.exp.is_negative:
                den.append(sympy.Pow(f.base, -f.exp))
            else:
                num.append(f)
        num_s = " * ".join(self._factor(f) for f in num) or self._constant(1)
        if not den:
            return sign + num_s
        den_s = " * ".join(self._factor(f) for f in den)
        if len(den) > 1 or den[0].is_Pow or den[0].is_Number:
            den_s = f"({den_s})"
        return f"{sign}{num_s} / {den_s}"

    def _factor(self, factor) -> str:
        if factor.is_Number:
            return self._print(factor)
        return self.parenthesize(factor, PRECEDENCE["Mul"], strict=False)

    def _print_Pow(self, expr, rational=False):
        base, exponent = expr.args
        if exponent.is_Integer and 2 <= exponent <= 4:
            factor = self.parenthesize(base, PRECEDENCE["Mul"], strict=False)
            return " * ".join([factor] * int(exponent))
        if exponent.is_Rational and exponent.is_negative:
            return self._print_Mul(sympy.Mul(1, expr, evaluate=False))
        if exponent == sympy.Rational(1, 2):
            return f"np.sqrt({self._print(base)})"
        prec = precedence(expr)
        base, exponent = (
            self.parenthesize(base, prec, strict=True),
            self._print(exponent),
        )
        if not _SIMPLE.fullmatch(exponent):
            exponent = f"({exponent})"
        # the formatter hugs ``**`` only between simple operands (names, numbers)
        hug = _SIMPLE.fullmatch(base) and _SIMPLE.fullmatch(exponent)
        return f"{base}**{exponent}" if hug else f"{base} ** {exponent}"

    def statement(self, expr) -> str:
        """``expr`` printed as the whole right-hand side of an assignment."""
        if isinstance(kernel_form(expr), Conditional):
            return self._conditional(expr)
        return self.doprint(expr)

    def _conditional(self, expr) -> str:
        form = kernel_form(expr)
        self.helpers.update(form.helpers)
        return form.rule(self._print(expr.args[0]), self._constant)

    def _print_activation(self, expr, exp=None):
        form = kernel_form(expr)
        if isinstance(form, Conditional):
            return f"({self._conditional(expr)})"
        self.helpers.add(form)
        return f"{form}({self._print(expr.args[0])}, {self._constant(1)})"

    def _print_Function(self, expr):
        # an activation added to FUNCTIONS after this module's import has no _print_<name>
        if descriptor(expr) is not None:
            return self._print_activation(expr)
        return super()._print_Function(expr)


for _activation in FUNCTIONS.values():
    setattr(NumbaPrinter, f"_print_{_activation.function.__name__}",
            NumbaPrinter._print_activation)  # fmt: skip


# -- the plan, printed ---------------------------------------------------------------------------

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
}  # fmt: skip
_ROWS = {RowIndex.STEP: "row", RowIndex.NEXT: "row + batch", RowIndex.BATCH: "b"}
_EXTENTS = {Extent.STEPS: "steps * batch", Extent.STEPS_AND_INITIAL: "(steps + 1) * batch",
            Extent.BATCH: "batch"}  # fmt: skip


@dataclass(frozen=True)
class Line:
    """One printed statement: ``target op value``; ``comment`` heads a block (the equation it
    serves)."""

    target: str
    op: str
    value: str
    comment: str = ""


@dataclass(frozen=True)
class PrintedLoop:
    size: str
    lines: tuple[Line, ...]
    zero: tuple[str, ...] = ()  # elements set to zero before each row's units
    #: a view of each block of a row, taken before the row's units (see block_views)
    views: tuple[Line, ...] = ()


@dataclass(frozen=True)
class PrintedProduct:
    """A product's pieces as the template places them."""

    key: str
    weight: str
    bias: str | None
    rows: str  # the weight's row slice, empty for all rows
    matrix: str  # the matrix A of ``source @ A.T``: the weight's rows, or ``weight.T``
    matrix_t: str  # A.T as written without a double transpose
    gradient: str  # the operands of the weight gradient's product: ``dk.T, source`` (or swapped)
    width: str
    hoisted: bool
    source_seq: str  # the source over all steps
    source_step: str  # the source at step t
    adjoint: str
    source_adjoint: str


@dataclass(frozen=True)
class PrintedStage:
    products: tuple[PrintedProduct, ...]
    forward: tuple[PrintedLoop, ...]
    backward: tuple[PrintedLoop, ...]


@dataclass(frozen=True)
class Kernel:
    """Everything the kernel template needs, printed."""

    states: tuple[str, ...]
    params: tuple[str, ...]
    forward_sizes: tuple[Line, ...]
    backward_sizes: tuple[Line, ...]
    forward_constants: tuple[Line, ...]
    backward_constants: tuple[Line, ...]
    stages: tuple[PrintedStage, ...]
    sequences: tuple[tuple[str, str], ...]  # (name, shape) of each array allocated
    saves: tuple[tuple[str, str], ...]
    workspaces: tuple[tuple[str, str], ...]
    adjoints: tuple[tuple[str, str], ...]
    accumulators: tuple[tuple[str, str], ...]
    forward_args: tuple[str, ...]
    forward_returns: tuple[str, ...]
    backward_args: tuple[str, ...]
    backward_returns: tuple[str, ...]
    dx_in_loops: bool  # a pointwise loop adds to the input's gradient
    #: (vector, size, gradient) of every zero-dimensional gradient summed unit by unit
    unit_sums: tuple[tuple[str, str, str], ...] = ()
    helpers: frozenset[str] = frozenset()  # the activation helpers the kernels call
    #: the forward that keeps no tape: its stages, the arrays it keeps (name, shape), its
    #: workspaces and what it returns
    inference_stages: tuple[PrintedStage, ...] = ()
    inference_saves: tuple[tuple[str, str], ...] = ()
    inference_workspaces: tuple[tuple[str, str], ...] = ()
    inference_returns: tuple[str, ...] = ()

    @property
    def products(self) -> tuple[PrintedProduct, ...]:
        return tuple(p for stage in self.stages for p in stage.products)


def array_name(array: Array) -> str:
    return _NAMES[array.role].format(array.owner)


def _size(name: str) -> str:
    return f"size_{name}"


def _multiple(count: int, size: str | None) -> str:
    """``count`` blocks of ``size`` as printed (a size of None counts columns): empty for
    none."""
    if count == 0:
        return ""
    if size is None:
        return str(count)
    return _size(size) if count == 1 else f"{count} * {_size(size)}"


def _width(width) -> str:
    return " + ".join(_multiple(mult, size) for mult, size in width)


def _shape(array: Array) -> str:
    return f"({_EXTENTS[array.extent]}, {_width(array.width)})"


def _offset(block: int, size: str) -> str:
    return "j" if block == 0 else f"{_multiple(block, size)} + j"


def access(a: Access, views: dict[tuple[Array, RowIndex], str] | None = None) -> str:
    """``a`` as printed; an access of a viewed row (``views``) reads its block's view."""
    name = array_name(a.array)
    if views and (a.array, a.row) in views:
        return f"{views[a.array, a.row]}_{a.block}[j]"
    if a.row == RowIndex.UNIT:
        return f"{name}[{_offset(a.block, a.block_size)}]"
    if a.row == RowIndex.WHOLE:
        return f"{name}[()]"
    if a.array.per_row:  # one number per row: the same element for every unit
        return f"{name}[{_ROWS[a.row]}, 0]"
    return f"{name}[{_ROWS[a.row]}, {_offset(a.block, a.block_size)}]"


def _rows(rows) -> str:
    """The printed row slice of a product's weight (empty when it takes every row)."""
    if rows.whole:
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


def _source(a: Access) -> tuple[str, str]:
    """A product's source over all steps and at step t (rows ``first:last``)."""
    name = array_name(a.array)
    if a.array.extent == Extent.BATCH:  # a workspace: the step's rows alone
        return name, name
    if a.array.role != ArrayRole.SEQUENCE:
        return name, f"{name}[first:last]"
    if a.row == RowIndex.NEXT:
        return f"{name}[batch:]", f"{name}[last : last + batch]"
    return f"{name}[:-batch]", f"{name}[first:last]"


def _product(p: Product) -> PrintedProduct:
    rows = _rows(p.rows)
    seq, step = _source(p.source)
    weight, adjoint = array_name(p.weight), array_name(p.adjoint)
    if p.dense.transposed:  # source @ weight: rows are whole
        matrix, matrix_t, gradient = f"{weight}.T", weight, f"{seq}.T, {adjoint}"
    else:
        matrix, matrix_t = f"{weight}{rows}", f"{weight}{rows}.T"
        gradient = f"{adjoint}.T, {seq}"
    return PrintedProduct(
        key=p.result.owner, weight=weight, bias=array_name(p.bias) if p.bias else None,
        rows=rows, matrix=matrix, matrix_t=matrix_t, gradient=gradient,
        width=_multiple(len(p.dense.blocks), p.dense.block_size), hoisted=p.hoisted,
        source_seq=seq, source_step=step, adjoint=adjoint,
        source_adjoint=array_name(p.source_adjoint),
    )  # fmt: skip


def _line(printer: NumbaPrinter, target: str, op: str, expr, comment: str = "") -> Line:
    return Line(target, op, printer.statement(expr), comment)


def unit_sum_name(target: Access, size: str) -> str:
    """The vector, one element per unit, in which a loop over ``size`` units sums its terms
    of the zero-dimensional ``target``.

    ``d_alpha[()] += ...`` for every unit makes each iteration wait on the one before, and
    LLVM leaves the whole loop scalar; ``sum_d_alpha_H[j] += ...`` is independent across units,
    and the kernel adds the units up once after the time loop.
    """
    return f"sum_{array_name(target.array)}_{size}"


def _summed_by_unit(st) -> bool:
    """Whether ``st`` adds to a zero-dimensional array (a gradient summed by unit)."""
    return isinstance(st, Store) and st.target.row == RowIndex.WHOLE and st.accumulate


def _statement(printer: NumbaPrinter, st, views, size: str) -> Line:
    if isinstance(st, Load):
        return Line(
            st.target.name, "=", " + ".join(access(a, views) for a in st.sources)
        )
    if isinstance(st, Assign):
        comment = ""
        if st.equation is not None:
            comment = f"adjoint of {st.equation.target} = {st.equation.expr}"
        return _line(printer, st.target.name, "=", st.expr, comment)
    if _summed_by_unit(st):
        return _line(printer, f"{unit_sum_name(st.target, size)}[j]", "+=", st.expr)
    return _line(
        printer, access(st.target, views), "+=" if st.accumulate else "=", st.expr
    )


def _accesses(st) -> tuple[Access, ...]:
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
    touched = [a for st in loop.body for a in _accesses(st)
               if a.row in _ROWS and not a.array.per_row]  # fmt: skip
    blocked = {(a.array, a.row) for a in touched if a.block}
    return {
        key: f"row_{array_name(key[0])}" + ("_next" if key[1] == RowIndex.NEXT else "")
        for key in sorted(blocked, key=lambda k: (array_name(k[0]), k[1].value))
    }


def _view_lines(loop: Loop, views) -> tuple[Line, ...]:
    blocks = {(views[a.array, a.row], a.block): a for st in loop.body for a in _accesses(st)
              if (a.array, a.row) in views}  # fmt: skip
    lines = []
    for (stem, block), a in sorted(blocks.items(), key=lambda item: item[0]):
        start, stop = _multiple(block, a.block_size), _multiple(block + 1, a.block_size)
        where = f"{array_name(a.array)}[{_ROWS[a.row]}, {_slice(start, stop)}]"
        lines.append(Line(f"{stem}_{block}", "=", where))
    return tuple(lines)


def _loop(printer: NumbaPrinter, loop: Loop) -> PrintedLoop:
    views = block_views(loop)
    return PrintedLoop(_size(loop.size),
                       tuple(_statement(printer, st, views, loop.size) for st in loop.body),
                       tuple(access(a) for a in loop.zero), _view_lines(loop, views))  # fmt: skip


def _size_lines(sources: tuple[SizeSource, ...], batch_from: str) -> tuple[Line, ...]:
    lines = [Line("batch", "=", f"{batch_from}.shape[0]"),
             Line("steps", "=", "seq_x.shape[0] // batch")]  # fmt: skip
    for s in sources:
        divide = f" // {s.divisor}" if s.divisor != 1 else ""
        lines.append(
            Line(_size(s.size), "=", f"{array_name(s.array)}.shape[{s.axis}]{divide}")
        )
    return tuple(lines)


def _constant_lines(printer: NumbaPrinter) -> tuple[Line, ...]:
    """Typed constants of a kernel: ``real`` is the kernel's float type."""
    numbers = [
        Line(
            constant_name(c), "=", f"real({c.p} / {c.q})" if c.q != 1 else f"real({c})"
        )
        for c in sorted(printer.constants)
    ]
    counts = [Line(count_name(size), "=", f"real({_size(size)})")
              for size in sorted(printer.counts)]  # fmt: skip
    return tuple(numbers + counts)


def _allocations(arrays) -> tuple[tuple[str, str], ...]:
    return tuple((array_name(a), _shape(a)) for a in arrays)


def print_kernel(plan: KernelPlan) -> Kernel:
    """Print ``plan`` for the kernel template."""
    indexed = {  # vector and scalar parameters are read in place
        sym.name: access(Access(Array(ArrayRole.PARAMETER, p.name), POINTWISE_ROWS[p.kind], block,
                                p.block_size))
        for sym, (p, block) in plan.spec.pointwise.items()
    }  # fmt: skip
    sizes = {size_symbol(s.name).name: s.name for s in plan.spec.sizes}
    forward, backward = NumbaPrinter(indexed, sizes), NumbaPrinter(indexed, sizes)

    def printed(stages):
        return tuple(
            PrintedStage(tuple(_product(p) for p in stage.products),
                         tuple(_loop(forward, lp) for lp in stage.forward),
                         tuple(_loop(backward, lp) for lp in stage.backward))
            for stage in stages
        )  # fmt: skip

    stages = printed(plan.stages)
    inference = plan.inference
    inference_stages = printed(inference.stages)  # before the constants are listed
    dx_in_loops = any(
        isinstance(st, Store) and st.target.array.role == ArrayRole.INPUT_ADJOINT
        for stage in plan.stages for loop in stage.backward for st in loop.body
    )  # fmt: skip
    unit_sums = tuple(sorted({
        (unit_sum_name(st.target, loop.size), _size(loop.size), array_name(st.target.array))
        for stage in plan.stages for loop in stage.backward for st in loop.body
        if _summed_by_unit(st)
    }))  # fmt: skip
    first = plan.spec.states[0].name

    def names(arrays):
        return tuple(array_name(a) for a in arrays)

    return Kernel(
        states=plan.spec.state_names, params=plan.spec.param_names,
        forward_sizes=_size_lines(plan.forward_sizes, f"init_{first}"),
        backward_sizes=_size_lines(plan.backward_sizes, f"dfinal_{first}"),
        forward_constants=_constant_lines(forward), backward_constants=_constant_lines(backward),
        stages=stages, sequences=_allocations(plan.sequences), saves=_allocations(plan.tape),
        workspaces=_allocations(plan.workspaces), adjoints=_allocations(plan.adjoints),
        accumulators=_allocations(plan.accumulators),
        forward_args=names(plan.forward_args) + plan.hypers,
        forward_returns=names(plan.forward_returns),
        backward_args=names(plan.backward_args) + plan.hypers,
        backward_returns=names(plan.backward_returns), dx_in_loops=dx_in_loops,
        unit_sums=unit_sums,
        inference_stages=inference_stages,
        inference_saves=_allocations(inference.tape),
        inference_workspaces=_allocations(inference.workspaces),
        inference_returns=names(inference.returns),
        helpers=frozenset(forward.helpers | backward.helpers),
    )  # fmt: skip
