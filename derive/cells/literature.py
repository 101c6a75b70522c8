"""Gated cells of the 2014-2021 literature: one or two gates, additive or interpolating updates.

Each follows its paper's equations; where a paper and a widely used implementation differ, the
conventions say which one is followed and why.
"""

from __future__ import annotations

import sympy

from ..registry import register
from ..symbolic.activations import relu, sigmoid, tanh
from ..symbolic.declare import Cell, CellSpec

_NO_BIAS = "The paper's equations have no bias; none is declared."


def _one_state(name: str, title: str, citation: str, description: str,
               conventions: tuple[str, ...]) -> tuple[Cell, object, object]:  # fmt: skip
    cell = Cell(name, title=title, citation=citation, description=description,
                conventions=conventions)  # fmt: skip
    return cell, cell.input(), cell.state("h")


def _interpolate(cell: Cell, h, gate, candidate, text: str) -> None:
    """``h = gate h_prev + (1 - gate) candidate``, stated as a checked relation."""
    cell.update(h, gate * h.prev + (1 - gate) * candidate)
    cell.relation(text, h.new, gate * h.prev + (1 - gate) * candidate)


@register
def ugrnn() -> CellSpec:
    cell, x, h = _one_state(
        "ugrnn",
        "Update-gate recurrent network",
        "Collins, Sohl-Dickstein and Sussillo 2017, Capacity and trainability in recurrent "
        "neural networks, ICLR",
        "A GRU without its reset gate: one update gate interpolates between the previous "
        "state and a tanh candidate that reads the whole previous state.",
        ("weight_ih (2 H, I), weight_hh (2 H, H) and bias (2 H), blocks g (the gate), then c "
         "(the candidate); one bias per block, added to the input projection.",),
    )  # fmt: skip
    W_x = cell.weight("weight_ih", "g c", cols="I", latex=r"W_{x\cdot}")
    W_h = cell.weight("weight_hh", "g c", cols="H", latex=r"W_{h\cdot}")
    b = cell.bias("bias", "g c", latex=r"b_{\cdot}")
    wx = cell.dense(W_x, x, bias=b)
    wh = cell.dense(W_h, h.prev)
    g = cell.gate("g", sigmoid(wx.g + wh.g))
    c = cell.let("c", tanh(wx.c + wh.c), latex=r"\tilde{h}")
    _interpolate(cell, h, g, c, "The gate keeps the previous state:")
    return cell.build()


@register
def minimal_rnn() -> CellSpec:
    cell, x, h = _one_state(
        "minimal_rnn",
        "MinimalRNN",
        "Chen 2017, MinimalRNN: toward more interpretable and trainable recurrent neural "
        "networks, NIPS Symposium on Interpretable Machine Learning, arXiv:1711.06788",
        "The input is first mapped into the latent space, z = tanh(W x + b); one gate then "
        "interpolates between the previous state and z, reading both.",
        ("weight_ih (H, I) and bias_ih (H) map the input (Phi is one tanh layer, as in the "
         "paper's experiments); weight_hh (H, H) and weight_zh (H, H) read the previous h and z for "
         "the gate u, with bias_u (H).",),
    )  # fmt: skip
    W_x = cell.weight("weight_ih", "z", cols="I", latex=r"W_{x}")
    b_z = cell.bias("bias_ih", "z", latex=r"b_{z}")
    U_h = cell.weight("weight_hh", "u", cols="H", latex=r"U_{h}")
    U_z = cell.weight("weight_zh", "u", cols="H", latex=r"U_{z}")
    b_u = cell.vector("bias_u", latex=r"b_{u}")
    z = cell.let("z", tanh(cell.dense(W_x, x, bias=b_z).z))
    wh = cell.dense(U_h, h.prev)
    wz = cell.dense(U_z, z)
    u = cell.gate("u", sigmoid(wh.u + wz.u + b_u))
    _interpolate(cell, h, u, z, "The gate keeps the previous state:")
    return cell.build()


@register
def atr() -> CellSpec:
    cell, x, h = _one_state(
        "atr",
        "Addition-subtraction twin-gated recurrent network",
        "Zhang, Xiong, Su, Lin and Zhang 2018, Simplifying neural machine translation with "
        "addition-subtraction twin-gated recurrent networks, EMNLP",
        "Two gates from one pair of projections: the input gate sees p + q, the forget gate "
        "p - q, where p is the input's projection and q the previous state's.",
        ("weight_ih (H, I) with bias_ih (H) gives p; weight_hh (H, H) gives q, without a "
         "bias, as in the authors' implementation.",),
    )  # fmt: skip
    W = cell.weight("weight_ih", "p", cols="I", latex="W")
    b = cell.bias("bias_ih", "p", latex="b")
    U = cell.weight("weight_hh", "q", cols="H", latex="U")
    p = cell.dense(W, x, bias=b, name="wx").p
    q = cell.dense(U, h.prev, name="uh").q
    i = cell.gate("i", sigmoid(p + q))
    f = cell.gate("f", sigmoid(p - q))
    cell.update(h, i * p + f * h.prev)
    cell.relation(
        "The candidate is the input projection itself:", h.new, i * p + f * h.prev
    )
    return cell.build()


