"""The plan: one derived cell step scheduled into arrays, loops and products, as plain data.

Nothing here is printed code. A value is a SymPy symbol with a :class:`Value` record saying what
it is; an array is an :class:`Array` with a role, an owner and a shape in the cell's sizes; an element of
an array that a loop iteration reads or writes is an :class:`Access`; a loop is a list of
:class:`Load`, :class:`Assign` and :class:`Store` statements over SymPy expressions. The kernels
around the step are :class:`Schedule` nodes: what runs before the time loop, the
:class:`TimeLoop` (its direction, the state bookkeeping at a step's edges that masks rows past
their length, :class:`Edge`), and what runs after it; a dense product and its transpose rules
are :class:`MatMul` nodes, a sum over units, rows or steps a :class:`Sum`, and every
accumulating :class:`Store` says what it reduces over (:class:`Reduction`). A backend (the Numba
emitter, the derivation document) names and prints all of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import sympy

from ..symbolic.declare import CellSpec, Dense, Equation

__all__ = [
    "Access",
    "Array",
    "ArrayRole",
    "Assign",
    "BlockRange",
    "Derivation",
    "Direction",
    "Edge",
    "EdgeKind",
    "Extent",
    "Inference",
    "KernelPlan",
    "Load",
    "Loop",
    "MatMul",
    "Operand",
    "POINTWISE_ROWS",
    "Product",
    "ROW",
    "Reduction",
    "Role",
    "RowIndex",
    "Schedule",
    "SizeSource",
    "Stage",
    "Store",
    "Sum",
    "TimeLoop",
    "Value",
]


class Role(Enum):
    """What a symbol of the step stands for."""

    INPUT = "input"  # x_t
    PREVIOUS = "previous"  # a state at t-1
    NEW = "new"  # a state at t
    VECTOR = "vector"  # a per-unit parameter
    SCALAR = "scalar"  # a learned number shared by every unit
    HYPER = "hyper"  # a number chosen at run time, a scalar argument of both kernels
    MASK = "mask"  # a random mask, an input of both kernels like x: no adjoint
    ROW = "row"  # a mean over the units: one number per batch row and step
    SIZE = "size"  # the number of units of a size, which a mean divides by
    PROJECTED = "projected"  # one block of a dense projection
    INTERMEDIATE = "intermediate"  # the target of an equation that is not a state
    ADJOINT = "adjoint"  # the complete adjoint of a value within the step
    INCOMING = "incoming"  # what reaches a value's adjoint from outside its loop
    TEMPORARY = "temporary"  # a common subexpression


@dataclass(frozen=True)
class Value:
    """A symbol of the step: its role, its size (equal sizes folded), the forward stage that
    computes it, and for an adjoint the value it is the adjoint of."""

    symbol: sympy.Symbol
    role: Role
    size: str | None  # None for a number (scalar, hyperparameter, mean, size)
    stage: int = 0
    primal: sympy.Symbol | None = None


class ArrayRole(Enum):
    """What a kernel array holds."""

    INPUT = "input"  # x over all steps, (T B, I)
    MASK = "mask"  # a random mask: (T B, size) drawn per step, (B, size) per sequence
    LENGTHS = "lengths"  # each batch row's number of steps
    INITIAL = "initial"  # a state's initial value, (B, size)
    PARAMETER = "parameter"
    SEQUENCE = (
        "sequence"  # a state over all steps after its initial value, ((T + 1) B, size)
    )
    TAPE = "tape"  # a value saved per step for the backward pass, (T B, size)
    WORKSPACE = (
        "workspace"  # a value carried between the loops of one forward step, (B, size)
    )
    PROJECTION = (
        "projection"  # a projection's result: (T B, rows) hoisted, else (B, rows)
    )
    PROJECTION_ADJOINT = (
        "projection adjoint"  # the adjoint of a projection's result, (T B, rows)
    )
    ACCUMULATOR = (
        "accumulator"  # an adjoint gathered from several loops of one step, (B, size)
    )
    OUTPUT_ADJOINT = "output adjoint"  # dL/dy over all steps, (T B, output size)
    FINAL_ADJOINT = "final adjoint"  # dL/d(final state), (B, size)
    NEXT_ADJOINT = "next adjoint"  # what reaches a state from the step after, (B, size)
    PREVIOUS_ADJOINT = (
        "previous adjoint"  # what this step sends to a state at t-1, (B, size)
    )
    INPUT_ADJOINT = "input adjoint"  # dL/dx over all steps, (T B, I)
    PARAMETER_GRADIENT = "parameter gradient"
    UNIT_SUM = (
        "unit sum"  # a scalar's gradient, summed unit by unit over the steps, (size,)
    )
    ROW_SUM = (
        "row sum"  # an adjoint's rows summed over every step, for the biases it serves
    )


class Extent(Enum):
    """How many rows an array has."""

    STEPS = "steps"  # one per (step, batch row)
    STEPS_AND_INITIAL = (
        "steps and initial"  # one per (step, batch row), the initial state first
    )
    BATCH = "batch"  # one per batch row
    NONE = "none"  # a parameter: its own shape


@dataclass(frozen=True)
class Array:
    """A kernel array: ``role`` and ``owner`` (the state, parameter, value or projection it
    belongs to) identify it; ``width`` is its columns as ``(multiplier, size)`` terms (for a
    parameter, its whole shape). A size of None counts columns: ``((1, None),)`` (``ROW``) is
    the one column of a value per batch row, such as a mean."""

    role: ArrayRole
    owner: str
    extent: Extent = field(default=Extent.NONE, compare=False)
    width: tuple[tuple[int, str | None], ...] = field(default=(), compare=False)

    @property
    def per_row(self) -> bool:
        """One number per row: every unit of a loop reads the same element."""
        return self.width == ROW


#: The width of an array of one number per row.
ROW: tuple[tuple[int, None]] = ((1, None),)


class RowIndex(Enum):
    """Which row of an array a loop iteration over (step t, batch row b, unit j) touches."""

    STEP = "step"  # the row of (t, b)
    NEXT = "next"  # the row of (t + 1, b) in a state sequence: the state at t
    BATCH = "batch"  # the row b of a per-step array
    UNIT = "unit"  # a one-dimensional array, indexed by the unit alone
    WHOLE = "whole"  # a zero-dimensional array: the same element for every iteration


#: How a loop over units reads a parameter that pointwise equations use, by its kind.
POINTWISE_ROWS = {"vector": RowIndex.UNIT, "scalar": RowIndex.WHOLE}


@dataclass(frozen=True)
class Access:
    """The element a loop iteration touches: unit ``j`` of block ``block`` (blocks of
    ``block_size``) in the chosen row of ``array``."""

    array: Array
    row: RowIndex
    block: int = 0
    block_size: str = "H"


@dataclass(frozen=True)
class Load:
    """``target = sum of sources``: a value read from arrays."""

    target: sympy.Symbol
    sources: tuple[Access, ...]


@dataclass(frozen=True)
class Assign:
    """``target = expr`` computed in the loop; ``equation`` is the forward equation whose
    adjoint this is (None elsewhere)."""

    target: sympy.Symbol
    expr: sympy.Expr
    equation: Equation | None = None


class Reduction(Enum):
    """Which iterations of the loops around an accumulating statement add to the same element:
    what it sums over besides the terms of other statements. A backend that runs those
    iterations at once must reduce them (a parallel one would race on the element)."""

    NONE = "none"  # each (row, unit) its own element: terms of several statements
    UNITS = "units"  # a row's units: a mean
    ROWS = "rows"  # every batch row of every step: a vector's gradient, a bias's
    SEQUENCE = "sequence"  # every unit, row and step: a scalar's gradient


@dataclass(frozen=True)
class Store:
    """``target = expr`` (or ``+=`` when ``accumulate``) into an array element; ``over`` says
    which iterations of the loops around it add to the same element."""

    target: Access
    expr: sympy.Expr
    accumulate: bool = False
    over: Reduction = Reduction.NONE


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
    """A fused pointwise loop over the batch rows and the ``size`` units of one stage; the
    elements of ``zero`` (one per row: the means the loop sums over its units) are set to zero
    before a row's units."""

    stage: int
    size: str
    body: tuple[Load | Assign | Store, ...]
    derivation: tuple[Derivation, ...] = ()
    zero: tuple[Access, ...] = ()


