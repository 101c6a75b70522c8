"""Layer 1: the derived adjoint equals ``sympy.diff`` of the composed step at random points."""

from __future__ import annotations

import random

import pytest
import sympy
from conftest import VARIANTS

from derive import registry
from derive.symbolic.activations import relu, relu_step, sigmoid
from derive.symbolic.adjoint import adjoint_symbol, derive_adjoint, external_symbol


def _numeric(expr):
    """Replace the project's functions by closed forms SymPy can evaluate."""
    return (
        expr.replace(sigmoid, lambda a: 1 / (1 + sympy.exp(-a)))
        .replace(relu, lambda a: sympy.Max(a, 0))
        .replace(relu_step, lambda y: sympy.Piecewise((1, y > 0), (0, True)))
    )


def _check_step(spec, seed):
    rng = random.Random(seed)
    adjoint = derive_adjoint(spec)
    q = spec.quantities
    inputs = [
        s
        for s, k in q.items()
        if k.kind in ("input", "prev", "vector", "scalar", "dense")
    ]
    point = {s: sympy.Float(rng.uniform(-1.5, 1.5), 30) for s in inputs}
    # hyperparameters: numbers at random (positive, as time steps are), not differentiated
    point.update(
        {h.symbol: sympy.Float(rng.uniform(0.2, 1.5), 30) for h in spec.hypers}
    )
    # a row of one unit, where a mean over the units is a function of the unit's values and
    # its adjoint (summed over the units) is the unit's own
    point.update({sym: 1 for sym, k in q.items() if k.kind == "size"})
    # the composed step: every equation as a function of the step's inputs
    composed = {}
    for eq in spec.equations:
        composed[eq.target] = eq.expr.xreplace(composed)
    # what leaves the pointwise equations: the new states and the projections' sources (once
    # each: a new state that a projection reads, SCRN's s or LEM's z, is one value)
    exported = list(dict.fromkeys([s.new for s in spec.states] + sorted(
        {d.source for d in spec.denses} - set(inputs), key=sympy.default_sort_key
    )))  # fmt: skip
    seeds = {v: sympy.Float(rng.uniform(-1, 1), 30) for v in exported}
    values = dict(point)
    for eq in spec.equations:
        values[eq.target] = _numeric(eq.expr).xreplace(values).evalf(30)
    if (
        spec.means
    ):  # every later value reads the means: a composed step too large to diff
        reference = {u: _forward_mode(spec, values, u, seeds) for u in inputs}
    else:  # the vector-Jacobian product by sympy.diff of the composed step
        reference = {
            u: sum(seeds[v] * sympy.diff(_numeric(composed[v]), u) for v in exported)
            for u in inputs
        }
    # derived: run the adjoint statements backwards at the same point
    for eq in reversed(spec.equations):
        total = adjoint.total(eq.target, with_external=eq.target in seeds)
        env = {**values, external_symbol(eq.target): seeds.get(eq.target, 0)}
        values[adjoint_symbol(eq.target)] = _numeric(total).xreplace(env).evalf(30)
    for u in inputs:
        derived = (
            _numeric(adjoint.total(u, with_external=False)).xreplace(values).evalf(30)
        )
        want = reference[u].xreplace(point).evalf(30)
        assert abs(derived - want) <= 1e-20 * max(1, abs(want)), (
            spec.name,
            u,
            derived,
            want,
        )


def _forward_mode(spec, values, u, seeds):
    """The same vector-Jacobian product by forward mode: ``u``'s tangent pushed through the
    equations in order (each equation differentiated by ``sympy.diff`` on its own), at the
    point ``values``; then weighted by the seeds."""
    tangent = {u: sympy.Integer(1)}
    for eq in spec.equations:
        expr = _numeric(eq.expr)
        tangent[eq.target] = sum(
            (sympy.diff(expr, s).xreplace(values).evalf(30) * tangent[s]
             for s in eq.expr.free_symbols if s in tangent),
            sympy.Integer(0),
        )  # fmt: skip
    return sum(seeds[v] * tangent.get(v, 0) for v in seeds)


@pytest.mark.parametrize("variant", VARIANTS)
def test_adjoint_equals_sympy_diff_of_composed_step(variant):
    spec = registry.get(variant)
    for seed in range(3):
        _check_step(spec, seed)


