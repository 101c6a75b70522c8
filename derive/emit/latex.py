"""The derivation document: a cell's forward step and its derived BPTT, as LaTeX.

:func:`document` builds a :class:`Document` from the same backend-neutral
:class:`~derive.lower.plan.KernelPlan` that the Numba emitter prints: the forward equations as
declared, the backward statements in the order the kernel computes them, the transpose rules of
the projections, the parameter gradients as sums over time, and what the forward pass stores.
Mathematics is printed by :class:`DerivationPrinter`, a SymPy ``LatexPrinter``. The naming
policy lives here too (:func:`latex_names`): a name the declaration gives is used as written,
an unnamed identifier prints upright and escaped, a time index joins its subscript. Free text
(titles, citations, conventions) stays raw here and is escaped by the template filters
:func:`tex_escape` and :func:`markdown_escape`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE

from ..lower.plan import KernelPlan, MatMul, Role
from ..symbolic.activations import FUNCTIONS, descriptor, missing_forms
from ..symbolic.adjoint import adjoint_symbol, derive_adjoint, external_symbol
from ..symbolic.declare import MASK_KINDS, CellSpec, Mask, Param, size_symbol
from ..symbolic.flow import Chain, FlowTooLargeError, Path, chains, jacobians, verdict
from ..symbolic.init import Init
from ..symbolic.norms import LayerNorm, abbreviate, layer_norms

__all__ = [
    "DerivationPrinter",
    "Document",
    "MathLine",
    "LATEX_FORMS",
    "document",
    "latex_names",
    "markdown_escape",
    "tex_escape",
]

#: Width, in rough characters of typeset mathematics (about 5 pt each in 11 pt type), that
#: an aligned equation may take on the 16 cm line: its left-hand side, relation and
#: right-hand side (continued rows are indented by a ``\qquad``, which is counted).
LINE_WIDTH = 80
#: Width after which a sum breaks its line, where no wider left-hand side beside it says less.
MATH_WIDTH = 64
#: Width after which a diagonal factor of a Jacobian is named ``d^{(k)}`` and defined on rows
#: of its own that width.
DIAG_WIDTH = 40
#: The cells whose gradient flow examples/demo.py measures by default (its BASE_VARIANTS), and
#: the stem of the plot it draws (``gradient_flow.png``), which their documents show where it
#: lies beside them (``docs/derivations/`` holds one)
MEASURED_CELLS = ("rnn_tanh", "lstm", "gru")
MEASURED_PLOT = "gradient_flow"
#: A local derivative wider than this is named in a backward statement's note, not printed
LOCAL_WIDTH = 36


#: How the documents print each activation: its head, and what encloses its argument where
#: that is not ``\left( ... \right)``. One line an activation.
LATEX_FORMS: dict[str, tuple[str, ...]] = {
    "sigmoid": (r"\sigma",),
    "tanh": (r"\tanh",),
    "relu": (r"\operatorname{ReLU}",),
    "relu_step": (r"\mathbf{1}", r"\left[", r" > 0\right]"),
    "exp": (r"\exp",),
    "log": (r"\log",),
    "sin": (r"\sin",),
    "cos": (r"\cos",),
    "softplus": (r"\operatorname{softplus}",),
    "elu": (r"\operatorname{ELU}",),
    "elu_slope": (r"\left(1 + \min", r"\left(", r", 0\right)\right)"),
    "hard_sigmoid": (r"\operatorname{hardsigmoid}",),
    "hard_sigmoid_slope": (r"\tfrac{1}{6}\mathbf{1}", r"\left[0 < ", r" < 1\right]"),
}
missing_forms(LATEX_FORMS, "LaTeX backend")


class DerivationPrinter(LatexPrinter):
    """Vector notation for one cell step: ``⊙`` for the per-unit products, declared names.

    ``names`` maps symbol names to their LaTeX; ``rank`` orders the terms of a sum (projections
    first, in declaration order, as papers write pre-activations).
    """

    printmethod = "_gatesmith_latex"

    def __init__(self, names: dict[str, str], rank: dict[str, int] | None = None):
        super().__init__({"order": "none"})
        self.names = names
        self.rank = rank or {}
        #: layer norms whose scale and normalised values print as the names the notation
        #: defines (``ρ``, ``ẑ``), and other forms their deviations take (blocks written out)
        self.norms: tuple[LayerNorm, ...] = ()
        self.forms: dict[sympy.Expr, tuple[sympy.Expr, ...]] = {}

    def _print_Symbol(self, expr, style="plain"):
        return self.names.get(expr.name) or plain_latex(expr.name)

    def doprint(self, expr) -> str:
        return super().doprint(self.abbreviate(expr))

    def unabbreviated(self, expr) -> str:
        """``expr`` printed without the layer-norm names (what defines them)."""
        return super().doprint(expr)

    def abbreviate(self, expr):
        return abbreviate(expr, self.norms, self.forms)

    def terms(self, expr, width: int | None = None) -> list[str]:
        """The printed terms of a sum, each with its sign (``+ a``, ``- b``), first unsigned
        when positive. A product wider than ``width`` comes in pieces a line can break between
        (:meth:`_product_pieces`)."""
        expr = self.abbreviate(expr)
        args = list(expr.args) if expr.is_Add else [expr]
        default = {a: n for n, a in enumerate(self._as_ordered_terms(expr, order=None))} \
            if expr.is_Add else {expr: 0}  # fmt: skip

        def key(term):
            ranks = [
                self.rank[s.name] for s in term.free_symbols if s.name in self.rank
            ]
            return (min(ranks) if ranks else len(self.rank), default[term])

        out = []
        for term in sorted(args, key=key):
            negative = term.could_extract_minus_sign()
            sign = "- " if negative else ("+ " if out else "")
            term = -term if negative else term
            printed = self._print_term(term)
            if width is not None and term.is_Mul and _rough_width(printed) > width:
                first, *rest = self._product_pieces(term, width)
                out += [sign + first, *rest]
            else:
                out.append(sign + printed)
        return out

    def _print_term(self, term) -> str:
        return self.parenthesize(term, PRECEDENCE["Add"], strict=True)

    def _print_Add(self, expr, order=None):
        return " ".join(self.terms(expr))

    def _product_pieces(self, expr, width: int | None = None) -> list[str]:
        """A product as pieces a line may break between: its factors (``a``, ``\\odot b``),
        the first carrying the coefficient, and a sum among them wider than ``width`` as its
        terms in ``\\Bigl( … \\Bigr)``. Joined by spaces, they print the product."""
        coeff, rest = expr.as_coeff_Mul()
        pieces = []
        for n, factor in enumerate(rest.as_ordered_factors() if rest != 1 else ()):
            op = r"\odot " if n else ""
            printed = self.parenthesize(factor, PRECEDENCE["Mul"], strict=False)
            if width is not None and factor.is_Add and _rough_width(printed) > width:
                inner = self.terms(factor, width)
                inner[0], inner[-1] = rf"{op}\Bigl({inner[0]}", rf"{inner[-1]}\Bigr)"
                pieces += inner
            else:
                pieces.append(op + printed)
        if coeff == 1:
            return pieces or ["1"]
        if not pieces:
            return [self._print(coeff)]
        return [rf"{self._print(coeff)}\, {pieces[0]}", *pieces[1:]]

    def _print_Mul(self, expr):
        if expr.as_coeff_Mul()[0].is_negative:
            return "- " + self._print(-expr)
        return " ".join(self._product_pieces(expr))

    def _print_Rational(self, expr):
        if expr.q == 1:
            return str(expr.p)
        sign = "- " if expr.p < 0 else ""
        return rf"{sign}\tfrac{{{abs(expr.p)}}}{{{expr.q}}}"

    def _print_Pow(self, expr):
        base, exponent = expr.args
        power = self._print(exponent)
        if isinstance(base, sympy.Function) and len(base.args) == 1:
            head = self._function_head(base)
            if head:
                return rf"{head}^{{{power}}}\left({self._print(base.args[0])}\right)"
        return rf"{self.parenthesize(base, PRECEDENCE['Pow'], strict=True)}^{{{power}}}"

    def _function_head(self, expr) -> str | None:
        activation = descriptor(expr)
        return LATEX_FORMS[activation.name][0] if activation else None

    def _print_activation(self, expr, exp=None):
        head, *brackets = LATEX_FORMS[descriptor(expr).name]
        opening, closing = brackets or (r"\left(", r"\right)")
        return rf"{head}{opening}{self._print(expr.args[0])}{closing}"

    def _print_Function(self, expr, exp=None):
        # an activation added to FUNCTIONS after this module's import has no _print_<name>
        if descriptor(expr) is not None:
            return self._print_activation(expr)
        return super()._print_Function(expr, exp)


for _activation in FUNCTIONS.values():
    setattr(DerivationPrinter, f"_print_{_activation.function.__name__}",
            DerivationPrinter._print_activation)  # fmt: skip


#: Greek letters with a math command of their own (capitals that look Latin have none).
_GREEK = {
    chr(code): rf"\{word}"
    for code, word in zip(
        range(0x3B1, 0x3CA),
        "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi o pi rho "
        "varsigma sigma tau upsilon phi chi psi omega".split(),
        strict=True,
    )
    if word not in ("o", "varsigma")
} | {"Γ": r"\Gamma", "Δ": r"\Delta", "Θ": r"\Theta", "Λ": r"\Lambda", "Ξ": r"\Xi",
     "Π": r"\Pi", "Σ": r"\Sigma", "Υ": r"\Upsilon", "Φ": r"\Phi", "Ψ": r"\Psi",
     "Ω": r"\Omega"}  # fmt: skip


def plain_latex(name: str) -> str:
    """The LaTeX of an identifier nobody named: itself, italic where it is a word.

    Underscores are escaped, never read as subscripts: ``delta_C`` prints ``\\mathit{delta\\_C}``;
    a Greek letter prints as its command; any other character outside ASCII goes through the
    text escaper, so that every identifier compiles.
    """
    if name in _GREEK:
        return _GREEK[name]
    if not name.isascii():
        return rf"\text{{\itshape {tex_escape(name)}}}"
    if len(name) == 1:
        return name
    escaped = name.replace("_", r"\_")
    return rf"\mathit{{{escaped}}}"


_FINAL_SUBSCRIPT = re.compile(r"_\{([^{}]*)\}$|_([A-Za-z0-9])$")


def timed(base: str, index: str | None) -> str:
    """``base`` with the time index ``index`` (``t``, ``t-1``) as a subscript, merged into a
    subscript the base already ends with: ``b_{z}`` at ``t`` is ``b_{z,t}``, not ``b_{z}_{t}``."""
    if index is None:
        return base
    match = _FINAL_SUBSCRIPT.search(base)
    if match:
        inner = match.group(1) if match.group(1) is not None else match.group(2)
        return f"{base[: match.start()]}_{{{inner},{index}}}"
    if _ends_with_subscript(
        base
    ):  # one with groups of its own: x_{a}_{t} would not compile
        return f"{{{base}}}_{{{index}}}"
    return f"{base}_{{{index}}}"


def _ends_with_subscript(base: str) -> bool:
    """Whether ``base`` ends with a subscript group (``\\mu_{\\mathrm{a}}``), found by
    matching its final closing brace."""
    if not base.endswith("}"):
        return False
    depth = 0
    for n in range(len(base) - 1, -1, -1):
        depth += {"}": 1, "{": -1}.get(base[n], 0)
        if depth == 0:
            return base[:n].endswith("_")
    return False


def block_latex(param: Param) -> tuple[str, ...]:
    """Each row block's name: a ``\\cdot`` in the declared name marks where the block's name
    goes (``W_{h\\cdot}``: ``W_{hi}``, ``W_{hf}``, ...); otherwise ``W^{(i)}``."""
    base = param_latex(param)
    if r"\cdot" in base:
        return tuple(base.replace(r"\cdot", plain_latex(b)) for b in param.blocks)
    if len(param.blocks) == 1:
        return (base,)
    return tuple(rf"{base}^{{({plain_latex(b)})}}" for b in param.blocks)


def param_latex(param: Param) -> str:
    return param.latex or plain_latex(param.name)


def mask_latex(mask: Mask, states: dict[str, str]) -> str:
    """A mask's name: as declared, else ``m`` with its kind (``z`` zoneout, ``d`` dropout)
    above and what it masks below."""
    if mask.latex:
        return mask.latex
    of = states.get(mask.of) or plain_latex(mask.of or mask.name)
    return rf"m^{{{mask.kind[0]}}}_{{{of}}}"


def latex_names(plan: KernelPlan) -> dict[str, str]:
    """The LaTeX of every symbol of the step, its adjoint and its incoming adjoint, by name."""
    spec = plan.spec
    states = {s.name: s.latex or plain_latex(s.name) for s in spec.states}
    bases = {
        eq.target: eq.latex or plain_latex(eq.target.name) for eq in spec.equations
    }
    for s in spec.states:
        bases[s.new] = states[s.name]
    names = {}
    for sym, value in plan.values.items():
        if value.role == Role.INPUT:
            names[sym.name] = timed(spec.input_latex, "t")
        elif value.role == Role.PREVIOUS:
            names[sym.name] = timed(states[sym.name.removesuffix("_prev")], "t-1")
        elif value.role in (Role.VECTOR, Role.SCALAR):
            param, block = spec.pointwise[sym]
            names[sym.name] = block_latex(param)[block]
        elif value.role == Role.HYPER:
            hp = next(h for h in spec.hypers if h.name == sym.name)
            names[sym.name] = hp.latex or plain_latex(hp.name)
        elif value.role == Role.MASK:
            mask = next(m for m in spec.masks if m.symbol == sym)
            names[sym.name] = timed(
                mask_latex(mask, states), "t" if mask.per == "step" else None
            )
        elif value.role == Role.SIZE:
            names[sym.name] = next(s.latex for s in spec.sizes
                                   if size_symbol(s.name) == sym)  # fmt: skip
        elif sym in bases:
            eq = next(e for e in spec.equations if e.target == sym)
            base = rf"\bar{{{bases[eq.owner]}}}" if eq.role == "pre" else bases[sym]
            names[sym.name] = timed(base, "t")
    for sym in plan.values:
        if sym.name in names:
            names[adjoint_symbol(sym).name] = r"\delta " + names[sym.name]
            names[external_symbol(sym).name] = r"\hat{\delta} " + names[sym.name]
    return names


@dataclass(frozen=True)
class MathLine:
    """``lhs op rhs`` for an ``align`` environment; ``rows`` are the rhs's terms broken into
    lines that fit the page. ``pieces``, where given, are where the rhs may break, and
    ``width`` the most it may take: :func:`_fit` breaks them again beside the widest
    left-hand side of the block."""

    lhs: str
    op: str
    rows: tuple[str, ...]
    note: str = ""
    pieces: tuple[str, ...] = ()
    width: int = MATH_WIDTH

    @property
    def rhs(self) -> str:
        return " ".join(self.rows)


@dataclass(frozen=True)
class Row:
    """A row of the notation table. ``meaning`` is a tuple of ``(kind, text)`` pieces, ``kind``
    being ``text`` (free text, escaped when rendered) or ``math`` (LaTeX)."""

    symbol: str
    shape: str
    kind: str
    meaning: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Flow:
    """One state-to-state Jacobian: its equation (then the factors it names ``d^{(k)}``), and
    for a state by its own previous value, what its structure says (``meaning`` pieces, as in
    :class:`Row`)."""

    lines: tuple[MathLine, ...]  # the Jacobian, then the factors it names
    meaning: tuple[tuple[str, str], ...]
    #: what ``lines`` print, as data: a :class:`~derive.symbolic.flow.Jacobian` (its paths), or
    #: the :class:`~derive.symbolic.flow.Chain` s of one previous state (each value's links),
    #: or None where this Jacobian is printed with another's chains
    printed: object = None


@dataclass(frozen=True)
class Start:
    """A row of the initialisation table: a parameter (or a block of one), how it starts
    (pieces, as in :attr:`Row.meaning`) and the source that recommends it (free text)."""

    symbol: str
    rule: tuple[tuple[str, str], ...]
    citation: str


def _rule_pieces(rule: Init) -> tuple[tuple[str, str], ...]:
    """How ``rule`` reads in the documents."""
    value = rule.value
    if rule.kind == "uniform":
        bound = r"1/\sqrt{H}" if value is None else f"{value:g}"
        return (("math", rf"\sim U(-{bound},\ {bound})"),)
    if rule.kind == "constant":
        return (("math", f"= {value:g}"),)
    if rule.kind == "identity":
        return (("math", "= I" if value == 1 else rf"= {value:g}\,I"),)
    if rule.kind == "orthogonal":
        scale = "" if value == 1 else f", times {value:g}"
        return (("text", "orthogonal (Q of a Gaussian matrix's QR)" + scale),)
    sign = "-" if rule.sign < 0 else ""
    return (("math", rf"= {sign}\log u,\ u \sim U(1,\ {value - 1:g})"),
            ("text", " per unit, u shared by the parameter's chrono blocks"))  # fmt: skip


def initialisation(spec: CellSpec) -> tuple[Start, ...]:
    """How the parameters start: a parameter whose blocks start alike named whole, else each
    block; those that start by the same rule in one row, in the order declared."""
    named: dict[Init, list[str]] = {}
    for param in spec.params:
        rules = param.rules
        if len(set(rules)) == 1:
            named.setdefault(rules[0], []).append(param_latex(param))
            continue
        for name, rule in zip(block_latex(param), rules, strict=True):
            named.setdefault(rule, []).append(name)
    return tuple(
        Start(",\\ ".join(names), _rule_pieces(rule), rule.citation)
        for rule, names in named.items()
    )


@dataclass(frozen=True)
class Document:
    """Everything a derivation template needs; mathematics printed, free text raw."""

    spec: CellSpec
    output: str  # the output state at step t
    sizes: tuple[Row, ...]
    notation: tuple[Row, ...]
    forward: tuple[MathLine, ...]
    incoming: tuple[MathLine, ...]
    backward: tuple[tuple[str, tuple[MathLine, ...]], ...]  # (what, lines) per part
    after_loop: tuple[MathLine, ...]
    gradients: tuple[MathLine, ...]
    initial: tuple[MathLine, ...]
    saved: tuple[Row, ...]
    memory: str
    statements: tuple[
        str, ...
    ]  # the printed right-hand side of every adjoint statement
    #: per part of the backward step, per statement: what it differentiates (pieces, as in
    #: Row.meaning)
    chains: tuple[tuple[tuple[tuple[str, str], ...], ...], ...] = ()
    #: the declared conventions that are equations, as pieces
    relations: tuple[tuple[tuple[str, str], ...], ...] = ()
    flow: tuple[Flow, ...] = ()  # the Jacobian of each new state by each previous state
    flow_summary: tuple[tuple[str, str], ...] = ()  # pieces, as in Row.meaning
    #: paragraphs after the structure: how the Jacobians are written, what k steps do
    flow_notes: tuple[tuple[tuple[str, str], ...], ...] = ()
    #: the measured plot beside the documents that shows this cell's gradient flow (a file
    #: stem: :data:`MEASURED_PLOT` for the cells of :data:`MEASURED_CELLS`), or ""
    measured: str = ""
    #: each layer norm's statements read together: the compact backward (pieces, formula)
    reductions: tuple[tuple[tuple[tuple[str, str], ...], MathLine], ...] = ()
    #: how each parameter starts
    starts: tuple[Start, ...] = ()

    @property
    def saved_groups(self) -> tuple[tuple[tuple[str, ...], str, tuple], ...]:
        """The tape's rows, those in a row with the same size and meaning together:
        ``(symbols, shape, meaning)``."""
        groups: list[tuple[list[str], str, tuple]] = []
        for row in self.saved:
            if groups and groups[-1][1:] == (row.shape, row.meaning):
                groups[-1][0].append(row.symbol)
            else:
                groups.append(([row.symbol], row.shape, row.meaning))
        return tuple(
            (tuple(symbols), shape, meaning) for symbols, shape, meaning in groups
        )

    @property
    def flow_lines(self) -> tuple[MathLine, ...]:
        return tuple(line for item in self.flow for line in item.lines)


def _rough_width(latex: str) -> int:
    """An estimate of a formula's typeset width in characters, fitted to what pdflatex
    typesets: a binary sign with its spaces takes three, ``⊙`` two, ``\\tfrac{1}{4}`` one."""
    text = re.sub(r"\\tfrac\{\w+\}\{\w+\}", "x", latex)
    text = re.sub(r"\\odot", "xx", text)
    text = re.sub(r" [-+] ", "xxx", text)
    text = re.sub(r"\\(left|right|,|;|quad)", "", text)
    text = re.sub(r"\\[A-Za-z]+", "x", text)
    return len(re.sub(r"[{}_^ ]", "", text))


def _math_line(
    lhs: str, op: str, terms: list[str], note: str = "", width: int = MATH_WIDTH
) -> MathLine:
    rows, current = [], ""
    for term in terms:
        candidate = f"{current} {term}".strip()
        if current and _rough_width(candidate) > width:
            rows.append(current)
            candidate = term
        current = candidate
    rows.append(current)
    return MathLine(lhs, op, tuple(rows), note, tuple(terms), width)


def _fit(lines: tuple[MathLine, ...]) -> tuple[MathLine, ...]:
    """``lines``, one ``align`` block, broken again so that the widest left-hand side and
    every right-hand side fit the line together."""
    room = LINE_WIDTH - max((_rough_width(line.lhs) for line in lines), default=0) - 8
    return tuple(
        _math_line(
            line.lhs, line.op, list(line.pieces), line.note, min(line.width, room)
        )
        if line.pieces
        else line
        for line in lines
    )


def _summed(
    terms: list[str], factor: str = "", over: tuple[str, ...] = ("j",)
) -> list[str]:
    """``factor Σ_over (terms)``: a sum over the units ``j`` of a row, or over the steps
    ``t``; one piece when it fits a line, else its terms free to break over lines."""
    sums = " ".join(rf"\sum_{index}" for index in over)  # single letters
    # the summand's unit j named where the sum runs over units: (...)_j
    unit = "_j" if "j" in over else ""
    whole = rf"{factor} {sums} \left({' '.join(terms)}\right){unit}".lstrip()
    if _rough_width(whole) <= MATH_WIDTH:
        return [whole]
    terms = list(terms)
    terms[0] = rf"{factor} {sums} \Bigl({terms[0]}".lstrip()
    terms[-1] += rf"\Bigr){unit}"
    return terms


def _transposed(name: str) -> str:
    """``name^⊤``, grouped where the name has a superscript of its own (``W^{(f)}``)."""
    if "^" in name:
        return rf"{{{name}}}^{{\top}}"
    return rf"{name}^{{\top}}"


def _shape(formula) -> str:
    dims = [size if mult == 1 else f"{mult}{size}" for mult, size in formula]
    return r" \times ".join(dims) or "1"


class _Builder:
    def __init__(self, plan: KernelPlan):
        self.plan = plan
        spec = self.spec = plan.spec
        names = latex_names(plan)
        rank: dict[str, int] = {}
        self.value: dict[sympy.Symbol, sympy.Expr] = {}  # a projection's block: W v + b
        self.block: dict[sympy.Symbol, tuple[str, str | None]] = {}
        self.weight_of: dict[
            sympy.Symbol, str
        ] = {}  # the weight block, as its gradient names it
        for d in spec.denses:
            weights = block_latex(spec.param(d.weight))
            biases = block_latex(spec.param(d.bias)) if d.bias else None
            for n, sym in enumerate(d.symbols):
                self.weight_of[sym] = weights[d.first_block + n]
                w = weights[d.first_block + n]
                if d.transposed:
                    w = _transposed(w)
                b = biases[d.first_block + n] if biases else None
                product = sympy.Symbol(f"_mv_{sym.name}")
                names[product.name] = f"{w} {names[d.source.name]}"
                rank[product.name] = len(rank)
                value = product
                if b:
                    offset = sympy.Symbol(f"_b_{sym.name}")
                    names[offset.name] = b
                    rank[offset.name] = len(rank)
                    value = product + offset
                self.value[sym] = value
                self.block[sym] = (w, b)
        self.names = names
        self.printer = DerivationPrinter(names, rank)
        self.norms = self._name_layer_norms()
        for sym, value in self.value.items():
            names[sym.name] = self.printer.doprint(value)
            if value.is_Add:
                names[sym.name] = rf"\left({names[sym.name]}\right)"
            names[adjoint_symbol(sym).name] = r"\delta " + names[sym.name]
            names[external_symbol(sym).name] = r"\hat{\delta} " + names[sym.name]

    def _name_layer_norms(self) -> tuple[LayerNorm, ...]:
        """The cell's layer norms, their scale ``(ε + σ²)^(-1/2)`` named ``ρ`` and their
        normalised values ``ẑ`` (``\\hat{z}`` of a projection block, ``\\hat{c}_t`` of a
        value), so that the equations stay short."""
        norms = layer_norms(self.spec)
        for norm in norms:
            latex = self.name(norm.variance)
            self.names[norm.rho.name] = (
                latex.replace(r"\sigma^2", r"\rho", 1)
                if latex.startswith(r"\sigma^2")
                else rf"\rho_{{{latex}}}"
            )
            for value in norm.values:
                if value.value in self.block:
                    short = str(value.value).replace("_", "")
                    self.names[value.symbol.name] = rf"\hat{{z}}_{{{short},t}}"
                else:
                    head, _, tail = self.name(value.value).partition("_")
                    self.names[value.symbol.name] = (
                        rf"\hat{{{head}}}_{tail}" if tail else rf"\hat{{{head}}}"
                    )
                self.printer.forms[value.deviation] = (
                    value.deviation.xreplace(self.value),
                )
        self.printer.norms = norms
        return norms

    def latex(self, expr) -> str:
        return self.printer.doprint(expr)

    def line(self, lhs: str, op: str, expr, note: str = "") -> MathLine:
        terms = self.printer.terms(sympy.sympify(expr), MATH_WIDTH)
        return _math_line(lhs, op, terms, note)

    def name(self, sym) -> str:
        return self.printer.doprint(sym)

    # -- the parts of the document --------------------------------------------------------

    def sizes(self) -> tuple[Row, ...]:
        meaning = {"I": "input size", "H": "hidden size"}
        rows = []
        for size in self.spec.sizes:
            text = meaning.get(size.name, "a declared size")
            rows.append(Row(size.latex, "", "size",
                            (("text", f"{text} (argument {size.argument})"),)))  # fmt: skip
        return tuple(rows)

    def notation(self) -> tuple[Row, ...]:
        spec = self.spec
        rows = [
            Row(
                self.name(spec.input),
                spec.input_size,
                "input",
                (("text", "at step t"),),
            )
        ]
        for st in spec.states:
            role = "the output; " if st.name == spec.output else ""
            rows.append(Row(self.name(st.new), st.size, "state",
                            (("text", role), ("math", self.name(st.prev)),
                             ("text", " is its value at step t-1")),))  # fmt: skip
        for p in spec.params:
            pieces = [("text", p.name)]
            if len(p.blocks) > 1:
                pieces += [
                    ("text", "; row blocks "),
                    ("math", ", ".join(block_latex(p))),
                ]
            if p.kind == "vector":
                pieces.append(("text", "; a diagonal matrix, applied per unit"))
            elif p.kind == "scalar":
                pieces.append(("text", "; one number, shared by every unit"))
            rows.append(
                Row(
                    param_latex(p),
                    _shape(p.shape_formula()),
                    "parameter",
                    tuple(pieces),
                )
            )
        for hp in spec.hypers:
            rows.append(Row(self.name(hp.symbol), "1", "hyperparameter",
                            (("text", f"{hp.name}, chosen at run time; default {hp.default!r}"),)))  # fmt: skip
        for m in spec.masks:
            training, evaluation = MASK_KINDS[m.kind]
            rows.append(Row(self.name(m.symbol), m.size, "mask", (
                ("text", f"{m.name}: a {m.kind} mask drawn per {m.per}, an input of both "
                         f"passes that takes no gradient; a layer fills it with {training} in "
                         f"training, {evaluation} in evaluation"),)))  # fmt: skip
        means = {eq.target for eq in spec.means}
        for eq in spec.equations:
            if eq.role == "mean":
                units = (
                    ("text", "one number per batch row: the mean over the units of size "),
                    ("math", self.name(size_symbol(eq.size))),
                    ("text", "" if eq.count == 1 else f" of {eq.count} blocks"),
                )  # fmt: skip
                deviation = next((m for m in means - {eq.target} if any(
                    p.exp == 2 and p.base.has(m) for p in eq.expr.atoms(sympy.Pow))), None)  # fmt: skip
                if deviation is not None:  # a variance, as nn.LayerNorm computes it
                    units = (*units, ("text", " of the squared deviations from "),
                             ("math", self.name(deviation)),
                             ("text", ": the biased variance"))  # fmt: skip
                rows.append(Row(self.name(eq.target), "1", "mean", units))
                for norm in (n for n in self.norms if n.variance == eq.target):
                    rows += self._layer_norm_rows(norm)
                continue
            if eq.role == "pre":
                pieces = (("text", "pre-activation of "), ("math", self.name(eq.owner)))
            elif eq.role == "gate":
                pieces = (("text", "gate"),)
            elif eq.role != "state":
                pieces = self._role_of(eq.target)
            else:
                continue
            if eq.target == spec.output_symbol:  # an output that is not carried
                pieces = (("text", "the output; "), *pieces)
            rows.append(Row(self.name(eq.target), eq.size, "intermediate", pieces))
        return tuple(rows)

    def _layer_norm_rows(self, norm: LayerNorm) -> list[Row]:
        """The notation's rows for a layer norm's scale ``ρ`` and its normalised values."""
        sizes = {**{sym: d.block_size for d in self.spec.denses for sym in d.symbols},
                 **{eq.target: eq.size for eq in self.spec.equations}}  # fmt: skip
        rows = [Row(self.name(norm.rho), "1", "abbreviation", (
            ("text", "one number per batch row: "),
            ("math", self.printer.unabbreviated(norm.scale)),
        ))]  # fmt: skip
        for value in norm.values:
            definition = self.printer.unabbreviated(value.deviation * norm.rho)
            rows.append(Row(self.name(value.symbol), sizes[value.value], "normalised",
                            (("math", definition),)))  # fmt: skip
        return rows

    def _role_of(self, value) -> tuple[tuple[str, str], ...]:
        """What a named value is for, from where the step reads it."""
        spec = self.spec
        readers = [d for d in spec.denses if d.source == value]
        if readers:
            return (("text", "the value a projection reads: "),
                    ("math", f"{self.block[readers[0].symbols[0]][0]} {self.name(value)}"))  # fmt: skip
        states = [eq.target for eq in spec.equations
                  if eq.role == "state" and value in eq.expr.free_symbols]  # fmt: skip
        if states:
            return (
                ("text", "candidate for "),
                ("math", ", ".join(map(self.name, states))),
            )
        return (("text", "a value the step computes once and reads again"),)

    def forward(self) -> tuple[MathLine, ...]:
        spec = self.spec
        pre = {eq.target: eq.expr for eq in spec.equations if eq.role == "pre"}
        lines = []
        for eq in spec.equations:
            if eq.role == "pre":
                continue
            if eq.role == "mean":
                lines.append(self._mean(eq))
                continue
            inline = eq.expr.xreplace(pre).xreplace(self.value)
            if _rough_width(self.latex(inline)) <= MATH_WIDTH or inline == eq.expr:
                lines.append(self.line(self.name(eq.target), "=", inline))
                continue
            # too long for one line: the pre-activation first, as a sum that can break
            for sym in sorted(
                eq.expr.free_symbols & set(pre), key=sympy.default_sort_key
            ):
                lines.append(
                    self.line(self.name(sym), "=", pre[sym].xreplace(self.value))
                )
            lines.append(
                self.line(self.name(eq.target), "=", eq.expr.xreplace(self.value))
            )
        return tuple(lines)

    def _mean(self, eq) -> MathLine:
        """``μ = 1/(K N) Σ_j (…)``: the mean over the units ``j`` of the row."""
        count = self.name(eq.count * size_symbol(eq.size))
        summand = self.printer.terms(eq.summand.xreplace(self.value), MATH_WIDTH)
        return _math_line(
            self.name(eq.target), "=", _summed(summand, rf"\frac{{1}}{{{count}}}")
        )

    def incoming(self) -> tuple[MathLine, ...]:
        lines = []
        for st in self.spec.states:
            rhs = rf"\delta {self.name(st.new)}^{{(t+1)}}"
            if st.name == self.spec.output:
                rhs = rf"\frac{{\partial \ell_t}}{{\partial y_t}} + {rhs}"
            lines.append(MathLine(self.name(external_symbol(st.new)), "=", (rhs,)))
        out = self.spec.output_symbol
        if (
            self.spec.output not in self.spec.state_names
        ):  # an output the step does not carry
            rhs = r"\frac{\partial \ell_t}{\partial y_t}"
            lines.append(MathLine(self.name(external_symbol(out)), "=", (rhs,)))
        return tuple(lines)

    def _source_adjoint(self, source) -> str:
        """Where a projection's transpose rule sends its result: ``δx_t`` or ``δh_{t-1}``
        (accumulated), or the ``\\hat{δ}`` of an intermediate the projection reads."""
        prev = {st.prev for st in self.spec.states}
        if source == self.spec.input or source in prev:
            return rf"\delta {self.name(source)}"
        return self.name(external_symbol(source))

    def _rules(self, rule: str, nodes) -> list[MatMul]:
        """The plan's transpose rules of one kind (``source``, ``weight``) among ``nodes``, in
        the order the projections are declared."""
        order = {d: n for n, d in enumerate(self.spec.denses)}
        found = [n for n in nodes if isinstance(n, MatMul) and n.rule == rule]
        return sorted(found, key=lambda n: order[n.product.dense])

    def _transpose(self, rule: MatMul, adjoints) -> MathLine:
        """``δv += Wᵀ δa`` from the plan's rule ``δv += δa @ W`` (rows of the batch): the
        weight as the rule's right operand, transposed in columns where it is not in rows."""
        d = rule.product.dense
        terms = []
        for sym in d.symbols:
            name = self.weight_of[sym] if d.transposed else self.block[sym][0]
            w = name if rule.right.transposed else _transposed(name)
            adj = adjoints[sym]
            text = self.latex(adj)
            if not adj.is_Symbol:  # W^T (δa ⊙ r), never read as (W^T δa) ⊙ r
                text = rf"\left({text}\right)"
            terms.append(("+ " if terms else "") + rf"{w} {text}")
        op = (
            "="
            if self._source_adjoint(d.source).startswith(r"\hat")
            else r"\mathrel{+}="
        )
        return _math_line(self._source_adjoint(d.source), op, terms)

    def backward(self):
        plan, spec = self.plan, self.spec
        prev = {st.prev for st in spec.states}
        vectors = set(spec.pointwise)
        parts, statements, chains = [], [], []
        self.adjoints: dict[sympy.Symbol, sympy.Expr] = {}
        self.vector_terms: dict[sympy.Symbol, list] = {}
        for stage in reversed(plan.stages):
            lines, notes = [], []
            for loop in stage.backward:
                for item in loop.derivation:
                    if item.kind == "projection":
                        self.adjoints[item.target] = item.expr
                        continue
                    if item.kind == "adjoint":
                        lhs, op = self.name(adjoint_symbol(item.target)), "="
                        statements.append(self.latex(item.expr))
                    elif item.target in prev or item.target == spec.input:
                        lhs, op = rf"\delta {self.name(item.target)}", r"\mathrel{+}="
                    elif item.target in vectors:
                        lhs, op = rf"\delta {self.name(item.target)}", r"\mathrel{+}="
                        self.vector_terms.setdefault(item.target, []).append(item.expr)
                    else:
                        lhs, op = (
                            self.name(external_symbol(item.target)),
                            r"\mathrel{+}=",
                        )
                    # a term of a mean's adjoint sums over the units; the adjoint itself
                    # is then the sum of its terms, which holds no unit index
                    if (
                        plan.values[item.target].role == Role.ROW
                        and item.kind != "adjoint"
                    ):
                        terms = self.printer.terms(sympy.sympify(item.expr), MATH_WIDTH)
                        terms = _summed(terms)
                        lines.append(_math_line(lhs, op, terms))
                    else:
                        lines.append(self.line(lhs, op, item.expr))
                    notes.append(self._chain(lhs, item.target, item.expr))
            body = [n for n in plan.backward.loop.body
                    if isinstance(n, MatMul) and n.product.stage == stage.index]  # fmt: skip
            for rule in self._rules("source", body):
                lines.append(self._transpose(rule, self.adjoints))
                notes.append((
                        ("math", lines[-1].lhs),
                        ("text", ": the transpose rule of the projection of "),
                        ("math", self.name(rule.product.dense.source)),
                        ("text", ", which the forward step multiplies by a weight matrix."),
                    ))  # fmt: skip
            count = len(plan.stages)
            undone = "first" if stage.index == count - 1 else "next"
            what = (
                "the whole step"
                if count == 1
                else f"stage {stage.index + 1} of {count}, undone {undone}"
            )
            parts.append((what, tuple(lines)))
            chains.append(tuple(notes))
        self.chains = tuple(chains)
        return tuple(parts), tuple(statements)

    def _chain(self, lhs, target, expr) -> tuple[tuple[str, str], ...]:
        """Which forward equations a backward statement differentiates, the local derivative
        each multiplies by, and how many paths it sums: read off the adjoints and outside
        adjoints its right-hand side holds."""
        symbols = expr.free_symbols
        through = [
            eq for eq in self.spec.equations if adjoint_symbol(eq.target) in symbols
        ]
        outside = external_symbol(target) in symbols
        paths = len(through) + outside
        pieces = [("math", lhs), ("text", f": {paths} paths, " if paths > 1 else ": ")]
        for n, eq in enumerate(through):
            pieces += [
                ("text", "; " if n else ""),
                *self._local_derivative(target, expr, eq),
            ]
        joint = "; and " if through else ""
        carried = {st.new for st in self.spec.states} | {self.spec.output_symbol}
        if outside and target in carried:  # the loss and step t + 1 reach it
            pieces.append(("text", joint + "what reaches it from outside the step"))
        elif outside:  # terms written into its accumulator by statements above
            pieces += [("text", joint + "the terms gathered in "),
                       ("math", self.name(external_symbol(target))),
                       ("text", " by the statements above")]  # fmt: skip
        pieces.append(("text", "."))
        return tuple(pieces)

    def _local_derivative(self, target, expr, eq) -> list[tuple[str, str]]:
        """The chain rule through ``eq``: the local derivative ``∂v/∂a`` the path multiplies
        ``δv`` by (the factor of ``δv`` in the statement), and which activation's derivative
        it is."""
        d = adjoint_symbol(eq.target)
        factor = sympy.factor_terms(sympy.diff(expr, d))
        partial = rf"\partial {self.name(eq.target)} / \partial {self.name(target)}"
        printed = self.latex(factor)
        pieces = [("text", "the chain rule through "), ("math", self.name(eq.target)),
                  ("text", ", ")]  # fmt: skip
        if _rough_width(printed) <= LOCAL_WIDTH:
            pieces.append(("math", f"{partial} = {printed}"))
        else:  # as long as the statement: named, and read there
            pieces += [("math", partial), ("text", ", the factor of "),
                       ("math", self.name(d))]  # fmt: skip
        act = descriptor(eq.expr) if eq.expr.args == (target,) else None
        if act is not None and act.name != "identity":
            pieces.append(("text", f", {act.name}'s derivative through its output"))
        return pieces

    def after_loop(self) -> tuple[MathLine, ...]:
        rules = self._rules("source", self.plan.backward.after)
        return tuple(self._transpose(rule, self.adjoints) for rule in rules)

    def gradients(self) -> tuple[MathLine, ...]:
        lines, seen = [], set()
        for rule in self._rules("weight", self.plan.backward.after):
            # the rule's product Lᵀ @ R in rows of the batch is Σ_t l_t r_tᵀ in columns
            d = rule.product.dense
            source = self.name(d.source)
            adjoint_first = rule.left.array == rule.product.adjoint
            for sym in d.symbols:
                w, b = self.weight_of[sym], self.block[sym][1]
                adj = self.adjoints[sym]
                text = self.latex(adj)
                if adj.is_Add or not adjoint_first:
                    text = rf"\left({text}\right)"
                product = (rf"{text}\, {_transposed(source)}" if adjoint_first
                           else rf"{source}\, {_transposed(text)}")  # fmt: skip
                op = (
                    r"\mathrel{+}=" if w in seen else "="
                )  # a block two projections read
                seen.add(w)
                lines.append(MathLine(rf"\delta {w}", op, (rf"\sum_t {product}",)))
                if b:
                    lines.append(MathLine(rf"\delta {b}", "=", (rf"\sum_t {text}",)))
        for vector, terms in self.vector_terms.items():
            total = self.printer.terms(sympy.Add(*terms), MATH_WIDTH)
            shared = self.plan.values[vector].role == Role.SCALAR
            over = ("t", "j") if shared else ("t",)  # a scalar sums over units too
            lines.append(_math_line(rf"\delta {self.name(vector)}", "=",
                                    _summed(total, over=over)))  # fmt: skip
        return tuple(lines)

    def initial(self) -> tuple[MathLine, ...]:
        return tuple(
            MathLine(
                rf"\frac{{\partial L}}{{\partial {timed(st.latex or plain_latex(st.name), '0')}}}",
                "=",
                (rf"\delta {self.name(st.prev)}\,\Big|_{{t=1}}",),
            )
            for st in self.spec.states
        )

    def _diag(self, expr, definitions: list) -> str:
        """``diag(expr)``; an expression too wide for a line is named ``d^{(k)}`` and defined
        on lines of its own."""
        text = self.latex(expr)
        if _rough_width(text) > DIAG_WIDTH:
            named = {line.pieces: line.lhs for line in definitions}  # each named once
            terms = self.printer.terms(sympy.sympify(expr), DIAG_WIDTH)
            text = named.get(tuple(terms))
            if text is None:
                text = rf"d^{{({len(definitions) + 1})}}"
                definitions.append(_math_line(text, "=", terms, width=DIAG_WIDTH))
        return rf"\operatorname{{diag}}\left({text}\right)"

    def _path(self, path: Path, definitions: list) -> list[str]:
        """``diag(a_0) W_1 diag(a_1) ...``, leaving out ``diag(1)``, factor by factor."""
        parts = []
        for n, diagonal in enumerate(path.diagonals):
            if diagonal != 1:
                parts.append(self._diag(diagonal, definitions))
            if n < len(path.blocks):
                block = path.blocks[n]
                is_mean = self.plan.values[block].role == Role.ROW
                parts.append(
                    r"\mathbf{1}\mathbf{1}^{\top}" if is_mean else self.block[block][0]
                )
        return parts

    def _jacobian_name(self, value, prev) -> str:
        """``∂v/∂r_{t-1}`` of a new state, ``J^{r}_{v}`` of a value inside the step."""
        if value in {st.new for st in self.spec.states}:
            return (
                rf"\frac{{\partial {self.name(value)}}}{{\partial {self.name(prev)}}}"
            )
        state = next(st for st in self.spec.states if st.prev == prev)
        return rf"J^{{{state.latex or plain_latex(state.name)}}}_{{{self.name(value)}}}"

    def _chain_lines(
        self, chain_list: list[Chain], prev, definitions
    ) -> list[MathLine]:
        """The Jacobians of every value on a path from ``prev``, each named once, in the order
        the step computes them; projection blocks of ``prev`` itself are written inline."""
        blocks = {sym: d for d in self.spec.denses for sym in d.symbols}
        means = chain_list[0].means
        values = {}
        for chain in chain_list:
            values.update(chain.values)

        def jacobian_of(arg) -> str:
            if arg == prev:
                return "I"
            if arg in blocks:
                source = blocks[arg].source
                rest = "" if source == prev else " " + jacobian_of(source)
                return self.block[arg][0] + rest
            if arg in means:
                return r"\mathbf{1} " + self._jacobian_name(arg, prev)
            return self._jacobian_name(arg, prev)

        lines = []
        for value, links in values.items():
            if value in blocks and blocks[value].source == prev:
                continue  # W_b, inline where it is read
            by_factor: dict[sympy.Expr, list[str]] = {}
            for link in links:
                by_factor.setdefault(link.factor, []).append(jacobian_of(link.arg))
            terms = []
            for factor, read in by_factor.items():
                total = (
                    read[0] if len(read) == 1 else rf"\left({' + '.join(read)}\right)"
                )
                if factor == 1:
                    text = total
                elif total == "I":
                    text = self._diag(factor, definitions)
                else:
                    text = f"{self._diag(factor, definitions)} {total}"
                terms.append(("+ " if terms else "") + text)
            if value in means:  # a row: the sum over the units of its terms' Jacobians
                terms = [r"\mathbf{1}^{\top} \Bigl(" + terms[0], *terms[1:]]
                terms[-1] += r"\Bigr)"
            lines.append(_math_line(self._jacobian_name(value, prev), "=", terms))
        return lines

    def flow(self) -> tuple[tuple[Flow, ...], tuple[tuple[str, str], ...]]:
        spec = self.spec
        gates = {eq.target for eq in spec.equations if eq.role == "gate"}
        carried, pointwise, flows, definitions = [], [], [], []
        try:
            adjoint = derive_adjoint(spec)
            found = jacobians(adjoint)
        except FlowTooLargeError as error:
            return (), (("text", (
                f"The Jacobians between steps are not printed: {error}. Naming the values "
                "that several equations read (cell.let) keeps them short."
            )),)  # fmt: skip
        # through a mean the paths multiply: such a cell's Jacobians are printed as chains
        chained = list(chains(adjoint)) if spec.means else []
        printed_prev = set()
        for jac in found:
            new, prev = spec.state(jac.new), spec.state(jac.prev)
            lhs = rf"\frac{{\partial {self.name(new.new)}}}{{\partial {self.name(prev.prev)}}}"
            first = len(definitions)
            printed = jac
            if chained:
                printed = None
                if prev.name in printed_prev:  # printed with its previous state's first
                    lines = ()
                else:
                    printed_prev.add(prev.name)
                    same = [c for c in chained if c.prev == prev.name]
                    printed = tuple(same)
                    body = self._chain_lines(same, prev.prev, definitions)
                    missing = [  # new states no path reaches: a zero Jacobian
                        MathLine(self._jacobian_name(spec.state(c.new).new, prev.prev), "=", ("0",))
                        for c in same if not c.values
                    ]  # fmt: skip
                    lines = (*body, *missing, *definitions[first:])
            else:
                terms = (
                    [self._diag(jac.diagonal, definitions)] if jac.diagonal != 0 else []
                )
                for path in jac.paths:  # one path a row, or more where it is too wide
                    first_factor, *rest = self._path(path, definitions)
                    parts = [("+ " if terms else "") + first_factor, *rest]
                    terms += _math_line(lhs, "=", parts).rows
                lines = (
                    MathLine(lhs, "=", tuple(terms) or ("0",)),
                    *definitions[first:],
                )
            meaning: tuple[tuple[str, str], ...] = ()
            if jac.new == jac.prev:
                kind, factor = verdict(jac, gates)
                if kind in ("gate", "identity"):
                    carried.append(self.name(new.new))
                elif kind == "pointwise":
                    pointwise.append(self.name(new.new))
                meaning = self._verdict(
                    kind, factor, bool(jac.paths), new, factor in gates
                )
            flows.append(Flow(lines, meaning, printed))
        if carried:
            summary = (
                ("text", "Over many steps the gradient survives along "),
                ("math", ", ".join(carried)),
                ("text", ": along that path each step multiplies it by a diagonal matrix, "
                 "a gate value per unit, not by a weight matrix."),
            )  # fmt: skip
        elif pointwise:
            summary = (
                ("text", "Over many steps the gradient along "),
                ("math", ", ".join(pointwise)),
                ("text", " is multiplied per unit by its pointwise factor at every step: it is "
                 "kept where that factor stays near 1 and vanishes or explodes geometrically "
                 "where it does not."),
            )  # fmt: skip
        else:
            summary = (("text", (
                "Every path from step to step multiplies the gradient by a weight matrix and "
                "by activation derivatives (or by factors below 1), so over many steps it "
                "vanishes or explodes geometrically: the difficulty gated cells were made for."
            )),)  # fmt: skip
        return tuple(flows), summary

    def _verdict(
        self, kind, factor, paths, state, gate=True
    ) -> tuple[tuple[str, str], ...]:
        name = ("math", self.name(state.new))
        if kind == "none":
            return (name, ("text", " does not depend on its previous value."))
        if kind == "projections":
            return (name, ("text", (
                " has no pointwise path from its previous value: every path goes through a "
                "weight matrix and an activation's derivative."
            )))  # fmt: skip
        rest = " The paths through the projections add to it." if paths else ""
        if kind == "identity":
            text = " copies its previous value: its gradient passes unchanged." + rest
            return (name, ("text", text))
        if kind == "gate":
            what = "the gate value " if gate else "one minus a gate value, "
            return (
                name, ("text", f"'s pointwise path is led by {what}"),
                ("math", self.latex(factor)),
                ("text", ": where it is near 1, the gradient passes from step to step "
                 "unchanged, with no weight matrix and no activation derivative in between; "
                 "over k steps that path multiplies it by the product of k such values, one "
                 "per step, so it fades only as fast as they fall below 1." + rest),
            )  # fmt: skip
        return (name, ("text", (
            "'s pointwise path multiplies the gradient by a per-unit factor at every step, "
            "which keeps it where the factor stays near 1." + rest
        )))  # fmt: skip

    def flow_notes(self, chained: bool) -> tuple[tuple[tuple[str, str], ...], ...]:
        """How chained Jacobians read (a cell with means), and what k steps make of them."""
        notes = []
        if chained:
            notes.append((
                ("text", "Through a mean the paths multiply (every unit reads the mean, which "
                 "reads every unit), so the Jacobians above are written as the chain rule "
                 "builds them: "),
                ("math", r"J^{r}_{v}"),
                ("text", " is the Jacobian of a value "), ("math", "v"),
                ("text", " of the step with respect to the previous state "),
                ("math", "r_{t-1}"), ("text", ", the sum over what "), ("math", "v"),
                ("text", " reads of "),
                ("math", r"\operatorname{diag}(\partial v / \partial a)\, J^{r}_{a}"),
                ("text", "; a mean's is a row, "), ("math", r"\mathbf{1}^{\top}(\dots)"),
                ("text", ", and a value that reads a mean adds the rank-one term "),
                ("math", r"\operatorname{diag}(\partial v / \partial \mu)\, \mathbf{1}\, J^{r}_{\mu}"),
                ("text", ". Each is named once and read wherever it is needed."),
            ))  # fmt: skip
        notes.append((
            ("text", "Over k steps the Jacobians multiply, "),
            ("math", r"\frac{\partial s_t}{\partial s_{t-k}} = \prod_{m=0}^{k-1} "
                     r"\frac{\partial s_{t-m}}{\partial s_{t-m-1}}"),
            ("text", ", so the gradient that reaches step t - k is at most the product of "
             "their norms times the gradient at step t: where the factors' norms stay below 1 "
             "it vanishes geometrically, where they stay above 1 it explodes. Clipping the "
             "gradient's norm before each update (torch.nn.utils.clip_grad_norm_) bounds an "
             "explosion. A gate that leads a pointwise path starts near the sigmoid of its "
             "bias: a forget-gate bias of 1 (Jozefowicz, Zaremba and Sutskever 2015; "
             "forget_bias=1 in derive.runtime.Recurrent) starts the carried path near 0.73 "
             "rather than 0.5. examples/demo.py measures the norm of the gradient of a loss on "
             "the last of 100 steps with respect to every earlier state, for rnn_tanh, lstm "
             "and gru, at initialisation and after training (demo_output/gradient_flow.png)."),
        ))  # fmt: skip
        return tuple(notes)

    def reductions(self) -> tuple[tuple[tuple[tuple[str, str], ...], MathLine], ...]:
        """Each layer norm's backward statements read together (Ba, Kiros and Hinton 2016):
        with ``ẑ = ρ (v - μ)`` and ``δẑ`` the adjoint that reaches it (its gain times the
        adjoint of what reads it), ``δv = ρ (δẑ - mean(δẑ) - ẑ mean(δẑ ẑ))``, the means over
        the units of the row."""
        out = []
        for norm in self.norms:
            eq = next(e for e in self.spec.means if e.target == norm.variance)
            mean, variance, rho = norm.mean, norm.variance, norm.rho
            zs = [value.symbol for value in norm.values]
            count = self.name(eq.count * size_symbol(eq.size))
            zhat = r"\hat{z}"
            bar = rf"\frac{{1}}{{{count}}} \sum_j"
            formula = MathLine(
                r"\delta v", "=",
                (rf"{self.name(rho)} \odot \Bigl(\delta {zhat} - {bar} \delta {zhat}_j "
                 rf"- {zhat} \odot {bar} \left(\delta {zhat} \odot {zhat}\right)_j\Bigr)",),
            )  # fmt: skip
            pieces = (
                ("text", "Read together, the statements through "),
                ("math", self.name(mean)), ("text", " and "), ("math", self.name(variance)),
                ("text", " are the layer-norm backward: for the values "),
                ("math", ", ".join(self.name(z) for z in zs)),
                ("text", " normalised together over the "),
                ("math", count), ("text", " units of a row, each "),
                ("math", rf"{zhat} = {self.name(rho)} \odot (v - {self.name(mean)})"),
                ("text", ", with "), ("math", rf"\delta {zhat}"),
                ("text", " the adjoint that reaches it (its gain times the adjoint of what "
                 "reads it), the statements above add up to"),
            )  # fmt: skip
            out.append((pieces, formula))
        return tuple(out)

    def saved(self) -> tuple[tuple[Row, ...], str]:
        spec, plan = self.spec, self.plan
        sizes = {**{eq.target: eq.size for eq in spec.equations},
                 **{sym: d.block_size for d in spec.denses for sym in d.symbols}}  # fmt: skip
        rows = [
            Row(self.name(st.new), st.size, "state",
                (("text", "whole sequence, the initial state included"),))
            for st in spec.states
        ]  # fmt: skip
        # a mean is one number per row, as in the notation table
        means = {eq.target for eq in spec.means}
        for sym in plan.saved:
            rows.append(Row(self.name(sym), "1" if sym in means else sizes[sym], "saved",
                            (("text", "read by the backward pass"),)))  # fmt: skip
        total = " + ".join(
            str(n) if s is None else (f"{n}{s}" if n != 1 else s)  # None: one per row
            for n, s in plan.saved_per_step
        )
        memory = rf"B \left({total}\right) s"
        return tuple(rows), memory