@dataclass(frozen=True)
class BlockRange:
    """Rows ``first .. first + count`` (in blocks of ``size``) of a parameter of ``total``
    blocks."""

    first: int
    count: int
    total: int
    size: str

    @property
    def whole(self) -> bool:
        return self.first == 0 and self.count == self.total


@dataclass(frozen=True)
class Product:
    """A dense product ``source @ weight[rows].T (+ bias[rows])`` (``source @ weight`` when
    ``dense.transposed``) and its transpose rules.

    ``source`` reads the source at each step (``row`` STEP or NEXT of its array);
    ``hoisted`` products read the input and run over all steps at once."""

    dense: Dense
    weight: Array
    bias: Array | None
    rows: BlockRange
    stage: int
    hoisted: bool
    source: Access
    result: Array
    adjoint: Array
    source_adjoint: Array


@dataclass(frozen=True)
class Operand:
    """An array in a product: ``rows`` of a parameter (None: all of it), ``transposed`` or
    not; an array of the steps read at ``row`` (STEP: the rows of step t, NEXT: a state's
    sequence one step on), by a product inside the time loop at one step, else at every
    step."""

    array: Array
    transposed: bool = False
    rows: BlockRange | None = None
    row: RowIndex = RowIndex.STEP


@dataclass(frozen=True)
class MatMul:
    """``out = left @ right (+ bias)``, or ``+=`` when ``accumulate``: a projection (``rule``
    ``"forward"``) or one of its transpose rules (``"source"``: the adjoint sent to what it
    reads, ``"weight"``: the weight's gradient), all made by :func:`derive.lower.kernels.
    transpose_rules`. ``per_step``: inside the time loop, on one step's rows; else over every
    step at once."""

    product: Product
    rule: str
    out: Operand
    left: Operand
    right: Operand
    bias: Operand | None = None
    accumulate: bool = False
    per_step: bool = False


