"""Gradient flow: every state-to-state Jacobian the documents print, evaluated at a random point,
against central differences of the forward step computed here with NumPy from the equations;
and what the documents say of each cell's structure."""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from conftest import VARIANTS, load_generated, sizes_for

from derive import registry
from derive.emit.latex import document
from derive.lower import lower
from derive.symbolic.adjoint import derive_adjoint
from derive.symbolic.declare import size_symbol
from derive.symbolic.flow import jacobians, verdict

NUMPY = {
    "sigmoid": lambda a: 1 / (1 + np.exp(-a)),
    "tanh": np.tanh,
    "relu": lambda a: np.maximum(a, 0),
    "relu_step": lambda y: (y > 0).astype(float),
    "identity": lambda a: a,
}


def _block(spec, params, dense, n):
    if dense.transposed:  # the whole weight, transposed, with no bias
        return params[dense.weight].T, 0
    weight = params[dense.weight]
    size = weight.shape[0] // len(spec.param(dense.weight).blocks)
    rows = slice((dense.first_block + n) * size, (dense.first_block + n + 1) * size)
    bias = params[dense.bias][rows] if dense.bias else 0
    return weight[rows], bias


def _step(spec, params, x, prev, sizes):
    """Every value of one step, per unit, in float64: the equations in order, each projection
    as soon as its source is known, each mean as the sum of its terms over the units."""
    env = {spec.input: x}
    env.update({s.prev: prev[s.name] for s in spec.states})
    for sym, (p, n) in spec.pointwise.items():  # a vector's block n, or a scalar
        value = params[p.name]
        size = value.size // len(p.blocks)
        env[sym] = value if p.kind == "scalar" else value[n * size : (n + 1) * size]
    env.update({hp.symbol: hp.default for hp in spec.hypers})
    env.update({size_symbol(name): count for name, count in sizes.items()})
    pending = list(spec.denses)
    for eq in spec.equations:
        for d in [d for d in pending if d.source in env]:
            for n, sym in enumerate(d.symbols):
                weight, bias = _block(spec, params, d, n)
                env[sym] = weight @ env[d.source] + bias
            pending.remove(d)
        size = max((np.shape(env[s]) for s in eq.expr.free_symbols), key=len)
        env[eq.target] = np.broadcast_to(_value(eq.expr, env), size) * 1.0
        if eq.role == "mean":  # each unit's term is already divided by the count
            env[eq.target] = env[eq.target].sum()
    return env


def _symbolic(spec, params, env, jac, sizes):
    blocks = {sym: (d, n) for d in spec.denses for n, sym in enumerate(d.symbols)}
    means = {eq.target: sizes[eq.size] for eq in spec.means}
    new = env[spec.state(jac.new).new]
    prev = env[spec.state(jac.prev).prev]
    total = np.zeros((new.size, prev.size))
    if jac.diagonal != 0:
        total += np.diag(np.broadcast_to(_value(jac.diagonal, env), new.shape))
    for path in jac.paths:
        product = np.eye(new.size)
        for n, diagonal in enumerate(path.diagonals):
            factor = np.broadcast_to(_value(diagonal, env), (product.shape[1],))
            product = product * factor  # times diag(factor)
            block = path.blocks[n] if n < len(path.blocks) else None
            if block in means:  # every unit reads the mean of all of them
                product = product @ np.ones((product.shape[1], means[block]))
            elif block is not None:
                product = product @ _block(spec, params, *blocks[block])[0]
        total += np.broadcast_to(product, total.shape)
    return total


def _chained(spec, params, env, chain, sizes):
    """A :class:`Chain` as the document prints it, evaluated value by value: ``J_v`` the sum
    of ``diag(factor) J_a`` over its links (``1 J_m`` for a mean ``m`` it reads; ``W J_u`` for
    a projection block of ``u``), a mean's ``J`` the sum over its units (``1ᵀ``)."""
    blocks = {sym: (d, n) for d in spec.denses for n, sym in enumerate(d.symbols)}
    prev = spec.state(chain.prev).prev
    jac = {prev: np.eye(np.size(env[prev]))}

    def of(arg):
        if arg not in jac:  # a projection block of a value already known
            dense, n = blocks[arg]
            jac[arg] = _block(spec, params, dense, n)[0] @ of(dense.source)
        return jac[arg]

    for value, links in chain.values:
        if value in blocks:
            of(value)
            continue
        total = 0
        for link in links:
            operand, factor = of(link.arg), _value(link.factor, env)
            if value not in chain.means:  # a column per unit of the value
                size = np.size(env[value])
            elif link.arg in chain.means:  # a mean of terms that each read a mean
                size = np.size(factor)
            else:
                size = operand.shape[0]
            factor = np.broadcast_to(factor, (size,))
            # 1 J_m for a mean m: every unit reads the row
            term = factor[:, None] * np.broadcast_to(operand, (size, operand.shape[1]))
            total = total + (term.sum(axis=0, keepdims=True) if value in chain.means else term)
        jac[value] = total
    return jac[spec.state(chain.new).new]


