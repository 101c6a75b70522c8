"""A built cell in Jupyter: its forward step, diagram, derived backward step and parameter
gradients, as HTML (the MathML of the HTML site, the diagram inline) and as LaTeX for MathJax.
Both are printed from the same :class:`~derive.emit.latex.Document` as the derivation files."""

from __future__ import annotations

from ..lower import lower
from ..symbolic.adjoint import derive_adjoint
from ..symbolic.declare import CellSpec
from .diagram import DiagramError, dot_source, svg
from .latex import Document, MathLine, document
from .templates import environment

__all__ = ["html", "latex"]


def _document(spec: CellSpec) -> Document:
    return document(lower(derive_adjoint(spec)))


def html(spec: CellSpec) -> str | None:
    """The cell as an HTML fragment; None where ``latex2mathml`` (the ``docs`` extra) is
    missing, so that a notebook shows :func:`latex` instead."""
    try:
        import latex2mathml  # noqa: F401
    except ImportError:
        return None
    try:
        figure = svg(dot_source(spec))
    except DiagramError:  # no Graphviz: the page says so in place of the figure
        figure = ""
    return (
        environment()
        .get_template("notebook.html.j2")
        .render(doc=_document(spec), svg=figure)
    )


def _aligned(lines: tuple[MathLine, ...]) -> str:
    rows = []
    for line in lines:
        rest = "".join(f" \\\\\n  &\\qquad {row}" for row in line.rows[1:])
        rows.append(f"  {line.lhs} &{line.op} {line.rows[0]}{rest}")
    return "$$\n\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}\n$$"


def latex(spec: CellSpec) -> str:
    """The cell's forward step, backward step and parameter gradients as display math."""
    doc = _document(spec)
    parts = ["Forward step:", _aligned(doc.forward),
             "Backward step, from t = T down to t = 1:", _aligned(doc.incoming)]  # fmt: skip
    parts += [_aligned(lines) for _, lines in doc.backward]
    if doc.after_loop:
        parts += ["After the time loop:", _aligned(doc.after_loop)]
    parts += ["Parameter gradients:", _aligned(doc.gradients)]
    return "\n\n".join(parts)
