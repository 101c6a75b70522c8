"""Learned scalar parameters (``cell.scalar``): one number shared by every unit, a
zero-dimensional array whose gradient sums over every loop that reads it."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOT, assert_verifies, build_kernel, load_generated

from derive.symbolic.activations import sigmoid, tanh
from derive.symbolic.declare import Cell, DeclarationError
from derive.verify import Problem


def _two_sizes_two_stages():
    """A scalar read by a loop over H in the first stage and a loop over P in the second
    (after a per-step projection), so that its gradient gathers parts from both."""
    cell = Cell("scalar_everywhere", title="t", citation="c")
    P = cell.size("P", "proj_size")
    x = cell.input()
    h = cell.state("h", output=True)
    m = cell.state("m", size=P)
    a = cell.scalar("a", latex=r"\alpha")
    W = cell.weight("weight_ih", "f n", cols="I")
    U = cell.weight("weight_hh", "f n", cols="H")
    V = cell.weight("weight_m", "m", cols="H", block_size=P)
    wx, wh = cell.dense(W, x), cell.dense(U, h.prev)
    f = cell.gate("f", sigmoid(wx.f + wh.f + a))
    n = cell.let("n", tanh(a * wx.n + wh.n))
    cell.update(h, f * h.prev + (1 - f) * n)
    vm = cell.dense(V, h.new)
    cell.update(m, a * m.prev + tanh(vm.m))
    return cell.build()


def test_a_scalar_read_by_every_loop_gathers_its_whole_gradient(tmp_path):
    spec = _two_sizes_two_stages()
    text, module = build_kernel(spec, tmp_path)
    assert (
        text.count("d_a[()] +=") == 2
    )  # the H loop of stage 1 and the P loop of stage 2
    assert_verifies(spec, module)


def test_a_scalar_is_a_zero_dimensional_parameter():
    cell = load_generated("fastgrnn")
    assert cell.PARAM_SHAPES["zeta"] == ()
    assert cell.PARAM_BLOCKS["zeta"] == ("scalar", ("zeta",))
    shapes = cell.param_shapes(input_size=3, hidden_size=4)
    assert shapes["nu"] == () and shapes["weight_ih"] == (4, 3)
    params = cell.init_params(input_size=3, hidden_size=4, dtype=np.float64)
    assert isinstance(params["zeta"], np.ndarray) and params["zeta"].shape == ()
    assert float(params["zeta"]) == 1.0  # where the authors' library starts it


def test_its_gradient_is_zero_dimensional_and_sums_over_units():
    cell = load_generated("fastrnn")
    problem = Problem(cell, np.float64)
    _, _, _, _, grads = problem.run()
    assert grads["alpha"].shape == ()
    # the gradient of a scalar scaled by k everywhere is the sum over units of the unit-wise
    # gradients: check it against a finite difference of the loss
    x, states, params, dys = problem.x, problem.states, problem.params, problem.dys

    def loss(alpha):
        shifted = dict(params, alpha=np.asarray(alpha, np.float64))
        ys, finals, _ = cell.forward(x, states, shifted)
        return float((ys * dys).sum() + sum((f * d).sum() for f, d in
                                              zip(finals, problem.dfinal, strict=True)))  # fmt: skip

    step = 1e-6
    a = float(params["alpha"])
    numeric = (loss(a + step) - loss(a - step)) / (2 * step)
    assert float(grads["alpha"]) == pytest.approx(numeric, rel=1e-6)


def test_a_numpy_scalar_stands_for_its_zero_dimensional_array():
    cell = load_generated("fastrnn")
    problem = Problem(cell, np.float32)
    doubled = problem.params["alpha"] * 2  # NumPy's arithmetic gives a scalar
    assert not isinstance(doubled, np.ndarray)
    as_array = dict(problem.params, alpha=np.asarray(doubled))
    got = cell.forward(problem.x, problem.states, dict(problem.params, alpha=doubled))
    want = cell.forward(problem.x, problem.states, as_array)
    np.testing.assert_array_equal(got[0], want[0])
    grads = cell.backward(problem.dys, problem.dfinal, got[2])[2]
    assert isinstance(grads["alpha"], np.ndarray) and grads["alpha"].shape == ()
    with pytest.raises(
        TypeError, match=r"params\['alpha'\] must be a numpy.ndarray; got float"
    ):
        cell.forward(problem.x, problem.states, dict(problem.params, alpha=0.5))
    with pytest.raises(TypeError, match=r"params\['alpha'\] must have dtype float32"):
        cell.forward(
            problem.x, problem.states, dict(problem.params, alpha=np.float64(0.5))
        )
    with pytest.raises(ValueError, match=r"params\['alpha'\] must have 0 dimensions"):
        cell.forward(problem.x, problem.states, dict(problem.params, alpha=np.zeros(1)))


def test_scalar_names_are_checked_where_they_are_declared():
    cell = Cell("c", title="t", citation="c")
    cell.scalar("a")
    with pytest.raises(
        DeclarationError, match=r"test_scalars.py:\d+: .*declared twice"
    ):
        cell.scalar("a")
    with pytest.raises(
        DeclarationError, match=r"test_scalars.py:\d+: .*'len' is reserved"
    ):
        cell.scalar("len")


def test_an_unused_scalar_is_refused():
    cell = Cell("c", title="t", citation="c")
    x, h = cell.input(), cell.state("h")
    cell.scalar("a")
    wx = cell.dense(cell.weight("weight_ih", "n", cols="I"), x)
    cell.update(h, tanh(wx.n + h.prev))
    with pytest.raises(
        DeclarationError, match=r"test_scalars.py:\d+: parameter 'a' is never used"
    ):
        cell.build()


def test_the_document_sums_a_scalar_over_units_and_steps():
    text = (ROOT / "docs" / "derivations" / "fastgrnn.tex").read_text(encoding="utf-8")
    assert r"\delta \zeta &= \sum_t \sum_j" in text
    assert r"$\zeta$ & $1$ & parameter & zeta; one number, shared by every unit" in text
