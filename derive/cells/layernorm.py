"""Layer-normalised LSTM and GRU: each projection normalised over all the gates' units of a row
(Ba, Kiros and Hinton 2016), as PyTorch users compose them from ``nn.LayerNorm``."""

from __future__ import annotations

from ..registry import register
from ..symbolic.activations import sigmoid, tanh
from ..symbolic.declare import Cell, CellSpec

_CITATION = "Ba, Kiros and Hinton 2016, Layer normalization, arXiv:1607.06450"
_EPS = (
    "eps (1e-5 by default, as nn.LayerNorm) is a hyperparameter; the variance is the biased "
    "one, the mean of the squared deviations from the mean, as nn.LayerNorm computes it."
)
_INIT = (
    "The layer norms' gains start at 1 and their biases at 0, as nn.LayerNorm's; the other "
    "parameters from U(-1/sqrt(H), 1/sqrt(H)), as nn.LSTM's."
)


def _normalised_projections(cell: Cell, gates: str):
    """PyTorch's four parameters, each projection layer-normalised over all its gates with a
    gain and a bias per gate block; returns the normalised projections' blocks (x's, h's)."""
    x, h = cell.input(), cell.state("h")
    W_ih, W_hh, b_ih, b_hh = cell.pytorch_params(gates)
    eps = cell.hyper("eps", 1e-5, latex=r"\epsilon")
    wx, wh = cell.dense(W_ih, x, bias=b_ih), cell.dense(W_hh, h.prev, bias=b_hh)
    normalised = []
    for name, dense in (("ih", wx), ("hh", wh)):
        gain = cell.vector(
            f"ln_{name}_weight", blocks=gates, latex=rf"\gamma_{{{name}\cdot}}"
        )
        bias = cell.vector(
            f"ln_{name}_bias", blocks=gates, latex=rf"\beta_{{{name}\cdot}}"
        )
        normalised.append(
            cell.layernorm(name, dense.symbols, eps, gain=gain, bias=bias)
        )
    return h, eps, normalised


@register
def lstm_layernorm() -> CellSpec:
    cell = Cell(
        "lstm_layernorm",
        title="Layer-normalised LSTM",
        citation=_CITATION,
        description="The LSTM with each projection layer-normalised over all four gates' "
        "units of a row, and the cell state normalised before its tanh: the statistics are "
        "computed once per step and row, and their gradients are derived with the rest.",
        conventions=(
            "Each projection is layer-normalised over the 4 H pre-activations of its row, "
            "with a gain and a bias per gate block, and a gate reads the sum of its two "
            "normalised blocks; the new cell state is layer-normalised over its H units "
            "before the output's tanh. PyTorch's weight_ih, weight_hh, bias_ih and bias_hh, "
            "gate blocks i, f, g, o.",
            "ln_ih_weight, ln_ih_bias, ln_hh_weight and ln_hh_bias (4 H each, blocks i, f, g, "
            "o) are the gains and biases of the two projections' layer norms; ln_c_weight and "
            "ln_c_bias (H) those of the cell state's.",
            _EPS,
            _INIT,
        ),
    )  # fmt: skip
    h, eps, ((xi, xf, xg, xo), (hi, hf, hg, ho)) = _normalised_projections(
        cell, "i f g o"
    )
    c = cell.state("c")
    ln_c_weight = cell.vector("ln_c_weight", latex=r"\gamma_{c}")
    ln_c_bias = cell.vector("ln_c_bias", latex=r"\beta_{c}")
    i = cell.gate("i", sigmoid(xi + hi))
    f = cell.gate("f", sigmoid(xf + hf))
    g = cell.let("g", tanh(xg + hg), latex=r"\tilde{c}")
    o = cell.gate("o", sigmoid(xo + ho))
    cell.update(c, f * c.prev + i * g)
    (normalised_c,) = cell.layernorm("c", c.new, eps, gain=ln_c_weight, bias=ln_c_bias)
    cell.update(h, o * tanh(normalised_c))
    cell.relation(
        "A gate reads its two normalised projection blocks:", i, sigmoid(xi + hi)
    )
    cell.relation(
        "The output reads the normalised cell state:", h.new, o * tanh(normalised_c)
    )
    return cell.build()


@register
def gru_layernorm() -> CellSpec:
    cell = Cell(
        "gru_layernorm",
        title="Layer-normalised GRU",
        citation=_CITATION,
        description="PyTorch's GRU with each projection layer-normalised over all three "
        "gates' units of a row before the gates read it.",
        conventions=(
            "Each projection is layer-normalised over the 3 H pre-activations of its row, "
            "with a gain and a bias per gate block; the reset gate multiplies the normalised "
            "recurrent candidate block, as nn.GRU multiplies its projection. PyTorch's "
            "weight_ih, weight_hh, bias_ih and bias_hh, gate blocks r, z, n.",
            "ln_ih_weight, ln_ih_bias, ln_hh_weight and ln_hh_bias (3 H each, blocks r, z, "
            "n) are the gains and biases of the two projections' layer norms.",
            _EPS,
            _INIT,
        ),
    )  # fmt: skip
    h, _, ((xr, xz, xn), (hr, hz, hn)) = _normalised_projections(cell, "r z n")
    r = cell.gate("r", sigmoid(xr + hr))
    z = cell.gate("z", sigmoid(xz + hz))
    n = cell.let("n", tanh(xn + r * hn), latex=r"\tilde{h}")
    cell.update(h, (1 - z) * n + z * h.prev)
    cell.relation("The reset gate multiplies the normalised recurrent block:", n,
                  tanh(xn + r * hn))  # fmt: skip
    cell.relation(
        "The update gate keeps the old state:", h.new, (1 - z) * n + z * h.prev
    )
    return cell.build()
