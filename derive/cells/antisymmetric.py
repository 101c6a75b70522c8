"""AntisymmetricRNN: a forward-Euler step of an ODE whose Jacobian has an antisymmetric weight,
so that its eigenvalues sit near the imaginary axis (the weight is read twice, once transposed).
"""

from __future__ import annotations

from ..registry import register
from ..symbolic.activations import tanh
from ..symbolic.declare import Cell, CellSpec


@register
def antisymmetric_rnn() -> CellSpec:
    cell = Cell(
        "antisymmetric_rnn",
        title="AntisymmetricRNN",
        citation="Chang, Chen, Haber and Chi 2019, AntisymmetricRNN: a dynamical system view "
        "on recurrent neural networks, ICLR",
        description="A forward-Euler step h = h_prev + eps tanh((W - W^T - gamma I) h_prev + "
        "V x + b): the recurrent matrix is W minus its transpose, damped by the diffusion "
        "gamma.",
        conventions=(
            "weight_hh (H, H) is W, read as W h and as W^T h; weight_ih (H, I) is V and bias "
            "(H) is b.",
            "eps (the step size) and gamma (the diffusion) are hyperparameters, 0.01 each by "
            "default; the paper tunes both per task.",
        ),
    )  # fmt: skip
    x, h = cell.input(), cell.state("h")
    V = cell.weight("weight_ih", "a", cols="I", latex="V")
    W = cell.weight("weight_hh", "a", cols="H", latex="W")
    b = cell.vector("bias", latex="b")
    eps = cell.hyper("eps", 0.01, latex=r"\epsilon")
    gamma = cell.hyper("gamma", 0.01, latex=r"\gamma")
    wh = cell.dense(W, h.prev, name="hh").a
    wth = cell.dense(W.T, h.prev, name="hht").a
    n = cell.let("n", tanh(wh - wth - gamma * h.prev + cell.dense(V, x).a + b))
    cell.update(h, h.prev + eps * n)
    return cell.build()
