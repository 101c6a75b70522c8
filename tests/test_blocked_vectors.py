"""Blocked vector parameters (``cell.vector(name, blocks="i f o")``): one array of several
per-unit blocks, such as peepholes stored as one ``(3 H,)`` tensor, each block read in
pointwise equations and given its part of the gradient."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_verifies, build_kernel, load_generated

from derive import pipeline
from derive.symbolic.activations import sigmoid, tanh
from derive.symbolic.declare import Cell, DeclarationError
from derive.verify import Problem


def _peephole_lstm_one_tensor():
    """``lstm_peephole`` with its three peepholes in one tensor ``peephole`` (blocks i f o)."""
    cell = Cell("peephole_one_tensor", title="t", citation="c")
    x = cell.input()
    h = cell.state("h", output=True)
    c = cell.state("c")
    W_i = cell.weight("weight_ih", "i f g o", cols="I")
    W_h = cell.weight("weight_hh", "i f g o", cols="H")
    b_i, b_h = cell.bias("bias_ih", "i f g o"), cell.bias("bias_hh", "i f g o")
    p = cell.vector("peephole", blocks="i f o", latex=r"p_{\cdot}")
    wx, wh = cell.dense(W_i, x, bias=b_i), cell.dense(W_h, h.prev, bias=b_h)
    i = cell.gate("i", sigmoid(wx.i + wh.i + p.i * c.prev))
    f = cell.gate("f", sigmoid(wx.f + wh.f + p.f * c.prev))
    g = cell.let("g", tanh(wx.g + wh.g))
    cell.update(c, f * c.prev + i * g)
    o = cell.gate("o", sigmoid(wx.o + wh.o + p.o * c.new))
    cell.update(h, o * tanh(c.new))
    return cell.build()


@pytest.fixture(scope="module")
def module(tmp_path_factory):
    spec = _peephole_lstm_one_tensor()
    return spec, *build_kernel(spec, tmp_path_factory.mktemp("k"))


def test_a_blocked_vector_verifies_against_autograd(module):
    spec, text, kernel = module
    assert kernel.PARAM_SHAPES["peephole"] == ((3, "H"),)
    assert "peephole[size_H + j]" in text  # block f, read in place
    assert_verifies(spec, kernel)


def test_it_equals_the_cell_with_three_vectors(module):
    """The same numbers through ``lstm_peephole`` (p_i, p_f, p_o apart) give the same outputs
    and gradients, the peephole's gradient being theirs end to end."""
    _, _, kernel = module
    reference = load_generated("lstm_peephole")
    problem = Problem(reference, np.float64)
    ours = {k: v for k, v in problem.params.items() if not k.startswith("p_")}
    ours["peephole"] = np.concatenate(
        [problem.params[k] for k in ("p_i", "p_f", "p_o")]
    )
    ys, finals, tape = kernel.forward(problem.x, problem.states, ours)
    ys_r, finals_r, tape_r = reference.forward(
        problem.x, problem.states, problem.params
    )
    np.testing.assert_allclose(ys, ys_r, rtol=1e-13, atol=1e-15)
    dx, _, grads = kernel.backward(problem.dys, problem.dfinal, tape)
    dx_r, _, grads_r = reference.backward(problem.dys, problem.dfinal, tape_r)
    np.testing.assert_allclose(dx, dx_r, rtol=1e-12, atol=1e-14)
    joined = np.concatenate([grads_r[k] for k in ("p_i", "p_f", "p_o")])
    np.testing.assert_allclose(grads["peephole"], joined, rtol=1e-12, atol=1e-14)


def test_the_document_names_each_block():
    spec = _peephole_lstm_one_tensor()
    text = pipeline.doc_files([spec], pipeline.Run(), catalog=False)[f"{spec.name}.tex"]
    assert r"c_{t-1} \odot p_{f}" in text and r"c_{t} \odot p_{o}" in text
    assert (
        r"\delta p_{o} &= \sum_t" in text
        and r"\delta p_{o} &\mathrel{+}= c_{t}" in text
    )
    assert r"peephole; row blocks $p_{i}, p_{f}, p_{o}$" in text


def test_blocked_vector_names_are_checked_where_they_are_declared():
    cell = Cell("c", title="t", citation="c")
    cell.state("p_i")
    with pytest.raises(
        DeclarationError, match=r"test_blocked_vectors.py:\d+: the block 'p_i'"
    ):
        cell.vector("p", blocks="i f")
    with pytest.raises(
        DeclarationError, match=r"test_blocked_vectors.py:\d+: .*names a block twice"
    ):
        cell.vector("q", blocks="i i")
    cell.vector("v", blocks="a b")
    with pytest.raises(
        DeclarationError, match=r"test_blocked_vectors.py:\d+: the name 'v_a'"
    ):
        cell.scalar("v_a")
    with pytest.raises(AttributeError):
        cell.vector("r", blocks="a b").c  # noqa: B018


def test_an_unused_blocked_vector_is_refused():
    cell = Cell("c", title="t", citation="c")
    x, h = cell.input(), cell.state("h")
    cell.vector("p", blocks="a b")
    wx = cell.dense(cell.weight("weight_ih", "n", cols="I"), x)
    cell.update(h, tanh(wx.n + h.prev))
    with pytest.raises(DeclarationError, match=r"parameter 'p' is never used"):
        cell.build()
