"""Independent references: cells written by hand from their papers' equations, not from the
declarations, so that a wrong declaration (not only a wrong derivation) is caught.

Each reference is a step function over torch tensors; autograd gives the gradients. Parameter
names and block orders are the ones the catalog documents.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, Problem, compare_with_torch, load_generated

torch = pytest.importorskip("torch")
sigmoid, tanh = torch.sigmoid, torch.tanh


def _blocks(tensor, count):
    """The row blocks of a parameter."""
    return tensor.chunk(count, 0)


def _units(tensor, count):
    """The unit blocks of a batch of pre-activations ``(B, count * H)``."""
    return tensor.chunk(count, -1)


def _linear(v, weight, bias=None):
    out = v @ weight.T
    return out if bias is None else out + bias


def _run(step, x, states):
    """A step returns the new states, whose first is the output, or ``(output, states)`` for a
    cell whose output is not a state."""
    ys = []
    for t in range(x.shape[0]):
        result = step(x[t], *states)
        if len(result) == 2 and isinstance(result[1], tuple):
            y, states = result
        else:
            y, states = result[0], result
        ys.append(y)
    return torch.stack(ys), states


def _check(variant, dtype, reference, hypers=None, **sizes):
    problem = Problem(load_generated(variant), dtype, steps=5, hypers=hypers, **sizes)
    x, states, params = leaves = problem.torch_leaves()
    ys_t, finals_t = _run(lambda xt, *s: reference(xt, s, params), x, states)
    compare_with_torch(problem, ys_t, finals_t, leaves)


def _peephole_lstm(xt, states, p, coupled=False):
    """Gers and Schmidhuber 2000 / Greff et al.'s vanilla LSTM (and CIFG when ``coupled``)."""
    h, c = states
    count = 3 if coupled else 4
    wx = _units(_linear(xt, p["weight_ih"], p["bias_ih"]), count)
    wh = _units(_linear(h, p["weight_hh"], p["bias_hh"]), count)
    if coupled:  # blocks i, g, o; f = 1 - i
        (xi, xg, xo), (hi, hg, ho) = wx, wh
        i = sigmoid(xi + hi + p["p_i"] * c)
        f = 1 - i
    else:
        (xi, xf, xg, xo), (hi, hf, hg, ho) = wx, wh
        i = sigmoid(xi + hi + p["p_i"] * c)
        f = sigmoid(xf + hf + p["p_f"] * c)
    c_new = f * c + i * tanh(xg + hg)
    o = sigmoid(xo + ho + p["p_o"] * c_new)  # the output gate peeks at the new cell
    return o * tanh(c_new), c_new


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_lstm_peephole_matches_gers_and_schmidhuber(dtype):
    _check("lstm_peephole", dtype, _peephole_lstm)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_lstm_cifg_matches_greff(dtype):
    _check("lstm_cifg", dtype, lambda xt, s, p: _peephole_lstm(xt, s, p, coupled=True))


def _gru_cho(xt, states, p):
    """Cho et al. 2014: the reset gate applies before the recurrent projection."""
    (h,) = states
    W_ir, W_iz, W_in = _blocks(p["weight_ih"], 3)
    W_hr, W_hz, W_hn = _blocks(p["weight_hh"], 3)
    b_ir, b_iz, b_in = _blocks(p["bias_ih"], 3)
    b_hr, b_hz, b_hn = _blocks(p["bias_hh"], 3)
    r = sigmoid(_linear(xt, W_ir, b_ir) + _linear(h, W_hr, b_hr))
    z = sigmoid(_linear(xt, W_iz, b_iz) + _linear(h, W_hz, b_hz))
    n = tanh(_linear(xt, W_in, b_in) + _linear(r * h, W_hn, b_hn))
    return ((1 - z) * n + z * h,)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_gru_cho_matches_cho_et_al(dtype):
    _check("gru_cho", dtype, _gru_cho)


def _mgu(xt, states, p):
    """Zhou et al. 2016: one forget gate resets and interpolates."""
    (h,) = states
    W_f, W_h = _blocks(p["weight_ih"], 2)
    U_f, U_h = _blocks(p["weight_hh"], 2)
    b_if, b_ih = _blocks(p["bias_ih"], 2)
    b_hf, b_hh = _blocks(p["bias_hh"], 2)
    f = sigmoid(_linear(xt, W_f, b_if) + _linear(h, U_f, b_hf))
    candidate = tanh(_linear(xt, W_h, b_ih) + _linear(f * h, U_h, b_hh))
    return ((1 - f) * h + f * candidate,)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_mgu_matches_zhou_et_al(dtype):
    _check("mgu", dtype, _mgu)


