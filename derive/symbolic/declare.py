"""The declaration language: a cell's forward step, written once, as plain frozen data.

A cell declares its sizes, its input, its carried states, its parameters (with shapes and named
row blocks), its dense projections (``W v + b`` for a vector ``v``) and its pointwise equations in
SymPy, one scalar per hidden unit::

    cell = Cell("lstm", title="Long short-term memory", citation="...")
    x = cell.input()
    h, c = cell.state("h"), cell.state("c")
    W_ih, W_hh, b_ih, b_hh = cell.pytorch_params("i f g o")
    wx = cell.dense(W_ih, x, bias=b_ih)
    wh = cell.dense(W_hh, h.prev, bias=b_hh)
    i = cell.gate("i", sigmoid(wx.i + wh.i))
    ...
    cell.update(c, f * c.prev + i * g)
    cell.update(h, o * tanh(c.new))
    spec = cell.build()

``build`` checks the declaration and returns a :class:`CellSpec`, which nothing mutates. A mistake
raises :class:`DeclarationError` naming the declaration's line and how to fix it.
"""

from __future__ import annotations

import builtins
import hashlib
import keyword
import math
import os
import re
import sys
import unicodedata
import warnings
from dataclasses import dataclass, field, replace

import sympy

from ..backends import reserved
from .activations import FUNCTIONS, GATE_ACTIVATIONS, descriptor, relu, tanh
from .init import APPLIES_TO, Init, ones, zeros

__all__ = [
    "Cell",
    "CellSpec",
    "DeclarationError",
    "Dense",
    "Equation",
    "Mask",
    "Relation",
    "GateRangeWarning",
    "Hyper",
    "size_symbol",
    "Param",
    "Size",
    "State",
]


class DeclarationError(ValueError):
    """A cell declaration that cannot be derived; the message names the line and the fix."""


class GateRangeWarning(UserWarning):
    """A gate whose activation does not map into [0, 1]."""


def _caller() -> str:
    """``file:line`` of the declaration statement that called into the builder."""
    frame = sys._getframe(1)
    here = os.path.dirname(__file__)
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == here:
        frame = frame.f_back
    if frame is None:  # pragma: no cover - only when called from this module itself
        return "<declaration>"
    return place(frame.f_code.co_filename, frame.f_lineno)


def place(filename: str, line: int | None = None) -> str:
    """How an error names a line of a declaration: ``mycell.py:12``, or ``Cell In[3], line 12``
    for the code of a notebook cell (IPython's name for it, as its tracebacks give it)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    name = getattr(getattr(shell, "compile", None), "format_code_name", None)
    label = name(filename) if name is not None else None
    if label:
        return " ".join(label) + ("" if line is None else f", line {line}")
    base = os.path.basename(filename)
    return base if line is None else f"{base}:{line}"


@dataclass(frozen=True)
class Size:
    """A named dimension: ``I`` (input), ``H`` (hidden), or one a cell adds (``P``)."""

    name: str
    argument: str
    latex: str
    where: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True)
class Param:
    """A trainable tensor.

    ``kind`` is ``"weight"`` (rows: ``len(blocks)`` blocks of ``block_size``; columns ``cols``),
    ``"bias"`` (``len(blocks)`` blocks of ``block_size``), ``"vector"`` (one value per unit of
    ``block_size``, used inside pointwise equations, such as a peephole) or ``"scalar"`` (one
    number shared by every unit, a zero-dimensional array; its gradient sums over the units).
    """

    name: str
    kind: str
    blocks: tuple[str, ...]
    block_size: str | None  # None for a scalar
    cols: str | None
    latex: str | None = (
        None  # as declared; the LaTeX emitter names what is not declared
    )
    where: str = field(default="", compare=False)
    #: how each block starts (:mod:`derive.symbolic.init`), one rule per block; empty: every
    #: block from PyTorch's U(-1/sqrt(H), 1/sqrt(H))
    init: tuple[Init, ...] = ()

    @property
    def rules(self) -> tuple[Init, ...]:
        """Each block's rule, the default where none is declared."""
        return self.init or (Init("uniform"),) * len(self.blocks)

    def shape(self, sizes: dict[str, int]) -> tuple[int, ...]:
        return tuple(mult * sizes[size] for mult, size in self.shape_formula())

    def shape_formula(self) -> tuple[tuple[int, str], ...]:
        """Each dimension as ``(multiplier, size name)``; none for a scalar."""
        if self.kind == "scalar":
            return ()
        rows = ((len(self.blocks), self.block_size),)
        return rows + ((1, self.cols),) if self.cols else rows

    @property
    def symbol(self) -> sympy.Symbol:
        """The symbol of a vector parameter's unit, or of a scalar parameter."""
        return sympy.Symbol(self.name)

    @property
    def symbols(self) -> tuple[sympy.Symbol, ...]:
        """The symbols pointwise equations read a vector or scalar parameter by: its own name,
        or ``{name}_{block}`` for each block of a blocked vector."""
        if self.blocks == (self.name,):
            return (self.symbol,)
        return tuple(sympy.Symbol(f"{self.name}_{b}") for b in self.blocks)

    @property
    def T(self) -> Transposed:  # noqa: N802 (NumPy's name)
        """The weight read transposed, for :meth:`Cell.dense` (AntisymmetricRNN's ``W - Wᵀ``)."""
        return Transposed(self)


@dataclass(frozen=True)
class Transposed:
    """``W.T``: a weight that a projection reads transposed."""

    param: Param


@dataclass(frozen=True)
class VectorBlocks:
    """A blocked vector parameter as a declaration reads it: ``bias.z`` is block ``z``'s unit."""

    param: Param

    def __getattr__(self, block: str) -> sympy.Symbol:
        param = self.__dict__.get("param")
        if block.startswith("__") or param is None or block not in param.blocks:
            raise AttributeError(block)
        return sympy.Symbol(f"{param.name}_{block}")


@dataclass(frozen=True)
class Hyper:
    """A hyperparameter: one number chosen at run time (``dt``, ``gamma``), not trained. It is a
    keyword argument of ``forward`` with the declared ``default``, and a symbol in the
    documents."""

    name: str
    default: float
    latex: str | None = None
    where: str = field(default="", compare=False)

    @property
    def symbol(self) -> sympy.Symbol:
        return sympy.Symbol(self.name)


#: What a layer fills a mask with, by its kind: (in training, in evaluation).
MASK_KINDS = {
    # Krueger et al. 2017: 1 keeps the previous value; the expectation p in evaluation
    "zoneout": ("Bernoulli(p), 1 keeps the previous value", "p, the expectation"),
    # Gal and Ghahramani 2016: one mask per sequence, scaled so that its expectation is 1
    "dropout": ("Bernoulli(1 - p) / (1 - p), drawn once per sequence", "1"),
}
#: When a mask is drawn: its array has a row per (step, batch row) or per batch row.
MASK_DRAWS = ("step", "sequence")


@dataclass(frozen=True)
class Mask:
    """A random mask of the step: an input of both kernels like ``x``, one number per unit and
    batch row, drawn per ``step`` or per ``sequence``; no gradient reaches it. ``kind`` says
    what a layer fills it with (:data:`MASK_KINDS`): ``zoneout`` (Krueger et al. 2017) or
    ``dropout`` (variational, Gal and Ghahramani 2016)."""

    name: str
    size: str
    per: str
    kind: str
    latex: str | None = None
    where: str = field(default="", compare=False)
    of: str = ""  # the state (or value) it masks, which the documents subscript it by

    @property
    def symbol(self) -> sympy.Symbol:
        return sympy.Symbol(self.name)


@dataclass(frozen=True)
class State:
    """A carried state: ``prev`` is its value at ``t-1``, ``new`` at ``t``."""

    name: str
    size: str
    latex: str | None = None
    where: str = field(default="", compare=False)

    @property
    def prev(self) -> sympy.Symbol:
        return sympy.Symbol(f"{self.name}_prev")

    @property
    def new(self) -> sympy.Symbol:
        return sympy.Symbol(f"{self.name}_new")