@register
def lightru() -> CellSpec:
    cell, x, h = _one_state(
        "lightru",
        "Light recurrent unit",
        "Ye, Zhang, Liu, Li, Chang and Zheng 2024, Light recurrent unit: towards an "
        "interpretable recurrent neural network for modeling long-range dependency, "
        "Electronics 13(16) 3204",
        "The candidate reads only the input, tanh(W_h x); one gate f reads the input and "
        "the previous state and selects the candidate.",
        ("weight_ih (2 H, I), blocks n (the candidate) and f; weight_hh (H, H) for f; "
         "bias_f (H) on the gate only.",),
    )  # fmt: skip
    W = cell.weight("weight_ih", "n f", cols="I", latex=r"W_{\cdot}")
    U = cell.weight("weight_hh", "f", cols="H", latex=r"U_{f}")
    b_f = cell.vector("bias_f", latex=r"b_{f}")
    wx = cell.dense(W, x)
    wh = cell.dense(U, h.prev)
    n = cell.let("n", tanh(wx.n), latex=r"\tilde{h}")
    f = cell.gate("f", sigmoid(wx.f + wh.f + b_f))
    _interpolate(cell, h, 1 - f, n, "The gate selects the candidate:")
    return cell.build()


@register
def sgrn() -> CellSpec:
    cell, x, h = _one_state(
        "sgrn",
        "Simple gated recurrent network",
        "Zu et al. 2020, the simple gated recurrent network, IET Generation, Transmission "
        "and Distribution, doi:10.1049/gtd2.12056",
        "One gate f = sigma(p + q) and its complement weigh the input projection p against "
        "the previous state, inside one tanh.",
        ("weight_ih (H, I) with bias_ih (H) gives p, weight_hh (H, H) with bias_hh (H) "
         "gives q; the input gate is i = 1 - f.",),
    )  # fmt: skip
    W_ih, W_hh, b_ih, b_hh = cell.pytorch_params("h")
    p = cell.dense(W_ih, x, bias=b_ih).h
    q = cell.dense(W_hh, h.prev, bias=b_hh).h
    f = cell.gate("f", sigmoid(p + q))
    cell.update(h, tanh((1 - f) * p + f * h.prev))
    return cell.build()


@register
def cfn() -> CellSpec:
    cell, x, h = _one_state(
        "cfn",
        "Chaos-free network",
        "Laurent and von Brecht 2017, A recurrent neural network without chaos, ICLR",
        "Two gates weigh the squashed previous state against the squashed input "
        "projection; with no input the state decays to zero without chaos.",
        ("weight_ih (3 H, I), blocks theta, eta (the gates' V) and n (W); weight_hh (2 H, H), "
         "blocks theta and eta (U); biases b_theta and b_eta (H each) on the gates; the "
         "input projection W x has no bias.",),
    )  # fmt: skip
    V = cell.weight("weight_ih", "theta eta n", cols="I", latex=r"V_{\cdot}")
    U = cell.weight("weight_hh", "theta eta", cols="H", latex=r"U_{\cdot}")
    b_theta = cell.vector("bias_theta", latex=r"b_{\theta}")
    b_eta = cell.vector("bias_eta", latex=r"b_{\eta}")
    wx = cell.dense(V, x)
    wh = cell.dense(U, h.prev)
    theta = cell.gate("theta", sigmoid(wx.theta + wh.theta + b_theta), latex=r"\theta")
    eta = cell.gate("eta", sigmoid(wx.eta + wh.eta + b_eta), latex=r"\eta")
    th = cell.let("th", tanh(h.prev), latex=r"\tanh(h)")
    n = cell.let("n", tanh(wx.n), latex=r"\tilde{x}")
    cell.update(h, theta * th + eta * n)
    return cell.build()