def activation_derivatives() -> tuple[tuple[str, str, str], ...]:
    """Each activation a declaration may apply: its name, ``y = f(a)`` and ``dy/da`` as the
    backward statements write it (through the output ``y`` where the derivative allows)."""
    a, y = sympy.symbols("a y")
    printer = DerivationPrinter({})
    rows = []
    for act in FUNCTIONS.values():
        if not act.declarable:
            continue
        applied = act.function(a)
        derivative = act.derivative(applied).xreplace({applied: y})
        rows.append(
            (act.name, f"y = {printer.doprint(applied)}", printer.doprint(derivative))
        )
    return tuple(rows)


def document(plan: KernelPlan) -> Document:
    """The derivation of ``plan``'s cell."""
    build = _Builder(plan)
    backward, statements = build.backward()
    saved, memory = build.saved()
    flow, summary = build.flow()
    fitted = iter(_fit(tuple(line for item in flow for line in item.lines)))
    flow = tuple(
        Flow(tuple(next(fitted) for _ in item.lines), item.meaning, item.printed)
        for item in flow
    )
    return Document(
        spec=plan.spec,
        output=build.name(plan.spec.output_symbol),
        sizes=build.sizes(),
        notation=build.notation(),
        forward=_fit(build.forward()),
        incoming=build.incoming(),
        backward=tuple((what, _fit(lines)) for what, lines in backward),
        after_loop=_fit(build.after_loop()),
        gradients=_fit(build.gradients()),
        initial=build.initial(),
        saved=saved,
        memory=memory,
        statements=statements,
        chains=build.chains,
        relations=tuple(
            (
                ("text", r.text + " "),
                ("math", f"{build.latex(r.lhs)} = {build.latex(r.rhs)}"),
            )
            for r in plan.spec.relations
        ),
        flow=flow,
        flow_summary=summary,
        reductions=build.reductions(),
        flow_notes=build.flow_notes(bool(plan.spec.means)),
        measured=MEASURED_PLOT if plan.spec.name in MEASURED_CELLS else "",
        starts=initialisation(plan.spec),
    )


