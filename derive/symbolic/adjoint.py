"""Symbolic reverse mode over one step of a cell.

The pointwise part is differentiated per hidden unit with scalar symbols (``sympy.diff``); the
dense projections keep their fixed transpose rules (``δv += Wᵀ δa``, ``δW += Σ_t δa vᵀ``), which
the lowering stage schedules as matrix products. A mean over the units is an equation whose
per-unit term is divided by the number of terms, so its adjoint (one number per row, its uses
summed over the units) reaches each unit's term as ``δμ / N`` by the same rule.

Every partial derivative is rewritten through the saved forward values: a function application
that some equation names (``sigmoid(i_pre)`` is ``i``) is replaced by that name, so ``sigmoid'``
prints as ``i (1 - i)`` and ``tanh'`` as ``1 - n²``.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from .declare import CellSpec

__all__ = ["Adjoint", "Term", "adjoint_symbol", "derive_adjoint"]


def adjoint_symbol(var: sympy.Symbol) -> sympy.Symbol:
    """The symbol of ``var``'s adjoint (``d_var``)."""
    return sympy.Symbol(f"d_{var.name}")


def external_symbol(var: sympy.Symbol) -> sympy.Symbol:
    """The adjoint that reaches ``var`` from outside its equations: the next step, the loss, or a
    projection's transpose rule (``acc_var``)."""
    return sympy.Symbol(f"acc_{var.name}")


@dataclass(frozen=True)
class Term:
    """One contribution ``expr`` to an adjoint, from the use of the variable in equation ``use``."""

    expr: sympy.Expr
    use: int


@dataclass(frozen=True)
class Adjoint:
    """The reverse-mode result of one cell step.

    ``terms`` maps every variable of the step (equation targets, dense outputs, previous states,
    the input, vector parameters) to its contributions, in the order reverse mode produced them;
    ``saved`` lists the forward values the backward expressions read.
    """

    spec: CellSpec
    terms: dict
    saved: tuple[sympy.Symbol, ...]

    def total(self, var: sympy.Symbol, with_external: bool) -> sympy.Expr:
        """``var``'s whole adjoint within one step, as one expression."""
        total = sum((t.expr for t in self.terms.get(var, ())), sympy.Integer(0))
        return total + external_symbol(var) if with_external else total


def derive_adjoint(spec: CellSpec) -> Adjoint:
    """Differentiate the step: for each equation in reverse, push its adjoint to its arguments."""
    by_value = {
        eq.expr: eq.target
        for eq in spec.equations
        if isinstance(eq.expr, sympy.Function)
    }
    # run-time numbers (hyperparameters, the sizes a mean divides by) and masks, inputs of
    # both passes: no gradient, never saved
    fixed = {hp.symbol for hp in spec.hypers} | {m.symbol for m in spec.masks}
    fixed |= {sym for sym, q in spec.quantities.items() if q.kind == "size"}
    terms: dict[sympy.Symbol, list[Term]] = {}
    for index in reversed(range(len(spec.equations))):
        eq = spec.equations[index]
        d_target = adjoint_symbol(eq.target)
        for arg in sorted(eq.expr.free_symbols - fixed, key=sympy.default_sort_key):
            partial = sympy.diff(eq.expr, arg).xreplace(by_value)
            if partial != 0:
                terms.setdefault(arg, []).append(Term(d_target * partial, index))
    quantities = spec.quantities
    forward = (set(quantities) | {eq.target for eq in spec.equations}) - fixed
    read = (
        set().union(*(t.expr.free_symbols for ts in terms.values() for t in ts))
        & forward
    )
    saved = tuple(sorted(read, key=sympy.default_sort_key))
    return Adjoint(spec, {k: tuple(v) for k, v in terms.items()}, saved)