@register
def star() -> CellSpec:
    cell, x, h = _one_state(
        "star",
        "Stackable recurrent cell",
        "Turkoglu, D'Aronco, Wegner and Schindler 2022, Gating revisited: deep multi-layer "
        "RNNs that can be trained, IEEE TPAMI 44(8)",
        "One gate k interpolates between the previous state and the input's tanh "
        "projection z, and the result passes through tanh again, which keeps deep stacks "
        "trainable.",
        ("weight_ih (2 H, I) and bias_ih (2 H), blocks k (the gate) and z; weight_hh (H, H) "
         "for k only.",),
    )  # fmt: skip
    W_x = cell.weight("weight_ih", "k z", cols="I", latex=r"W_{\cdot}")
    b = cell.bias("bias_ih", "k z", latex=r"b_{\cdot}")
    W_h = cell.weight("weight_hh", "k", cols="H", latex=r"W_{h}")
    wx = cell.dense(W_x, x, bias=b)
    wh = cell.dense(W_h, h.prev)
    z = cell.let("z", tanh(wx.z))
    k = cell.gate("k", sigmoid(wx.k + wh.k))
    cell.update(h, tanh((1 - k) * h.prev + k * z))
    return cell.build()


@register
def li_gru() -> CellSpec:
    cell, x, h = _one_state(
        "li_gru",
        "Light gated recurrent unit",
        "Ravanelli, Brakel, Omologo and Bengio 2018, Light gated recurrent units for speech "
        "recognition, IEEE TETCI 2(2)",
        "A GRU without its reset gate and with a ReLU candidate.",
        ("weight_ih (2 H, I), weight_hh (2 H, H), blocks z and n; bias_ih (2 H) stands in "
         "for the batch normalisation of the input projections, which the paper applies "
         "during training and which folds into an affine shift at inference.",
         "ReLU's derivative at 0 is taken as 0, as in PyTorch."),
    )  # fmt: skip
    W = cell.weight("weight_ih", "z n", cols="I", latex=r"W_{\cdot}")
    b = cell.bias("bias_ih", "z n", latex=r"b_{\cdot}")
    U = cell.weight("weight_hh", "z n", cols="H", latex=r"U_{\cdot}")
    wx = cell.dense(W, x, bias=b)
    wh = cell.dense(U, h.prev)
    z = cell.gate("z", sigmoid(wx.z + wh.z))
    n = cell.let("n", relu(wx.n + wh.n), latex=r"\tilde{h}")
    _interpolate(cell, h, z, n, "The update gate keeps the previous state:")
    return cell.build()


def _bistable(name: str, dense_recurrence: bool) -> CellSpec:
    kind = "dense" if dense_recurrence else "diagonal"
    cell, x, h = _one_state(
        name,
        "Recurrently neuromodulated bistable recurrent cell" if dense_recurrence
        else "Bistable recurrent cell",
        "Vecoven, Ernst and Drion 2021, A bio-inspired bistable recurrent cell allows for "
        "long-lasting memory, PLOS ONE 16(6)",
        "Each unit is bistable when a = 1 + tanh(...) exceeds 1: the state then feeds back "
        f"onto itself through a; the gates read the previous state through a {kind} "
        "recurrent weight.",
        ("weight_ih (3 H, I), blocks a, c and n (U_a, U_c, U); the recurrent weights of a "
         "and c are " + ("weight_hh (2 H, H), blocks a and c" if dense_recurrence
                         else "the vectors w_a and w_c (H each)") + ".", _NO_BIAS),
    )  # fmt: skip
    U = cell.weight("weight_ih", "a c n", cols="I", latex=r"U_{\cdot}")
    wx = cell.dense(U, x)
    if dense_recurrence:
        wh = cell.dense(
            cell.weight("weight_hh", "a c", cols="H", latex=r"W_{\cdot}"), h.prev
        )
        rec_a, rec_c = wh.a, wh.c
    else:
        rec_a = cell.vector("w_a", latex=r"w_{a}") * h.prev
        rec_c = cell.vector("w_c", latex=r"w_{c}") * h.prev
    ta = cell.let("ta", tanh(wx.a + rec_a), latex=r"\tanh(\cdot)")
    a = cell.let("a", 1 + ta)
    c = cell.gate("c", sigmoid(wx.c + rec_c))
    n = cell.let("n", tanh(wx.n + a * h.prev), latex=r"\tilde{h}")
    _interpolate(cell, h, c, n, "The gate c keeps the previous state:")
    return cell.build()


@register
def brc() -> CellSpec:
    return _bistable("brc", dense_recurrence=False)


@register
def nbrc() -> CellSpec:
    return _bistable("nbrc", dense_recurrence=True)


