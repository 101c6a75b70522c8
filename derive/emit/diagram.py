"""A diagram of each cell, drawn from its declaration's data flow, for Graphviz's ``dot``.

The graph reads left to right: the input and the previous states; the projections (a box per
weight matrix, ``W · v``); the pointwise equations (a circle per value, labelled with what it
computes: an activation, ``⊙``, ``+``); the new states. Every edge is a use in an equation, so
the picture is the step's data flow and nothing else. :func:`dot_source` is plain text
(deterministic); :func:`render` runs ``dot`` to make SVG or PDF, without a shell.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import sympy

from ..symbolic.activations import descriptor
from ..symbolic.declare import CellSpec

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


def _label(name: str, time: str) -> str:
    """An HTML-like label: ``name`` with the time index as a subscript."""
    return f"<{_html(name)}<SUB>{time}</SUB>>"


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
    for s in spec.states:
        lines.append(
            f"  {node[s.prev]} [label={_label(*names[s.prev])}, shape=plaintext];"
        )
    for n, d in enumerate(spec.denses):
        weight = _html(d.weight) + ("ᵀ" if d.transposed else "")
        blocks = ", ".join(d.blocks)
        lines.append(
            f"  d{n} [label=<{weight} · {_html(names[d.source][0])}<SUB>"
            f'{names[d.source][1]}</SUB><BR/><FONT POINT-SIZE="9">{blocks}</FONT>>, '
            "shape=box, style=rounded];"
        )
        lines.append(f"  {node[d.source]} -> d{n};")
    dense_index = {d.name: n for n, d in enumerate(spec.denses)}
    for eq in spec.equations:
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
            shown = f"{_html(name)}<SUB>{time}</SUB>"
            if operation:
                shown += f"<BR/>{_html(operation)}"
            lines.append(f"  {target} [label=<{shown}>, shape=ellipse];")
        sources = []
        for sym in sorted(eq.expr.free_symbols, key=sympy.default_sort_key):
            if sym in block_of:
                sources.append(f"d{dense_index[block_of[sym].name]}")
            elif sym in node:
                sources.append(node[sym])
        for source in dict.fromkeys(sources):
            lines.append(f"  {source} -> {target};")
    lines.append("}")
    return "\n".join(lines) + "\n"


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
        '  s0 [label=<s<SUB>t-2</SUB>>, shape=plaintext, pos="0,0!"];',
    ]
    for n, time in enumerate(steps, 1):
        x = 2.6 * n - 1.3
        lines += [
            f'  x{n} [label=<x<SUB>{time}</SUB>>, shape=plaintext, pos="{x:.1f},-1.1!"];',
            f'  c{n} [label="step {time}", shape=box, style=rounded, pos="{x:.1f},0!"];',
            f'  s{n} [label=<s<SUB>{time}</SUB>>, shape=circle, pos="{x + 1.3:.1f},0!"];',
            f'  l{n} [label=<ℓ<SUB>{time}</SUB>>, shape=plaintext, pos="{x + 1.3:.1f},1.4!"];',
            f"  s{n - 1} -> c{n}; x{n} -> c{n}; c{n} -> s{n}; s{n} -> l{n};",
            f"  l{n} -> s{n} [{back}, label=<∂ℓ<SUB>{time}</SUB>/∂s<SUB>{time}</SUB>>];",
        ]
        if n > 1:
            previous = steps[n - 2]
            lines.append(
                f"  s{n} -> s{n - 1} [{back}, tailport=n, headport=n, "
                f"label=<δs<SUB>{previous}</SUB><SUP>({time})</SUP>>];"
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
