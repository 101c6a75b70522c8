"""The GRU family and the minimal gated cells: GRU-Cho, MGU, MUT1-3 and IndRNN."""

from __future__ import annotations

from ..registry import register
from ..symbolic.activations import relu, sigmoid, tanh
from ..symbolic.declare import Cell, CellSpec

JOZEFOWICZ = (
    "Jozefowicz, Zaremba and Sutskever 2015, An empirical exploration of recurrent network "
    "architectures, ICML"
)
_RESET_BEFORE = "The reset gate multiplies the state before the recurrent projection."


@register
def gru_cho() -> CellSpec:
    cell = Cell(
        "gru_cho",
        title="Gated recurrent unit, reset before the recurrent projection",
        citation="Cho et al. 2014, Learning phrase representations using RNN encoder-decoder "
        "for statistical machine translation; ONNX GRU linear_before_reset=0; Keras "
        "reset_after=False",
        description="The GRU as first published: the candidate reads the reset state "
        "(the previous state times the reset gate) through its own projection, a second "
        "matrix product inside the step.",
        conventions=(
            "Gate order and bias layout are PyTorch's nn.GRU: weight_ih (3 H, I), weight_hh "
            "(3 H, H), bias_ih and bias_hh (3 H), blocks r, z, n; b_hn is added after the "
            "projection of the reset state.",
        ),
    )
    x = cell.input()
    h = cell.state("h")
    W_ih, W_hh, b_ih, b_hh = cell.pytorch_params("r z n")
    wx = cell.dense(W_ih, x, bias=b_ih)
    wh = cell.dense(W_hh, h.prev, bias=b_hh, blocks="r z")
    r = cell.gate("r", sigmoid(wx.r + wh.r))
    z = cell.gate("z", sigmoid(wx.z + wh.z))
    rh = cell.let("rh", r * h.prev, latex=r"(r \odot h)")
    wrh = cell.dense(W_hh, rh, bias=b_hh, blocks="n", name="hn")
    n = cell.let("n", tanh(wx.n + wrh.n), latex=r"\tilde{h}")
    cell.update(h, (1 - z) * n + z * h.prev)
    cell.relation(
        "The reset gate multiplies the state before the recurrent projection:",
        n, tanh(wx.n + wrh.n),
    )  # fmt: skip
    cell.relation(
        "The update gate keeps the old state (PyTorch's and Cho's side):",
        h.new, (1 - z) * n + z * h.prev,
    )  # fmt: skip
    return cell.build()


@register
def mgu() -> CellSpec:
    cell = Cell(
        "mgu",
        title="Minimal gated unit",
        citation="Zhou, Wu, Zhang and Zhou 2016, Minimal gated unit for recurrent neural "
        "networks, IJAC 13(3)",
        description="One gate, the forget gate f, both resets the state the candidate reads "
        "and interpolates between the old state and the candidate.",
        conventions=(
            "Parameters in PyTorch's layout: weight_ih (2 H, I), weight_hh (2 H, H), bias_ih "
            "and bias_hh (2 H), blocks f, then the candidate n; bias_hh's n block is added "
            "after the projection of the gated state.",
        ),
    )
    x = cell.input()
    h = cell.state("h")
    W_ih, W_hh, b_ih, b_hh = cell.pytorch_params("f n")
    wx = cell.dense(W_ih, x, bias=b_ih)
    wh = cell.dense(W_hh, h.prev, bias=b_hh, blocks="f")
    f = cell.gate("f", sigmoid(wx.f + wh.f))
    fh = cell.let("fh", f * h.prev, latex=r"(f \odot h)")
    wfh = cell.dense(W_hh, fh, bias=b_hh, blocks="n", name="hn")
    n = cell.let("n", tanh(wx.n + wfh.n), latex=r"\tilde{h}")
    cell.update(h, (1 - f) * h.prev + f * n)
    cell.relation(
        "The forget gate multiplies the state before the recurrent projection:",
        n, tanh(wx.n + wfh.n),
    )  # fmt: skip
    cell.relation(
        "The forget gate selects the candidate:", h.new, (1 - f) * h.prev + f * n
    )
    return cell.build()


def _mut(name: str, description: str) -> tuple[Cell, object, object]:
    cell = Cell(
        name,
        title=f"Mutated gated recurrent unit {name[-1]} ({name.upper()})",
        citation=JOZEFOWICZ,
        description=description,
        conventions=(
            "Input projections are the blocks of weight_ih, recurrent projections the blocks "
            "of weight_hh (named by the vector they produce); the biases b_z, b_r and b_h are "
            "separate vectors.",
            _RESET_BEFORE,
        ),
    )
    return cell, cell.input(), cell.state("h")