@dataclass(frozen=True)
class Dense:
    """``W[blocks] @ source + bias[blocks]`` (or ``W.T @ source``): one scalar symbol per block
    and unit."""

    name: str
    weight: str
    source: sympy.Symbol
    bias: str | None
    blocks: tuple[str, ...]
    first_block: int
    block_size: str
    where: str = field(default="", compare=False)
    # ``weight.T @ source``: one block of ``weight.cols`` units
    transposed: bool = False

    @property
    def symbols(self) -> tuple[sympy.Symbol, ...]:
        return tuple(sympy.Symbol(f"{self.name}_{blk}") for blk in self.blocks)

    def __getattr__(self, block: str) -> sympy.Symbol:
        # attribute access to block symbols, so declarations read ``wx.i + wh.i``
        if block.startswith("__") or block not in self.__dict__.get("blocks", ()):
            raise AttributeError(block)
        return sympy.Symbol(f"{self.__dict__['name']}_{block}")


def size_symbol(size: str) -> sympy.Symbol:
    """The number of units of ``size``, as the expression of a mean divides by it."""
    return sympy.Symbol(f"size_{size}")


@dataclass(frozen=True)
class Equation:
    """``target = expr`` for every unit; ``role`` is ``pre`` (the pre-activation of the
    equation ``owner``), ``let``, ``gate``, ``state`` (a state's new value) or ``mean``.

    A mean's target is one number per batch row, the mean over the units of ``size`` of
    ``count`` per-unit terms: its ``expr`` is their sum over the blocks divided by
    ``count * size_S`` (:func:`size_symbol`), so that the unit's term differentiates as the
    mean does, and the lowering sums it over the units."""

    target: sympy.Symbol
    expr: sympy.Expr
    size: str
    role: str
    where: str = field(default="", compare=False)
    latex: str | None = None
    owner: sympy.Symbol | None = None
    count: int = 0  # a mean's number of blocks

    @property
    def summand(self) -> sympy.Expr:
        """A mean's per-unit sum over its blocks (what the documents write under the sum)."""
        return self.expr * self.count * size_symbol(self.size)


@dataclass(frozen=True)
class Relation:
    """A convention that is an equation: ``text`` then ``lhs = rhs``, in the cell's own
    symbols. It is checked to follow from the cell's equations, and typeset by the same printer
    as they are."""

    text: str
    lhs: sympy.Expr
    rhs: sympy.Expr
    where: str = field(default="", compare=False)

    def __str__(self) -> str:
        return f"{self.text} {self.lhs} = {self.rhs}"


@dataclass(frozen=True)
class Quantity:
    """What a symbol of the step stands for."""

    # input, prev, new, let, dense, vector, mask (a random mask, an input of the kernels),
    # scalar (a learned number, size ""), hyper (a
    # number chosen at run time, size ""), row (a mean: one number per batch row, size "") or
    # size (the number of units of a size, which a mean divides by, size "")
    kind: str
    owner: str  # the state, parameter, dense or equation it belongs to
    size: str