def _ran_gates(cell: Cell, x, h):
    """RAN's content layer ``W_cx x`` and its input and forget gates, read from ``x`` and
    ``h_prev``: the projection of ``x`` (blocks n, i, f) and the two gates."""
    W_x = cell.weight("weight_ih", "n i f", cols="I", latex=r"W_{\cdot x}")
    W_h = cell.weight("weight_hh", "i f", cols="H", latex=r"W_{\cdot h}")
    b_i = cell.vector("bias_i", latex=r"b_{i}")
    b_f = cell.vector("bias_f", latex=r"b_{f}")
    wx, wh = cell.dense(W_x, x), cell.dense(W_h, h.prev)
    i = cell.gate("i", sigmoid(wh.i + wx.i + b_i))
    f = cell.gate("f", sigmoid(wh.f + wx.f + b_f))
    return wx, i, f


@register
def ran() -> CellSpec:
    cell = Cell(
        "ran",
        title="Recurrent additive network",
        citation="Lee, Levy and Zettlemoyer 2017, Recurrent additive networks, arXiv:1705.07393",
        description="The memory c adds a linear content layer of the input, gated, to its "
        "own gated previous value; no non-linearity acts on the recurrence except the "
        "output's tanh (the paper's tanh-RAN).",
        conventions=(
            "weight_ih (3 H, I), blocks n (the content layer W_cx), i and f; weight_hh "
            "(2 H, H), blocks i and f; biases b_i and b_f (H each) on the gates only.",
            "Both h and c are carried, so that a caller may start from any pair.",
        ),
    )
    x = cell.input()
    h, c = cell.state("h"), cell.state("c")
    wx, i, f = _ran_gates(cell, x, h)
    cell.update(c, i * wx.n + f * c.prev)
    cell.update(h, tanh(c.new))
    return cell.build()


@register
def janet() -> CellSpec:
    cell, x, h = _one_state(
        "janet",
        "Just another network (forget-gate-only LSTM)",
        "van der Westhuizen and Lasenby 2018, The unreasonable effectiveness of the forget "
        "gate, arXiv:1804.04849",
        "An LSTM reduced to its forget gate: the input gate is 1 - sigma(s - beta) with the "
        "forget gate's own pre-activation s, and the output is the cell itself.",
        ("weight_ih (2 H, I), weight_hh (2 H, H) and bias (2 H), blocks f and c; h_t = c_t, "
         "one carried state.",
         "beta is a hyperparameter, by default the paper's 1."),
    )  # fmt: skip
    W = cell.weight("weight_ih", "f c", cols="I", latex=r"W_{\cdot}")
    U = cell.weight("weight_hh", "f c", cols="H", latex=r"U_{\cdot}")
    b = cell.bias("bias", "f c", latex=r"b_{\cdot}")
    wx = cell.dense(W, x, bias=b)
    wh = cell.dense(U, h.prev)
    beta = cell.hyper("beta", 1, latex=r"\beta")
    s = cell.let("s", wx.f + wh.f)
    f = cell.gate("f", sigmoid(s))
    k = cell.gate("k", sigmoid(s - beta), latex=r"\sigma(s - \beta)")
    n = cell.let("n", tanh(wx.c + wh.c), latex=r"\tilde{c}")
    cell.update(h, f * h.prev + (1 - k) * n)
    return cell.build()


@register
def trnn() -> CellSpec:
    cell, x, h = _one_state(
        "trnn",
        "Strongly-typed recurrent network",
        "Balduzzi and Ghifary 2016, Strongly-typed recurrent neural networks, ICML",
        "No recurrent weight at all: the gate and the candidate read only the input, and "
        "the state is a learned exponential moving average of the candidate.",
        ("weight_ih (2 H, I), blocks z (the candidate W x) and f (V x); bias_f (H) on the "
         "gate only.",),
    )  # fmt: skip
    W = cell.weight("weight_ih", "z f", cols="I", latex=r"W_{\cdot}")
    b_f = cell.vector("bias_f", latex=r"b_{f}")
    wx = cell.dense(W, x)
    f = cell.gate("f", sigmoid(wx.f + b_f))
    _interpolate(cell, h, f, wx.z, "The forget gate keeps the previous state:")
    return cell.build()


