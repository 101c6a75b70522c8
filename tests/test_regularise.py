"""Zoneout, recurrent dropout and weight drop: the declaration words, the transform that adds
them to any cell, the kernels against autograd with fixed masks, the evaluation rules against
the papers, and the layer options of ``derive.torch`` and ``derive.runtime``."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import VARIANTS, load_generated, sizes_for

from derive import registry
from derive.cache import build, built_spec
from derive.symbolic.activations import sigmoid, tanh
from derive.symbolic.declare import Cell, DeclarationError
from derive.symbolic.regularise import regularised
from derive.verify import verify

torch = pytest.importorskip("torch")
from derive.torch import Recurrent, recurrent  # noqa: E402

#: the variants whose regularised kernels this process compiles, as users run them, and
#: checks in both dtypes; every other variant's are checked in float64 by a subprocess
#: that compiles the same code at LLVM's -O0 (NUMBA_OPT=0), in 40% less time
COMPILED = ("lstm", "gru", "mgu", "lstm_layernorm")
#: the others, in subprocesses of about a minute each
CHUNKS = 4


@pytest.fixture(scope="module", autouse=True)
def _cache(cell_cache):
    return cell_cache


def _regularised(variant):
    spec = regularised(registry.get(variant), zoneout=True, dropout=True)
    return spec, build(spec)


def _reports(variants, dtypes):
    """Each variant with zoneout and recurrent dropout, built and verified against autograd
    through the twin with the same random masks (Bernoulli, as training draws them):
    ``{variant: (ok, worst, masks)}``."""
    out = {}
    for variant in variants:
        spec, module = _regularised(variant)
        reports = verify(spec, module, dtypes)
        worst = max((r.worst for r in reports), key=lambda item: item[1])
        out[variant] = (all(r.ok for r in reports), worst, sorted(module.MASKS))
    return out


def _assert_masked_and_verified(results):
    for variant, (ok, worst, masks) in results.items():
        spec = registry.get(variant)
        assert {f"zoneout_{s}" for s in spec.state_names} <= set(masks), (
            variant,
            masks,
        )
        assert ok, (variant, worst)


@pytest.mark.parametrize("variant", COMPILED)
def test_regularised_kernels_match_autograd_in_both_dtypes(variant):
    _assert_masked_and_verified(_reports([variant], (np.float64, np.float32)))


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_every_variant_with_zoneout_and_recurrent_dropout_matches_autograd(
    chunk, tmp_path
):
    """Every other variant in float64, in a subprocess compiling at -O0 into a build cache
    of its own (so that no kernel compiled so reaches this process)."""
    import json
    import os
    import subprocess
    import sys

    others = [v for v in VARIANTS if v not in COMPILED][chunk::CHUNKS]
    env = {**os.environ, "NUMBA_OPT": "0", "GATESMITH_NUMBA_CACHE": "0",
           "GATESMITH_CACHE_DIR": str(tmp_path)}  # fmt: skip
    done = subprocess.run([sys.executable, __file__, *others], env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.splitlines()[-1])
    assert sorted(results) == sorted(others)
    _assert_masked_and_verified(results)


def test_the_transform_places_the_masks_as_the_papers_do():
    spec = regularised(registry.get("lstm"), zoneout=True, dropout=True)
    assert spec.name == "lstm_zoneout_rdrop"
    masks = {m.name: (m.per, m.kind, m.of) for m in spec.masks}
    assert masks == {
        "dropout_h": ("sequence", "dropout", "h"),
        "zoneout_h": ("step", "zoneout", "h"),
        "zoneout_c": ("step", "zoneout", "c"),
    }
    by_target = {eq.target.name: eq.expr for eq in spec.equations}
    # the recurrent projection reads the dropped copy; the cell's own c' (not the zoned-out
    # c) feeds h'
    assert {d.source.name for d in spec.denses} == {"x", "h_dropped"}
    read = {s.name for s in by_target["h_computed"].free_symbols}
    assert "c_computed" in read and "c_new" not in read
    assert regularised(registry.get("lstm")) is registry.get("lstm")


def _lstm_from_the_papers(x, h, c, p, masks):
    """An LSTM with zoneout as Krueger et al. 2017 write it (the state zoned out, h computed
    from the cell state before it is) and variational dropout on the recurrent input as Gal
    and Ghahramani 2016 place it (one mask per sequence), written here by hand."""
    ys = []
    dropped = masks["dropout_h"]
    for t in range(x.shape[0]):
        gates = (
            x[t] @ p["weight_ih"].T + p["bias_ih"] + (h * dropped) @ p["weight_hh"].T
        )
        i, f, g, o = (gates + p["bias_hh"]).chunk(4, 1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        zc, zh = masks["zoneout_c"][t], masks["zoneout_h"][t]
        c = zc * c + (1 - zc) * c_new
        h = zh * h + (1 - zh) * h_new
        ys.append(h)
    return torch.stack(ys), (h, c)


def _gru_from_the_papers(x, h, p, masks):
    """PyTorch's GRU, zoneout on h and dropout on the recurrent input, by hand."""
    ys = []
    for t in range(x.shape[0]):
        gx = x[t] @ p["weight_ih"].T + p["bias_ih"]
        gh = (h * masks["dropout_h"]) @ p["weight_hh"].T + p["bias_hh"]
        (xr, xz, xn), (hr, hz, hn) = gx.chunk(3, 1), gh.chunk(3, 1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        h_new = (1 - z) * torch.tanh(xn + r * hn) + z * h
        zh = masks["zoneout_h"][t]
        h = zh * h + (1 - zh) * h_new
        ys.append(h)
    return torch.stack(ys), (h,)


def _leaves(module, steps=6, batch=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    sizes = sizes_for(module, input_size=5, hidden_size=7)
    shapes = module.param_shapes(**sizes)
    params = {
        n: (torch.rand(s, generator=gen, dtype=torch.float64) - 0.5).requires_grad_()
        for n, s in shapes.items()
    }
    x = torch.randn(steps, batch, 5, generator=gen, dtype=torch.float64)
    states = tuple(
        torch.randn(batch, 7, generator=gen, dtype=torch.float64).requires_grad_()
        for _ in module.STATES
    )
    return params, x.requires_grad_(), states, gen


def _masks(module, steps, batch, gen, training=True, rate=0.3):
    masks = {}
    for name, (per, _, kind) in module.MASKS.items():
        shape = (batch, 7) if per == "sequence" else (steps, batch, 7)
        if not training:
            value = torch.full(shape, rate if kind == "zoneout" else 1.0)
        elif kind == "zoneout":
            value = (torch.rand(shape, generator=gen) < rate).double()
        else:
            value = (torch.rand(shape, generator=gen) >= rate).double() / (1 - rate)
        masks[name] = value.double()
    return masks


@pytest.mark.parametrize(
    ("variant", "reference"),
    [("lstm", _lstm_from_the_papers), ("gru", _gru_from_the_papers)],
)
@pytest.mark.parametrize("training", [True, False])
def test_lstm_and_gru_match_the_papers_in_training_and_evaluation(
    variant, reference, training
):
    """With training's Bernoulli masks, and with evaluation's (zoneout's expectation p,
    dropout's 1): the kernels equal the papers' equations written by hand, values and
    gradients."""
    _, module = _regularised(variant)
    params, x, states, gen = _leaves(module)
    masks = _masks(module, x.shape[0], x.shape[1], gen, training)
    ours = recurrent(module, params, x, states, masks=masks)
    theirs = reference(x, *states, params, masks)
    weights = torch.randn(ours[0].shape, generator=gen, dtype=torch.float64)
    leaves = [x, *states, *params.values()]

    def grads(out):
        loss = (out[0] * weights).sum() + sum(f.sum() for f in out[1])
        return torch.autograd.grad(loss, leaves)

    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-12, atol=1e-12)
    for a, b in zip(grads(ours), grads(theirs), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_zoneout_evaluates_as_the_expectation_and_dropout_as_the_plain_cell():
    """A layer in evaluation: zoneout's h = p h_prev + (1 - p) h', and recurrent dropout
    alone runs the cell's own kernels, equal to torch's nn.LSTM."""
    torch.manual_seed(0)
    x = torch.randn(5, 2, 4)
    dropped = Recurrent("lstm", 4, 6, recurrent_dropout=0.4).eval()
    assert dropped.regularisation.module(False) == "generated.lstm"
    plain = torch.nn.LSTM(4, 6)
    plain.load_state_dict(dropped.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(dropped(x)[0], plain(x)[0], rtol=1e-5, atol=1e-6)
    zoned = Recurrent("gru", 4, 6, zoneout=0.25).eval()
    params = {k: v.double() for k, v in zoned.layer_params(0).items()}
    masks = {"zoneout_h": torch.full((5, 2, 6), 0.25, dtype=torch.float64)}
    with torch.no_grad():
        want = _gru_from_the_papers(x.double(), torch.zeros(2, 6, dtype=torch.float64),
                                    params, {**masks, "dropout_h": 1.0})[0]  # fmt: skip
        torch.testing.assert_close(zoned(x)[0].double(), want, rtol=1e-5, atol=1e-6)


def test_an_option_at_zero_runs_the_plain_kernels():
    net = Recurrent("mgu", 3, 4, zoneout=0.0, recurrent_dropout=0.0, weight_drop=0.0)
    assert not net.regularisation.active
    assert net.regularisation.module(True) == net.regularisation.module(False)
    assert net.regularisation.module(True) == "generated.mgu"
    both = Recurrent("mgu", 3, 4, zoneout=0.1, recurrent_dropout=0.2)
    trained = load_generated("mgu").__name__, both.regularisation.module(True)
    assert trained[1] != trained[0] and trained[1].endswith(".mgu_zoneout_rdrop")


def test_weight_drop_is_dropconnect_on_the_recurrent_weights():
    """In training each of DROPPED_WEIGHTS is W * M / (1 - p), M drawn per call from
    torch's generator; its gradient is the dropped weight's times M / (1 - p)."""
    net = Recurrent("lstm", 4, 6, weight_drop=0.5)
    assert load_generated("lstm").DROPPED_WEIGHTS == ("weight_hh",)
    x = torch.randn(5, 2, 4, dtype=torch.float32)
    torch.manual_seed(3)
    out, _ = net(x)
    out.sum().backward()
    torch.manual_seed(3)
    w_hh = net.weight_hh_l0.detach().clone().requires_grad_()
    dropped = torch.nn.functional.dropout(w_hh, 0.5)
    kept = dropped.detach() != 0
    assert 0.3 < kept.float().mean() < 0.7
    plain = torch.nn.LSTM(4, 6)
    with torch.no_grad():
        for name in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(plain, name).copy_(getattr(net, name))
    want, _ = torch.func.functional_call(
        plain, {**dict(plain.named_parameters()), "weight_hh_l0": dropped}, (x,)
    )
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)
    (grad,) = torch.autograd.grad(want.sum(), [w_hh])
    torch.testing.assert_close(net.weight_hh_l0.grad, grad, rtol=1e-5, atol=1e-6)
    assert torch.all(net.weight_hh_l0.grad[~kept] == 0)
    plain.load_state_dict(net.state_dict())
    with torch.no_grad():  # evaluation: the weights as they are
        torch.testing.assert_close(net.eval()(x)[0], plain(x)[0], rtol=1e-5, atol=1e-6)


def test_a_seed_reproduces_the_masks():
    net = Recurrent("gru", 3, 5, zoneout=0.2, recurrent_dropout=0.3, weight_drop=0.4)
    x = torch.randn(4, 2, 3)
    runs = []
    for _ in range(2):
        torch.manual_seed(11)
        runs.append(net(x)[0])
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    assert not torch.equal(runs[0], net(x)[0])  # the next draw differs


def test_the_numpy_runtime_matches_autograd_given_its_masks():
    """derive.runtime.Recurrent with all three options, two layers, both directions: its
    output and gradients against autograd through derive.torch given the masks and weight
    multipliers it drew."""
    from derive.runtime import Recurrent as NumpyRecurrent

    net = NumpyRecurrent("lstm", 3, 5, num_layers=2, bidirectional=True, dtype=np.float64,
                         seed=2, zoneout=0.2, recurrent_dropout=0.3, weight_drop=0.4)  # fmt: skip
    x = np.random.default_rng(0).standard_normal((6, 2, 3))
    out, finals, tape = net.forward(x)
    d_out = np.random.default_rng(1).standard_normal(out.shape)
    dx, _, dparams = net.backward(d_out, None, tape)
    cell = tape.cell
    assert cell.__name__.endswith("lstm_zoneout_rdrop")
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in net.params.items()}
    inp = torch.tensor(x, requires_grad=True)
    seq = inp
    for layer in range(2):
        outs = []
        for direction in range(2):
            params = {}
            for name in cell.PARAMS:
                value = leaves[net.key(name, layer, direction)]
                multiplier = tape.dropped[layer][direction].get(name)
                params[name] = (
                    value if multiplier is None else value * torch.tensor(multiplier)
                )
            arrays = tape.cells[layer][direction]["arrays"]
            masks = {}
            for name, (per, _size, _) in cell.MASKS.items():
                value = torch.tensor(arrays["mask_" + name])
                masks[name] = value if per == "sequence" else value.reshape(6, 2, 5)
            src = seq if direction == 0 else seq.flip(0)
            ys, _ = recurrent(cell, params, src, masks=masks)
            outs.append(ys if direction == 0 else ys.flip(0))
        seq = torch.cat(outs, 2)
    np.testing.assert_allclose(out, seq.detach().numpy(), rtol=1e-12, atol=1e-12)
    (seq * torch.tensor(d_out)).sum().backward()
    np.testing.assert_allclose(dx, inp.grad.numpy(), rtol=1e-10, atol=1e-12)
    for key, value in dparams.items():
        np.testing.assert_allclose(
            value, leaves[key].grad.numpy(), rtol=1e-9, atol=1e-12
        )
    net.eval()
    assert net.forward(x)[2].cell is tape.cell  # zoneout evaluates with its masks' mean


def _declared():
    """An LSTM that places the regularisers itself with the declaration words."""
    cell = Cell("declared_regularisers", title="Regularised LSTM", citation="a test")
    x, h, c = cell.input(), cell.state("h"), cell.state("c")
    W_ih, W_hh, b_ih, b_hh = cell.pytorch_params("i f g o")
    cell.weight_drop(W_hh)
    wx = cell.dense(W_ih, x, bias=b_ih)
    wh = cell.dense(W_hh, cell.dropout(h.prev), bias=b_hh)
    i, f = cell.gate("i", sigmoid(wx.i + wh.i)), cell.gate("f", sigmoid(wx.f + wh.f))
    g, o = cell.let("g", tanh(wx.g + wh.g)), cell.gate("o", sigmoid(wx.o + wh.o))
    c_next = cell.let("c_next", f * c.prev + i * g)
    cell.update(c, c_next)  # zoneout on h only, as haste's LSTM has it
    cell.update(h, cell.zoneout(h, o * tanh(c_next)))
    return cell.build()


def test_a_declaration_places_its_own_masks():
    spec = _declared()
    module = build(spec)
    assert module.MASKS == {
        "dropout_h_prev": ("sequence", "H", "dropout"),
        "zoneout_h": ("step", "H", "zoneout"),
    }
    assert module.DROPPED_WEIGHTS == ("weight_hh",)
    reports = verify(spec, module)
    assert [r.dtype for r in reports] == ["float64", "float32"]
    assert all(r.ok for r in reports), reports
    # a layer fills the declared masks by kind, and adds nothing it declares already
    net = Recurrent(spec, 3, 7, zoneout=0.3, recurrent_dropout=0.2)
    assert net.regularisation.module(True) == module.__name__
    assert built_spec(module) is spec
    out, _ = net(torch.randn(4, 2, 3))
    assert out.shape == (4, 2, 7)
    plain = Recurrent(spec, 3, 7).eval()  # masks at their "off" values: zeros and ones
    ref = torch.nn.LSTM(3, 7)
    ref.load_state_dict(plain.state_dict())
    x = torch.randn(4, 2, 3)
    with torch.no_grad():
        torch.testing.assert_close(plain(x)[0], ref(x)[0], rtol=1e-5, atol=1e-6)


def test_the_documents_show_the_masks():
    from derive.emit.latex import document
    from derive.lower import lower
    from derive.symbolic.adjoint import derive_adjoint

    doc = document(lower(derive_adjoint(_declared())))
    rows = {row.symbol: row for row in doc.notation if row.kind == "mask"}
    assert set(rows) == {"m^{d}_{h}", "m^{z}_{h,t}"}
    assert "Bernoulli(p)" in rows["m^{z}_{h,t}"].meaning[0][1]
    forward = " ".join(row for line in doc.forward for row in line.rows)
    assert r"m^{d}_{h} \odot h_{t-1}" in forward and "m^{z}_{h,t}" in forward
    assert any(line.lhs == r"\check{h}_{t}" for line in doc.forward)


@pytest.mark.parametrize(
    ("declare", "words"),
    [
        (lambda cell, h: cell.mask("m1", "shake"), "a mask is one of"),
        (lambda cell, h: cell.mask("m1", "zoneout", per="batch"), "drawn per 'batch'"),
        (lambda cell, h: cell.mask("mask_a", "zoneout"), "reserved prefix"),
        (lambda cell, h: cell.zoneout("h", 0), "zoneout\\(\\) takes a state"),
        (lambda cell, h: cell.dropout(h.prev * 2), "dropout\\(\\) takes one value"),
        (lambda cell, h: cell.weight_drop(cell.bias("b_a", "a")), "weight_drop\\(\\) takes a weight"),
    ],
)  # fmt: skip
def test_a_wrong_regulariser_is_refused_at_its_line(declare, words):
    cell = Cell("wrong", title="t", citation="c")
    cell.input()
    h = cell.state("h")
    with pytest.raises(DeclarationError, match=words) as caught:
        declare(cell, h)
    assert "test_regularise.py:" in str(caught.value)


def test_an_unused_mask_is_refused():
    cell = Cell("unused_mask", title="t", citation="c")
    x, h = cell.input(), cell.state("h")
    cell.mask("m_unused", "dropout")
    W = cell.weight("w_x", "a", cols="I")
    cell.update(h, tanh(cell.dense(W, x).a + h.prev))
    with pytest.raises(DeclarationError, match="mask 'm_unused' is never used"):
        cell.build()


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        (
            {"zoneout": 1.0},
            ValueError,
            "zoneout must be a number in \\[0, 1\\); got 1.0",
        ),
        ({"recurrent_dropout": -0.1}, ValueError, "recurrent_dropout must be a number"),
        ({"weight_drop": "0.5"}, ValueError, "weight_drop must be a number"),
    ],
)
def test_bad_options_name_themselves(kwargs, error, words):
    from derive.runtime import Recurrent as NumpyRecurrent

    for layer in (Recurrent, NumpyRecurrent):
        with pytest.raises(error, match=words):
            layer("lstm", 3, 4, **kwargs)