@dataclass(frozen=True)
class CellSpec:
    """A checked, frozen cell declaration."""

    name: str
    title: str
    citation: str
    description: str
    conventions: tuple[str, ...]
    sizes: tuple[Size, ...]
    input: sympy.Symbol
    input_size: str
    states: tuple[State, ...]
    output: str
    params: tuple[Param, ...]
    denses: tuple[Dense, ...]
    equations: tuple[Equation, ...]
    input_latex: str = "x"
    constraints: tuple[tuple[str, str], ...] = ()
    relations: tuple[Relation, ...] = ()
    hypers: tuple[Hyper, ...] = ()
    masks: tuple[Mask, ...] = ()
    #: the weights a layer's ``weight_drop`` drops (DropConnect, Merity et al. 2018): those
    #: declared by :meth:`Cell.weight_drop`, else every weight a state's previous value meets
    dropped_weights: tuple[str, ...] = ()

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    def state(self, name: str) -> State:
        return next(s for s in self.states if s.name == name)

    @property
    def output_symbol(self) -> sympy.Symbol:
        """The value the cell outputs at each step: a state's new value, or a named value."""
        if self.output in self.state_names:
            return self.state(self.output).new
        return sympy.Symbol(self.output)

    @property
    def output_size(self) -> str:
        if self.output in self.state_names:
            return self.state(self.output).size
        return next(eq.size for eq in self.equations if eq.target.name == self.output)

    @property
    def pointwise(self) -> dict[sympy.Symbol, tuple[Param, int]]:
        """Each symbol of a vector or scalar parameter: the parameter and the block it reads."""
        return {
            sym: (p, n)
            for p in self.params if p.kind in ("vector", "scalar")
            for n, sym in enumerate(p.symbols)
        }  # fmt: skip

    @property
    def quantities(self) -> dict[sympy.Symbol, Quantity]:
        """Every symbol that may appear in a pointwise equation, with what it stands for."""
        table = {self.input: Quantity("input", "x", self.input_size)}
        for s in self.states:
            table[s.prev] = Quantity("prev", s.name, s.size)
            table[s.new] = Quantity("new", s.name, s.size)
        for p in self.params:
            for sym in p.symbols if p.kind in ("vector", "scalar") else ():
                table[sym] = Quantity(p.kind, p.name, p.block_size or "")
        for hp in self.hypers:
            table[hp.symbol] = Quantity("hyper", hp.name, "")
        for m in self.masks:
            table[m.symbol] = Quantity("mask", m.name, m.size)
        for d in self.denses:
            for sym in d.symbols:
                table[sym] = Quantity("dense", d.name, d.block_size)
        for eq in self.equations:
            if eq.role == "mean":
                table[eq.target] = Quantity("row", eq.target.name, "")
            elif eq.role != "state":
                table[eq.target] = Quantity("let", eq.target.name, eq.size)
        for size in self.sizes:
            table[size_symbol(size.name)] = Quantity("size", size.name, "")
        return table

    @property
    def recurrent_weights(self) -> tuple[str, ...]:
        """The weights a layer's ``weight_drop`` drops: those the declaration names
        (:meth:`Cell.weight_drop`), else every weight whose projection reads a state's
        previous value, directly or through a value of the step computed from it."""
        if self.dropped_weights:
            return self.dropped_weights
        previous = {s.prev for s in self.states}
        reads = previous | {eq.target for eq in self.equations
                            if eq.expr.free_symbols & previous}  # fmt: skip
        return tuple(dict.fromkeys(d.weight for d in self.denses if d.source in reads))

    @property
    def means(self) -> tuple[Equation, ...]:
        return tuple(eq for eq in self.equations if eq.role == "mean")

    def fingerprint(self) -> str:
        """A hash of everything that shapes the generated files (not the source lines)."""
        parts = [
            self.name, self.title, self.citation, self.description, repr(self.conventions),
            repr(self.sizes), sympy.srepr(self.input), self.input_size, self.output,
            repr(tuple((s.name, s.size, s.latex) for s in self.states)),
            repr(tuple((p.name, p.kind, p.blocks, p.block_size, p.cols, p.latex)
                       for p in self.params)),
            repr(tuple((d.name, d.weight, str(d.source), d.bias, d.blocks, d.first_block,
                        d.transposed) for d in self.denses)),
            repr(tuple((sympy.srepr(e.target), sympy.srepr(e.expr), e.size, e.role, e.latex,
                        str(e.owner), *((e.count,) if e.count else ())) for e in self.equations)),
            self.input_latex, repr(self.constraints),
            repr(tuple((r.text, sympy.srepr(r.lhs), sympy.srepr(r.rhs)) for r in self.relations)),
            *([repr(tuple((h.name, h.default, h.latex) for h in self.hypers))] if self.hypers else []),
            *([repr(tuple((p.name, tuple((*r.data, r.citation) for r in p.init))
                          for p in self.params if p.init))]
              if any(p.init for p in self.params) else []),
            *([repr(tuple((m.name, m.size, m.per, m.kind, m.latex) for m in self.masks))]
              if self.masks else []),
            *([repr(self.dropped_weights)] if self.dropped_weights else []),
        ]  # fmt: skip
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class Cell:
    """Builder of a :class:`CellSpec`; each method reads like one line of the paper's equations."""

    def __init__(self, name: str, *, title: str, citation: str, description: str = "",
                 conventions: tuple[str, ...] | list[str] = ()):  # fmt: skip
        self._where = _caller()
        _check_name(name, "cell", self._where)
        packages = reserved()[2]
        if name in packages:
            raise DeclarationError(
                f"{self._where}: cell name {name!r} is taken by the generated package itself "
                f"({sorted(packages)}); choose another."
            )
        texts = {"title": title, "citation": citation, "description": description}
        for what, text in (*texts.items(), *(("convention", c) for c in conventions)):
            _check_text(what, text, self._where)
        self.name = name
        self.title = title
        self.citation = citation
        self.description = description
        self.conventions = tuple(conventions)
        self._sizes = {
            "I": Size("I", "input_size", "I"),
            "H": Size("H", "hidden_size", "H"),
        }
        self._input: sympy.Symbol | None = None
        self._states: dict[str, State] = {}
        self._params: dict[str, Param] = {}
        self._denses: dict[str, Dense] = {}
        self._equations: list[Equation] = []
        self._relations: list[Relation] = []
        self._hypers: dict[str, Hyper] = {}
        self._masks: dict[str, Mask] = {}
        self._dropped: list[str] = []
        self._input_latex = "x"
        self._taken: set[str] = (
            set()
        )  # names of step values: dense blocks, equation targets
        self._output = "h"
        #: values named for a declaration (a nested function application), by where
        self._named: dict[str, str] = {}

    # -- sizes, input, states, parameters -------------------------------------------------

    def size(self, name: str, argument: str, latex: str | None = None) -> str:
        """Declare an extra dimension, given to ``param_shapes`` as ``argument=``."""
        where = _caller()
        _check_name(name, "size", where, check_reserved=False)
        if name in self._sizes:
            raise DeclarationError(
                f"{where}: size {name!r} is declared twice; give it another name."
            )
        _check_name(argument, "size argument", where)
        if argument in {s.argument for s in self._sizes.values()}:
            raise DeclarationError(
                f"{where}: size argument {argument!r} is already taken; give it another name."
            )
        self._sizes[name] = Size(
            name, argument, _check_latex(latex, where) or name, where
        )
        return name

    def input(self, latex: str = "x") -> sympy.Symbol:
        """The input vector ``x_t`` (size ``I``)."""
        self._input = sympy.Symbol("x")
        self._input_latex = _check_latex(latex, _caller())
        self._taken.add("x")
        return self._input

    def state(
        self, name: str, size: str = "H", latex: str | None = None, output: bool = False
    ) -> State:
        """A carried state; ``output=True`` makes it the sequence output (default: ``h``)."""
        where = _caller()
        _check_name(name, "state", where)
        self._check_size(size, where)
        if name in self._states:
            raise DeclarationError(
                f"{where}: state {name!r} is declared twice; give it another name."
            )
        state = State(name, size, _check_latex(latex, where), where)
        self._states[name] = state
        self._taken.update((state.prev.name, state.new.name))
        if output:
            self._output = name
        return state

    def hyper(self, name: str, default, latex: str | None = None) -> sympy.Symbol:
        """A hyperparameter: a number chosen at run time (a keyword argument of ``forward``,
        ``default`` when not given), used in equations as a symbol and never trained."""
        where = _caller()
        _check_name(name, "hyperparameter", where)
        self._refuse_taken(name, where)
        value = _check_default(name, default, where)
        self._hypers[name] = Hyper(name, value, _check_latex(latex, where), where)
        self._taken.add(name)
        return sympy.Symbol(name)

    def weight(self, name: str, blocks: str, cols: str, block_size: str = "H",
               latex: str | None = None, init=None) -> Param:  # fmt: skip
        """A weight matrix of ``len(blocks)`` row blocks of ``block_size`` rows and ``cols`` columns.

        ``latex`` names it in the derivation; a ``\\cdot`` in it marks where a block's name goes
        (``W_{h\\cdot}``: blocks ``W_{hi}``, ``W_{hf}``, ...). ``init`` says how it starts: a
        rule of :mod:`derive.symbolic.init` for every block, or a dict block -> rule (the
        others PyTorch's default); :meth:`init` says it later."""
        return self._param(name, "weight", blocks, block_size, cols, latex, init)

    def bias(self, name: str, blocks: str, block_size: str = "H", latex: str | None = None,
             init=None) -> Param:  # fmt: skip
        """A bias vector of ``len(blocks)`` blocks of ``block_size``; ``init`` as
        :meth:`weight`'s."""
        return self._param(name, "bias", blocks, block_size, None, latex, init)

    def vector(self, name: str, size: str = "H", latex: str | None = None,
               blocks: str | None = None, init=None) -> sympy.Symbol | VectorBlocks:  # fmt: skip
        """A per-unit parameter (a diagonal matrix, such as a peephole); returns its scalar symbol.

        With ``blocks`` (``"i f o"``) it is one array of ``len(blocks)`` blocks of ``size``, such
        as peepholes stored as one ``(3 H,)`` tensor; ``p.i`` reads block ``i``."""
        if blocks is None:
            return self._param(name, "vector", name, size, None, latex, init).symbol
        where = _caller()
        param = self._param(name, "vector", blocks, size, None, latex, init)
        for sym in param.symbols:
            _check_name(sym.name, "vector block", where)
            if (
                sym.name in self._taken
                or sym.name in self._states
                or sym.name in self._params
            ):
                raise DeclarationError(
                    f"{where}: the block {sym.name!r} of vector {name!r} is already a name of "
                    "the cell; rename the vector or the block."
                )
        self._taken.update(sym.name for sym in param.symbols)
        return VectorBlocks(param)

    def scalar(self, name: str, latex: str | None = None, init=None) -> sympy.Symbol:
        """A learned number shared by every unit (FastRNN's alpha); returns its symbol. It is a
        zero-dimensional array, and its gradient sums over units, rows and steps."""
        return self._param(name, "scalar", name, None, None, latex, init).symbol

    def pytorch_params(
        self, gates: str, recurrent: str = "H"
    ) -> tuple[Param, Param, Param, Param]:
        """``weight_ih, weight_hh, bias_ih, bias_hh`` with PyTorch's shapes and gate order.

        ``recurrent`` is the size ``weight_hh`` reads (``P`` for a projected LSTM)."""
        return (
            self.weight("weight_ih", gates, cols="I", latex=r"W_{i\cdot}"),
            self.weight("weight_hh", gates, cols=recurrent, latex=r"W_{h\cdot}"),
            self.bias("bias_ih", gates, latex=r"b_{i\cdot}"),
            self.bias("bias_hh", gates, latex=r"b_{h\cdot}"),
        )

    def _param(self, name, kind, blocks, block_size, cols, latex, init=None) -> Param:
        where = _caller()
        _check_name(name, "parameter", where)
        if name in self._params:
            raise DeclarationError(
                f"{where}: parameter {name!r} is declared twice; give it another name."
            )
        if kind in ("vector", "scalar") and name in self._taken:  # its name is a symbol
            raise DeclarationError(
                f"{where}: the name {name!r} is already taken; choose another."
            )
        block_names = tuple(blocks.split())
        if not block_names:
            raise DeclarationError(
                f"{where}: parameter {name!r} has no blocks; name at least one."
            )
        for blk in block_names:  # a block only names the symbols of its projections
            _check_name(blk, "block", where, check_reserved=False)
        if len(set(block_names)) != len(block_names):
            raise DeclarationError(
                f"{where}: parameter {name!r} names a block twice: {blocks!r}."
            )
        if kind != "scalar":
            self._check_size(block_size, where)
        if cols is not None:
            self._check_size(cols, where)
        param = Param(
            name, kind, block_names, block_size, cols, _check_latex(latex, where), where
        )
        if init is not None:
            param = _with_init(param, init, None, where)
        self._params[name] = param
        return param

    def init(self, param, rule, blocks: str | None = None) -> None:
        """Say how ``param`` starts: ``rule`` (:mod:`derive.symbolic.init`) for its ``blocks``
        (``"f"``; default all). ``param`` is what :meth:`weight`, :meth:`bias`,
        :meth:`vector` or :meth:`scalar` returned::

            cell.init(b_hh, constant(1.0), blocks="f")      # Jozefowicz et al. 2015
            cell.init(b_ih, chrono(50), blocks="f")
            cell.init(b_ih, chrono(50, negate=True), blocks="i")
            cell.init(W_hh, orthogonal())
        """
        where = _caller()
        found = self._declared_param(param)
        if found is None:
            raise DeclarationError(
                f"{where}: init() takes a parameter declared by cell.weight, cell.bias, "
                f"cell.vector or cell.scalar; got {param!r}."
            )
        self._params[found.name] = _with_init(found, rule, blocks, where)

    def _declared_param(self, given) -> Param | None:
        """The declared parameter ``given`` stands for: a :class:`Param`, a blocked vector or
        the symbol of a vector or scalar."""
        if isinstance(given, VectorBlocks):
            given = given.param
        name = getattr(given, "name", None)
        found = self._params.get(name) if isinstance(name, str) else None
        if found is None or (isinstance(given, Param) and given.blocks != found.blocks):
            return None
        if isinstance(given, sympy.Symbol) and found.symbols != (given,):
            return None
        return found

    # -- the step -----------------------------------------------------------------------------

    def dense(self, weight: Param | Transposed, source: sympy.Symbol, bias: Param | None = None,
              blocks: str | None = None, name: str | None = None) -> Dense:  # fmt: skip
        """``weight[blocks] @ source + bias[blocks]``; ``blocks`` defaults to all, in order.
        ``weight.T`` reads a weight of one block transposed, whole and with no bias."""
        where = _caller()
        transposed = isinstance(weight, Transposed)
        if transposed:
            weight = _check_transposed(weight.param, bias, blocks, where)
        if not isinstance(weight, Param) or weight.kind != "weight":
            raise DeclarationError(
                f"{where}: dense() takes a parameter made by cell.weight(); got {weight!r}."
            )
        chosen = tuple(blocks.split()) if blocks else weight.blocks
        if any(b not in weight.blocks for b in chosen):
            raise DeclarationError(
                f"{where}: dense() asks for blocks {chosen} of {weight.name!r}, which has {weight.blocks}."
            )
        first = weight.blocks.index(chosen[0])
        if weight.blocks[first : first + len(chosen)] != chosen:
            raise DeclarationError(
                f"{where}: the blocks {chosen} of {weight.name!r} must be consecutive and in the "
                f"parameter's order {weight.blocks}."
            )
        if bias is not None and (bias.kind != "bias" or bias.blocks != weight.blocks
                                 or bias.block_size != weight.block_size):  # fmt: skip
            raise DeclarationError(
                f"{where}: bias {bias.name!r} must be a cell.bias() with the blocks {weight.blocks} "
                f"of {weight.name!r}."
            )
        if name is None:
            name = weight.name.removeprefix("weight_")
        # the projection's name only prefixes its blocks' symbols, which must be free names
        _check_name(name, "dense projection", where, check_reserved=False)
        for block in chosen:
            _check_name(f"{name}_{block}", "projection block", where)
        for d in self._denses.values():
            if d.name == name and set(d.blocks) & set(chosen):
                raise DeclarationError(
                    f"{where}: a dense projection named {name!r} already has blocks {d.blocks}; "
                    "pass name= to tell them apart."
                )
        size = weight.cols if transposed else weight.block_size
        dense = Dense(name, weight.name, source, bias.name if bias else None, chosen, first,
                      size, where, transposed)  # fmt: skip
        self._denses[f"{name}:{' '.join(chosen)}"] = dense
        self._taken.update(sym.name for sym in dense.symbols)
        return dense

    # -- regularisation ------------------------------------------------------------------------

    def mask(self, name: str, kind: str, size: str = "H", per: str | None = None,
             latex: str | None = None, of: str = "") -> sympy.Symbol:  # fmt: skip
        """A random mask of the step (:class:`Mask`), an input of the kernels: ``kind``
        ``"zoneout"`` (drawn per step unless ``per`` says ``"sequence"``) or ``"dropout"``
        (per sequence unless ``per`` says ``"step"``). Returns its symbol, one number per unit
        of ``size``, which equations use like any other value; ``of`` names what it masks
        (a state's name), which the documents write under it."""
        where = _caller()
        _check_name(name, "mask", where)
        self._refuse_taken(name, where)
        if kind not in MASK_KINDS:
            raise DeclarationError(
                f"{where}: mask {name!r} has kind {kind!r}; a mask is one of {sorted(MASK_KINDS)}."
            )
        per = per or ("step" if kind == "zoneout" else "sequence")
        if per not in MASK_DRAWS:
            raise DeclarationError(
                f"{where}: mask {name!r} is drawn per {per!r}; choose one of {MASK_DRAWS}."
            )
        self._check_size(size, where)
        mask = Mask(name, size, per, kind, _check_latex(latex, where), where, of)
        self._masks[name] = mask
        self._taken.add(name)
        return mask.symbol

    def zoneout(self, state: State, expr, latex: str | None = None) -> sympy.Expr:
        """``expr`` zoned out (Krueger et al. 2017): per unit, the state's previous value where
        a mask drawn per step is 1 and ``expr`` where it is 0; what :meth:`update` takes::

            cell.update(h, cell.zoneout(h, o * tanh(c_next)))
        """
        where = _caller()
        if not isinstance(state, State) or state.name not in self._states:
            raise DeclarationError(
                f"{where}: zoneout() takes a state made by cell.state(); got {state!r}."
            )
        m = self.mask(f"zoneout_{state.name}", "zoneout", state.size, latex=latex,
                      of=state.name)  # fmt: skip
        return m * state.prev + (1 - m) * sympy.sympify(expr)

    def dropout(self, value: sympy.Symbol, size: str = "H",
                latex: str | None = None) -> sympy.Symbol:  # fmt: skip
        """``value`` times a dropout mask drawn once per sequence (variational dropout, Gal and
        Ghahramani 2016), named so that a projection can read it::

            wh = cell.dense(W_hh, cell.dropout(h.prev), bias=b_hh)
        """
        where = _caller()
        if not isinstance(value, sympy.Symbol):
            raise DeclarationError(
                f"{where}: dropout() takes one value of the step (h.prev, a cell.let); got "
                f"{value!r}."
            )
        state = next((st for st in self._states.values() if value == st.prev), None)
        of = state.name if state is not None else value.name
        size = state.size if state is not None else size
        m = self.mask(f"dropout_{value.name}", "dropout", size, latex=latex, of=of)
        shown = dropped_latex(state) if state is not None else None
        return self._equation(f"{value.name}_dropped", value * m, "let", shown, where)

    def weight_drop(self, weight: Param) -> None:
        """Let a layer's ``weight_drop`` drop ``weight`` (DropConnect on the recurrent weights,
        Merity, Keskar and Socher 2018): ``W ⊙ M / (1 - p)``, ``M`` drawn once per call,
        applied before the kernels, which read it as any weight. A cell that names none drops
        every weight that a state's previous value meets."""
        where = _caller()
        if not isinstance(weight, Param) or weight.kind != "weight" or \
                self._params.get(weight.name) != weight:  # fmt: skip
            raise DeclarationError(
                f"{where}: weight_drop() takes a weight made by cell.weight(); got {weight!r}."
            )
        if weight.name not in self._dropped:
            self._dropped.append(weight.name)

    def let(self, name: str, expr, latex: str | None = None) -> sympy.Symbol:
        """A named intermediate vector, one scalar per unit."""
        return self._equation(name, expr, "let", latex, _caller())

    def gate(self, name: str, expr, latex: str | None = None) -> sympy.Symbol:
        """A gate: like :meth:`let`, and warned about when its activation leaves [0, 1]."""
        where = _caller()
        expr = sympy.sympify(expr)
        if not (
            isinstance(expr, sympy.Function) and isinstance(expr, GATE_ACTIVATIONS)
        ) and not (expr.is_number and 0 <= expr <= 1):
            warnings.warn(
                f"{where}: gate {name!r} = {expr} is not a sigmoid, so its values can leave [0, 1]; "
                "a gate scales what passes through it and should stay in that range.",
                GateRangeWarning,
                stacklevel=2,
            )
        return self._equation(name, expr, "gate", latex, where)

    def update(self, state: State, expr) -> sympy.Symbol:
        """The state's new value ``state.new = expr``."""
        where = _caller()
        if not isinstance(state, State) or state.name not in self._states:
            raise DeclarationError(
                f"{where}: update() takes a state made by cell.state(); got {state!r}."
            )
        if any(eq.target == state.new for eq in self._equations):
            raise DeclarationError(
                f"{where}: state {state.name!r} is updated twice; update it once."
            )
        self._equation(state.new.name, expr, "state", None, where)
        return state.new

    def _refuse_taken(self, name: str, where: str) -> None:
        """Refuse ``name`` for a new symbol when a value, parameter or state has it."""
        if name in self._named:
            raise DeclarationError(
                f"{where}: the name {name!r} is already taken by a value named at "
                f"{self._named[name]} (a function applied inside another's argument); choose "
                "another."
            )
        if self._holds(name):
            raise DeclarationError(
                f"{where}: the name {name!r} is already taken; choose another."
            )

    def _holds(self, name: str) -> bool:
        """Whether a value, parameter or state of the cell has ``name``."""
        return name in self._taken or name in self._params or name in self._states

    def _name_nested(self, name: str, expr: sympy.Expr, where: str) -> sympy.Expr:
        """``expr`` with every function application inside another's argument named, as
        :meth:`let` names it (``name_1``, ``name_2``, ... innermost first): the derivative of
        ``tanh(tanh(a))`` then reads the saved inner value instead of repeating it, and a
        value used several times is computed once, so deriving stays linear in the nesting."""
        names: dict[sympy.Basic, sympy.Symbol] = {}
        count = 0
        for application in _nested_applications(expr):
            count += 1
            while self._holds(f"{name}_{count}"):
                count += 1
            value = application.xreplace(names)  # its size is checked as an equation's
            names[application] = self._equation(
                f"{name}_{count}", value, "let", None, where
            )
            self._named[f"{name}_{count}"] = where
        return expr.xreplace(names) if names else expr

    def _equation(self, name, expr, role, latex, where) -> sympy.Symbol:
        if role != "state":
            _check_name(name, "intermediate", where)
        target = sympy.Symbol(name)
        if role != "state":
            self._refuse_taken(name, where)
        expr = self._name_nested(
            name, _check_functions(sympy.sympify(expr), where), where
        )
        _check_operations(name, expr, where)
        # An activation of a compound argument gets its pre-activation named, so the adjoint of
        # the pre-activation (the paper's delta-bar) is one statement the kernel and text share.
        if descriptor(expr) is not None and not expr.args[0].is_Symbol:
            pre = sympy.Symbol(f"{name}_pre")
            if pre.name in self._taken:
                raise DeclarationError(
                    f"{where}: the pre-activation of {name!r} would be named {pre.name!r}, "
                    "which is already taken; choose another name."
                )
            self._taken.add(pre.name)
            self._equations.append(
                Equation(pre, expr.args[0], "", "pre", where, owner=target)
            )
            expr = expr.func(pre)
        self._taken.add(name)
        self._equations.append(
            Equation(target, expr, "", role, where, _check_latex(latex, where))
        )
        return target

    def mean(self, name: str, terms, latex: str | None = None) -> sympy.Symbol:
        """The mean over the units of a row: one number per batch row and step.

        ``terms`` is a per-unit expression, or a list of them (blocks of one size, such as the
        four gates' pre-activations); the mean is taken over all their values in the row. Only
        the equations after it read it (it is known once every unit is)."""
        where = _caller()
        _check_name(name, "mean", where)
        self._refuse_taken(name, where)
        terms = list(terms) if isinstance(terms, (list, tuple)) else [terms]
        if not terms:
            raise DeclarationError(
                f"{where}: mean {name!r} has no terms; give a per-unit expression or a list "
                "of them."
            )
        terms = [_check_functions(sympy.sympify(term), where) for term in terms]
        self._taken.add(name)
        self._equations.append(Equation(sympy.Symbol(name), sympy.Add(*terms), "", "mean",
                                        where, _check_latex(latex, where), count=len(terms)))  # fmt: skip
        return sympy.Symbol(name)

    def layernorm(self, name: str, values, eps, gain=None, bias=None,
                  latex: str | None = None) -> tuple[sympy.Expr, ...]:  # fmt: skip
        """Layer normalisation over the units of a row (Ba, Kiros and Hinton 2016):
        ``(v - mean) / sqrt(var + eps) * gain + bias`` for each of ``values`` (blocks of one
        size, normalised together), with the mean and the variance as :meth:`mean` s named
        ``{name}_mean`` and ``{name}_var`` (the variance of ``v - mean``, as ``torch.nn.LayerNorm``
        computes it). ``gain`` and ``bias`` are vectors (a blocked vector, one block per value,
        for several values) or None; ``latex`` subscripts the statistics' names (``\\mu_{ih}``).
        Returns the normalised values, in order."""
        where = _caller()
        sub = _check_latex(latex, where) or (
            name.replace("_", r"\_") if name.isascii() else None
        )
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        gains, biases = (_per_value(what, given, len(values), where)
                         for what, given in (("gain", gain), ("bias", bias)))  # fmt: skip
        for given, start in ((gain, ones), (bias, zeros)):
            param = None if given is None else self._declared_param(given)
            if param is not None and not param.init:  # the layer norm's own start
                rule = start(_LAYER_NORM_INIT)
                self._params[param.name] = _with_init(param, rule, None, where)
        mean = self.mean(f"{name}_mean", values, latex=sub and rf"\mu_{{{sub}}}")
        var = self.mean(f"{name}_var", [(v - mean) ** 2 for v in values],
                        latex=sub and rf"\sigma^2_{{{sub}}}")  # fmt: skip
        scale = (var + eps) ** sympy.Rational(-1, 2)
        return tuple((v - mean) * scale * g + b
                     for v, g, b in zip(values, gains, biases, strict=True))  # fmt: skip

    def relation(self, text: str, lhs, rhs) -> None:
        """A convention that is an equation, ``lhs = rhs`` in this cell's symbols, after the
        prose ``text``: printed as mathematics, and refused unless the cell's equations imply
        it (so a convention cannot contradict the cell)."""
        where = _caller()
        _check_text("convention", text, where)
        lhs = _check_functions(sympy.sympify(lhs), where)
        rhs = _check_functions(sympy.sympify(rhs), where)
        self._relations.append(Relation(text, lhs, rhs, where))

    def output(self, value: State | sympy.Symbol) -> None:
        """Make ``value`` the sequence output (default: the state named ``h``): a state, or a
        value of the step that is not carried (a ``cell.let`` or ``cell.gate``, such as the
        Intersection RNN's depth output ``y``)."""
        if isinstance(value, State):
            self._output = value.name
            return
        where = _caller()
        known = {eq.target for eq in self._equations if eq.role in ("let", "gate")}
        if not isinstance(value, sympy.Symbol) or value not in known:
            raise DeclarationError(
                f"{where}: cell.output() takes a state, or a value named by cell.let or "
                f"cell.gate before this line; got {value!r}."
            )
        self._output = value.name

    # -- checking -----------------------------------------------------------------------------

    def _check_size(self, size: str, where: str) -> None:
        if size not in self._sizes:
            raise DeclarationError(
                f"{where}: unknown size {size!r}; known sizes are {sorted(self._sizes)}. "
                "Declare a new one with cell.size()."
            )

    def build(self) -> CellSpec:
        """Check the declaration and freeze it."""
        if self._input is None:
            raise DeclarationError(
                f"{self._where}: cell {self.name!r} has no input; call cell.input()."
            )
        if not self._states:
            raise DeclarationError(
                f"{self._where}: cell {self.name!r} has no state; call cell.state()."
            )
        named = {eq.target.name for eq in self._equations if eq.role in ("let", "gate")}
        if self._output not in self._states and self._output not in named:
            raise DeclarationError(
                f"{self._where}: the output state {self._output!r} is not declared; "
                "declare it with cell.state(name, output=True)."
            )
        spec = CellSpec(
            name=self.name, title=self.title, citation=self.citation, description=self.description,
            conventions=self.conventions, sizes=tuple(self._sizes.values()), input=self._input,
            input_size="I", states=tuple(self._states.values()), output=self._output,
            params=tuple(self._params.values()), denses=tuple(self._denses.values()),
            equations=(), input_latex=self._input_latex, hypers=tuple(self._hypers.values()),
            masks=tuple(self._masks.values()), dropped_weights=tuple(self._dropped),
        )  # fmt: skip
        equations, constraints = _size_equations(spec, self._equations)
        spec = CellSpec(
            **{**spec.__dict__, "equations": equations, "constraints": constraints,
               "relations": tuple(self._relations)}
        )  # fmt: skip
        _check_usage(spec, self._where)
        _check_relations(spec)
        return spec