@register
def sru() -> CellSpec:
    cell = Cell(
        "sru",
        title="Simple recurrent unit",
        citation="Lei, Zhang, Wang, Dai and Artzi 2018, Simple recurrent units for highly "
        "parallelizable recurrence, EMNLP",
        description="All matrix products read only the input, so they run for all steps at "
        "once; the recurrence is pointwise, through the vectors v_f and v_r, and the output "
        "is a highway mix of the cell and the input.",
        conventions=(
            "weight_ih (3 H, I), blocks n (W), f and r; v_f, v_r, b_f and b_r are vectors "
            "(H each); the highway reads the raw input, so the input size must equal the "
            "hidden size (the paper's scaling of the highway term is omitted).",
            "Both gates read the previous cell state c; h is carried so that it is returned, "
            "but nothing reads its previous value.",
        ),
    )
    x = cell.input()
    h, c = cell.state("h"), cell.state("c")
    W = cell.weight("weight_ih", "n f r", cols="I", latex=r"W_{\cdot}")
    v_f, v_r = cell.vector("v_f", latex=r"v_{f}"), cell.vector("v_r", latex=r"v_{r}")
    b_f, b_r = (
        cell.vector("bias_f", latex=r"b_{f}"),
        cell.vector("bias_r", latex=r"b_{r}"),
    )
    wx = cell.dense(W, x)
    f = cell.gate("f", sigmoid(wx.f + v_f * c.prev + b_f))
    r = cell.gate("r", sigmoid(wx.r + v_r * c.prev + b_r))
    cell.update(c, f * c.prev + (1 - f) * wx.n)
    cell.update(h, r * c.new + (1 - r) * x)
    return cell.build()


# -- cells with hyperparameters ---------------------------------------------------------------


@register
def scrn() -> CellSpec:
    cell = Cell(
        "scrn",
        title="Structurally constrained recurrent network",
        citation="Mikolov, Joulin, Chopra, Mathieu and Ranzato 2015, Learning longer memory "
        "in recurrent neural networks, ICLR workshop",
        description="Slow context units s, an exponential moving average of the input's "
        "projection with a fixed rate alpha, feed a sigmoid hidden layer.",
        conventions=(
            "weight_sx (S, I) is B, weight_hs (H, S) is P, weight_hx (H, I) is A and weight_hh "
            "(H, H) is R; S is the number of context units.",
            "alpha is a hyperparameter (the paper's 0.95), chosen at run time. "
            + _NO_BIAS,
        ),
    )
    x = cell.input()
    h = cell.state("h")
    S = cell.size("S", "context_size")
    s = cell.state("s", size=S)
    alpha = cell.hyper("alpha", sympy.Rational(95, 100), latex=r"\alpha")
    B = cell.weight("weight_sx", "s", cols="I", block_size=S, latex="B")
    P = cell.weight("weight_hs", "h", cols=S, latex="P")
    A = cell.weight("weight_hx", "h", cols="I", latex="A")
    R = cell.weight("weight_hh", "h", cols="H", latex="R")
    cell.update(s, (1 - alpha) * cell.dense(B, x).s + alpha * s.prev)
    ps = cell.dense(P, s.new, name="ps").h
    cell.update(h, sigmoid(ps + cell.dense(A, x).h + cell.dense(R, h.prev).h))
    return cell.build()


@register
def cornn() -> CellSpec:
    cell = Cell(
        "cornn",
        title="Coupled oscillatory recurrent network",
        citation="Rusch and Mishra 2021, Coupled oscillatory recurrent neural network "
        "(coRNN): an accurate and (gradient) stable architecture for learning long time "
        "dependencies, ICLR",
        description="A network of damped, driven, coupled oscillators: each unit's position "
        "y (the output) is accelerated by a tanh of the positions, the velocities z and the "
        "input, pulled back by gamma y and damped by epsilon z; the second-order equation is "
        "discretised with the time step dt.",
        conventions=(
            "weight_ih (H, I) with bias_ih (H) is V u + b; weight_hh (2 H, H) holds W (reading "
            "y) and W' (reading z) as blocks y and z. dt, gamma and epsilon are "
            "hyperparameters, by default the paper's for sequential MNIST (0.042, 2.7, 4.7).",
        ),
    )
    x = cell.input()
    y, z = cell.state("y", latex="y"), cell.state("z", latex="z")
    cell.output(y)
    dt = cell.hyper("dt", 0.042, latex=r"\Delta t")
    gamma = cell.hyper("gamma", 2.7, latex=r"\gamma")
    epsilon = cell.hyper("epsilon", 4.7, latex=r"\epsilon")
    V = cell.weight("weight_ih", "f", cols="I", latex="V")
    b = cell.bias("bias_ih", "f", latex="b")
    W = cell.weight("weight_hh", "y z", cols="H", latex=r"W_{\cdot}")
    wy = cell.dense(W, y.prev, blocks="y", name="wy").y
    wz = cell.dense(W, z.prev, blocks="z", name="wz").z
    force = cell.let("force", tanh(wy + wz + cell.dense(V, x, bias=b).f), latex=r"\phi")
    cell.update(z, (z.prev + dt * (force - gamma * y.prev)) / (1 + dt * epsilon))
    cell.update(y, y.prev + dt * z.new)
    cell.relation(
        "The paper's implicit-explicit scheme: the damping reads the new velocity (the "
        "authors' code damps the previous one instead),",
        z.new - z.prev, dt * (force - gamma * y.prev - epsilon * z.new),
    )  # fmt: skip
    return cell.build()