def test_weight_drop_needs_a_recurrent_weight():
    with pytest.raises(ValueError, match="indrnn has none"):
        Recurrent("indrnn", 3, 4, weight_drop=0.2)


def test_masks_are_checked_before_the_kernels_see_them():
    _, module = _regularised("mgu")
    params = module.init_params(3, 4, dtype=np.float64)
    x = np.zeros((2, 1, 3))
    with pytest.raises(ValueError, match="masks must be a dict keyed by"):
        module.forward(x, None, params)
    good = {"dropout_h": np.ones((1, 4)), "zoneout_h": np.zeros((2, 1, 4))}
    with pytest.raises(
        ValueError, match=r"masks\['zoneout_h'\] must have 3 dimensions \(2, 1, 4\)"
    ):
        module.forward(x, None, params, masks={**good, "zoneout_h": np.zeros((2, 4))})
    with pytest.raises(
        TypeError, match=r"masks\['dropout_h'\] must have dtype float64"
    ):
        module.forward(
            x, None, params, masks={**good, "dropout_h": np.ones((1, 4), np.float32)}
        )
    with pytest.raises(TypeError, match="unexpected keyword argument .masks."):
        load_generated("mgu").forward(x, None, params, masks=good)
    tensors = {k: torch.tensor(v) for k, v in params.items()}
    with pytest.raises(
        ValueError, match=r"masks\['dropout_h'\] \(drawn per sequence\)"
    ):
        recurrent(module, tensors, torch.zeros(2, 1, 3, dtype=torch.float64),
                  masks={"dropout_h": torch.ones(2, 4, dtype=torch.float64),
                         "zoneout_h": torch.zeros(2, 1, 4, dtype=torch.float64)})  # fmt: skip
    ys, _, _ = module.forward(x, None, params, masks=good)
    assert np.isfinite(ys).all()