@pytest.mark.parametrize("variant", VARIANTS)
def test_derivatives_are_written_through_saved_values(variant):
    spec = registry.get(variant)
    adjoint = derive_adjoint(spec)
    # a function of parameters alone (FastRNN's sigmoid(alpha)) is the same at every step and
    # has no saved value: the backward evaluates it
    fixed = {p.symbol for p in spec.params if p.kind == "scalar"}
    for terms in adjoint.terms.values():
        for term in terms:
            applied = term.expr.atoms(sympy.cosh, sympy.exp, sigmoid)
            assert all(a.free_symbols <= fixed for a in applied), term.expr
            # pre-activations are never read back: their functions' outputs are
            forward = {s for s in term.expr.free_symbols if not s.name.startswith("d_")}
            assert not any(s.name.endswith("_pre") for s in forward), term.expr


def test_sigmoid_and_tanh_derivatives_use_outputs():
    spec = registry.get("lstm")
    adjoint = derive_adjoint(spec)
    i, d_i = sympy.Symbol("i"), sympy.Symbol("d_i")
    (term,) = adjoint.terms[sympy.Symbol("i_pre")]
    assert sympy.simplify(term.expr - d_i * i * (1 - i)) == 0
    g, d_g = sympy.Symbol("g"), sympy.Symbol("d_g")
    (term,) = adjoint.terms[sympy.Symbol("g_pre")]
    assert sympy.simplify(term.expr - d_g * (1 - g**2)) == 0


def test_relu_derivative_at_zero_is_zero():
    assert relu(sympy.Symbol("a")).diff(sympy.Symbol("a")) == relu_step(
        relu(sympy.Symbol("a"))
    )
    assert _numeric(relu_step(sympy.Integer(0))) == 0


# -- conventions that are equations ------------------------------------------------------------


def _gru_like(relation):
    from derive.symbolic.activations import tanh
    from derive.symbolic.declare import Cell

    cell = Cell("rel", title="t", citation="c")
    x, h = cell.input(), cell.state("h")
    w = cell.weight("w", "z n", cols="I")
    u = cell.weight("u", "z n", cols="H")
    wx, wh = cell.dense(w, x), cell.dense(u, h.prev)
    z = cell.gate("z", sigmoid(wx.z + wh.z))
    n = cell.let("n", tanh(wx.n + wh.n))
    cell.update(h, (1 - z) * n + z * h.prev)
    relation(cell, h, z, n)
    return cell.build()


def test_a_relation_that_follows_from_the_equations_is_kept():
    spec = _gru_like(
        lambda cell, h, z, n: cell.relation(
            "Keeps:", h.new, h.prev + (1 - z) * (n - h.prev)
        )
    )
    (relation,) = spec.relations
    assert relation.text == "Keeps:" and relation.lhs == spec.state("h").new


@pytest.mark.parametrize(
    "relation, words",
    [
        (lambda cell, h, z, n: cell.relation("Flipped:", h.new, z * n + (1 - z) * h.prev),
         "does not follow from the cell's equations"),
        (lambda cell, h, z, n: cell.relation("Unknown:", h.new, sympy.Symbol("q")),
         r"names \['q'\], which the cell does not declare"),
    ],
)  # fmt: skip
def test_a_relation_the_equations_contradict_is_refused_with_its_line(relation, words):
    from derive.symbolic.declare import DeclarationError

    with pytest.raises(DeclarationError, match=words) as caught:
        _gru_like(relation)
    assert "test_symbolic.py:" in str(caught.value)


@pytest.mark.parametrize("variant", VARIANTS)
def test_declared_relations_hold_numerically(variant):
    """Every declared relation holds at random values of the step's inputs (the symbolic check
    at declaration, repeated with numbers)."""
    spec = registry.get(variant)
    definition = {eq.target: eq.expr for eq in spec.equations}
    rng = random.Random(1)
    for relation in spec.relations:
        sides = []
        for side in (relation.lhs, relation.rhs):
            for _ in range(len(definition) + 1):
                side = side.xreplace(definition)
            sides.append(side)
        values = {
            s: rng.uniform(-1, 1) for s in sides[0].free_symbols | sides[1].free_symbols
        }
        difference = (sides[0] - sides[1]).subs(values)
        assert abs(float(_numeric(difference).evalf(30))) < 1e-12, (
            variant,
            str(relation),
        )