def _mut(kind):
    """Jozefowicz et al. 2015, MUT1-3, with the update gate on Chung's side."""

    def step(xt, states, p):
        (h,) = states
        wx, wh = p["weight_ih"], p["weight_hh"]
        b_z, b_r, b_h = p["b_z"], p["b_r"], p["b_h"]
        if kind == 1:  # weight_ih: z, r; weight_hh: r, h
            W_xz, W_xr = _blocks(wx, 2)
            W_hr, W_hh = _blocks(wh, 2)
            z = sigmoid(_linear(xt, W_xz) + b_z)
            r = sigmoid(_linear(xt, W_xr) + _linear(h, W_hr) + b_r)
            candidate = tanh(_linear(r * h, W_hh) + tanh(xt) + b_h)
        elif kind == 2:  # weight_ih: z, h; weight_hh: z, r, h
            W_xz, W_xh = _blocks(wx, 2)
            W_hz, W_hr, W_hh = _blocks(wh, 3)
            z = sigmoid(_linear(xt, W_xz) + _linear(h, W_hz) + b_z)
            r = sigmoid(xt + _linear(h, W_hr) + b_r)
            candidate = tanh(_linear(r * h, W_hh) + _linear(xt, W_xh) + b_h)
        else:  # weight_ih: z, r, h; weight_hh: z, r, h
            W_xz, W_xr, W_xh = _blocks(wx, 3)
            W_hz, W_hr, W_hh = _blocks(wh, 3)
            z = sigmoid(_linear(xt, W_xz) + _linear(tanh(h), W_hz) + b_z)
            r = sigmoid(_linear(xt, W_xr) + _linear(h, W_hr) + b_r)
            candidate = tanh(_linear(r * h, W_hh) + _linear(xt, W_xh) + b_h)
        return (candidate * z + h * (1 - z),)

    return step


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("kind", [1, 2, 3])
def test_mut_matches_jozefowicz_et_al(kind, dtype):
    _check(f"mut{kind}", dtype, _mut(kind))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_indrnn_matches_li_et_al(dtype):
    def step(xt, states, p):
        (h,) = states
        return (torch.relu(_linear(xt, p["weight_ih"], p["bias_ih"]) + p["u"] * h),)

    _check("indrnn", dtype, step)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_lstm_proj_matches_torch_nn_lstm_with_proj_size(dtype):
    cell = load_generated("lstm_proj")
    problem = Problem(cell, dtype, steps=5, hidden_size=6, extra=4)
    x, (h0, c0), params = problem.torch_leaves()
    hidden, proj = c0.shape[1], h0.shape[1]
    module = torch.nn.LSTM(x.shape[2], hidden, proj_size=proj).double()
    module.load_state_dict({f"{k}_l0": v.detach() for k, v in params.items()})
    for name, p in module.named_parameters():
        params[name.removesuffix("_l0")] = p
    ys_t, (hT, cT) = module(x, (h0.unsqueeze(0), c0.unsqueeze(0)))
    compare_with_torch(problem, ys_t, (hT, cT), (x, (h0, c0), params))


