"""FastRNN and FastGRNN: cells whose update is weighted by learned scalars, one number each
shared by every unit, kept in (0, 1) by a sigmoid as the paper parameterises them.
"""

from __future__ import annotations

from ..registry import register
from ..symbolic.activations import sigmoid, tanh
from ..symbolic.declare import Cell, CellSpec
from ..symbolic.init import constant

_CITATION = (
    "Kusupati, Singh, Bhatia, Kumar, Jain and Varma 2018, FastGRNN: a fast, accurate, stable "
    "and tiny kilobyte sized gated recurrent neural network, NeurIPS"
)
_SHARED_SCALARS = (
    "The paper keeps its scalar weights in [0, 1] through the sigmoid: the parameters are the "
    "logits, one number each shared by every unit (zero-dimensional arrays), and the step reads "
    "their sigmoids."
)
#: Where the scalars start: the defaults of the authors' EdgeML library.
_EDGEML = "Kusupati et al. 2018, as their EdgeML library starts it"


def _cell(name: str, title: str, description: str, weights: str):
    cell = Cell(name, title=title, citation=_CITATION, description=description,
                conventions=(weights, _SHARED_SCALARS))  # fmt: skip
    x, h = cell.input(), cell.state("h")
    W = cell.weight("weight_ih", "a", cols="I", latex="W")
    U = cell.weight("weight_hh", "a", cols="H", latex="U")
    return cell, h, cell.dense(W, x).a + cell.dense(U, h.prev).a


@register
def fastrnn() -> CellSpec:
    cell, h, pre = _cell(
        "fastrnn",
        "FastRNN",
        "A vanilla RNN with a learned residual connection: the state is a weighted sum of the "
        "candidate and the previous state, with two learned scalar weights.",
        "weight_ih (H, I), weight_hh (H, H) and bias (H); the candidate's nonlinearity is "
        "tanh, the one the paper's experiments use.",
    )
    b = cell.vector("bias", latex="b")
    # sigmoid(-3) = 0.05 of the candidate, sigmoid(3) = 0.95 of the previous state
    alpha = cell.scalar("alpha", latex=r"\alpha", init=constant(-3.0, _EDGEML))
    beta = cell.scalar("beta", latex=r"\beta", init=constant(3.0, _EDGEML))
    n = cell.let("n", tanh(pre + b), latex=r"\tilde{h}")
    cell.update(h, sigmoid(alpha) * n + sigmoid(beta) * h.prev)
    return cell.build()


@register
def fastgrnn() -> CellSpec:
    cell, h, pre = _cell(
        "fastgrnn",
        "FastGRNN",
        "One gate from the same projections as the candidate, with its own bias; the update "
        "interpolates with a learned floor: h = (zeta (1 - z) + nu) h~ + z h_prev.",
        "weight_ih (H, I) and weight_hh (H, H) are shared by the gate and the candidate; "
        "bias_z (H) and bias_h (H) are their biases.",
    )
    b_z = cell.vector("bias_z", latex="b_{z}")
    b_h = cell.vector("bias_h", latex="b_{h}")
    zeta = cell.scalar("zeta", latex=r"\zeta", init=constant(1.0, _EDGEML))
    nu = cell.scalar("nu", latex=r"\nu", init=constant(-4.0, _EDGEML))
    z = cell.gate("z", sigmoid(pre + b_z))
    n = cell.let("n", tanh(pre + b_h), latex=r"\tilde{h}")
    cell.update(h, (sigmoid(zeta) * (1 - z) + sigmoid(nu)) * n + z * h.prev)
    return cell.build()
