"""Gradient flow: the Jacobian of each new state with respect to each previous state.

Through one step, ``∂s_t / ∂r_{t-1}`` is a sum over the paths from ``r_{t-1}`` to ``s_t`` in the
step's data flow. A pointwise equation multiplies a path by a diagonal matrix (its partial
derivative, per unit, written through saved values as the adjoint writes it); a projection
multiplies it by a block of a weight matrix; a mean over the units by the all-ones matrix
``1 1ᵀ`` (every unit reads the mean of all of them; the ``1 / N`` is in the diagonal after it).
So every path is ``diag(a_0) W_1 diag(a_1) W_2 ... diag(a_n)``, and the Jacobian splits into

- the **pointwise path**: the paths with no weight matrix, one diagonal matrix ``diag(d)``;
- the **paths through the projections**: those with one or more weight blocks.

Where a path passes through a mean (a layer norm's), the paths multiply: every unit reads the
mean, which reads every unit. :func:`chains` writes such a Jacobian as the chain rule does, value
by value: the Jacobian ``J_v`` of each value on a path is the sum, over the values it reads, of
its partial derivative times theirs (``diag(∂v/∂a) J_a``; ``W J_u`` for a projection of ``u``;
``1ᵀ (...)`` for a mean, a row; ``diag(∂v/∂m) 1 J_m``, a rank-one term, for a value reading
a mean), each named once.

Over many steps the gradient of a state is multiplied by one such Jacobian per step; a state
whose pointwise path is a gate (the LSTM cell's forget gate) carries its gradient unchanged
while the gate is open, and one with no pointwise path (the plain RNN) multiplies it by a weight
matrix and an activation's derivative at every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from .adjoint import Adjoint, adjoint_symbol
from .declare import operations

__all__ = [
    "FLOW_OPERATIONS",
    "Chain",
    "FlowTooLargeError",
    "Jacobian",
    "Link",
    "Path",
    "chains",
    "jacobians",
    "verdict",
]

#: The most operations a factor of a path may have (its tree, a shared part counted at each
#: use): past it, the Jacobians are too large to print and are not built.
FLOW_OPERATIONS = 4000


class FlowTooLargeError(ValueError):
    """A Jacobian's factor past :data:`FLOW_OPERATIONS` operations (``count``)."""

    def __init__(self, value, count: int):
        super().__init__(
            f"the path factor up to {value} has {count} operations, more than the "
            f"{FLOW_OPERATIONS} a document prints"
        )
        self.count = count


@dataclass(frozen=True)
class Path:
    """``diag(diagonals[0]) W(blocks[0]) diag(diagonals[1]) ... diag(diagonals[-1])``: each
    block is a projection's block symbol, standing for its weight block, or a mean's symbol,
    standing for the all-ones matrix."""

    diagonals: tuple[sympy.Expr, ...]
    blocks: tuple[sympy.Symbol, ...]


@dataclass(frozen=True)
class Jacobian:
    """``∂ new_t / ∂ prev_{t-1}`` of two states: ``diagonal`` is the pointwise path (0 when
    there is none), ``paths`` those through the projections."""

    new: str
    prev: str
    diagonal: sympy.Expr
    paths: tuple[Path, ...]

    @property
    def zero(self) -> bool:
        return self.diagonal == 0 and not self.paths


@dataclass(frozen=True)
class Link:
    """A term of a value's Jacobian in a :class:`Chain`: ``diag(factor)`` times the Jacobian
    of ``arg`` (the previous state's is the identity; a projection block's is its weight
    block times its source's; a mean's is a row, so the term has rank one)."""

    factor: sympy.Expr
    arg: sympy.Symbol


@dataclass(frozen=True)
class Chain:
    """``∂ new_t / ∂ prev_{t-1}`` by the chain rule, value by value: each value on a path
    from the previous state to the new one, in the order the step computes them (the new state
    last), with the links of its Jacobian. ``means`` are those among the values: their
    Jacobian is ``1ᵀ`` times the sum of their links."""

    new: str
    prev: str
    values: tuple[tuple[sympy.Symbol, tuple[Link, ...]], ...]
    means: frozenset[sympy.Symbol]


def _partials(
    adjoint: Adjoint,
) -> dict[sympy.Symbol, list[tuple[sympy.Symbol, sympy.Expr]]]:
    """The partial derivative of each equation's target with respect to each argument."""
    spec = adjoint.spec
    partial: dict[sympy.Symbol, list[tuple[sympy.Symbol, sympy.Expr]]] = {}
    for arg, terms in adjoint.terms.items():
        for term in terms:
            target = spec.equations[term.use].target
            d_target = adjoint_symbol(target)
            partial.setdefault(target, []).append(
                (arg, term.expr.xreplace({d_target: 1}))
            )
    return partial


def chains(adjoint: Adjoint) -> tuple[Chain, ...]:
    """Every state's Jacobian with respect to every previous state as a :class:`Chain`, in
    the order of :func:`jacobians`."""
    spec = adjoint.spec
    partial = _partials(adjoint)
    blocks = {sym: d for d in spec.denses for sym in d.symbols}
    order = {eq.target: n for n, eq in enumerate(spec.equations)}
    means = frozenset(eq.target for eq in spec.means)
    out = []
    for state in spec.states:
        for prev in spec.states:
            reaches: dict[sympy.Symbol, bool] = {prev.prev: True}
            values = []

            def visit(v, source=prev.prev, reaches=reaches, values=values):
                stack = [(v, False)]
                while stack:
                    value, ready = stack.pop()
                    if value in reaches:
                        continue
                    if value in blocks:
                        args = [(blocks[value].source, sympy.Integer(1))]
                    else:
                        args = [(a, f) for a, f in partial.get(value, ())]
                    if not ready:
                        stack.append((value, True))
                        stack.extend((a, False) for a, _ in args if a not in reaches)
                        continue
                    links = tuple(
                        Link(f, a) for a, f in args if reaches.get(a) and f != 0
                    )
                    reaches[value] = bool(links)
                    if links:
                        values.append((value, links))

            visit(state.new)
            # the step's order: the equations in theirs, a block just before its first reader
            values.sort(key=lambda item: _position(item[0], order, blocks, partial))
            out.append(Chain(state.name, prev.name, tuple(values), means))
    return tuple(out)


