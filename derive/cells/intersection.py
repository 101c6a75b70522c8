"""The Intersection RNN (+RNN): a carried state and a depth output that is not carried, each
interpolated by its own gate, for deep stacks of recurrent layers."""

from __future__ import annotations

from ..registry import register
from ..symbolic.activations import relu, sigmoid, tanh
from ..symbolic.declare import Cell, CellSpec


@register
def intersection_rnn() -> CellSpec:
    cell = Cell(
        "intersection_rnn",
        title="Intersection RNN (+RNN)",
        citation="Collins, Sohl-Dickstein and Sussillo 2017, Capacity and trainability in "
        "recurrent neural networks, ICLR",
        description="Two gated interpolations: the state h between h_prev and a tanh "
        "candidate, and the output y between the input x_t and a ReLU candidate. y is the "
        "cell's output and is not carried to the next step.",
        conventions=(
            "weight_yx (2 I, I), weight_yh (2 I, H) and bias_y (2 I) make the output's "
            "candidate and gate (blocks y, gy); weight_hx (2 H, I), weight_hh (2 H, H) and "
            "bias_h (2 H) make the state's (blocks h, gh).",
            "The output has the input's size, as the paper's depth gate requires; the "
            "paper's activations: ReLU for the output's candidate, tanh for the state's.",
            "No forget bias is added to the gates (some implementations add 1).",
        ),
    )  # fmt: skip
    x, h = cell.input(), cell.state("h")
    W_yx = cell.weight(
        "weight_yx", "y gy", cols="I", block_size="I", latex=r"W_{x\cdot}"
    )
    W_yh = cell.weight(
        "weight_yh", "y gy", cols="H", block_size="I", latex=r"W_{h\cdot}"
    )
    b_y = cell.bias("bias_y", "y gy", block_size="I", latex=r"b_{\cdot}")
    W_hx = cell.weight("weight_hx", "h gh", cols="I", latex=r"W_{x\cdot}")
    W_hh = cell.weight("weight_hh", "h gh", cols="H", latex=r"W_{h\cdot}")
    b_h = cell.bias("bias_h", "h gh", latex=r"b_{\cdot}")
    yx, yh = cell.dense(W_yx, x, bias=b_y), cell.dense(W_yh, h.prev)
    hx, hh = cell.dense(W_hx, x, bias=b_h), cell.dense(W_hh, h.prev)
    y_in = cell.let("y_in", relu(yx.y + yh.y), latex=r"\tilde{y}")
    g_y = cell.gate("g_y", sigmoid(yx.gy + yh.gy), latex="g^{y}")
    h_in = cell.let("h_in", tanh(hx.h + hh.h), latex=r"\tilde{h}")
    g_h = cell.gate("g_h", sigmoid(hx.gh + hh.gh), latex="g^{h}")
    y = cell.let("y", g_y * x + (1 - g_y) * y_in)
    cell.output(y)
    cell.update(h, g_h * h.prev + (1 - g_h) * h_in)
    return cell.build()
