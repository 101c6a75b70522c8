"""A diagram of each cell, drawn from its declaration's data flow, for Graphviz's ``dot``.

The graph reads left to right: the input and the previous states; the projections (a box per
weight matrix, ``W · v``); the pointwise equations (an ellipse per named value, labelled with
what computes it, and a circle per operation inside an equation: ``+``, ``⊙``, ``1 −``, a
power, so that ``r ⊙ (W h)`` is drawn as a product, not a sum); the new states. Labels are plain
text with Unicode subscripts. A layer norm is one node (its mean and variance inside) feeding
the values it normalises. Every edge is a use in an equation, so the picture is the step's
data flow and nothing else. :func:`dot_source` is plain text
(deterministic); :func:`render` runs ``dot`` to make SVG or PDF, without a shell.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import sympy

from ..symbolic.activations import descriptor
from ..symbolic.declare import CellSpec, operations
from ..symbolic.norms import abbreviate, layer_norms

__all__ = [
    "UNROLLED",
    "DiagramError",
    "dot",
    "dot_source",
    "render",
    "svg",
    "unrolled_source",
]

#: LaTeX accents and letters a label may carry, as Unicode
_ACCENTS = {"tilde": "\u0303", "bar": "\u0304", "hat": "\u0302", "dot": "\u0307"}
_GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "zeta": "ζ",
    "eta": "η", "theta": "θ", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ",
    "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "phi": "φ", "chi": "χ", "psi": "ψ",
    "omega": "ω", "odot": "⊙",
}  # fmt: skip
_SYMBOLS = {"sigmoid": "σ", "tanh": "tanh", "relu": "ReLU", "identity": "id"}


class DiagramError(RuntimeError):
    """``dot`` is missing or failed; the message says which and how to install it."""


def _plain(latex: str) -> str:
    """A declared LaTeX name as Unicode text (accents combined, Greek as letters); anything
    else loses its markup."""
    text = re.sub(r"\\(tilde|bar|hat|dot)\{([^{}]*)\}",
                  lambda m: m.group(2) + _ACCENTS[m.group(1)], latex)  # fmt: skip
    text = re.sub(r"\\([A-Za-z]+)", lambda m: _GREEK.get(m.group(1), m.group(1)), text)
    return re.sub(r"[{}\\$^_]", "", text)


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


#: Time indices as Unicode sub- and superscripts: a label is plain text, which every renderer
#: places where Graphviz measured it (an HTML-like ``<SUB>`` drifts in a browser's SVG)
_SUBSCRIPT = str.maketrans("t0123456789+-()", "ₜ₀₁₂₃₄₅₆₇₈₉₊₋₍₎")
_SUPERSCRIPT = str.maketrans("t0123456789+-()", "ᵗ⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁽⁾")


def _time(time: str, up: bool = False) -> str:
    return time.translate(_SUPERSCRIPT if up else _SUBSCRIPT)


def _label(name: str, time: str) -> str:
    """An HTML-like label: ``name`` with the time index as a subscript."""
    return f"<{_html(name)}{_time(time)}>"


def _operation(expr: sympy.Expr) -> str:
    activation = descriptor(expr)
    if activation is not None:
        return _SYMBOLS.get(activation.name, activation.name)
    if expr.is_Add:
        return "+"
    if expr.is_Mul:
        return "⊙"
    return ""


def dot_source(spec: CellSpec) -> str:
    """The cell's data flow as a DOT graph (one line per node and edge, in declaration
    order)."""
    names = {spec.input: ("x", "t")}
    for s in spec.states:
        shown = _plain(s.latex) if s.latex else s.name
        names[s.prev] = (shown, "t-1")
        names[s.new] = (shown, "t")
    for m in spec.masks:
        names[m.symbol] = (_plain(m.latex) if m.latex else f"m{m.kind[0]}({m.of})",
                           "t" if m.per == "step" else "")  # fmt: skip
    for eq in spec.equations:
        if eq.role != "state":
            names[eq.target] = (_plain(eq.latex) if eq.latex else eq.target.name, "t")
    node = {sym: f"n{n}" for n, sym in enumerate(names)}
    block_of = {sym: d for d in spec.denses for sym in d.symbols}
    lines = [
        "digraph cell {",
        '  rankdir=LR; nodesep=0.25; ranksep=0.35; fontname="Helvetica";',
        '  node [fontname="Helvetica", fontsize=11]; edge [arrowsize=0.6];',
        f"  {node[spec.input]} [label={_label(*names[spec.input])}, shape=plaintext];",
    ]
    for sym in (*(s.prev for s in spec.states), *(m.symbol for m in spec.masks)):
        lines.append(f"  {node[sym]} [label={_label(*names[sym])}, shape=plaintext];")
    for n, d in enumerate(spec.denses):
        weight = _html(d.weight) + ("ᵀ" if d.transposed else "")
        blocks = ", ".join(d.blocks)
        lines.append(
            f"  d{n} [label=<{weight} · {_html(names[d.source][0])}"
            f'{_time(names[d.source][1])}<BR/><FONT POINT-SIZE="9">{blocks}</FONT>>, '
            "shape=box, style=rounded];"
        )
        lines.append(f"  {node[d.source]} -> d{n};")
    dense_index = {d.name: n for n, d in enumerate(spec.denses)}

    def source_of(sym):
        if sym in block_of:
            return f"d{dense_index[block_of[sym].name]}"
        return node.get(sym)

    norms = layer_norms(spec)
    statistics = _layer_norm_nodes(norms, source_of, node, lines)
    for eq in spec.equations:
        if eq.target in statistics:
            continue
        target = node[eq.target]
        name, time = names[eq.target]
        operation = "mean" if eq.role == "mean" else _operation(eq.expr)
        if eq.role == "state":
            lines.append(
                f"  {target} [label={_label(name, time)}, shape=doublecircle];"
            )
        elif eq.role == "pre":
            lines.append(f'  {target} [label="{operation or "+"}", shape=circle, '
                         "width=0.3, fixedsize=true];")  # fmt: skip
        else:
            shown = f"{_html(name)}{_time(time)}"
            if operation:
                shown += f" = {_html(operation)}"
            lines.append(f"  {target} [label=<{shown}>, shape=ellipse];")

        expr = abbreviate(eq.expr, norms)  # through the normalised values
        if eq.role != "mean" and operations(expr) <= DRAWN_OPERATIONS:
            # every operation a node: the picture is the equation, ⊙ and 1 - z included;
            # a state's own operation too (its node shows only its name)
            drawn = (expr,) if eq.role == "state" else _arguments(expr)
            inputs = _operands(drawn, source_of, lines, f"{target}_")
        else:  # a long equation: one node, fed by what it reads
            inputs = [source_of(sym) for sym in sorted(expr.free_symbols,
                                                       key=sympy.default_sort_key)]  # fmt: skip
        for source in dict.fromkeys(i for i in inputs if i):
            lines.append(f"  {source} -> {target};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _layer_norm_nodes(norms, source_of, node, lines) -> set:
    """A node per layer norm (its mean and variance inside), fed by the values it normalises
    and standing for their normalised values and its scale in ``node``; returns the
    statistics it draws."""
    for n, norm in enumerate(norms):
        lines.append(f'  ln{n} [label="layer norm", shape=hexagon];')
        for source in dict.fromkeys(source_of(value.value) for value in norm.values):
            lines.append(f"  {source} -> ln{n};")
        for value in norm.values:
            node[value.symbol] = f"ln{n}"
        node[norm.rho] = f"ln{n}"
    return {sym for norm in norms for sym in (norm.mean, norm.variance)}


#: An equation of at most this many operations is drawn operation by operation
DRAWN_OPERATIONS = 14


def _operands(args, source_of, lines, prefix) -> list[str | None]:
    """The nodes that feed an operation reading ``args``: a symbol's node, or a node added (to
    ``lines``, named from ``prefix``) for each operation among them; numbers feed nothing."""
    found = []
    for n, arg in enumerate(args):
        if arg.is_Symbol:
            found.append(source_of(arg))
        elif not arg.is_Number:
            name, inner = f"{prefix}{n}", []
            sources = _operands(_arguments(arg), source_of, inner, f"{name}_")
            sources = [s for s in sources if s]
            if not sources:  # of parameters alone (a bias, -β): not in the data flow
                continue
            lines.append(f'  {name} [label="{_html(_node_label(arg))}", shape=circle, '
                         "width=0.3, margin=0.02];")  # fmt: skip
            lines += inner
            lines += [f"  {source} -> {name};" for source in dict.fromkeys(sources)]
            found.append(name)
    return found


def _arguments(expr) -> tuple:
    """What ``expr``'s drawn operation reads: ``1 - z`` reads ``z``, ``-a`` reads ``a``."""
    if (z := _one_minus(expr)) is not None:
        return (z,)
    if expr.is_Mul and expr.args[0] == -1:
        return (sympy.Mul(*expr.args[1:]),)
    if expr.is_Pow:
        return (expr.base,)
    return expr.args