def _with_init(param: Param, rule, blocks: str | None, where: str) -> Param:
    """``param`` with ``rule`` (one :class:`~derive.symbolic.init.Init`, for ``blocks`` or
    all, or a dict block -> rule) replacing its blocks' rules."""
    if isinstance(rule, dict) and blocks is None:
        items = list(rule.items())
    else:
        chosen = param.blocks if blocks is None else tuple(str(blocks).split())
        items = [(block, rule) for block in chosen]
    rules = dict(zip(param.blocks, param.rules, strict=True))
    for block, given in items:
        if block not in rules:
            raise DeclarationError(
                f"{where}: parameter {param.name!r} has the blocks {param.blocks}; no block "
                f"{block!r} to initialise."
            )
        if not isinstance(given, Init):
            raise DeclarationError(
                f"{where}: the initialisation of {param.name!r} must be a rule of "
                "derive.symbolic.init (uniform, constant, zeros, ones, orthogonal, identity, "
                f"chrono), or a dict block -> rule; got {given!r}."
            )
        if param.kind not in APPLIES_TO[given.kind]:
            fits = [k for k, kinds in APPLIES_TO.items() if param.kind in kinds]
            raise DeclarationError(
                f"{where}: {given.kind} initialisation applies to a {' or '.join(APPLIES_TO[given.kind])}; "
                f"{param.name!r} is a {param.kind}: choose one of {fits}."
            )
        rules[block] = given
    if all(r == Init("uniform") for r in rules.values()):
        return replace(param, init=())
    return replace(param, init=tuple(rules[b] for b in param.blocks))


