"""Initialisation declared with the cell: every parameter of every variant starts as its
declaration says, through the generated ``init_params``, ``derive.torch.Recurrent`` and
``derive.jax.init_params``; the rules themselves; the errors of a wrong one."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import VARIANTS, load_generated, sizes_for
from scipy import stats

from derive import registry
from derive.symbolic.activations import sigmoid, tanh
from derive.symbolic.declare import Cell, DeclarationError
from derive.symbolic.init import (
    Init,
    chrono,
    constant,
    identity,
    ones,
    orthogonal,
    uniform,
    zeros,
)


def _blocks(value, count):
    """``value`` cut into its ``count`` row blocks (a scalar is one block)."""
    return [value] if value.ndim == 0 else np.split(value, count)


def assert_starts_as_declared(spec, params, hidden):
    """Each block of each parameter against its declared rule: a uniform block's values lie in
    its bound and pass a Kolmogorov-Smirnov test against U(-bound, bound); a constant is exact;
    an orthogonal block has orthonormal rows or columns; an identity block is the identity; a
    chrono block is log(u) with u in [1, T_max - 1], the negated block the same numbers."""
    for param in spec.params:
        value = np.asarray(params[param.name], np.float64)
        chrono_blocks = {}
        for block, rule in zip(
            _blocks(value, len(param.blocks)), param.rules, strict=True
        ):
            where = f"{spec.name}.{param.name}"
            if rule.kind == "uniform":
                bound = 1 / np.sqrt(hidden) if rule.value is None else rule.value
                assert np.all(np.abs(block) <= bound), where
                if block.size >= 20:
                    test = stats.kstest(
                        block.ravel(), stats.uniform(-bound, 2 * bound).cdf
                    )
                    assert test.pvalue > 1e-4, (where, test)
            elif rule.kind == "constant":
                np.testing.assert_array_equal(block, rule.value, err_msg=where)
            elif rule.kind == "identity":
                np.testing.assert_array_equal(block, rule.value * np.eye(*block.shape))
            elif rule.kind == "orthogonal":
                rows, cols = block.shape
                gram = block @ block.T if rows <= cols else block.T @ block
                np.testing.assert_allclose(
                    gram, rule.value**2 * np.eye(min(rows, cols)), atol=1e-5
                )
            else:
                assert rule.kind == "chrono", rule
                u = np.exp(rule.sign * block)
                assert np.all((u >= 1 - 1e-5) & (u <= rule.value - 1 + 1e-4)), where
                chrono_blocks.setdefault(rule.value, []).append(rule.sign * block)
        for same in chrono_blocks.values():  # b_i = -b_f: the same numbers
            for other in same[1:]:
                np.testing.assert_allclose(other, same[0], rtol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_init_params_start_every_parameter_as_declared(variant):
    spec, cell = registry.get(variant), load_generated(variant)
    sizes = sizes_for(cell, input_size=24, hidden_size=32)
    for dtype in (np.float64, np.float32):
        params = cell.init_params(**sizes, dtype=dtype, seed=3)
        assert {p.dtype for p in params.values()} == {np.dtype(dtype)}
        assert_starts_as_declared(spec, params, hidden=32)


@pytest.mark.parametrize("variant", VARIANTS)
def test_torch_recurrent_starts_every_parameter_as_declared(variant):
    torch = pytest.importorskip("torch")
    from derive.torch import Recurrent

    spec, cell = registry.get(variant), load_generated(variant)
    sizes = sizes_for(cell, input_size=24, hidden_size=32)
    extra = {k: v for k, v in sizes.items() if k not in ("input_size", "hidden_size")}
    torch.manual_seed(0)
    net = Recurrent(variant, 24, 32, num_layers=2, **extra)
    for layer in range(2):
        params = {
            name: p.detach().numpy() for name, p in net.layer_params(layer).items()
        }
        assert_starts_as_declared(spec, params, hidden=32)


def test_catalog_cells_without_rules_draw_as_before():
    """A cell that declares no rule draws each parameter whole from one generator, in
    ``PARAMS`` order, as before rules existed: seeded models keep their numbers."""
    cell = load_generated("lstm")
    assert cell.PARAM_INIT == {}
    params = cell.init_params(3, 5, seed=7)
    rng = np.random.default_rng(7)
    for name in cell.PARAMS:
        want = rng.uniform(-1 / np.sqrt(5), 1 / np.sqrt(5), params[name].shape)
        np.testing.assert_array_equal(params[name], want.astype(np.float32))


def test_the_layer_normalised_cells_start_their_gains_at_one_and_biases_at_zero():
    torch = pytest.importorskip("torch")
    from derive.torch import Recurrent

    for variant in ("lstm_layernorm", "gru_layernorm"):
        net = Recurrent(variant, 6, 8)
        for name, param in net.named_parameters():
            if name.startswith("ln_") and "_weight" in name:
                assert torch.equal(param, torch.ones_like(param)), name
            elif name.startswith("ln_"):
                assert torch.equal(param, torch.zeros_like(param)), name
            else:
                assert 0 < param.abs().max() <= 1 / np.sqrt(8), name


def test_pytorch_drop_ins_keep_torchs_own_start():
    torch = pytest.importorskip("torch")
    from derive.torch import LSTM

    torch.manual_seed(5)
    ours = LSTM(4, 6, num_layers=2)
    torch.manual_seed(5)
    theirs = torch.nn.LSTM(4, 6, num_layers=2)
    for (name, a), (_, b) in zip(
        ours.named_parameters(), theirs.named_parameters(), strict=True
    ):
        assert torch.equal(a, b), name


def _ruled_cell():
    """An LSTM that declares every kind of rule."""
    cell = Cell("ruled", title="An LSTM with declared starts", citation="a test")
    x, h, c = cell.input(), cell.state("h"), cell.state("c")
    W_ih = cell.weight("weight_ih", "i f g o", cols="I", init=orthogonal(gain=0.5))
    W_hh = cell.weight("weight_hh", "i f g o", cols="H",
                       init={"i": identity(), "f": orthogonal()})  # fmt: skip
    b_ih = cell.bias("bias_ih", "i f g o", init=zeros())
    b_hh = cell.bias("bias_hh", "i f g o", init=uniform(0.25))
    cell.init(b_ih, chrono(40), blocks="f")
    cell.init(b_ih, chrono(40, negate=True), blocks="i")
    cell.init(b_hh, constant(1.0), blocks="o")
    peep = cell.vector("peep", init=ones())
    wx, wh = cell.dense(W_ih, x, bias=b_ih), cell.dense(W_hh, h.prev, bias=b_hh)
    i = cell.gate("i", sigmoid(wx.i + wh.i))
    f = cell.gate("f", sigmoid(wx.f + wh.f + peep * c.prev))
    g = cell.let("g", tanh(wx.g + wh.g))
    o = cell.gate("o", sigmoid(wx.o + wh.o))
    cell.update(c, f * c.prev + i * g)
    cell.update(h, o * tanh(c.new))
    return cell.build()


def test_every_rule_through_a_declaration(cell_cache):
    from derive.cache import build

    spec = _ruled_cell()
    rules = {p.name: tuple(r.kind for r in p.rules) for p in spec.params}
    assert rules == {
        "weight_ih": ("orthogonal",) * 4,
        "weight_hh": ("identity", "orthogonal", "uniform", "uniform"),
        "bias_ih": ("chrono", "chrono", "constant", "constant"),
        "bias_hh": ("uniform", "uniform", "uniform", "constant"),
        "peep": ("constant",),
    }
    module = build(spec)
    for seed in (0, 1):
        params = module.init_params(16, 8, dtype=np.float64, seed=seed)
        assert_starts_as_declared(spec, params, hidden=8)
    b_ih = params["bias_ih"].reshape(4, 8)
    np.testing.assert_array_equal(b_ih[0], -b_ih[1])
    assert np.ptp(b_ih[1]) > 0.5  # drawn, not a constant
    pytest.importorskip("torch")
    from derive.torch import Recurrent

    net = Recurrent(spec, 16, 8)
    assert_starts_as_declared(
        spec, {k: v.detach().numpy() for k, v in net.layer_params(0).items()}, hidden=8
    )


def _document(spec):
    from derive.emit.latex import document
    from derive.lower import lower
    from derive.symbolic.adjoint import derive_adjoint

    return document(lower(derive_adjoint(spec)))


def test_the_documents_give_each_start_with_its_source():
    doc = _document(registry.get("lstm_layernorm"))
    assert [(row.symbol, row.rule) for row in doc.starts] == [
        (r"W_{i\cdot},\ W_{h\cdot},\ b_{i\cdot},\ b_{h\cdot}",
         (("math", r"\sim U(-1/\sqrt{H},\ 1/\sqrt{H})"),)),
        (r"\gamma_{ih\cdot},\ \gamma_{hh\cdot},\ \gamma_{c}", (("math", "= 1"),)),
        (r"\beta_{ih\cdot},\ \beta_{hh\cdot},\ \beta_{c}", (("math", "= 0"),)),
    ]  # fmt: skip
    assert "PyTorch" in doc.starts[0].citation
    assert all("LayerNorm" in row.citation for row in doc.starts[1:])
    ruled = _document(_ruled_cell())
    citations = " ".join(row.citation for row in ruled.starts)
    for source in ("Saxe", "Le, Jaitly and Hinton", "Tallec and Ollivier", "PyTorch"):
        assert source in citations
    rows = {row.rule[0][1]: row.symbol for row in ruled.starts}
    assert rows[r"= -\log u,\ u \sim U(1,\ 39)"] == r"\mathit{bias\_ih}^{(i)}"
    assert rows[r"= \log u,\ u \sim U(1,\ 39)"] == r"\mathit{bias\_ih}^{(f)}"
    assert rows[r"\sim U(-0.25,\ 0.25)"].startswith(r"\mathit{bias\_hh}^{(i)}")


@pytest.mark.parametrize(
    ("declare", "words"),
    [
        (lambda cell, p: cell.init(p["b"], orthogonal()), "orthogonal initialisation applies to a weight"),
        (lambda cell, p: cell.init(p["W"], chrono(10)), "chrono initialisation applies to a bias or vector"),
        (lambda cell, p: cell.init(p["b"], zeros(), blocks="q"), "no block 'q'"),
        (lambda cell, p: cell.init(p["b"], 0.0), "must be a rule of derive.symbolic.init"),
        (lambda cell, p: cell.init("b", zeros()), "init\\(\\) takes a parameter declared"),
        (lambda cell, p: cell.bias("b2", "a", init={"a": "ones"}), "must be a rule"),
    ],
)  # fmt: skip
def test_a_wrong_rule_is_refused_at_its_line(declare, words):
    cell = Cell("wrong", title="t", citation="c")
    params = {"W": cell.weight("w_a", "a", cols="H"), "b": cell.bias("b_a", "a")}
    with pytest.raises(DeclarationError, match=words) as caught:
        declare(cell, params)
    assert "test_init.py:" in str(caught.value)


def test_a_rule_with_a_bad_number_names_it():
    for make, words in (
        (lambda: chrono(2), "t_max must be a finite real number above 2"),
        (lambda: uniform(-1.0), "bound must be a finite real number above 0"),
        (lambda: constant(float("nan")), "value must be a finite real number"),
        (lambda: orthogonal(gain=True), "gain must be a finite real number"),
        (lambda: Init("he"), "kind must be one of"),
    ):
        with pytest.raises(ValueError, match=words):
            make()


def test_jax_init_params_are_the_generated_ones():
    jnp = pytest.importorskip("jax.numpy")
    from derive.jax import init_params

    ours = init_params("fastgrnn", 5, 7, seed=4)
    want = load_generated("fastgrnn").init_params(5, 7, seed=4)
    assert set(ours) == set(want)
    for name, value in want.items():
        assert isinstance(ours[name], jnp.ndarray)
        np.testing.assert_array_equal(np.asarray(ours[name]), value)
    assert float(ours["nu"]) == -4.0 and float(ours["zeta"]) == 1.0