def _one_minus(expr):
    """``z`` where ``expr`` is ``1 - z``, else None."""
    if expr.is_Add and len(expr.args) == 2 and sympy.Integer(1) in expr.args:
        other = next(a for a in expr.args if a != 1)
        if other.is_Mul and other.args[0] == -1:
            return sympy.Mul(*other.args[1:])
    return None


def _node_label(expr) -> str:
    """The operation a node draws: an activation, ``+``, ``⊙``, ``1 −``, ``−``, a power."""
    if _one_minus(expr) is not None:
        return "1 −"
    if expr.is_Mul and expr.args[0] == -1:
        return "−"
    if expr.is_Mul and expr.args[0].is_Number:
        return f"{expr.args[0]}·"
    if expr.is_Pow:
        return {2: "(·)²", -1: "1/·"}.get(expr.exp, f"(·)^{expr.exp}")
    return _operation(expr) or type(expr).__name__


#: The file name (without suffix) of the figure of the unrolled chain, beside the catalog
UNROLLED = "bptt-unrolled"


def unrolled_source() -> str:
    """Three steps of a recurrent cell unrolled, for the catalog's primer: the forward chain
    (solid) and the adjoints flowing back (dashed), into each state from its step's loss and
    from the next step. Positions are pinned (neato), so the chain reads left to right."""
    steps = ("t-1", "t", "t+1")
    back = 'style=dashed, color="#b03030", fontcolor="#b03030"'
    lines = [
        "digraph unrolled {",
        '  layout=neato; splines=curved; fontname="Helvetica";',
        '  node [fontname="Helvetica", fontsize=12]; edge [arrowsize=0.6, fontsize=11,',
        '        fontname="Helvetica"];',
        f'  s0 [label="s{_time("t-2")}", shape=plaintext, pos="0,0!"];',
    ]
    for n, time in enumerate(steps, 1):
        x, sub = 2.6 * n - 1.3, _time(time)
        lines += [
            f'  x{n} [label="x{sub}", shape=plaintext, pos="{x:.1f},-1.1!"];',
            f'  c{n} [label="step {time}", shape=box, style=rounded, pos="{x:.1f},0!"];',
            f'  s{n} [label="s{sub}", shape=circle, pos="{x + 1.3:.1f},0!"];',
            f'  l{n} [label="ℓ{sub}", shape=plaintext, pos="{x + 1.3:.1f},1.4!"];',
            f"  s{n - 1} -> c{n}; x{n} -> c{n}; c{n} -> s{n}; s{n} -> l{n};",
            f'  l{n} -> s{n} [{back}, label="∂ℓ{sub}/∂s{sub}"];',
        ]
        if n > 1:
            previous = steps[n - 2]
            lines.append(
                f"  s{n} -> s{n - 1} [{back}, tailport=n, headport=n, "
                f'label="δs{_time(previous)}{_time(f"({time})", up=True)}"];'
            )
    lines.append("}")
    return "\n".join(lines) + "\n"


