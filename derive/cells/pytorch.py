"""The four cells PyTorch ships, with its parameter names, shapes and gate order."""

from __future__ import annotations

from ..registry import register
from ..symbolic.activations import relu, sigmoid, tanh
from ..symbolic.declare import Cell, CellSpec

_PYTORCH_LAYOUT = (
    "Gate order and bias layout are PyTorch's: weight_ih ({rows}, I), weight_hh ({rows}, H), "
    "bias_ih and bias_hh ({rows}), gate blocks in the order {order}."
)


def _layout(order: str) -> str:
    blocks = len(order.split(", "))
    return _PYTORCH_LAYOUT.format(
        rows=f"{blocks} H" if blocks > 1 else "H", order=order
    )


def _elman(name: str, activation, act_name: str, convention: str) -> CellSpec:
    cell = Cell(
        name,
        title=f"Elman recurrent network with {act_name}",
        citation="Elman 1990, Finding structure in time; PyTorch nn.RNN(nonlinearity='"
        + act_name.lower()
        + "')",
        conventions=(_layout("h"), convention),
    )
    x = cell.input()
    h = cell.state("h")
    W_ih, W_hh, b_ih, b_hh = cell.pytorch_params("h")
    wx = cell.dense(W_ih, x, bias=b_ih)
    wh = cell.dense(W_hh, h.prev, bias=b_hh)
    cell.update(h, activation(wx.h + wh.h))
    return cell.build()


@register
def rnn_tanh() -> CellSpec:
    return _elman(
        "rnn_tanh", tanh, "Tanh", "The activation is tanh, differentiable everywhere."
    )


@register
def rnn_relu() -> CellSpec:
    return _elman(
        "rnn_relu",
        relu,
        "ReLU",
        "The activation is ReLU; its derivative at 0 is taken as 0, as in PyTorch.",
    )


@register
def lstm() -> CellSpec:
    cell = Cell(
        "lstm",
        title="Long short-term memory with a forget gate",
        citation="Hochreiter and Schmidhuber 1997; Gers, Schmidhuber and Cummins 2000; PyTorch nn.LSTM",
        conventions=(
            _layout("i, f, g, o"),
            "No peepholes.",
        ),
    )
    x = cell.input()
    h, c = cell.state("h"), cell.state("c")
    W_ih, W_hh, b_ih, b_hh = cell.pytorch_params("i f g o")
    wx = cell.dense(W_ih, x, bias=b_ih)
    wh = cell.dense(W_hh, h.prev, bias=b_hh)
    i = cell.gate("i", sigmoid(wx.i + wh.i))
    f = cell.gate("f", sigmoid(wx.f + wh.f))
    g = cell.let("g", tanh(wx.g + wh.g), latex=r"\tilde{c}")
    o = cell.gate("o", sigmoid(wx.o + wh.o))
    cell.update(c, f * c.prev + i * g)
    cell.update(h, o * tanh(c.new))
    cell.relation("The output applies tanh to the cell state:", h.new, o * tanh(c.new))
    return cell.build()


@register
def gru() -> CellSpec:
    cell = Cell(
        "gru",
        title="Gated recurrent unit, reset after the recurrent projection",
        citation="Cho et al. 2014; cuDNN and PyTorch nn.GRU (ONNX linear_before_reset=1)",
        conventions=(_layout("r, z, n"),),
    )
    x = cell.input()
    h = cell.state("h")
    W_ih, W_hh, b_ih, b_hh = cell.pytorch_params("r z n")
    wx = cell.dense(W_ih, x, bias=b_ih)
    wh = cell.dense(W_hh, h.prev, bias=b_hh)
    r = cell.gate("r", sigmoid(wx.r + wh.r))
    z = cell.gate("z", sigmoid(wx.z + wh.z))
    n = cell.let("n", tanh(wx.n + r * wh.n), latex=r"\tilde{h}")
    cell.update(h, (1 - z) * n + z * h.prev)
    cell.relation(
        "The reset gate multiplies the recurrent projection after it is taken (b_hn is not "
        "merged with b_in):", n, tanh(wx.n + r * wh.n),
    )  # fmt: skip
    cell.relation(
        "The update gate keeps the old state:", h.new, (1 - z) * n + z * h.prev
    )
    return cell.build()