def _position(value, order, blocks, partial) -> tuple[int, int]:
    if value in order:
        return (order[value], 1)
    readers = [
        order[t] for t, args in partial.items() if any(a == value for a, _ in args)
    ]
    return (min(readers, default=len(order)), 0)


def jacobians(adjoint: Adjoint) -> tuple[Jacobian, ...]:
    """Every state's Jacobian with respect to every previous state, in declaration order."""
    spec = adjoint.spec
    defined = {eq.target: n for n, eq in enumerate(spec.equations)}
    means = {eq.target for eq in spec.means}
    blocks = {sym: d for d in spec.denses for sym in d.symbols}
    partial = _partials(adjoint)
    out = []
    for state in spec.states:
        for prev in spec.states:
            memo: dict[sympy.Symbol, list[Path]] = {}
            raw = _paths(state.new, prev.prev, partial, (defined, means), blocks, memo)
            diagonal, paths = _merge(raw)
            out.append(Jacobian(state.name, prev.name, diagonal, paths))
    return tuple(out)


#: Paths to one value beyond which those with the same weight blocks and later diagonals are
#: summed as they are found (a chain of values each reading the one before twice has 2^n paths).
MERGE_PATHS = 64


def _paths(value, source, partial, equations, blocks, memo) -> list[Path]:
    """The paths from ``source`` (a previous state) to ``value``; ``equations`` is the
    targets of the equations and those of the means among them. A loop over an explicit stack
    visits each value once, after the values it reads, so a long chain recurses nowhere."""
    defined, means = equations

    def reads(v):
        if v == source:
            return []
        if v in defined:
            return [arg for arg, _ in partial.get(v, ())]
        if v in blocks:
            return [blocks[v].source]
        return []  # the input, another state, a vector parameter: no path

    stack = [(value, False)]
    while stack:
        v, ready = stack.pop()
        if v in memo:
            continue
        if not ready:
            stack.append((v, True))
            stack.extend((arg, False) for arg in reads(v) if arg not in memo)
            continue
        memo[v] = _paths_to(v, source, partial, means, blocks, memo)
    return memo[value]


def _paths_to(value, source, partial, means, blocks, memo) -> list[Path]:
    """The paths to ``value``, from those to the values it reads (in ``memo``)."""
    one = sympy.Integer(1)
    if value == source:
        return [Path((one,), ())]
    found = []
    if value in blocks:
        for path in memo[blocks[value].source]:
            found.append(Path((one, *path.diagonals), (value, *path.blocks)))
        return found
    for arg, factor in partial.get(value, ()):
        for path in memo[arg]:
            first = factor * path.diagonals[0]
            if value in means:  # diag(1) 1 1ᵀ diag(factor ...)
                found.append(Path((one, first, *path.diagonals[1:]),
                                  (value, *path.blocks)))  # fmt: skip
            else:
                found.append(Path((first, *path.diagonals[1:]), path.blocks))
    if len(found) > MERGE_PATHS:
        grouped: dict[tuple, sympy.Expr] = {}
        for path in found:
            key = (path.blocks, path.diagonals[1:])
            grouped[key] = grouped.get(key, sympy.Integer(0)) + path.diagonals[0]
        found = [
            Path((first, *rest), blocks) for (blocks, rest), first in grouped.items()
        ]
    largest = max((operations(p.diagonals[0]) for p in found), default=0)
    if largest > FLOW_OPERATIONS:
        raise FlowTooLargeError(value, largest)
    return found


def _merge(paths: list[Path]) -> tuple[sympy.Expr, tuple[Path, ...]]:
    """Paths with the same weight blocks and the same later diagonals, summed into one; the
    weight-free ones into the pointwise path."""
    grouped: dict[tuple, sympy.Expr] = {}
    for path in paths:
        key = (path.blocks, path.diagonals[1:])
        grouped[key] = grouped.get(key, sympy.Integer(0)) + path.diagonals[0]
    diagonal = sympy.Integer(0)
    merged = []
    for (blocks, rest), first in grouped.items():
        first = sympy.factor_terms(first)
        if first == 0:
            continue
        if not blocks:
            diagonal = first
        else:
            merged.append(Path((first, *(sympy.factor_terms(r) for r in rest)), blocks))
    return diagonal, tuple(merged)


def verdict(
    jacobian: Jacobian, gates: set[sympy.Symbol]
) -> tuple[str, sympy.Expr | None]:
    """What the structure of a state's Jacobian with respect to its own previous value says of
    its gradient over many steps: ``(kind, factor)``. ``kind`` is ``none`` (no dependence),
    ``identity``, ``gate`` (the pointwise path has a gate value, or one minus it, as a term:
    ``factor``), ``pointwise`` (another per-unit factor) or ``projections`` (no pointwise
    path)."""
    if jacobian.zero:
        return "none", None
    if jacobian.diagonal == 0:
        return "projections", None
    if jacobian.diagonal == 1:
        return "identity", None
    if jacobian.diagonal in gates or (1 - jacobian.diagonal) in gates:
        return "gate", jacobian.diagonal
    for term in sympy.Add.make_args(sympy.expand(jacobian.diagonal)):
        if term in gates or (1 - term) in gates:
            return "gate", term
    return "pointwise", None