def dot() -> str:
    """The ``dot`` executable, or a :class:`DiagramError` that says how to install it."""
    found = shutil.which("dot")
    if found is None:
        raise DiagramError(
            "Graphviz's dot was not found on PATH; cell diagrams need it. On Debian or "
            "Ubuntu: apt-get install graphviz"
        )
    return found


def _run_dot(source: str, fmt: str, what: str, *out: str) -> bytes:
    done = subprocess.run(
        [dot(), f"-T{fmt}", *out],
        input=source.encode(),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise DiagramError(f"dot failed on {what}: {done.stderr.decode()[-1000:]}")
    return done.stdout


def svg(source: str) -> str:
    """``source`` laid out by ``dot`` as an ``<svg>`` element, to place inside a page."""
    text = _run_dot(source, "svg", "the diagram").decode("utf-8")
    return text[text.index("<svg") :]


def render(source: str, out: Path) -> Path:
    """Lay out ``source`` with ``dot`` into ``out`` (its suffix, ``.svg`` or ``.pdf``, picks
    the format)."""
    fmt = out.suffix.lstrip(".")
    if fmt not in ("svg", "pdf"):
        raise ValueError(f"render: out must end in .svg or .pdf; got {out.name}")
    _run_dot(source, fmt, out.name, "-o", str(out))
    return out