@dataclass(frozen=True)
class Sum:
    """``target += source`` summed over ``over``: a bias's gradient (an adjoint's rows over
    every step, ``ROWS``), a scalar's gradient (its unit sums over the units, ``UNITS``), or
    (``NONE``) a sum made once added where it is needed. The sum is skipped where ``unless``
    is empty (a cell declared without biases)."""

    target: Operand
    source: Operand
    over: Reduction
    unless: Array | None = None


class EdgeKind(Enum):
    """State bookkeeping at the edges of a step: how the time loop carries the states and
    masks the rows past their length."""

    START = "start"  # a state's sequence begins with its initial value
    CARRY = "carry"  # after a step, a row past its length keeps its state
    PASS_THROUGH = (
        "pass_through"  # before a step backward, such a row passes its state's
    )
    # gradient to the step before and the step sees zeros
    HAND_BACK = (
        "hand_back"  # after a step backward, its state gradients reach the step before
    )
    CLEAR = "clear"  # an accumulator set to zero for the step


@dataclass(frozen=True)
class Edge:
    """One bookkeeping action of ``kind`` on a state's arrays (START: sequence and initial
    value; CARRY: sequence; PASS_THROUGH, HAND_BACK: incoming and outgoing adjoints) or an
    accumulator (CLEAR)."""

    kind: EdgeKind
    arrays: tuple[Array, ...]


class Direction(Enum):
    FORWARD = "forward"  # t = 0 .. T-1
    BACKWARD = "backward"  # t = T-1 .. 0


@dataclass(frozen=True)
class TimeLoop:
    """The loop over the steps: ``enter`` and ``leave`` run at each step's edges, ``body`` is
    the step (products and pointwise loops, in order)."""

    direction: Direction
    enter: tuple[Edge, ...]
    body: tuple[Loop | MatMul, ...]
    leave: tuple[Edge, ...]


@dataclass(frozen=True)
class Schedule:
    """One kernel: what runs before the time loop, the loop, and what runs after it."""

    before: tuple[Edge | MatMul, ...]
    loop: TimeLoop
    after: tuple[Sum | MatMul, ...] = ()

    @property
    def nodes(self) -> tuple:
        """Every node, the time loop's in its place."""
        loop = self.loop
        return (*self.before, *loop.enter, *loop.body, *loop.leave, *self.after)


@dataclass(frozen=True)
class Stage:
    """Projections first, then the pointwise loops that read them (forward); backward runs the
    loops, then the projections' transpose rules."""

    index: int
    products: tuple[Product, ...]
    forward: tuple[Loop, ...]
    backward: tuple[Loop, ...]


@dataclass(frozen=True)
class SizeSource:
    """A size read from an array's shape: ``array.shape[axis] // divisor``."""

    size: str
    array: Array
    axis: int
    divisor: int = 1


@dataclass(frozen=True)
class Inference:
    """The forward kernel that keeps no tape: its stages (products and forward loops, no
    backward), the arrays it keeps per step (the outputs, when they are not a state's), its
    per-step workspaces and what it returns (the state sequences, then those arrays)."""

    stages: tuple[Stage, ...]
    tape: tuple[Array, ...]
    workspaces: tuple[Array, ...]
    returns: tuple[Array, ...]
    output: Array
    schedule: Schedule | None = None


@dataclass(frozen=True)
class KernelPlan:
    """A cell's forward and backward kernels, scheduled."""

    spec: CellSpec
    values: dict[sympy.Symbol, Value]
    stages: tuple[Stage, ...]
    sequences: tuple[Array, ...]
    tape: tuple[Array, ...]
    saved: tuple[sympy.Symbol, ...]  # the tape's values, in the tape's order
    workspaces: tuple[Array, ...]
    adjoints: tuple[Array, ...]  # projection adjoints, each once
    accumulators: tuple[Array, ...]
    forward_args: tuple[Array, ...]
    forward_returns: tuple[Array, ...]
    backward_args: tuple[Array, ...]
    backward_returns: tuple[Array, ...]
    forward_sizes: tuple[SizeSource, ...]
    backward_sizes: tuple[SizeSource, ...]
    saved_per_step: tuple[
        tuple[int, str], ...
    ]  # (count, size) of saved scalars per batch row
    hypers: tuple[
        str, ...
    ] = ()  # scalar arguments after the arrays, in declaration order
    # the forward's array of the outputs: a state's sequence, or the tape
    output: Array | None = None
    inference: Inference | None = None
    forward: Schedule | None = None
    backward: Schedule | None = None
    # the vectors in which a scalar's gradient is summed unit by unit (zeroed before the loop)
    unit_sums: tuple[Array, ...] = ()

    @property
    def products(self) -> tuple[Product, ...]:
        return tuple(p for stage in self.stages for p in stage.products)
