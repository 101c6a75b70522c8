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
    ys = []
    for t in range(x.shape[0]):
        states = step(x[t], *states)
        ys.append(states[0])
    return torch.stack(ys), states


def _check(variant, dtype, reference):
    problem = Problem(load_generated(variant), dtype, steps=5)
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