def test_gradients_of_gradients_read_the_masks():
    """Double backward through a regularised cell: autograd through the declaration with the
    same masks (gradcheck of the first derivative)."""
    _, module = _regularised("gru")
    params, x, states, gen = _leaves(module, steps=3, batch=2)
    masks = _masks(module, 3, 2, gen)

    def first(x, *tensors):
        out, finals = recurrent(module, dict(zip(params, tensors, strict=True)), x,
                                states, masks=masks)  # fmt: skip
        (grad,) = torch.autograd.grad(out.sum() + finals[0].pow(2).sum(), x,
                                      create_graph=True)  # fmt: skip
        return grad

    assert torch.autograd.gradcheck(first, (x, *params.values()), atol=1e-7)


def test_jax_takes_the_masks_and_matches_torch():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    from derive.jax import recurrent as jax_recurrent

    _, module = _regularised("mgu")
    params, x, states, gen = _leaves(module)
    masks = _masks(module, x.shape[0], x.shape[1], gen)
    ours = recurrent(module, params, x, states, masks=masks)
    (ours[0].sum() + ours[1][0].sum()).backward()

    def loss(p, x):
        ys, finals = jax_recurrent(
            module, p, x, tuple(s.detach().numpy() for s in states),
            masks={k: v.numpy() for k, v in masks.items()},
        )  # fmt: skip
        return ys.sum() + finals[0].sum()

    arrays = {k: v.detach().numpy() for k, v in params.items()}
    grads = jax.grad(loss, argnums=(0, 1))(arrays, x.detach().numpy())
    np.testing.assert_allclose(grads[1], x.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, value in params.items():
        np.testing.assert_allclose(
            grads[0][name], value.grad.numpy(), rtol=1e-10, atol=1e-12
        )


def test_a_regularised_model_saves_and_loads_weights_only():
    import io

    net = Recurrent("gru", 3, 5, zoneout=0.2, weight_drop=0.1).eval()
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)  # weights_only=True, torch's default
    assert "zoneout=0.2, weight_drop=0.1" in repr(loaded)
    x = torch.randn(4, 2, 3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], net(x)[0], rtol=0, atol=0)


