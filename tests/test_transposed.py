"""Weights read transposed (``cell.dense(W.T, v)``): AntisymmetricRNN's ``W - Wᵀ``, and
rectangular weights read both ways, hoisted over the input and per step."""

from __future__ import annotations

import pytest
from conftest import assert_verifies, build_kernel

from derive.symbolic.activations import tanh
from derive.symbolic.declare import Cell, DeclarationError
from generated import _runtime


def _rectangular():
    """``A.T x`` (A is (I, H): a hoisted product) and ``B.T m`` (B is (P, H): per step),
    beside ``C h`` (C is (P, H), read the usual way)."""
    cell = Cell("read_transposed", title="t", citation="c")
    P = cell.size("P", "proj_size")
    x = cell.input()
    h = cell.state("h", output=True)
    m = cell.state("m", size=P)
    A = cell.weight("weight_a", "a", cols="H", block_size="I")
    B = cell.weight("weight_b", "b", cols="H", block_size=P)
    C = cell.weight("weight_c", "m", cols="H", block_size=P)
    ax = cell.dense(A.T, x, name="ax").a
    bm = cell.dense(B.T, m.prev, name="bm").b
    cell.update(h, tanh(ax + bm + h.prev))
    cell.update(m, tanh(cell.dense(C, h.prev).m) * m.prev)
    return cell.build()


def test_rectangular_weights_read_transposed_verify(tmp_path):
    spec = _rectangular()
    text, module = build_kernel(spec, tmp_path)
    assert (
        "np.dot(seq_x, weight_a)" in text
    )  # the hoisted product, with no double transpose
    # δB = Σ m δ(Bᵀm)ᵀ: a sum over every row, by tiles or BLAS
    assert "_times_rows(seq_m[:-batch], dk_ax, d_weight_b, 0)" in text
    assert module.param_shapes(input_size=2, hidden_size=3, proj_size=4)[
        "weight_a"
    ] == (2, 3)
    assert_verifies(spec, module)
    before = _runtime.tuning()
    try:  # the products of every step at once by tiles, whatever the processor chose
        _runtime.set_tuning(tile_rows=1)
        assert_verifies(spec, module)
    finally:
        _runtime.set_tuning(**before)


def _weight(cell, blocks="a"):
    return cell.weight("weight_hh", blocks, cols="H")


@pytest.mark.parametrize(
    "read, words",
    [
        (lambda c, h: c.dense(_weight(c, "a b").T, h.prev), "declare 'weight_hh' with one block"),
        (lambda c, h: c.dense(_weight(c).T, h.prev, bias=c.bias("bias", "a")), "no bias="),
        (lambda c, h: c.dense(_weight(c).T, h.prev, blocks="a"), "no bias= or blocks="),
    ],
)  # fmt: skip
def test_a_transposed_read_is_whole_and_without_bias(read, words):
    cell = Cell("c", title="t", citation="c")
    cell.input()
    h = cell.state("h")
    with pytest.raises(
        DeclarationError, match=r"test_transposed.py:\d+: dense\(weight_hh.T"
    ):
        read(cell, h)
    with pytest.raises(DeclarationError) as error:
        read(Cell("d", title="t", citation="c"), h)
    assert words in str(error.value)


def test_a_transposed_read_of_the_wrong_size_is_refused_at_its_line():
    cell = Cell("c", title="t", citation="c")
    x, h = cell.input(), cell.state("h")
    W = cell.weight("weight_ih", "a", cols="I")  # (H, I): W.T reads an H-vector
    wx = cell.dense(W.T, x, name="tx").a
    cell.update(h, tanh(wx + h.prev))
    with pytest.raises(DeclarationError, match=r"test_transposed.py:\d+: weight_ih has H rows "
                       r"but weight_ih.T reads x of size I"):  # fmt: skip
        cell.build()


def test_the_document_writes_the_transposed_read_and_both_gradient_terms():
    from conftest import ROOT

    text = (ROOT / "docs" / "derivations" / "antisymmetric_rnn.tex").read_text(
        encoding="utf-8"
    )
    assert r"W h_{t-1} - W^{\top} h_{t-1}" in text
    # the transpose rule of Wᵀ h multiplies by W; W's gradient takes a term from each read
    assert r"\delta h_{t-1} &\mathrel{+}= W \left(- \delta \bar{n}_{t}\right)" in text
    assert r"\delta W &= \sum_t \delta \bar{n}_{t}\, h_{t-1}^{\top}" in text
    assert (
        r"\delta W &\mathrel{+}= \sum_t h_{t-1}\, \left(- \delta \bar{n}_{t}\right)^{\top}"
        in text
    )