def _mut_update(cell: Cell, h, z, candidate) -> None:
    cell.update(h, candidate * z + h.prev * (1 - z))
    cell.relation("The update gate selects the candidate (Chung et al.'s side):", h.new,
                  (1 - z) * h.prev + z * candidate)  # fmt: skip


@register
def mut1() -> CellSpec:
    cell, x, h = _mut(
        "mut1",
        "The update gate reads only the input; the candidate adds tanh of the raw input, "
        "so the input size must equal the hidden size.",
    )
    W_ih = cell.weight("weight_ih", "z r", cols="I", latex=r"W_{x\cdot}")
    W_hh = cell.weight("weight_hh", "r h", cols="H", latex=r"W_{h\cdot}")
    b_z, b_r, b_h = (cell.vector(f"b_{v}", latex=f"b_{{{v}}}") for v in "zrh")
    wx = cell.dense(W_ih, x)
    wh = cell.dense(W_hh, h.prev, blocks="r")
    z = cell.gate("z", sigmoid(wx.z + b_z))
    r = cell.gate("r", sigmoid(wx.r + wh.r + b_r))
    rh = cell.let("rh", r * h.prev, latex=r"(r \odot h)")
    wrh = cell.dense(W_hh, rh, blocks="h", name="hh_rh")
    n = cell.let("n", tanh(wrh.h + tanh(x) + b_h), latex=r"\tilde{h}")
    _mut_update(cell, h, z, n)
    return cell.build()


@register
def mut2() -> CellSpec:
    cell, x, h = _mut(
        "mut2",
        "The reset gate adds the raw input, so the input size must equal the hidden size.",
    )
    W_ih = cell.weight("weight_ih", "z h", cols="I", latex=r"W_{x\cdot}")
    W_hh = cell.weight("weight_hh", "z r h", cols="H", latex=r"W_{h\cdot}")
    b_z, b_r, b_h = (cell.vector(f"b_{v}", latex=f"b_{{{v}}}") for v in "zrh")
    wx = cell.dense(W_ih, x)
    wh = cell.dense(W_hh, h.prev, blocks="z r")
    z = cell.gate("z", sigmoid(wx.z + wh.z + b_z))
    r = cell.gate("r", sigmoid(x + wh.r + b_r))
    rh = cell.let("rh", r * h.prev, latex=r"(r \odot h)")
    wrh = cell.dense(W_hh, rh, blocks="h", name="hh_rh")
    n = cell.let("n", tanh(wrh.h + wx.h + b_h), latex=r"\tilde{h}")
    _mut_update(cell, h, z, n)
    return cell.build()


@register
def mut3() -> CellSpec:
    cell, x, h = _mut(
        "mut3",
        "The update gate reads tanh of the previous state through its projection.",
    )
    W_ih = cell.weight("weight_ih", "z r h", cols="I", latex=r"W_{x\cdot}")
    W_hh = cell.weight("weight_hh", "z r h", cols="H", latex=r"W_{h\cdot}")
    b_z, b_r, b_h = (cell.vector(f"b_{v}", latex=f"b_{{{v}}}") for v in "zrh")
    wx = cell.dense(W_ih, x)
    th = cell.let("th", tanh(h.prev), latex=r"\tanh(h)")
    wth = cell.dense(W_hh, th, blocks="z", name="hh_th")
    wh = cell.dense(W_hh, h.prev, blocks="r")
    z = cell.gate("z", sigmoid(wx.z + wth.z + b_z))
    r = cell.gate("r", sigmoid(wx.r + wh.r + b_r))
    rh = cell.let("rh", r * h.prev, latex=r"(r \odot h)")
    wrh = cell.dense(W_hh, rh, blocks="h", name="hh_rh")
    n = cell.let("n", tanh(wrh.h + wx.h + b_h), latex=r"\tilde{h}")
    _mut_update(cell, h, z, n)
    return cell.build()


@register
def indrnn() -> CellSpec:
    cell = Cell(
        "indrnn",
        title="Independently recurrent neural network",
        citation="Li, Li, Cook, Zhu and Gao 2018, Independently recurrent neural network "
        "(IndRNN): building a longer and deeper RNN, CVPR",
        description="Each unit sees only its own previous value, through a diagonal recurrent "
        "weight u; the input projection is dense.",
        conventions=(
            "weight_ih (H, I) and bias_ih (H) as in PyTorch's nn.RNN; the recurrent weight is "
            "the vector u (H), a diagonal matrix.",
            "The activation is ReLU; its derivative at 0 is taken as 0, as in PyTorch.",
        ),
    )
    x = cell.input()
    h = cell.state("h")
    W_ih = cell.weight("weight_ih", "h", cols="I", latex="W")
    b_ih = cell.bias("bias_ih", "h", latex="b")
    u = cell.vector("u", latex="u")
    wx = cell.dense(W_ih, x, bias=b_ih)
    cell.update(h, relu(wx.h + u * h.prev))
    return cell.build()