@register
def lem() -> CellSpec:
    cell = Cell(
        "lem",
        title="Long expressive memory",
        citation="Rusch, Mishra, Erichson and Mahoney 2022, Long expressive memory for "
        "sequence modeling, ICLR",
        description="Two learned, per-unit time steps (dt times a sigmoid gate) advance a "
        "fast state z and a slow state y, each towards a tanh target; y is the output.",
        conventions=(
            "weight_ih (4 H, I) and bias_ih (4 H), blocks tz, ty (the time-step gates of z "
            "and y), z and y; weight_hh (3 H, H), blocks tz, ty and z, reads the previous y; "
            "weight_zh (H, H) reads the new z for y's target.",
            "dt is a hyperparameter, by default 1.",
        ),
    )
    x = cell.input()
    y, z = cell.state("y", latex="y"), cell.state("z", latex="z")
    cell.output(y)
    dt = cell.hyper("dt", 1, latex=r"\Delta t")
    V = cell.weight("weight_ih", "tz ty z y", cols="I", latex=r"V_{\cdot}")
    b = cell.bias("bias_ih", "tz ty z y", latex=r"b_{\cdot}")
    W = cell.weight("weight_hh", "tz ty z", cols="H", latex=r"W_{\cdot}")
    W_y = cell.weight("weight_zh", "y", cols="H", latex=r"W_{y}")
    vx = cell.dense(V, x, bias=b)
    wy = cell.dense(W, y.prev)
    gz = cell.gate("gz", sigmoid(vx.tz + wy.tz), latex=r"\hat{\sigma}_{z}")
    gy = cell.gate("gy", sigmoid(vx.ty + wy.ty), latex=r"\hat{\sigma}_{y}")
    dtz = cell.let("dtz", dt * gz, latex=r"\Delta t_{z}")
    dty = cell.let("dty", dt * gy, latex=r"\Delta t_{y}")
    nz = cell.let("nz", tanh(wy.z + vx.z), latex=r"\tilde{z}")
    cell.update(z, (1 - dtz) * z.prev + dtz * nz)
    wz = cell.dense(W_y, z.new, name="wz").y
    ny = cell.let("ny", tanh(wz + vx.y), latex=r"\tilde{y}")
    cell.update(y, (1 - dty) * y.prev + dty * ny)
    return cell.build()


@register
def unicornn() -> CellSpec:
    cell = Cell(
        "unicornn",
        title="Undamped independent controlled oscillatory recurrent network",
        citation="Rusch and Mishra 2021, UnICORNN: a recurrent model for learning very long "
        "time dependencies, ICML",
        description="Independent undamped oscillators, one per unit, each with its own learned "
        "time step dt sigmoid(c), advanced by a symplectic scheme: the velocity z first, then "
        "the position y (the output) from the new z.",
        conventions=(
            "weight_ih (H, I) with bias_ih (H) is V u + b; the vectors w (the diagonal "
            "recurrent weight) and c (the time-step control) have H entries each; the "
            "activation is tanh.",
            "dt and alpha are hyperparameters, which the paper tunes per task; their defaults "
            "here, 0.1 and 0, are starting values, not the paper's.",
        ),
    )
    x = cell.input()
    y, z = cell.state("y", latex="y"), cell.state("z", latex="z")
    cell.output(y)
    dt = cell.hyper("dt", 0.1, latex=r"\Delta t")
    alpha = cell.hyper("alpha", 0, latex=r"\alpha")
    V = cell.weight("weight_ih", "y", cols="I", latex="V")
    b = cell.bias("bias_ih", "y", latex="b")
    w, c = cell.vector("w", latex="w"), cell.vector("c", latex="c")
    sc = cell.gate("sc", sigmoid(c), latex=r"\hat{\sigma}(c)")
    step = cell.let("step", dt * sc, latex=r"\Delta t \hat{\sigma}(c)")
    force = cell.let(
        "force", tanh(w * y.prev + cell.dense(V, x, bias=b).y), latex=r"\phi"
    )
    cell.update(z, z.prev - step * (force + alpha * y.prev))
    cell.update(y, y.prev + step * z.new)
    return cell.build()