#: Why a layer norm's gain starts at 1 and its bias at 0.
_LAYER_NORM_INIT = "Ba, Kiros and Hinton 2016; torch.nn.LayerNorm starts its gains at 1 and its biases at 0"


def _per_value(what: str, given, count: int, where: str) -> tuple:
    """A layer norm's gain or bias, one symbol (or 1 or 0 when not given) per value."""
    if given is None:
        return (sympy.Integer(1 if what == "gain" else 0),) * count
    if isinstance(given, VectorBlocks) and len(given.param.blocks) == count:
        return given.param.symbols
    if count == 1 and isinstance(given, sympy.Symbol):
        return (given,)
    raise DeclarationError(
        f"{where}: the layer norm's {what} must be a cell.vector() (with {count} blocks, one "
        f"per value, for {count} values) or None; got {given!r}."
    )


def _check_relations(spec: CellSpec) -> None:
    """Each declared relation names only the cell's symbols and follows from its equations:
    with every equation substituted into both sides, their difference simplifies to 0."""
    known = set(spec.quantities) | {eq.target for eq in spec.equations}
    definition = {eq.target: eq.expr for eq in spec.equations}
    for relation in spec.relations:
        sides = (relation.lhs, relation.rhs)
        unknown = sorted(
            str(s) for side in sides for s in side.free_symbols if s not in known
        )
        if unknown:
            raise DeclarationError(
                f"{relation.where}: the relation names {unknown}, which the cell does not "
                f"declare; write it in the cell's own symbols (states' .new and .prev, "
                "projections' blocks, the values of let/gate)."
            )
        expanded = []
        for side in sides:
            for _ in range(len(definition) + 1):  # equations read earlier ones only
                side = side.xreplace(definition)
            expanded.append(side)
        if sympy.simplify(expanded[0] - expanded[1]) != 0:
            raise DeclarationError(
                f"{relation.where}: the relation {relation.lhs} = {relation.rhs} does not "
                "follow from the cell's equations; correct the relation (or the equations)."
            )