_TEX_SPECIAL = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
    "^": r"\^{}", "_": r"\_", "%": r"\%", "~": r"\textasciitilde{}", "<": r"$<$", ">": r"$>$",
    "|": r"$|$",
}  # fmt: skip


#: Accents LaTeX makes in any font encoding, by the combining character that NFD gives.
_TEX_ACCENTS = {
    "\u0300": "`", "\u0301": "'", "\u0302": "^", "\u0303": "~", "\u0304": "=", "\u0306": "u",
    "\u0307": ".", "\u0308": '"', "\u030a": "r", "\u030b": "H", "\u030c": "v", "\u0327": "c",
}  # fmt: skip
#: Letters with a LaTeX command of their own.
_TEX_LETTERS = {
    "ß": r"\ss{}", "æ": r"\ae{}", "Æ": r"\AE{}", "ø": r"\o{}", "Ø": r"\O{}", "œ": r"\oe{}",
    "Œ": r"\OE{}", "ł": r"\l{}", "Ł": r"\L{}", "ı": r"\i{}", "å": r"\aa{}", "Å": r"\AA{}",
}  # fmt: skip


def _tex_character(ch: str) -> str:
    if " " <= ch <= "~":
        return _TEX_SPECIAL.get(ch, ch)
    if ch in _TEX_LETTERS:
        return _TEX_LETTERS[ch]
    base, *marks = unicodedata.normalize("NFD", ch)
    if (
        base.isascii()
        and base.isalpha()
        and marks
        and all(m in _TEX_ACCENTS for m in marks)
    ):
        for mark in marks:
            base = rf"\{_TEX_ACCENTS[mark]}{{{base}}}"
        return base
    return rf"\texttt{{[U+{ord(ch):04X}]}}"  # no font can be relied on to have it


def tex_escape(text: str) -> str:
    """Free text as LaTeX that typesets it literally: no command, group or comment survives,
    and every character compiles with plain pdflatex (accented Latin letters as accents, any
    other character outside printable ASCII as its code point)."""
    return "".join(_tex_character(ch) for ch in str(text))


def markdown_escape(text: str) -> str:
    """Free text as Markdown that renders it literally (no emphasis, links, HTML or math);
    control and separator characters appear as their code points."""
    text = "".join(ch if ch.isprintable() or ch == " " else f"[U+{ord(ch):04X}]"
                   for ch in str(text))  # fmt: skip
    # not ( or ): "\(" opens inline math for MathJax, and brackets are escaped already
    return re.sub(r"([\\`*_{}\[\]<>#+!|$~^-])", r"\\\1", text)
