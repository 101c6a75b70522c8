"""Layer norms recognised in a declaration, for the documents and the diagrams.

``cell.layernorm`` declares a mean ``μ`` of some values, a mean ``σ²`` of their squared
deviations ``(v - μ)²`` and the normalised values ``(v - μ) (σ² + ε)^(-1/2)``. The equations keep
them expanded (the derivation needs nothing else); a reader wants them named: ``ρ`` for the
scale ``(σ² + ε)^(-1/2)`` and ``ẑ`` for each normalised value. :func:`layer_norms` finds them
from the equations alone, and :func:`abbreviate` writes an expression through those names.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from .declare import CellSpec

__all__ = ["LayerNorm", "Normalised", "abbreviate", "layer_norms"]


@dataclass(frozen=True)
class Normalised:
    """One value ``v`` of a layer norm: its deviation ``v - μ`` and the symbol ``ẑ`` that
    names ``(v - μ) ρ``."""

    value: sympy.Symbol
    deviation: sympy.Expr
    symbol: sympy.Symbol


@dataclass(frozen=True)
class LayerNorm:
    """A mean ``μ``, the variance ``σ²`` of deviations from it, the scale ``(σ² + ε)^(-1/2)``
    that ``ρ`` names, and the values normalised together."""

    mean: sympy.Symbol
    variance: sympy.Symbol
    scale: sympy.Expr
    rho: sympy.Symbol
    values: tuple[Normalised, ...]


def layer_norms(spec: CellSpec) -> tuple[LayerNorm, ...]:
    """Every layer norm of ``spec``: a variance whose ``-1/2`` power an equation reads, with
    the values whose deviations it squares, in the step's order."""
    means = {eq.target: eq for eq in spec.means}
    order = [sym for d in spec.denses for sym in d.symbols]
    order += [eq.target for eq in spec.equations]
    found, scales = [], set()
    for eq in spec.equations:
        for power in sorted(eq.expr.atoms(sympy.Pow), key=sympy.default_sort_key):
            variance = next((m for m in means if power.base.has(m)), None)
            if (
                power.exp != sympy.Rational(-1, 2)
                or variance is None
                or power in scales
            ):
                continue
            scales.add(power)
            squares = [p for p in means[variance].expr.atoms(sympy.Pow) if p.exp == 2]
            squares.sort(key=lambda p: min(
                (order.index(s) for s in p.free_symbols if s in order), default=0))  # fmt: skip
            values, mean = [], None
            for square in squares:
                inside = [m for m in means if m != variance and square.base.has(m)]
                if len(inside) != 1:
                    continue
                mean = inside[0]
                value = square.base + mean
                values.append(
                    Normalised(value, square.base, sympy.Symbol(f"_z_{value}"))
                )
            if mean is not None:
                rho = sympy.Symbol(f"_rho_{variance.name}")
                found.append(LayerNorm(mean, variance, power, rho, tuple(values)))
    return tuple(found)


def abbreviations(norms: tuple[LayerNorm, ...]) -> dict[sympy.Expr, sympy.Expr]:
    """The scale's powers as powers of ``ρ`` (``-3/2`` is what its derivatives read)."""
    table = {}
    for norm in norms:
        table[norm.scale] = norm.rho
        table[norm.scale.base ** sympy.Rational(-3, 2)] = norm.rho**3
    return table


def abbreviate(expr, norms: tuple[LayerNorm, ...], forms=None):
    """``expr`` written through ``ρ`` and the normalised values ``ẑ``: a product holding a
    deviation ``v - μ`` and ``ρ`` (or a power of it) becomes ``ẑ ρ^(k-1)``. ``forms`` maps a
    deviation to other forms it takes in ``expr`` (a projection block written out)."""
    if not norms or not isinstance(expr, sympy.Basic):
        return expr
    expr = expr.xreplace(abbreviations(norms))
    for norm in norms:
        for value in norm.values:
            for deviation in (value.deviation, *(forms or {}).get(value.deviation, ())):

                def through(e, deviation=deviation, rho=norm.rho, z=value.symbol):
                    powers = [
                        a for a in e.args if a == rho or (a.is_Pow and a.base == rho)
                    ]
                    if deviation not in e.args or not powers:
                        return e
                    exponent = powers[0].exp if powers[0].is_Pow else 1
                    return e / (deviation * powers[0]) * z * rho ** (exponent - 1)

                expr = expr.replace(lambda e: e.is_Mul, through)
    return expr