def _size_equations(spec: CellSpec, equations: list[Equation]):
    """Give every equation its size, checking that each reads vectors of one size only."""
    known = spec.quantities  # inputs, states, vectors and dense blocks so far
    constraints: set[tuple[str, str]] = set()
    defined: set[sympy.Symbol] = {spec.input} | {s.prev for s in spec.states}
    defined |= {
        sym
        for sym, q in known.items()
        if q.kind in ("vector", "scalar", "dense", "hyper", "mask")
    }
    sized: list[Equation] = []
    sizes: dict[sympy.Symbol, str] = {
        sym: q.size for sym, q in known.items() if q.kind != "let"
    }
    for d in spec.denses:
        if d.source not in sizes and d.source not in {eq.target for eq in equations}:
            raise DeclarationError(
                f"{d.where}: dense() reads {d.source}, which is not the input, a state's previous "
                "value or a named intermediate (cell.let)."
            )
    for eq in equations:
        free = eq.expr.free_symbols
        unknown = sorted(str(s) for s in free - defined)
        if unknown:
            names = ", ".join(unknown)
            raise DeclarationError(
                f"{eq.where}: {eq.target} = {eq.expr} uses {names}, which is not defined before this "
                "line. Define it first (cell.let, cell.state, cell.vector, cell.scalar or a dense "
                "projection), or "
                "use a state's .prev for its value at t-1."
            )
        own = {
            sizes[s] for s in free if sizes[s]
        }  # scalars and hyperparameters have none
        if eq.role == "state":
            target_size = spec.state(eq.target.name.removesuffix("_new")).size
            own.add(target_size)
        if len(own) > 1:
            if spec.input_size in own and len(own) == 2:
                other = (own - {spec.input_size}).pop()
                constraints.add((spec.input_size, other))
                own = {other}
            else:
                detail = ", ".join(
                    f"{s} ({sizes[s]})" for s in sorted(free, key=str) if sizes[s]
                )
                raise DeclarationError(
                    f"{eq.where}: {eq.target} = {eq.expr} mixes vectors of different sizes: {detail}. "
                    "A pointwise equation reads vectors of one size; project with cell.dense() first."
                )
        if eq.role == "mean" and not own:
            raise DeclarationError(
                f"{eq.where}: the mean {eq.target} reads no per-unit value ({eq.expr}), so "
                "there are no units to average over; give it terms that read a vector."
            )
        size = own.pop() if own else "H"
        sizes[eq.target] = "" if eq.role == "mean" else size
        defined.add(eq.target)
        expr = (
            eq.expr / (eq.count * size_symbol(size)) if eq.role == "mean" else eq.expr
        )
        sized.append(Equation(eq.target, expr, size, eq.role, eq.where, eq.latex, eq.owner,
                              eq.count))  # fmt: skip
    for d in spec.denses:
        weight = spec.param(d.weight)
        reads, what = (
            (weight.block_size, "rows") if d.transposed else (weight.cols, "columns")
        )
        if sizes.get(d.source) != reads:
            shown = f"{d.weight}.T" if d.transposed else d.weight
            raise DeclarationError(
                f"{d.where}: {d.weight} has {reads} {what} but {shown} reads {d.source} of "
                f"size {sizes.get(d.source)}; the sizes must match."
            )
    return tuple(sized), tuple(sorted(constraints))


