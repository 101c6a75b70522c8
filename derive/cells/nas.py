"""The recurrent cell found by neural architecture search (Zoph and Le 2017): a tree of eight
projected pairs combined in three layers, with the cell state injected in the second."""

from __future__ import annotations

from ..registry import register
from ..symbolic.activations import relu, sigmoid, tanh
from ..symbolic.declare import Cell, CellSpec


@register
def nas() -> CellSpec:
    cell = Cell(
        "nas",
        title="NAS cell",
        citation="Zoph and Le 2017, Neural architecture search with reinforcement learning, "
        "ICLR (the cell of its Penn Treebank experiments)",
        description="Eight pairs of projections of the input and the previous output, each "
        "combined by a sum or a product and an activation; the eight results combine pairwise "
        "in a second layer, where the previous cell state is added to the first, and in a "
        "third, whose first product is the new cell state.",
        conventions=(
            "weight_ih (8 H, I), weight_hh (8 H, H) and bias (8 H, added to the recurrent "
            "projection), blocks a0 to a7 in the order of TensorFlow's NASCell, which the "
            "paper's authors published with it (the paper draws the cell as a tree).",
            "The first layer: a0, a2, a5 and a7 are sigmoids, a1 and a3 ReLUs, a4 and a6 "
            "tanh; a3 multiplies its two projections, the others add them. No projection of "
            "the output (TensorFlow's optional num_proj).",
        ),
    )  # fmt: skip
    x = cell.input()
    h, c = cell.state("h"), cell.state("c")
    blocks = "a0 a1 a2 a3 a4 a5 a6 a7"
    W_ih = cell.weight("weight_ih", blocks, cols="I", latex=r"W_{i\cdot}")
    W_hh = cell.weight("weight_hh", blocks, cols="H", latex=r"W_{h\cdot}")
    bias = cell.bias("bias", blocks, latex=r"b_{\cdot}")
    wx, wh = cell.dense(W_ih, x), cell.dense(W_hh, h.prev, bias=bias)
    a0 = cell.gate("a0", sigmoid(wx.a0 + wh.a0))
    a1 = cell.let("a1", relu(wx.a1 + wh.a1))
    a2 = cell.gate("a2", sigmoid(wx.a2 + wh.a2))
    a3 = cell.let("a3", relu(wx.a3 * wh.a3))
    a4 = cell.let("a4", tanh(wx.a4 + wh.a4))
    a5 = cell.gate("a5", sigmoid(wx.a5 + wh.a5))
    a6 = cell.let("a6", tanh(wx.a6 + wh.a6))
    a7 = cell.gate("a7", sigmoid(wx.a7 + wh.a7))
    b0 = cell.let("b0", tanh(a0 * a1))
    b1 = cell.let("b1", tanh(a2 + a3))
    b2 = cell.let("b2", tanh(a4 * a5))
    b3 = cell.gate("b3", sigmoid(a6 + a7))
    e = cell.let("e", tanh(b0 + c.prev))  # the previous cell state joins the tree here
    cell.update(c, e * b1)
    d = cell.let("d", tanh(b2 + b3))
    cell.update(h, tanh(c.new * d))
    return cell.build()