@register
def indy_lstm() -> CellSpec:
    cell = Cell(
        "indy_lstm",
        title="Independently recurrent LSTM",
        citation="Gonnet and Deselaers 2020, IndyLSTMs: independently recurrent LSTMs, ICASSP",
        description="An LSTM whose recurrent weights are diagonal: each unit's gates read only "
        "its own previous output, so the recurrence costs O(H) instead of O(H^2) per step.",
        conventions=(
            "weight_ih (4 H, I) and bias_ih (4 H) in PyTorch's gate order i, f, g, o; the "
            "recurrent weights are the vectors u_i, u_f, u_g and u_o (H each).",
        ),
    )
    x = cell.input()
    h, c = cell.state("h"), cell.state("c")
    W = cell.weight("weight_ih", "i f g o", cols="I", latex=r"W_{\cdot}")
    b = cell.bias("bias_ih", "i f g o", latex=r"b_{\cdot}")
    wx = cell.dense(W, x, bias=b)
    u = {k: cell.vector(f"u_{k}", latex=f"u_{{{k}}}") for k in "ifgo"}
    i = cell.gate("i", sigmoid(wx.i + u["i"] * h.prev))
    f = cell.gate("f", sigmoid(wx.f + u["f"] * h.prev))
    g = cell.let("g", tanh(wx.g + u["g"] * h.prev), latex=r"\tilde{c}")
    o = cell.gate("o", sigmoid(wx.o + u["o"] * h.prev))
    cell.update(c, f * c.prev + i * g)
    cell.update(h, o * tanh(c.new))
    return cell.build()


# -- gate variants: gates from the state and a bias (1), the state alone (2), a bias alone (3) -


_VARIANT_GATES = {
    1: "the state and a bias",
    2: "the state alone, without a bias",
    3: "a bias alone (one learned constant per unit)",
}


def _gate_variant(
    name: str, kind: int, gates: str, title: str, citation: str
) -> CellSpec:
    """A GRU (gates ``z r``) or an MGU (gate ``f``) whose gates read no input: Dey and Salem's
    GRU1-3 and Heck and Salem's MGU1-3. The candidate reads the gated state (``r h`` or
    ``f h``) through its own projection, as in Cho et al.'s GRU and Zhou et al.'s MGU."""
    names = gates.split()
    recurrent = " ".join([*names, "n"]) if kind in (1, 2) else "n"
    cell, x, h = _one_state(
        name, title, citation,
        f"The gates read {_VARIANT_GATES[kind]}; only the candidate reads the input.",
        (f"weight_ih (H, I) and bias_n (H) for the candidate; weight_hh "
         f"({len(recurrent.split())} H, H), blocks {', '.join(recurrent.split())}"
         + (f"; biases {', '.join('bias_' + g for g in names)} (H each)" if kind != 2 else "")
         + ".",),
    )  # fmt: skip
    W = cell.weight("weight_ih", "n", cols="I", latex=r"W_{n}")
    U = cell.weight("weight_hh", recurrent, cols="H", latex=r"U_{\cdot}")
    b_n = cell.vector("bias_n", latex=r"b_{n}")
    wh = cell.dense(U, h.prev, blocks=gates) if kind in (1, 2) else None
    values = {}
    for g in names:
        pre = getattr(wh, g) if wh is not None else 0
        if kind != 2:
            pre = pre + cell.vector(f"bias_{g}", latex=f"b_{{{g}}}")
        values[g] = cell.gate(g, sigmoid(pre))
    reset = values["r" if "r" in values else "f"]
    gated = cell.let("gh", reset * h.prev, latex=rf"({reset.name} \odot h)")
    wg = cell.dense(U, gated, blocks="n", name="hn")
    n = cell.let("n", tanh(cell.dense(W, x).n + wg.n + b_n), latex=r"\tilde{h}")
    select = values["z" if "z" in values else "f"]
    _interpolate(cell, h, 1 - select, n, "The gate selects the candidate:")
    return cell.build()


_DEY = (
    "Dey and Salem 2017, Gate-variants of gated recurrent unit (GRU) neural networks, "
    "IEEE MWSCAS"
)
_HECK = (
    "Heck and Salem 2017, Simplified minimal gated unit variations for recurrent neural "
    "networks, IEEE MWSCAS"
)


@register
def gru1() -> CellSpec:
    return _gate_variant("gru1", 1, "z r", "GRU gate variant 1", _DEY)


@register
def gru2() -> CellSpec:
    return _gate_variant("gru2", 2, "z r", "GRU gate variant 2", _DEY)


@register
def gru3() -> CellSpec:
    return _gate_variant("gru3", 3, "z r", "GRU gate variant 3", _DEY)