def _check_transposed(weight, bias, blocks, where: str) -> Param:
    """The weight of ``dense(W.T, v)``: a whole weight of one block, read with no bias."""
    if weight.kind != "weight" or len(weight.blocks) != 1 or bias is not None or blocks:
        raise DeclarationError(
            f"{where}: dense({weight.name}.T, ...) reads a whole weight transposed: declare "
            f"{weight.name!r} with one block, and give no bias= or blocks= (add a cell.vector "
            "for a bias)."
        )
    return weight


def _check_usage(spec: CellSpec, where: str) -> None:
    shaped = {size for p in spec.params for _, size in p.shape_formula()}
    for size in spec.sizes:
        if size.name != spec.input_size and size.name not in shaped:
            raise DeclarationError(
                f"{size.where or where}: size {size.name!r} is the size of no parameter, so "
                "it cannot be read from the parameters a kernel is given; use it in a "
                "parameter's shape, or remove it."
            )
    updated = {eq.target for eq in spec.equations if eq.role == "state"}
    for s in spec.states:
        if s.new not in updated:
            raise DeclarationError(
                f"{s.where}: state {s.name!r} is never updated; add cell.update({s.name}, ...)."
            )
    used = {d.weight for d in spec.denses} | {d.bias for d in spec.denses if d.bias}
    pointwise = spec.pointwise
    for eq in spec.equations:
        used |= {s.name for s in eq.expr.free_symbols}
        used |= {pointwise[s][0].name for s in eq.expr.free_symbols if s in pointwise}
    for p in spec.params:
        if p.name not in used:
            raise DeclarationError(
                f"{p.where}: parameter {p.name!r} is never used; use it in a dense projection or "
                "an equation, or remove it."
            )
    for hp in spec.hypers:
        if hp.name not in used:
            raise DeclarationError(
                f"{hp.where}: hyperparameter {hp.name!r} is never used; use it in an "
                "equation, or remove it."
            )
    for m in spec.masks:
        if m.name not in used:
            raise DeclarationError(
                f"{m.where}: mask {m.name!r} is never used; use it in an equation, or "
                "remove it."
            )
    blocks_used = {(d.weight, b) for d in spec.denses for b in d.blocks}
    for p in spec.params:
        if p.kind == "weight":
            unused = [b for b in p.blocks if (p.name, b) not in blocks_used]
            if unused:
                raise DeclarationError(
                    f"{p.where}: blocks {unused} of {p.name!r} are never projected; "
                    "use them in cell.dense() or drop them from the parameter."
                )
    read = set().union(*(eq.expr.free_symbols for eq in spec.equations)) | {
        d.source for d in spec.denses
    }
    for d in spec.denses:
        for sym in d.symbols:
            if sym not in read:
                raise DeclarationError(
                    f"{d.where}: the projection {sym} is computed but never used."
                )


def _check_name(name: str, what: str, where: str, check_reserved: bool = True) -> None:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise DeclarationError(
            f"{where}: {what} name {name!r} is not a valid Python identifier; use letters, digits "
            "and underscores, not starting with a digit, and not a Python keyword."
        )
    folded = unicodedata.normalize("NFKC", name)
    if folded != name:  # Python reads identifiers in NFKC: two spellings, one name
        raise DeclarationError(
            f"{where}: {what} name {name!r} is read by Python as {folded!r}; write {folded!r}."
        )
    names, prefixes, _ = reserved()
    if check_reserved and (name in names or name.startswith(prefixes)):
        if name.startswith(prefixes):
            reason = "it starts with a reserved prefix"
        elif hasattr(builtins, name):
            reason = "it is a Python builtin"
        else:
            reason = "the generated modules use it"
        raise DeclarationError(
            f"{where}: {what} name {name!r} is reserved for the generated code: {reason}; "
            f"choose another (reserved prefixes: {', '.join(prefixes)})."
        )


def _check_default(name: str, default, where: str) -> float:
    """A hyperparameter's default: a finite real number (an int, a float or a SymPy number)."""
    real = isinstance(default, (int, float, sympy.Number)) and not isinstance(
        default, bool
    )
    number = float(default) if real else None
    if number is None or not math.isfinite(number):
        raise DeclarationError(
            f"{where}: the default of hyperparameter {name!r} must be a finite real number "
            f"(such as 0.5 or sympy.Rational(1, 2)); got {default!r}."
        )
    return number


def _check_text(what: str, text, where: str) -> None:
    """Free text: any Unicode string (the emitters escape it for each language)."""
    if not isinstance(text, str):
        raise DeclarationError(
            f"{where}: the {what} must be a string; got {type(text).__name__}."
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise DeclarationError(
            f"{where}: the {what} has {text[error.start]!r}, which is not Unicode text (a lone "
            "surrogate); remove it."
        ) from None


#: What a declared LaTeX name may hold, beside these commands: ASCII letters, digits, spaces and
#: the math punctuation below. Everything else is refused, so nothing a name says can reach
#: a document as anything but mathematics: no ``%``, ``$``, ``#``, ``&``, ``~`` or ``\n`` (TeX),
#: no ``<``, ``>`` or quotes (HTML), no backtick or ``|`` (Markdown's code spans and tables).
LATEX_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _^{}()[],.;:'+-=/*"
)
#: Commands that take a group: a name must give it (``\\tilde{c}``, not ``\\tilde c``).
_LATEX_GROUP_COMMANDS = frozenset(
    # accents and fonts
    "hat tilde bar vec dot ddot breve check acute grave widehat widetilde overline underline "
    "mathring mathrm mathit mathbf mathsf mathtt mathcal mathbb mathfrak boldsymbol text "
    "textrm textit operatorname "
    # fractions and roots
    "frac tfrac dfrac sqrt".split()
)
#: The LaTeX commands a declared name may use: letters, accents, fonts, symbols, spacing and
#: delimiters. An allow-list: a command not named here (``\input``, ``\href``, ``\style``,
#: ``\catcode``, ...) is refused however it is spelled.
LATEX_COMMANDS = _LATEX_GROUP_COMMANDS | frozenset(
    # Greek letters
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda "
    "mu nu xi pi varpi rho varrho sigma varsigma tau upsilon phi varphi chi psi omega Gamma "
    "Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega "
    # symbols, operators and functions
    "cdot odot circ times ast star dagger ddagger prime ell partial nabla infty pm mp oplus "
    "otimes wedge vee cap cup top bot perp sim approx equiv leq geq neq to tanh sinh cosh "
    "sin cos tan exp log ln max min det arg "
    # delimiters and spacing
    "left right big Big bigl bigr Bigl Bigr quad qquad".split()
)
#: Commands of one non-letter: thin, medium, thick and negative space, a space, and braces.
LATEX_SYMBOL_COMMANDS = frozenset({"\\,", "\\;", "\\:", "\\!", "\\ ", "\\{", "\\}"})


def dropped_latex(state: State) -> str | None:
    """The name of a state's previous value times a dropout mask, ``\\check{h}``, where the
    state's name makes a valid one."""
    latex = rf"\check{{{state.latex or state.name}}}"
    return latex if latex_problem(latex) is None else None