def test_lstm_np_equals_lstm():
    lstm, lstm_np = load_generated("lstm"), load_generated("lstm_np")
    assert lstm_np.PARAMS == lstm.PARAMS and lstm_np.STATES == lstm.STATES
    problem = Problem(lstm, np.float64, steps=6)
    same = Problem(lstm_np, np.float64, steps=6)
    for a, b in zip(problem.run(), same.run(), strict=True):
        for got, want in zip(_leaves(a), _leaves(b), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


def _leaves(value):
    if isinstance(value, dict):
        return [value[k] for k in sorted(value)]
    if isinstance(value, tuple):
        return list(value)
    return [value]


# -- the gated cells of the later literature, each written from its paper's equations ----------


def _ugrnn(xt, states, p):
    """Collins et al. 2017: g = sigma(.), c = tanh(.), h = g h + (1 - g) c."""
    (h,) = states
    W_g, W_c = _blocks(p["weight_ih"], 2)
    U_g, U_c = _blocks(p["weight_hh"], 2)
    b_g, b_c = _blocks(p["bias"], 2)
    g = sigmoid(_linear(xt, W_g, b_g) + _linear(h, U_g))
    c = tanh(_linear(xt, W_c, b_c) + _linear(h, U_c))
    return (g * h + (1 - g) * c,)


def _minimal_rnn(xt, states, p):
    """Chen 2017: z = Phi(x), u = sigma(U_h h + U_z z + b_u), h = u h + (1 - u) z."""
    (h,) = states
    z = tanh(_linear(xt, p["weight_ih"], p["bias_ih"]))
    u = sigmoid(_linear(h, p["weight_hh"]) + _linear(z, p["weight_zh"]) + p["bias_u"])
    return (u * h + (1 - u) * z,)


def _atr(xt, states, p):
    """Zhang et al. 2018: i = sigma(p + q), f = sigma(p - q), h = i p + f h."""
    (h,) = states
    p_t = _linear(xt, p["weight_ih"], p["bias_ih"])
    q_t = _linear(h, p["weight_hh"])
    return (sigmoid(p_t + q_t) * p_t + sigmoid(p_t - q_t) * h,)


def _lightru(xt, states, p):
    """Ye et al. 2024: candidate tanh(W_h x), h = (1 - f) h + f candidate."""
    (h,) = states
    W_h, W_f = _blocks(p["weight_ih"], 2)
    f = sigmoid(_linear(xt, W_f) + _linear(h, p["weight_hh"]) + p["bias_f"])
    return ((1 - f) * h + f * tanh(_linear(xt, W_h)),)


def _sgrn(xt, states, p):
    """Zu et al. 2020: f = sigma(p + q), h = tanh((1 - f) p + f h)."""
    (h,) = states
    p_t = _linear(xt, p["weight_ih"], p["bias_ih"])
    f = sigmoid(p_t + _linear(h, p["weight_hh"], p["bias_hh"]))
    return (tanh((1 - f) * p_t + f * h),)


def _cfn(xt, states, p):
    """Laurent and von Brecht 2017: h = theta tanh(h) + eta tanh(W x)."""
    (h,) = states
    V_theta, V_eta, W = _blocks(p["weight_ih"], 3)
    U_theta, U_eta = _blocks(p["weight_hh"], 2)
    theta = sigmoid(_linear(h, U_theta) + _linear(xt, V_theta) + p["bias_theta"])
    eta = sigmoid(_linear(h, U_eta) + _linear(xt, V_eta) + p["bias_eta"])
    return (theta * tanh(h) + eta * tanh(_linear(xt, W)),)


def _star(xt, states, p):
    """Turkoglu et al. 2022: z = tanh(W_z x + b_z), h = tanh((1 - k) h + k z)."""
    (h,) = states
    W_k, W_z = _blocks(p["weight_ih"], 2)
    b_k, b_z = _blocks(p["bias_ih"], 2)
    k = sigmoid(_linear(xt, W_k, b_k) + _linear(h, p["weight_hh"]))
    return (tanh((1 - k) * h + k * tanh(_linear(xt, W_z, b_z))),)


def _li_gru(xt, states, p):
    """Ravanelli et al. 2018, batch normalisation as its inference-time shift."""
    (h,) = states
    W_z, W_h = _blocks(p["weight_ih"], 2)
    b_z, b_h = _blocks(p["bias_ih"], 2)
    U_z, U_h = _blocks(p["weight_hh"], 2)
    z = sigmoid(_linear(xt, W_z, b_z) + _linear(h, U_z))
    candidate = torch.relu(_linear(xt, W_h, b_h) + _linear(h, U_h))
    return (z * h + (1 - z) * candidate,)


def _bistable(dense):
    """Vecoven et al. 2021, BRC (diagonal recurrence) and nBRC (dense recurrence)."""

    def step(xt, states, p):
        (h,) = states
        U_a, U_c, U = _blocks(p["weight_ih"], 3)
        if dense:
            W_a, W_c = _blocks(p["weight_hh"], 2)
            rec_a, rec_c = _linear(h, W_a), _linear(h, W_c)
        else:
            rec_a, rec_c = p["w_a"] * h, p["w_c"] * h
        a = 1 + tanh(_linear(xt, U_a) + rec_a)
        c = sigmoid(_linear(xt, U_c) + rec_c)
        return (c * h + (1 - c) * tanh(_linear(xt, U) + a * h),)

    return step


def _ran(xt, states, p):
    """Lee et al. 2017, tanh-RAN: c = i (W_cx x) + f c, h = tanh(c)."""
    h, c = states
    W_cx, W_ix, W_fx = _blocks(p["weight_ih"], 3)
    W_ih, W_fh = _blocks(p["weight_hh"], 2)
    i = sigmoid(_linear(h, W_ih) + _linear(xt, W_ix) + p["bias_i"])
    f = sigmoid(_linear(h, W_fh) + _linear(xt, W_fx) + p["bias_f"])
    c = i * _linear(xt, W_cx) + f * c
    return tanh(c), c


def _janet(xt, states, p, beta=1.0):
    """van der Westhuizen and Lasenby 2018: c = sigma(s) c + (1 - sigma(s - beta)) c~."""
    (c,) = states
    W_f, W_c = _blocks(p["weight_ih"], 2)
    U_f, U_c = _blocks(p["weight_hh"], 2)
    b_f, b_c = _blocks(p["bias"], 2)
    s = _linear(c, U_f) + _linear(xt, W_f, b_f)
    candidate = tanh(_linear(c, U_c) + _linear(xt, W_c, b_c))
    return (sigmoid(s) * c + (1 - sigmoid(s - beta)) * candidate,)


def _trnn(xt, states, p):
    """Balduzzi and Ghifary 2016, T-RNN: z = W x, f = sigma(V x + b), h = f h + (1 - f) z."""
    (h,) = states
    W, V = _blocks(p["weight_ih"], 2)
    f = sigmoid(_linear(xt, V) + p["bias_f"])
    return (f * h + (1 - f) * _linear(xt, W),)


def _sru(xt, states, p):
    """Lei et al. 2018: pointwise recurrence through v_f, v_r; a highway to the input."""
    h, c = states
    W, W_f, W_r = _blocks(p["weight_ih"], 3)
    f = sigmoid(_linear(xt, W_f) + p["v_f"] * c + p["bias_f"])
    r = sigmoid(_linear(xt, W_r) + p["v_r"] * c + p["bias_r"])
    c = f * c + (1 - f) * _linear(xt, W)
    return r * c + (1 - r) * xt, c


LITERATURE = {
    "ugrnn": _ugrnn, "minimal_rnn": _minimal_rnn, "atr": _atr, "lightru": _lightru,
    "sgrn": _sgrn, "cfn": _cfn, "star": _star, "li_gru": _li_gru, "brc": _bistable(False),
    "nbrc": _bistable(True), "ran": _ran, "janet": _janet, "trnn": _trnn, "sru": _sru,
}  # fmt: skip


def _scrn(xt, states, p, alpha=0.95):
    """Mikolov et al. 2015: s = (1 - alpha) B x + alpha s, h = sigma(P s + A x + R h)."""
    h, s = states
    s = (1 - alpha) * _linear(xt, p["weight_sx"]) + alpha * s
    h = sigmoid(
        _linear(s, p["weight_hs"])
        + _linear(xt, p["weight_hx"])
        + _linear(h, p["weight_hh"])
    )
    return h, s


def _cornn(xt, states, p, dt=0.042, gamma=2.7, epsilon=4.7):
    """Rusch and Mishra 2021, eq. (3): the damping implicit in the new velocity."""
    y, z = states
    W, W_z = _blocks(p["weight_hh"], 2)
    force = tanh(
        _linear(y, W) + _linear(z, W_z) + _linear(xt, p["weight_ih"], p["bias_ih"])
    )
    z = (z + dt * force - dt * gamma * y) / (1 + dt * epsilon)
    return y + dt * z, z


def _lem(xt, states, p, dt=1.0):
    """Rusch et al. 2022: two learned time steps, z first, then y from the new z."""
    y, z = states
    V_1, V_2, V_z, V_y = _blocks(p["weight_ih"], 4)
    b_1, b_2, b_z, b_y = _blocks(p["bias_ih"], 4)
    W_1, W_2, W_z = _blocks(p["weight_hh"], 3)
    dt_n = dt * sigmoid(_linear(y, W_1) + _linear(xt, V_1, b_1))
    dt_bar = dt * sigmoid(_linear(y, W_2) + _linear(xt, V_2, b_2))
    z = (1 - dt_n) * z + dt_n * tanh(_linear(y, W_z) + _linear(xt, V_z, b_z))
    y = (1 - dt_bar) * y + dt_bar * tanh(
        _linear(z, p["weight_zh"]) + _linear(xt, V_y, b_y)
    )
    return y, z


LITERATURE.update(scrn=_scrn, cornn=_cornn, lem=_lem)


#: Hyperparameters other than the defaults, given to the kernel and to the reference alike.
OTHER_HYPERS = {
    "scrn": {"alpha": 0.5},
    "cornn": {"dt": 0.3, "gamma": 0.5, "epsilon": 1.5},
    "lem": {"dt": 0.25},
    "janet": {"beta": -0.5},
}


def _unicornn(xt, states, p, dt=0.1, alpha=0.0):
    """Rusch and Mishra 2021: z first, then y from the new z, both with dt sigma(c)."""
    y, z = states
    step = dt * sigmoid(p["c"])
    z = z - step * (
        tanh(p["w"] * y + _linear(xt, p["weight_ih"], p["bias_ih"])) + alpha * y
    )
    return y + step * z, z


def _indy_lstm(xt, states, p):
    """Gonnet and Deselaers 2020: an LSTM with diagonal recurrent weights."""
    h, c = states
    xi, xf, xg, xo = _units(_linear(xt, p["weight_ih"], p["bias_ih"]), 4)
    i = sigmoid(xi + p["u_i"] * h)
    f = sigmoid(xf + p["u_f"] * h)
    o = sigmoid(xo + p["u_o"] * h)
    c = f * c + i * tanh(xg + p["u_g"] * h)
    return o * tanh(c), c


def _gate_variant(kind, gates):
    """Dey and Salem's GRU1-3 (gates z, r) and Heck and Salem's MGU1-3 (gate f)."""

    def step(xt, states, p):
        (h,) = states
        count = len(gates) + 1 if kind in (1, 2) else 1
        U = _blocks(p["weight_hh"], count)
        values = {}
        for n, g in enumerate(gates):
            pre = _linear(h, U[n]) if kind in (1, 2) else 0
            values[g] = sigmoid(pre + p[f"bias_{g}"] if kind != 2 else pre)
        reset = values["r"] if "r" in values else values["f"]
        select = values["z"] if "z" in values else values["f"]
        candidate = tanh(
            _linear(xt, p["weight_ih"]) + _linear(reset * h, U[-1]) + p["bias_n"]
        )
        return ((1 - select) * h + select * candidate,)

    return step


LITERATURE.update(
    unicornn=_unicornn, indy_lstm=_indy_lstm,
    **{f"gru{k}": _gate_variant(k, "zr") for k in (1, 2, 3)},
    **{f"mgu{k}": _gate_variant(k, "f") for k in (1, 2, 3)},
)  # fmt: skip
OTHER_HYPERS["unicornn"] = {"dt": 0.4, "alpha": 2.0}


def _ran_identity(xt, states, p):
    """Lee et al. 2017, identity-RAN: h = c = i (W_cx x) + f c."""
    (c,) = states
    W_cx, W_ix, W_fx = _blocks(p["weight_ih"], 3)
    W_ih, W_fh = _blocks(p["weight_hh"], 2)
    i = sigmoid(_linear(c, W_ih) + _linear(xt, W_ix) + p["bias_i"])
    f = sigmoid(_linear(c, W_fh) + _linear(xt, W_fx) + p["bias_f"])
    return (i * _linear(xt, W_cx) + f * c,)


def _mi_rnn(xt, states, p):
    """Wu et al. 2016, general form: tanh(alpha Wx Uh + beta_1 Uh + beta_2 Wx + b)."""
    (h,) = states
    wx, uh = _linear(xt, p["weight_ih"]), _linear(h, p["weight_hh"])
    return (
        tanh(p["alpha"] * wx * uh + p["beta_h"] * uh + p["beta_x"] * wx + p["bias"]),
    )


def _rhn(xt, states, p):
    """Zilly et al. 2017, depth 2, coupled carry gate: s_l = h_l t_l + s_{l-1} (1 - t_l)."""
    (s,) = states
    W_H, W_T = _blocks(p["weight_ih"], 2)
    for layer in (1, 2):
        R_H, R_T = _blocks(p[f"weight_hh{layer}"], 2)
        b_H, b_T = _blocks(p[f"bias{layer}"], 2)
        x_h = _linear(xt, W_H) if layer == 1 else 0
        x_t = _linear(xt, W_T) if layer == 1 else 0
        candidate = tanh(x_h + _linear(s, R_H, b_H))
        t = sigmoid(x_t + _linear(s, R_T, b_T))
        s = candidate * t + s * (1 - t)
    return (s,)


LITERATURE.update(ran_identity=_ran_identity, mi_rnn=_mi_rnn, rhn=_rhn)


def _fastrnn(xt, states, p):
    """Kusupati et al. 2018, FastRNN: h = alpha tanh(W x + U h + b) + beta h, with alpha and
    beta the sigmoids of their learned logits."""
    (h,) = states
    candidate = tanh(
        _linear(xt, p["weight_ih"]) + _linear(h, p["weight_hh"]) + p["bias"]
    )
    return (sigmoid(p["alpha"]) * candidate + sigmoid(p["beta"]) * h,)


def _fastgrnn(xt, states, p):
    """Kusupati et al. 2018, FastGRNN: z and h~ share W x + U h; h = (zeta (1 - z) + nu) h~ +
    z h, with zeta and nu the sigmoids of their learned logits."""
    (h,) = states
    shared = _linear(xt, p["weight_ih"]) + _linear(h, p["weight_hh"])
    z = sigmoid(shared + p["bias_z"])
    candidate = tanh(shared + p["bias_h"])
    zeta, nu = sigmoid(p["zeta"]), sigmoid(p["nu"])
    return ((zeta * (1 - z) + nu) * candidate + z * h,)


LITERATURE.update(fastrnn=_fastrnn, fastgrnn=_fastgrnn)


def _antisymmetric_rnn(xt, states, p, eps=0.01, gamma=0.01):
    """Chang et al. 2019: h = h + eps tanh((W - W^T - gamma I) h + V x + b)."""
    (h,) = states
    W = p["weight_hh"]
    recurrent = W - W.T - gamma * torch.eye(W.shape[0], dtype=W.dtype)
    return (
        h + eps * tanh(_linear(h, recurrent) + _linear(xt, p["weight_ih"], p["bias"])),
    )


LITERATURE["antisymmetric_rnn"] = _antisymmetric_rnn


def _intersection_rnn(xt, states, p):
    """Collins et al. 2017, +RNN: y = g_y x + (1 - g_y) relu(.), h = g_h h + (1 - g_h) tanh(.);
    the step's output is y, which is not carried."""
    (h,) = states
    W_y, W_gy = _blocks(p["weight_yx"], 2)
    U_y, U_gy = _blocks(p["weight_yh"], 2)
    b_y, b_gy = _blocks(p["bias_y"], 2)
    W_h, W_gh = _blocks(p["weight_hx"], 2)
    U_h, U_gh = _blocks(p["weight_hh"], 2)
    b_h, b_gh = _blocks(p["bias_h"], 2)
    y_in = torch.relu(_linear(xt, W_y, b_y) + _linear(h, U_y))
    g_y = sigmoid(_linear(xt, W_gy, b_gy) + _linear(h, U_gy))
    h_in = tanh(_linear(xt, W_h, b_h) + _linear(h, U_h))
    g_h = sigmoid(_linear(xt, W_gh, b_gh) + _linear(h, U_gh))
    return g_y * xt + (1 - g_y) * y_in, (g_h * h + (1 - g_h) * h_in,)


LITERATURE["intersection_rnn"] = _intersection_rnn


def _nas(xt, states, p):
    """Zoph and Le 2017, the tree of the paper's figure: eight pairs, then four, then two."""
    h, c = states
    x = _units(_linear(xt, p["weight_ih"]), 8)
    m = _units(_linear(h, p["weight_hh"], p["bias"]), 8)
    relu = torch.relu
    first = (sigmoid(x[0] + m[0]), relu(x[1] + m[1]), sigmoid(x[2] + m[2]),
             relu(x[3] * m[3]), tanh(x[4] + m[4]), sigmoid(x[5] + m[5]),
             tanh(x[6] + m[6]), sigmoid(x[7] + m[7]))  # fmt: skip
    second = (tanh(first[0] * first[1]), tanh(first[2] + first[3]),
              tanh(first[4] * first[5]), sigmoid(first[6] + first[7]))  # fmt: skip
    c_new = tanh(second[0] + c) * second[1]
    return tanh(c_new * tanh(second[2] + second[3])), c_new


LITERATURE["nas"] = _nas
OTHER_HYPERS["antisymmetric_rnn"] = {"eps": 0.7, "gamma": 0.3}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("variant", sorted(LITERATURE))
def test_literature_cell_matches_its_paper(variant, dtype):
    _check(variant, dtype, LITERATURE[variant])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("variant", sorted(OTHER_HYPERS))
def test_hyperparameters_chosen_at_run_time_match_the_paper(variant, dtype):
    hypers = OTHER_HYPERS[variant]
    reference = LITERATURE[variant]
    _check(
        variant, dtype, lambda xt, s, p: reference(xt, s, p, **hypers), hypers=hypers
    )
