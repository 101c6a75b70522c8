"""An output that is not a carried state (``cell.output(y)`` for a ``cell.let``): the Intersection
RNN's depth output, read from the tape, its gradient entering the step where it is computed."""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from conftest import ROOT, load_generated

from derive.symbolic.activations import tanh
from derive.symbolic.declare import Cell, DeclarationError
from derive.verify import Problem


def test_the_output_is_a_value_of_the_input_size_and_not_a_state():
    cell = load_generated("intersection_rnn")
    assert cell.OUTPUT == "y" and cell.STATES == ("h",) and cell.OUTPUT_SIZE == "I"
    problem = Problem(cell, np.float64, steps=4, batch=3, input_size=2, hidden_size=5)
    ys, finals, tape = cell.forward(problem.x, problem.states, problem.params)
    assert ys.shape == (4, 3, 2) and finals[0].shape == (3, 5)
    np.testing.assert_array_equal(ys.reshape(12, 2), tape["arrays"]["save_y"])
    # past a row's length its outputs are zeros and its state is carried
    lengths = np.array([4, 1, 2])
    ys_l, finals_l, _ = cell.forward(problem.x, problem.states, problem.params, lengths)
    assert not ys_l[1:, 1].any() and not ys_l[2:, 2].any()
    np.testing.assert_array_equal(ys_l[:1, 1], ys[:1, 1])
    alone_ys, alone_finals, _ = cell.forward(
        problem.x[:1, 1:2], (problem.states[0][1:2],), problem.params
    )  # row 1 by itself, for its one step
    np.testing.assert_allclose(alone_ys[0, 0], ys_l[0, 1], rtol=1e-14)
    np.testing.assert_allclose(alone_finals[0][0], finals_l[0][1], rtol=1e-14)


def test_the_output_takes_the_loss_gradient_and_passes_it_on():
    cell = load_generated("intersection_rnn")
    problem = Problem(cell, np.float64)
    _, _, tape = cell.forward(problem.x, problem.states, problem.params)
    zero_final = (np.zeros_like(problem.states[0]),)
    dx, _, grads = cell.backward(problem.dys, zero_final, tape)
    # y = g_y x + (1 - g_y) y_in: a loss on the outputs alone reaches x and every weight of y
    assert np.abs(dx).max() > 0 and np.abs(grads["weight_yx"]).max() > 0
    # and, through y's gates and candidates reading h_{t-1}, the state's weights
    assert np.abs(grads["weight_hh"]).max() > 0
    dx0, _, grads0 = cell.backward(None, zero_final, tape)
    assert not dx0.any() and not grads0["weight_yx"].any()


def test_the_document_names_the_output_and_its_incoming_gradient():
    text = (ROOT / "docs" / "derivations" / "intersection_rnn.tex").read_text(
        encoding="utf-8"
    )
    assert r"& intermediate & the output; " in text
    assert r"\hat{\delta} y_{t} &= \frac{\partial \ell_t}{\partial y_t}" in text
    assert r"y_t = y_{t}" in text


def test_an_output_must_be_a_state_or_a_named_value():
    cell = Cell("c", title="t", citation="c")
    x, h = cell.input(), cell.state("h")
    with pytest.raises(DeclarationError, match=r"test_outputs.py:\d+: cell.output\(\) takes a "
                       r"state, or a value named by cell.let"):  # fmt: skip
        cell.output(sympy.Symbol("y"))
    with pytest.raises(
        DeclarationError, match=r"test_outputs.py:\d+: cell.output\(\) takes"
    ):
        cell.output(x)
    wx = cell.dense(cell.weight("weight_ih", "n", cols="I"), x)
    n = cell.let("n", tanh(wx.n + h.prev))
    cell.output(n)  # a let declared before the call is accepted
    cell.update(h, n)
    spec = cell.build()
    assert spec.output == "n" and spec.output_symbol == n and spec.output_size == "H"