def latex_problem(latex: str) -> str | None:
    """What keeps ``latex`` from being a declared name, or None: every command on
    :data:`LATEX_COMMANDS`, every other character in :data:`LATEX_CHARACTERS`, no ``^^``
    (TeX's notation for a character by its code, which spells any command), braces
    balanced."""
    depth, n = 0, 0
    while n < len(latex):
        ch = latex[n]
        if ch == "\\":
            word = re.match(r"\\([A-Za-z]+|.?)", latex[n:], re.DOTALL).group(0)
            allowed = (word[1:] in LATEX_COMMANDS if word[1:].isalpha()
                       else word in LATEX_SYMBOL_COMMANDS)  # fmt: skip
            if not allowed:
                return f"the command {word!r}, which is not among the commands a name may use"
            n += len(word)
            rest = latex[n:].lstrip(" ")
            if word[1:] in _LATEX_GROUP_COMMANDS and not rest.startswith("{"):
                return f"the command {word!r} without its {{...}} group"
            if word[1:] in ("left", "right") and not (
                rest[:1] in tuple("()[]./") or rest[:2] in ("\\{", "\\}")
            ):
                return f"the command {word!r} without a delimiter after it"
            continue
        if ch not in LATEX_CHARACTERS:
            return (f"the character {ch!r}" if ch.isprintable() and ch.isascii()
                    else f"the character {ch!r} (outside printable ASCII: write \\sigma, not σ)")  # fmt: skip
        if latex.startswith("^^", n):
            return "'^^', TeX's notation for a character by its code"
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return "unbalanced braces"
        n += 1
    return "unbalanced braces" if depth else None


def _check_latex(latex: str | None, where: str) -> str | None:
    """A declared LaTeX name: a short piece of math-mode LaTeX built from allowed commands and
    characters (:func:`latex_problem`)."""
    if latex is None:
        return None
    if not isinstance(latex, str) or not latex.strip():
        raise DeclarationError(
            f"{where}: latex= must be a non-empty string; got {latex!r}."
        )
    problem = latex_problem(latex)
    if problem:
        raise DeclarationError(
            f"{where}: latex={latex!r} has {problem}; a declared name is a short piece of "
            "math-mode LaTeX such as r'\\tilde{c}' or r'W_{h\\cdot}', built from letters, "
            "digits, _ ^ { } ( ) [ ] , . ; : ' + - = / * and commands such as \\alpha, "
            "\\tilde, \\mathrm, \\cdot (derive.symbolic.declare.LATEX_COMMANDS lists them)."
        )
    return latex


#: The most operations (nodes of the expression tree, counting a shared part at each use) an
#: equation may hold once its nested function applications are named: SymPy differentiates
#: and prints the tree, so beyond this deriving takes minutes and the kernel megabytes.
MAX_OPERATIONS = 4000


def _nodes(expr: sympy.Basic) -> list[sympy.Basic]:
    """Every distinct subexpression of ``expr``, each after its arguments (innermost first),
    found by a loop over an explicit stack: an expression built by repeated reuse is a small
    graph even where its tree is exponentially large, and a deep chain recurses nowhere."""
    order, seen, stack = [], set(), [(expr, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif node not in seen:
            seen.add(node)
            stack.append((node, True))
            stack.extend((arg, False) for arg in reversed(node.args))
    return order


def operations(expr: sympy.Basic) -> int:
    """The size of ``expr``'s tree (a shared subexpression counted at each use), computed
    over its distinct subexpressions."""
    size: dict[sympy.Basic, int] = {}
    for node in _nodes(expr):
        size[node] = 1 + sum(size[arg] for arg in node.args)
    return size[expr]


def _nested_applications(expr: sympy.Expr) -> list[sympy.Expr]:
    """The function applications that lie inside another application's argument and hold
    one in their own (``tanh(a)`` in ``tanh(tanh(tanh(a)))``), innermost first, each once.
    Naming these leaves every equation at most two applications deep: ``tanh(b + tanh(x))``
    is derived as written."""
    nodes = _nodes(expr)
    holds: dict[
        sympy.Basic, bool
    ] = {}  # an application among its arguments, at any depth
    for node in nodes:
        holds[node] = any(isinstance(a, sympy.Function) or holds[a] for a in node.args)
    inside: set[sympy.Basic] = set()
    for node in reversed(nodes):  # outermost first: a parent before its arguments
        if node in inside or isinstance(node, sympy.Function):
            inside.update(node.args)
    return [node for node in nodes
            if isinstance(node, sympy.Function) and node in inside and holds[node]]  # fmt: skip


def _extremum(node: sympy.Expr) -> sympy.Expr:
    """``Max`` and ``Min`` through ReLU, pairwise from the first argument:
    ``max(m, a) = a + ReLU(m - a)`` and ``min(m, a) = a - ReLU(a - m)``."""
    value, *rest = node.args
    for arg in rest:
        value = (
            arg + relu(value - arg)
            if isinstance(node, sympy.Max)
            else arg - relu(arg - value)
        )
    return value


def _check_functions(expr: sympy.Expr, where: str) -> sympy.Expr:
    """Refuse anything no emitter can print: a pointwise equation is built from symbols, exact
    numbers, sums, products, powers with exact exponents and the supported functions (``Max``
    and ``Min`` are rewritten through ReLU first, SymPy's own ``tanh`` as gatesmith's)."""
    nodes = _nodes(expr)
    if any(isinstance(n, (sympy.Max, sympy.Min, sympy.tanh)) for n in nodes):
        rewritten = {}
        for (
            node
        ) in nodes:  # innermost first, so each node's arguments are rewritten already
            new = node.func(*(rewritten[a] for a in node.args)) if node.args else node
            if isinstance(new, (sympy.Max, sympy.Min)):
                new = _extremum(new)
            elif isinstance(new, sympy.tanh):
                new = tanh(new.args[0])
            rewritten[node] = new
        expr = rewritten[expr]
        nodes = _nodes(expr)
    if any(isinstance(node, sympy.Float) for node in nodes):
        raise DeclarationError(
            f"{where}: {_short(expr)} has a floating-point number; write exact numbers "
            "(sympy.Rational(1, 2), not 0.5)."
        )
    known = ", ".join(
        [*(n for n, a in FUNCTIONS.items() if a.declarable), "Max", "Min"]
    )
    for node in nodes:
        if isinstance(node, (sympy.Symbol, sympy.Add, sympy.Mul)) or (
            isinstance(node, sympy.Rational) and node.is_finite
        ):
            continue
        if isinstance(node, sympy.Pow):
            if node.exp.is_Rational:
                continue
            problem = (f"the power {_short(node)}, whose exponent is not an exact number; "
                       "write exp(b * log(a)) for a^b")  # fmt: skip
        elif isinstance(node, sympy.Function):
            activation = descriptor(node)
            if activation is not None and activation.declarable:
                continue
            problem = (f"{type(node).__name__}, which gatesmith cannot derive and print; use "
                       f"one of the supported functions: {known}")  # fmt: skip
        else:
            problem = (f"{_short(node)} ({type(node).__name__}), which gatesmith cannot derive "
                       "and print; an equation is built from symbols, exact numbers "
                       "(sympy.Rational), +, *, powers with exact exponents and the "
                       f"supported functions: {known}")  # fmt: skip
        raise DeclarationError(f"{where}: {_short(expr)} uses {problem}.")
    return expr


def _check_operations(name: str, expr: sympy.Expr, where: str) -> None:
    """Refuse an equation too large to derive in reasonable time, naming its size."""
    count = operations(expr)
    if count > MAX_OPERATIONS:
        raise DeclarationError(
            f"{where}: the equation of {name!r} has {count} operations once its nested "
            f"functions are named, more than the {MAX_OPERATIONS} gatesmith derives in "
            "reasonable time (a subexpression used several times counts at each use); name "
            "the repeated parts with cell.let, so that each is computed once."
        )


def _short(expr: sympy.Basic, width: int = 120) -> str:
    """``expr`` as text for a message, cut to ``width`` characters: a large expression is
    not printed whole (printing one built by reuse takes as long as its tree is large)."""
    count = operations(expr)
    if count > 200:
        return f"an expression of {count} operations"
    text = str(expr)
    return text if len(text) <= width else text[: width - 3] + "..."
