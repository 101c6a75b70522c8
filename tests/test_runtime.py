"""The runtime layers against PyTorch: stacking, both directions, lengths, dropout, truncated
BPTT, clipping and optimisers.

The four cells PyTorch has are compared with ``torch.nn`` modules fed packed sequences; every
variant is compared with a reference built here from its twin, run on each batch row's unpadded
sequence alone, so that neither padding nor the reversal of the runtime is reused.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, TOLERANCE, VARIANTS, load_generated, relative_error

from derive import registry
from derive.runtime import (
    SGD,
    Adam,
    Recurrent,
    clip_grad_norm,
    clip_grad_value,
    truncated_bptt,
)

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

TORCH_CELLS = {
    "rnn_tanh": lambda i, h, **kw: torch.nn.RNN(i, h, nonlinearity="tanh", **kw),
    "rnn_relu": lambda i, h, **kw: torch.nn.RNN(i, h, nonlinearity="relu", **kw),
    "lstm": torch.nn.LSTM,
    "gru": torch.nn.GRU,
}
PARITY = {np.float64: 1e-9, np.float32: TOLERANCE[np.float32]}


def _as_tuple(states):
    return states if isinstance(states, tuple) else (states,)


def _random_states(net, batch, rng):
    return tuple(
        rng.standard_normal(net.state_shape(s, batch)).astype(net.dtype)
        for s in net.cell.STATES
    )


def _weights(shape_of, rng, dtype):
    return [rng.standard_normal(shape).astype(dtype) for shape in shape_of]


def _check(name, got, want, tolerance):
    if (
        want is None
    ):  # autograd's word for a gradient that is zero (a value nothing reads)
        want = np.zeros_like(got)
    want = want.detach().numpy() if hasattr(want, "detach") else want
    err = relative_error(got, want)
    assert err <= tolerance, f"{name}: relative error {err:.3g} > {tolerance:g}"


def _torch_run(module, x, states, lengths, batch_first):
    """``module`` on a packed batch; returns the padded output and the final states."""
    steps = x.shape[1 if batch_first else 0]
    if lengths is None:
        out, finals = module(x, states if len(states) > 1 else states[0])
    else:
        packed = pack_padded_sequence(
            x, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False
        )
        out, finals = module(packed, states if len(states) > 1 else states[0])
        out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=steps)
    return out, _as_tuple(finals)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize(
    "batch_first", [False, True], ids=["time_major", "batch_first"]
)
@pytest.mark.parametrize("variant", sorted(TORCH_CELLS))
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_matches_torch_packed_three_layers_bidirectional(
    variant, bias, batch_first, dtype
):
    torch_dtype = torch.float64 if dtype == np.float64 else torch.float32
    torch.manual_seed(3)
    module = TORCH_CELLS[variant](
        5, 6, num_layers=3, bidirectional=True, batch_first=batch_first, bias=bias
    ).to(torch_dtype)
    net = Recurrent.from_torch(module)
    assert net.variant == variant and net.num_layers == 3 and net.bidirectional
    assert list(net.params) == [k for k, _ in module.named_parameters()]
    rng = np.random.default_rng(4)
    steps, batch = 7, 5
    lengths = np.array([7, 2, 5, 1, 6])
    x = rng.standard_normal((batch, steps, 5) if batch_first else (steps, batch, 5))
    x = x.astype(dtype)
    states = _random_states(net, batch, rng)

    out, finals, tape = net.forward(x, states, lengths)
    x_t = torch.tensor(x, requires_grad=True)
    states_t = tuple(torch.tensor(s, requires_grad=True) for s in states)
    out_t, finals_t = _torch_run(module, x_t, states_t, lengths, batch_first)
    tolerance = PARITY[dtype]
    _check("out", out, out_t, tolerance)
    assert out.shape == tuple(out_t.shape)
    padded = np.arange(steps)[:, None] >= lengths[None, :]
    assert not (out.transpose(1, 0, 2) if batch_first else out)[padded].any()
    for name, got, want in zip(net.cell.STATES, finals, finals_t, strict=True):
        _check(f"final {name}", got, want, tolerance)

    d_out = rng.standard_normal(out.shape).astype(dtype)
    d_finals = tuple(rng.standard_normal(f.shape).astype(dtype) for f in finals)
    loss = (out_t * torch.tensor(d_out)).sum()
    loss = loss + sum(
        (f * torch.tensor(d)).sum() for f, d in zip(finals_t, d_finals, strict=True)
    )
    loss.backward()
    dx, d_states, dparams = net.backward(d_out, d_finals, tape)
    _check("dx", dx, x_t.grad, tolerance)
    for name, got, want in zip(net.cell.STATES, d_states, states_t, strict=True):
        _check(f"d initial {name}", got, want.grad, tolerance)
    assert list(dparams) == list(net.params)
    for key, p in module.named_parameters():
        _check(f"d {key}", dparams[key], p.grad, tolerance)


@pytest.mark.parametrize("variant", sorted(TORCH_CELLS))
def test_full_lengths_equal_no_lengths_and_unidirectional_matches(variant):
    torch.manual_seed(5)
    module = TORCH_CELLS[variant](4, 3, num_layers=2).double()
    net = Recurrent.from_torch(module)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((6, 2, 4))
    out, finals, _ = net.forward(x)
    same, _, _ = net.forward(x, lengths=[6, 6])
    np.testing.assert_array_equal(out, same)
    out_t, finals_t = module(torch.tensor(x))
    _check("out", out, out_t, 1e-12)
    for got, want in zip(finals, _as_tuple(finals_t), strict=True):
        _check("final", got, want, 1e-12)


def test_lstm_proj_from_torch_stacked_bidirectional_with_lengths():
    torch.manual_seed(7)
    module = torch.nn.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=3).double()
    net = Recurrent.from_torch(module)
    assert net.variant == "lstm_proj" and net.output_size == 3
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, 3, 4))
    lengths = [5, 1, 3]
    states = _random_states(net, 3, rng)
    out, finals, tape = net.forward(x, states, lengths)
    x_t = torch.tensor(x, requires_grad=True)
    out_t, finals_t = _torch_run(
        module, x_t, tuple(map(torch.tensor, states)), lengths, False
    )
    _check("out", out, out_t, 1e-9)
    for got, want in zip(finals, finals_t, strict=True):
        _check("final", got, want, 1e-9)
    d_out = rng.standard_normal(out.shape)
    (out_t * torch.tensor(d_out)).sum().backward()
    dx, _, dparams = net.backward(d_out, None, tape)
    _check("dx", dx, x_t.grad, 1e-9)
    for key, p in module.named_parameters():
        _check(f"d {key}", dparams[key], p.grad, 1e-9)


def test_torch_state_dict_loads_into_the_matching_module():
    net = Recurrent(
        "gru", 3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=2
    )
    module = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True).double()
    module.load_state_dict(net.torch_state_dict())
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    out, (h,), _ = net.forward(x)
    out_t, h_t = module(torch.tensor(x))
    _check("out", out, out_t, 1e-12)
    _check("h", h, h_t, 1e-12)


# -- every variant through its twin -----------------------------------------------------------


def _twin_reference(spec, x, states, params, lengths, layers, directions):
    """Each batch row alone, unpadded, through ``layers`` x ``directions`` twin cells; the
    output is padded with zeros. ``params`` are torch tensors keyed like the runtime's. The
    final states are dicts keyed by (layer-direction slot, batch row)."""
    from derive.verify.twin import twin_forward

    steps, batch, _ = x.shape
    rows, finals = [], [{} for _ in spec.state_names]
    for b in range(batch):
        inp = x[: lengths[b], b : b + 1]
        for layer in range(layers):
            outs = []
            for direction in range(directions):
                slot = layer * directions + direction
                cell_params = {
                    name: params[Recurrent.key(name, layer, direction)]
                    for name in spec.param_names
                }
                init = tuple(s[slot, b : b + 1] for s in states)
                src = inp if direction == 0 else torch.flip(inp, (0,))
                ys, last = twin_forward(spec, src, init, cell_params)
                outs.append(ys if direction == 0 else torch.flip(ys, (0,)))
                for n, value in enumerate(last):
                    finals[n][slot, b] = value[0]
            inp = torch.cat(outs, dim=2)
        pad = inp.new_zeros((steps - lengths[b], 1, inp.shape[2]))
        rows.append(torch.cat([inp, pad]))
    out = torch.cat(rows, dim=1)
    return out, finals


def _layouts(cell):
    """Stacked and bidirectional where the cell's sizes allow it (I == H cells cannot read a
    two-direction layer, an output of the input's size would widen through one):
    (num_layers, bidirectional) pairs."""
    if cell.SIZE_CONSTRAINTS or cell.OUTPUT_SIZE == "I":
        return [(2, False), (1, True)]
    return [(2, True)]


def test_an_output_of_the_input_size_is_not_stacked_in_two_directions():
    with pytest.raises(
        ValueError, match="intersection_rnn's output has the size of its input"
    ):
        Recurrent("intersection_rnn", 4, 5, num_layers=2, bidirectional=True)
    assert Recurrent("intersection_rnn", 4, 5, num_layers=3).output_size == 4


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_stacked_bidirectional_with_lengths_matches_twin(variant, dtype):
    from conftest import sizes_for

    cell = load_generated(variant)
    spec = registry.get(variant)
    sizes = sizes_for(cell)
    input_size, hidden_size = sizes.pop("input_size"), sizes.pop("hidden_size")
    tolerance = TOLERANCE[dtype]
    for layers, bidirectional in _layouts(cell):
        net = Recurrent(
            variant, input_size, hidden_size, num_layers=layers, bidirectional=bidirectional,
            dtype=dtype, seed=11, **sizes,
        )  # fmt: skip
        for key in net.params:  # larger weights than the default init
            net.params[key] = (net.params[key] * 2).astype(dtype)
        rng = np.random.default_rng(12)
        steps, batch, lengths = 5, 3, np.array([5, 2, 4])
        x = rng.standard_normal((steps, batch, input_size)).astype(dtype)
        states = _random_states(net, batch, rng)
        out, finals, tape = net.forward(x, states, lengths)

        x_t = torch.tensor(x, requires_grad=True)
        states_t = tuple(torch.tensor(s, requires_grad=True) for s in states)
        params_t = {
            k: torch.tensor(v, requires_grad=True) for k, v in net.params.items()
        }
        out_t, finals_t = _twin_reference(
            spec, x_t, states_t, params_t, lengths, layers, net.directions
        )
        _check(f"{variant} out", out, out_t, tolerance)
        d_out = rng.standard_normal(out.shape).astype(dtype)
        d_finals = tuple(rng.standard_normal(f.shape).astype(dtype) for f in finals)
        loss = (out_t * torch.tensor(d_out)).sum()
        for n, per_row in enumerate(finals_t):
            assert len(per_row) == finals[n].shape[0] * batch
            for (slot, b), value in per_row.items():
                _check(f"{variant} final", finals[n][slot, b], value, tolerance)
                loss = loss + (value * torch.tensor(d_finals[n][slot, b])).sum()
        loss.backward()
        dx, d_states, dparams = net.backward(d_out, d_finals, tape)
        _check(f"{variant} dx", dx, x_t.grad, tolerance)
        for got, want in zip(d_states, states_t, strict=True):
            _check(f"{variant} d initial state", got, want.grad, tolerance)
        for key, p in params_t.items():
            _check(f"{variant} d {key}", dparams[key], p.grad, tolerance)


# -- dropout, truncated BPTT ------------------------------------------------------------------


def test_dropout_with_given_masks_matches_torch_layers_with_the_same_masks():
    net = Recurrent("lstm", 3, 4, num_layers=3, bidirectional=True, dropout=0.4,
                    dtype=np.float64, seed=1)  # fmt: skip
    rng = np.random.default_rng(2)
    steps, batch = 5, 2
    x = rng.standard_normal((steps, batch, 3))
    masks = [rng.random((steps, batch, 8)) >= 0.4 for _ in range(2)]
    out, _, tape = net.forward(x, None, None, dropout_masks=masks)
    # the reference: one torch layer at a time, the mask applied by hand between them
    x_t = torch.tensor(x, requires_grad=True)
    layers = []
    inp = x_t
    for layer in range(3):
        module = torch.nn.LSTM(3 if layer == 0 else 8, 4, bidirectional=True).double()
        module.load_state_dict(
            {
                k: torch.tensor(net.params[k.replace("_l0", f"_l{layer}")])
                for k, _ in module.named_parameters()
            }
        )
        layers.append(module)
        inp, _ = module(inp)
        if layer < 2:
            inp = inp * torch.tensor(masks[layer]) / 0.6
    _check("out", out, inp, 1e-12)
    d_out = rng.standard_normal(out.shape)
    (inp * torch.tensor(d_out)).sum().backward()
    dx, _, dparams = net.backward(d_out, None, tape)
    _check("dx", dx, x_t.grad, 1e-12)
    for layer, module in enumerate(layers):
        for k, p in module.named_parameters():
            _check(k, dparams[k.replace("_l0", f"_l{layer}")], p.grad, 1e-12)


def test_dropout_is_off_in_eval_mode_and_random_masks_drop_units():
    net = Recurrent("gru", 3, 4, num_layers=2, dropout=0.5, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((6, 2, 3))
    trained = [net.forward(x)[0] for _ in range(2)]
    assert not np.array_equal(trained[0], trained[1])
    evaluated = [net.eval().forward(x)[0] for _ in range(2)]
    np.testing.assert_array_equal(evaluated[0], evaluated[1])
    plain = Recurrent("gru", 3, 4, num_layers=2, dtype=np.float64, seed=0)
    np.testing.assert_array_equal(evaluated[0], plain.forward(x)[0])


def test_truncated_bptt_equals_torch_with_detach_at_chunk_edges():
    torch.manual_seed(9)
    module = torch.nn.LSTM(3, 5, num_layers=2).double()
    net = Recurrent.from_torch(module)
    rng = np.random.default_rng(10)
    x = rng.standard_normal((11, 2, 3))
    weights = rng.standard_normal((11, 2, 5))

    def loss(out, start):
        w = weights[start : start + out.shape[0]]
        return float((out * w).sum()), w.copy()

    losses, finals, grads = truncated_bptt(net, x, 4, loss)
    assert len(losses) == 3
    states, total = None, 0
    for start in range(0, 11, 4):
        out_t, states = module(torch.tensor(x[start : start + 4]), states)
        total = total + (out_t * torch.tensor(weights[start : start + 4])).sum()
        states = tuple(s.detach() for s in states)
    total.backward()
    assert abs(sum(losses) - total.item()) <= 1e-9 * abs(total.item())
    for got, want in zip(finals, states, strict=True):
        _check("final", got, want, 1e-12)
    for key, p in module.named_parameters():
        _check(f"d {key}", grads[key], p.grad, 1e-9)


# -- clipping, optimisers, initialisation -----------------------------------------------------


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clip_grad_norm_matches_torch(norm_type):
    rng = np.random.default_rng(0)
    grads = {k: rng.standard_normal(s) for k, s in [("a", (3, 4)), ("b", (5,))]}
    tensors = [
        torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64))
        for g in grads.values()
    ]
    for t, g in zip(tensors, grads.values(), strict=True):
        t.grad = torch.tensor(g)
    norm = clip_grad_norm(grads, 0.5, norm_type)
    want = torch.nn.utils.clip_grad_norm_(tensors, 0.5, norm_type)
    assert abs(norm - want.item()) <= 1e-12 * want.item()
    for got, t in zip(grads.values(), tensors, strict=True):
        _check("clipped", got, t.grad, 1e-12)
    # under the limit nothing changes
    before = {k: v.copy() for k, v in grads.items()}
    clip_grad_norm(grads, 100.0, norm_type)
    for k in grads:
        np.testing.assert_array_equal(grads[k], before[k])


def test_clip_grad_value_matches_torch():
    g = np.random.default_rng(1).standard_normal((4, 4))
    t = torch.nn.Parameter(torch.zeros(4, 4, dtype=torch.float64))
    t.grad = torch.tensor(g)
    grads = {"w": g.copy()}
    clip_grad_value(grads, 0.3)
    torch.nn.utils.clip_grad_value_([t], 0.3)
    np.testing.assert_array_equal(grads["w"], t.grad.numpy())
    assert np.abs(grads["w"]).max() == 0.3


@pytest.mark.parametrize(
    "make, torch_make",
    [
        (lambda p: SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
        (
            lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True),
            lambda p: torch.optim.SGD(
                p, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True
            ),
        ),
        (
            lambda p: SGD(p, lr=0.05, momentum=0.8, dampening=0.1),
            lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, dampening=0.1),
        ),
        (lambda p: Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
        (
            lambda p: Adam(p, lr=0.02, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1),
            lambda p: torch.optim.Adam(
                p, lr=0.02, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1
            ),
        ),
    ],
    ids=["sgd", "sgd_nesterov", "sgd_dampening", "adam", "adam_options"],
)
def test_optimisers_match_torch(make, torch_make):
    rng = np.random.default_rng(2)
    params = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    tensors = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in params.items()}
    opt, opt_t = make(params), torch_make(list(tensors.values()))
    for _ in range(5):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        for k, t in tensors.items():
            t.grad = torch.tensor(grads[k])
        opt.step(grads)
        opt_t.step()
    for k, t in tensors.items():
        _check(k, params[k], t, 1e-12)


def test_forget_bias_sets_the_gate_bias_sum():
    net = Recurrent("lstm", 3, 4, num_layers=2, bidirectional=True, forget_bias=1.0)
    for key, value in net.params.items():
        if key.startswith("bias_ih"):
            np.testing.assert_array_equal(value[4:8], 1)
        if key.startswith("bias_hh"):
            np.testing.assert_array_equal(value[4:8], 0)
    assert not np.all(net.params["bias_ih_l0"][:4] == 0)
    peephole = Recurrent("lstm_peephole", 3, 4, forget_bias=2.0)
    np.testing.assert_array_equal(peephole.params["bias_ih_l0"][4:8], 2)
    with pytest.raises(
        ValueError, match="forget_bias needs a cell with a forget gate.*lstm_cifg"
    ):
        Recurrent("lstm_cifg", 3, 4, forget_bias=1.0)


# -- bad input --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lstm_net():
    return Recurrent("lstm", 3, 4, num_layers=2, bidirectional=True, dtype=np.float64)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda n, x: n.forward(x, lengths=[6, 2]), ValueError, r"Recurrent.forward: lengths must lie in \[1, 5\] \(the number of steps\); got lengths\[0\] = 6"),
        (lambda n, x: n.forward(x, lengths=[3, 0]), ValueError, r"lengths\[1\] = 0"),
        (lambda n, x: n.forward(x, lengths=[3]), ValueError, "lengths must be 2 integers"),
        (lambda n, x: n.forward(x, lengths=[3.0, 2.0]), ValueError, "lengths must be 2 integers"),
        (lambda n, x: n.forward(x, (np.zeros((2, 2, 4)), np.zeros((4, 2, 4)))), ValueError,
         r"initial_states \(h\) must have shape \(4, 2, 4\) \(directions \* num_layers = 4"),
        (lambda n, x: n.forward(x, np.zeros((4, 2, 4))), ValueError, "initial_states must be None or a tuple of 2 arrays"),
        (lambda n, x: n.forward(x[:, :, :2]), ValueError, r"x must have shape \(T, B, input_size\) with input_size=3"),
        (lambda n, x: n.forward(x.astype(np.float32)), TypeError, "x must have the net's dtype float64; got float32"),
        (lambda n, x: n.forward(list(x)), TypeError, "x must be a numpy.ndarray; got list"),
        (lambda n, x: n.forward(x, dropout_masks=[np.ones((5, 2, 8), bool)]), ValueError, "dropout_masks given, but no dropout applies"),
        (lambda n, x: n.backward(np.zeros((5, 2, 8)), None, {}), TypeError, "tape must be the Tape that forward returned"),
        (lambda n, x: n.backward(np.zeros((5, 2, 4)), None, n.forward(x)[2]), ValueError, r"d_out must have shape \(5, 2, 8\)"),
        (lambda n, x: n.backward(None, (np.zeros((2, 2, 4)),) * 2, n.forward(x)[2]), ValueError, r"d_final_states \(h\) must have shape \(4, 2, 4\)"),
    ],
    ids=["length_over_T", "zero_length", "lengths_count", "float_lengths", "state_layers",
         "bare_state", "input_size", "dtype", "not_array", "masks_without_dropout", "tape",
         "d_out_shape", "d_final_layers"],
)  # fmt: skip
def test_bad_input_is_a_clear_error(lstm_net, call, error, match):
    x = np.zeros((5, 2, 3))
    with pytest.raises(error, match=match):
        call(lstm_net, x)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"dropout": 1.0}, ValueError, r"dropout must be a number in \[0, 1\); got 1.0"),
        ({"dropout": -0.1}, ValueError, r"dropout must be a number in \[0, 1\); got -0.1"),
        ({"num_layers": 0}, ValueError, "num_layers must be a positive integer; got 0"),
        ({"dtype": np.int32}, TypeError, "dtype must be float32 or float64; got int32"),
        ({"proj_size": 2}, TypeError, r"lstm takes the sizes none beyond input_size and hidden_size; got \['proj_size'\]"),
        ({"variant": "lstmm"}, ValueError, "unknown variant 'lstmm'"),
        ({"variant": "lstm_proj"}, TypeError, r"lstm_proj needs the sizes \['proj_size'\]"),
    ],
    ids=["dropout_one", "dropout_negative", "layers", "dtype", "extra_size", "variant",
         "missing_size"],
)  # fmt: skip
def test_bad_configuration_is_a_clear_error(kwargs, error, match):
    args = {"variant": "lstm", "input_size": 3, "hidden_size": 4} | kwargs
    with pytest.raises(error, match=match):
        Recurrent(**args)


def test_from_torch_refuses_what_it_cannot_mirror():
    with pytest.raises(
        TypeError, match="module must be a torch.nn.RNN, LSTM or GRU; got Linear"
    ):
        Recurrent.from_torch(torch.nn.Linear(2, 3))
    # a module without biases is mirrored without them
    net = Recurrent.from_torch(torch.nn.LSTM(2, 3, bias=False))
    assert not net.bias and list(net.params) == ["weight_ih_l0", "weight_hh_l0"]
    with pytest.raises(ValueError, match="nbrc has no bias-free form"):
        Recurrent("nbrc", 3, 3, bias=False)
    with pytest.raises(TypeError, match="bias should be of type bool"):
        Recurrent("lstm", 3, 3, bias=1)


def test_size_constraint_of_the_cell_surfaces_when_stacking_cannot_work():
    with pytest.raises(ValueError, match="must be equal"):
        Recurrent("mut1", 4, 4, num_layers=2, bidirectional=True)