if __name__ == "__main__":  # the subprocess of the float64 check of every variant
    import json
    import sys

    print(json.dumps(_reports(sys.argv[1:], (np.float64,))))


def test_the_custom_ops_take_the_masks():
    """torch.compile's path: the custom ops' schema, fake implementation and autograd
    registration with masks (opcheck); a compiled layer in evaluation (zoneout's masks at
    their expectation) equal to the eager one, and in training running on drawn masks."""
    _, module = _regularised("gru")
    params, x, states, gen = _leaves(module, steps=3, batch=2)
    masks = _masks(module, 3, 2, gen)
    args = (module.__name__, x, torch.tensor([3, 2]), list(states),
            [p.detach().requires_grad_() for p in params.values()],
            torch.zeros(0, dtype=torch.float64), list(masks.values()))  # fmt: skip
    torch.library.opcheck(torch.ops.gatesmith.forward.default, args)
    net = Recurrent(
        "gru", 5, 7, zoneout=0.2, recurrent_dropout=0.3, dtype=torch.float64
    )
    compiled = torch.compile(net, fullgraph=True)
    inp = torch.randn(4, 2, 5, dtype=torch.float64)
    trained = compiled(inp)[0]  # inductor draws its own random numbers: not eager's
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            compiled(inp)[0], net(inp)[0], rtol=1e-12, atol=1e-12
        )
        assert torch.isfinite(trained).all() and not torch.equal(trained, net(inp)[0])