@register
def mgu1() -> CellSpec:
    return _gate_variant("mgu1", 1, "f", "Minimal gated unit variant 1", _HECK)


@register
def mgu2() -> CellSpec:
    return _gate_variant("mgu2", 2, "f", "Minimal gated unit variant 2", _HECK)


@register
def mgu3() -> CellSpec:
    return _gate_variant("mgu3", 3, "f", "Minimal gated unit variant 3", _HECK)


@register
def ran_identity() -> CellSpec:
    cell, x, h = _one_state(
        "ran_identity",
        "Recurrent additive network, identity output",
        "Lee, Levy and Zettlemoyer 2017, Recurrent additive networks, arXiv:1705.07393",
        "The identity-RAN: the memory is the output, h = c, so the state is a gated sum of "
        "linear projections of the inputs so far; only the gates are non-linear.",
        ("weight_ih (3 H, I), blocks n (the content layer), i and f; weight_hh (2 H, H), "
         "blocks i and f; biases b_i and b_f (H each) on the gates only.",),
    )  # fmt: skip
    wx, i, f = _ran_gates(cell, x, h)
    cell.update(h, i * wx.n + f * h.prev)
    return cell.build()


@register
def mi_rnn() -> CellSpec:
    cell, x, h = _one_state(
        "mi_rnn",
        "Recurrent network with multiplicative integration",
        "Wu, Zhang, Zhang, Bengio and Salakhutdinov 2016, On multiplicative integration with "
        "recurrent neural networks, NeurIPS",
        "The input's and the state's projections are combined by a Hadamard product as well "
        "as a sum, so that the input gates the recurrent contribution per unit.",
        ("weight_ih (H, I) is W, weight_hh (H, H) is U; the vectors alpha, beta_h, beta_x and "
         "bias (H each) weigh the product, U h, W x and the bias: the paper's general form.",),
    )  # fmt: skip
    W = cell.weight("weight_ih", "h", cols="I", latex="W")
    U = cell.weight("weight_hh", "h", cols="H", latex="U")
    alpha = cell.vector("alpha", latex=r"\alpha")
    beta_h, beta_x = (
        cell.vector("beta_h", latex=r"\beta_{1}"),
        cell.vector("beta_x", latex=r"\beta_{2}"),
    )
    b = cell.vector("bias", latex="b")
    wx, uh = cell.dense(W, x).h, cell.dense(U, h.prev).h
    cell.update(h, tanh(alpha * wx * uh + beta_h * uh + beta_x * wx + b))
    return cell.build()


@register
def rhn() -> CellSpec:
    cell, x, h = _one_state(
        "rhn",
        "Recurrent highway network, recurrence depth 2",
        "Zilly, Srivastava, Koutnik and Schmidhuber 2017, Recurrent highway networks, ICML",
        "Each step runs two highway layers: the first reads the input and the previous state, "
        "the second only the first's output; in each, a transform gate t mixes a tanh "
        "candidate with the layer's input, and the carry gate is 1 - t.",
        ("weight_ih (2 H, I), blocks n (W_H) and t (W_T), reach the first layer only; "
         "weight_hh1 and weight_hh2 (2 H, H each) are the layers' R_H and R_T, with biases "
         "bias1 and bias2 (2 H each), blocks n and t; the carry gate is coupled, c = 1 - t, "
         "as in the paper's experiments.",),
    )  # fmt: skip
    W = cell.weight("weight_ih", "n t", cols="I", latex=r"W_{\cdot}")
    R1 = cell.weight("weight_hh1", "n t", cols="H", latex=r"R_{\cdot 1}")
    R2 = cell.weight("weight_hh2", "n t", cols="H", latex=r"R_{\cdot 2}")
    b1 = cell.bias("bias1", "n t", latex=r"b_{\cdot 1}")
    b2 = cell.bias("bias2", "n t", latex=r"b_{\cdot 2}")
    wx, r1 = cell.dense(W, x), cell.dense(R1, h.prev, bias=b1)
    n1 = cell.let("n1", tanh(wx.n + r1.n), latex=r"\tilde{s}_{1}")
    t1 = cell.gate("t1", sigmoid(wx.t + r1.t), latex=r"\tau_{1}")
    s1 = cell.let("s1", n1 * t1 + h.prev * (1 - t1), latex=r"s_{1}")
    r2 = cell.dense(R2, s1, bias=b2)
    n2 = cell.let("n2", tanh(r2.n), latex=r"\tilde{s}_{2}")
    t2 = cell.gate("t2", sigmoid(r2.t), latex=r"\tau_{2}")
    cell.update(h, n2 * t2 + s1 * (1 - t2))
    return cell.build()