def _value(expr, env):
    symbols = sorted(expr.free_symbols, key=sympy.default_sort_key)
    if not symbols:
        return float(expr)
    function = sympy.lambdify(symbols, expr, modules=[NUMPY, "numpy"])
    return function(*(env[s] for s in symbols)) * 1.0


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_jacobian_matches_central_differences(variant):
    spec = registry.get(variant)
    cell = load_generated(variant)
    kwargs = sizes_for(cell, input_size=3, hidden_size=4, extra=2)
    sizes = {name: kwargs[argument] for name, argument in cell.SIZES.items()}
    params = cell.init_params(**kwargs, dtype=np.float64, seed=3)
    params = {k: 2 * v for k, v in params.items()}  # gates away from 1/2
    rng = np.random.default_rng(4)
    x = rng.standard_normal(sizes["I"])
    prev = {s.name: rng.standard_normal(sizes[s.size]) for s in spec.states}
    env = _step(spec, params, x, prev, sizes)
    printed = []  # what the document prints, evaluated
    for item in document(lower(derive_adjoint(spec))).flow:
        if isinstance(item.printed, tuple):  # the chains of one previous state
            printed += [(c, _chained(spec, params, env, c, sizes)) for c in item.printed]
        elif item.printed is not None:
            printed.append((item.printed, _symbolic(spec, params, env, item.printed, sizes)))
    assert {(j.new, j.prev) for j, _ in printed} == {
        (j.new, j.prev) for j in jacobians(derive_adjoint(spec))
    }
    for jac, got in printed:
        new_sym = spec.state(jac.new).new
        want = np.empty((env[new_sym].size, prev[jac.prev].size))
        eps = 1e-6
        for j in range(prev[jac.prev].size):
            up, down = dict(prev), dict(prev)
            up[jac.prev] = prev[jac.prev].copy()
            down[jac.prev] = prev[jac.prev].copy()
            up[jac.prev][j] += eps
            down[jac.prev][j] -= eps
            plus = _step(spec, params, x, up, sizes)[new_sym]
            minus = _step(spec, params, x, down, sizes)[new_sym]
            want[:, j] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(
            got, want, rtol=1e-6, atol=1e-8, err_msg=f"d{jac.new}/d{jac.prev}"
        )


@pytest.mark.parametrize(
    "variant, state, kind, factor",
    [
        ("lstm", "c", "gate", "f"),  # the constant error carousel
        ("lstm", "h", "projections", None),
        ("rnn_tanh", "h", "projections", None),
        ("gru", "h", "gate", "z"),  # PyTorch's side: z keeps the old state
        ("mgu", "h", "gate", "1 - f"),  # Zhou et al.'s side: f selects the candidate
        ("lstm_peephole", "c", "gate", "f"),
        ("indrnn", "h", "pointwise", None),
    ],
)
def test_what_the_structure_says(variant, state, kind, factor):
    spec = registry.get(variant)
    gates = {eq.target for eq in spec.equations if eq.role == "gate"}
    (jac,) = [j for j in jacobians(derive_adjoint(spec)) if j.new == j.prev == state]
    got_kind, got_factor = verdict(jac, gates)
    assert got_kind == kind
    assert (got_factor is None) == (factor is None)
    if factor:
        assert got_factor == sympy.sympify(factor)


def test_documents_explain_the_vanishing_gradient_from_the_structure():
    def doc(variant):
        return document(lower(derive_adjoint(registry.get(variant))))

    rnn, lstm = doc("rnn_tanh"), doc("lstm")
    assert "vanishes or explodes" in "".join(text for _, text in rnn.flow_summary)
    assert len(lstm.flow) == 4  # h and c, each by h and c
    summary = "".join(text for _, text in lstm.flow_summary)
    assert "survives along c_{t}" in summary
    (carousel,) = [
        f.lines[0]
        for f in lstm.flow
        if f.lines[0].lhs == r"\frac{\partial c_{t}}{\partial c_{t-1}}"
    ]
    assert carousel.rhs == r"\operatorname{diag}\left(f_{t}\right)"
    indrnn = doc("indrnn")  # a pointwise path with no gate: kept where |u| stays near 1
    assert "pointwise factor" in "".join(text for _, text in indrnn.flow_summary)
