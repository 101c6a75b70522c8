"""Layer normalisation (``cell.mean``, ``cell.layernorm``): a mean over the units of a row is
one number per row and step, computed once, and its adjoint is derived with the rest.

``lstm_layernorm`` and ``gru_layernorm`` are checked against ``torch.nn.LayerNorm`` composed
by hand, the way PyTorch users write these cells."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, assert_verifies, build_kernel, load_generated

from derive.symbolic.activations import tanh
from derive.symbolic.declare import Cell, DeclarationError
from derive.verify import Problem
from derive.verify.compare import compare

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _layer_norm(v, weight, bias, eps):
    """``nn.LayerNorm(v.shape[-1], eps)`` with the given gain and bias."""
    norm = torch.nn.LayerNorm(v.shape[-1], eps=eps, dtype=v.dtype)
    with torch.no_grad():  # the parameters are the problem's leaves, used below instead
        norm.weight.zero_()
    return F.layer_norm(v, norm.normalized_shape, weight, bias, norm.eps)


def _lstm_layernorm(xt, states, p, eps):
    h, c = states
    gates = _layer_norm(xt @ p["weight_ih"].T + p["bias_ih"], p["ln_ih_weight"],
                        p["ln_ih_bias"], eps) + _layer_norm(
        h @ p["weight_hh"].T + p["bias_hh"], p["ln_hh_weight"], p["ln_hh_bias"], eps)  # fmt: skip
    i, f, g, o = gates.chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(
        _layer_norm(c, p["ln_c_weight"], p["ln_c_bias"], eps)
    )
    return h, c


def _gru_layernorm(xt, states, p, eps):
    (h,) = states
    xr, xz, xn = _layer_norm(xt @ p["weight_ih"].T + p["bias_ih"], p["ln_ih_weight"],
                             p["ln_ih_bias"], eps).chunk(3, -1)  # fmt: skip
    hr, hz, hn = _layer_norm(h @ p["weight_hh"].T + p["bias_hh"], p["ln_hh_weight"],
                             p["ln_hh_bias"], eps).chunk(3, -1)  # fmt: skip
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return ((1 - z) * n + z * h,)


REFERENCES = {"lstm_layernorm": _lstm_layernorm, "gru_layernorm": _gru_layernorm}


def _errors(variant, dtype, eps=None, **sizes):
    hypers = {} if eps is None else {"eps": eps}
    cell = load_generated(variant)
    problem = Problem(cell, dtype, steps=5, hypers=hypers, **sizes)
    x, states, params = leaves = problem.torch_leaves()
    reference = REFERENCES[variant]
    ys, finals = [], states
    for t in range(x.shape[0]):
        finals = reference(
            x[t], finals, params, cell.HYPERS["eps"] if eps is None else eps
        )
        ys.append(finals[0])
    return compare(problem, torch.stack(ys), finals, leaves)


@pytest.mark.parametrize("variant", sorted(REFERENCES))
def test_matches_torch_layer_norm_composed_by_hand_to_1e_9(variant):
    errors = _errors(variant, np.float64)
    cell = load_generated(variant)
    # ys, dx, each state's final value and gradient, every parameter's gradient, and ys and
    # each final state of the forward without a tape
    assert len(errors) == 3 + 3 * len(cell.STATES) + len(cell.PARAMS)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 1e-9, (variant, worst, errors[worst])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("variant", sorted(REFERENCES))
def test_matches_torch_with_another_eps_and_sizes(variant, dtype):
    errors = _errors(variant, dtype, eps=0.25, input_size=3, hidden_size=7)
    tolerance = 1e-9 if dtype == np.float64 else 2e-4
    assert max(errors.values()) <= tolerance, errors


def test_the_statistics_are_computed_once_per_step_and_row():
    cell = load_generated("lstm_layernorm")
    source = open(cell.__file__).read()
    forward = source[
        source.index("def forward_kernel") : source.index("def backward_kernel")
    ]
    for mean in ("ih_mean", "ih_var", "hh_mean", "hh_var", "c_mean", "c_var"):
        # set to zero once per row, summed over the units, saved one number per row
        assert forward.count(f"save_{mean}[row, 0] = 0") == 1, mean
        assert forward.count(f"save_{mean}[row, 0] +=") == 1, mean
    shapes = cell._interface.saved_shapes(5, 3, {"I": 2, "H": 4})
    widths = dict(zip(cell._FORWARD_RETURNS, (s[1] for s in shapes), strict=True))
    assert widths["save_c_mean"] == 1 and widths["save_ih_var"] == 1


def _mean_cell(name, mean_terms):
    cell = Cell(name, title="t", citation="c")
    x, h = cell.input(), cell.state("h")
    W = cell.weight("weight_ih", "a b", cols="I")
    wx = cell.dense(W, x)
    mu = cell.mean("mu", mean_terms(wx, h), latex=r"\mu")
    cell.update(h, tanh(wx.a * mu + wx.b - mu * h.prev))
    return cell.build()


def test_a_mean_of_expressions_over_blocks_and_states_verifies(tmp_path):
    spec = _mean_cell("mean_of_products", lambda wx, h: [wx.a * h.prev, tanh(wx.b)])
    _, module = build_kernel(spec, tmp_path)
    assert_verifies(spec, module)


def test_layernorm_without_gain_or_bias_verifies(tmp_path):
    cell = Cell("plain_layernorm", title="t", citation="c")
    x, h = cell.input(), cell.state("h")
    W = cell.weight("weight_ih", "h", cols="I")
    U = cell.weight("weight_hh", "h", cols="H")
    eps = cell.hyper("eps", 0.5)
    (n,) = cell.layernorm("pre", cell.dense(W, x).h + cell.dense(U, h.prev).h, eps)
    cell.update(h, tanh(n))
    spec = cell.build()
    _, module = build_kernel(spec, tmp_path)
    assert_verifies(spec, module)


def test_a_mean_of_no_unit_is_refused_at_its_line():
    with pytest.raises(
        DeclarationError, match=r"test_layernorm.py:\d+: the mean mu reads no"
    ):
        _mean_cell("no_units", lambda wx, h: [sympy_one()])


def sympy_one():
    import sympy

    return sympy.Integer(1)


def test_a_mean_read_where_a_vector_is_expected_is_refused():
    cell = Cell("mean_as_source", title="t", citation="c")
    x, h = cell.input(), cell.state("h")
    W = cell.weight("weight_ih", "h", cols="I")
    U = cell.weight("weight_hh", "h", cols="H")
    mu = cell.mean("mu", cell.dense(W, x).h)
    cell.dense(U, mu, name="m")
    cell.update(h, tanh(mu + h.prev))
    with pytest.raises(DeclarationError, match="reads mu"):
        cell.build()


@pytest.mark.parametrize(
    "gain, message",
    [("three", "must be a cell.vector"), ("blocks", "with 2 blocks, one per value")],
)
def test_a_gain_of_the_wrong_shape_is_refused(gain, message):
    cell = Cell("bad_gain", title="t", citation="c")
    x = cell.input()
    cell.state("h")
    W = cell.weight("weight_ih", "a b", cols="I")
    wx = cell.dense(W, x)
    given = (cell.vector("g", blocks="a b c") if gain == "blocks"
             else "three")  # fmt: skip
    with pytest.raises(DeclarationError, match=message):
        cell.layernorm("n", [wx.a, wx.b], 1, gain=given)
