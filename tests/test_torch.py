"""The PyTorch binding: the custom ops under gradcheck and opcheck, ``Recurrent`` against
``torch.nn.RNN/LSTM/GRU`` (outputs, states, every gradient, packed sequences, state dicts,
optimiser steps), every variant against the NumPy runtime, ``torch.compile``, and clear errors.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from conftest import VARIANTS, load_generated, relative_error, sizes_for

from derive.runtime import Recurrent as NumpyRecurrent

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

import derive.torch as derive_torch  # noqa: E402
from derive.torch import Recurrent, recurrent  # noqa: E402

TORCH_CELLS = {
    "rnn_tanh": lambda *a, **kw: torch.nn.RNN(*a, nonlinearity="tanh", **kw),
    "rnn_relu": lambda *a, **kw: torch.nn.RNN(*a, nonlinearity="relu", **kw),
    "lstm": torch.nn.LSTM,
    "gru": torch.nn.GRU,
    "lstm_proj": lambda *a, **kw: torch.nn.LSTM(*a, proj_size=3, **kw),
}
#: float64 to 1e-9, float32 to 1e-4: relative to the largest entry
PARITY = {torch.float64: 1e-9, torch.float32: 1e-4}


def _small_params(cell, dtype, generator):
    """Size name -> int, and random parameters of sizes I = 3, H = 2 (other sizes 2)."""
    kwargs = sizes_for(cell, input_size=3, hidden_size=2, extra=2)
    shapes = cell.param_shapes(**kwargs)
    sizes = {name: kwargs[argument] for name, argument in cell.SIZES.items()}
    return sizes, {
        name: torch.randn(shape, generator=generator, dtype=dtype, requires_grad=True)
        for name, shape in shapes.items()
    }


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradcheck_and_gradgradcheck_every_variant(variant):
    """Finite differences against the derived backward, and against its own derivatives (a
    second derivative through the declaration), with random non-zero initial states and a
    padded row."""
    cell = load_generated(variant)
    g = torch.Generator().manual_seed(1)
    sizes, params = _small_params(cell, torch.float64, g)
    x = torch.randn(4, 2, sizes["I"], generator=g, dtype=torch.float64)
    x.requires_grad_()
    states = [
        torch.randn(2, sizes[cell.STATE_SIZES[s]], generator=g, dtype=torch.float64)
        .requires_grad_()
        for s in cell.STATES
    ]  # fmt: skip
    lengths = torch.tensor([4, 2])
    n = len(states)

    def run(x, *leaves):
        state, weights = leaves[:n], dict(zip(cell.PARAMS, leaves[n:], strict=True))
        ys, finals = recurrent(variant, weights, x, tuple(state), lengths)
        return (ys, *finals)

    assert torch.autograd.gradcheck(run, (x, *states, *params.values()))
    assert torch.autograd.gradgradcheck(
        run, (x, *states, *params.values()), fast_mode=True
    )


@pytest.mark.parametrize("x_grad", [True, False], ids=["x needs a gradient", "x needs none"])
@pytest.mark.parametrize(
    "variant, hypers", [("lstm", ()), ("mgu", ()), ("cornn", (0.3, 0.5, 1.5))]
)
def test_custom_ops_pass_opcheck(variant, hypers, x_grad):
    """Schema, fake (meta) implementation and autograd registration agree with the kernels,
    the backward's with the input's gradient and without it (an empty ``dx``)."""
    cell = load_generated(variant)
    g = torch.Generator().manual_seed(2)
    _, params = _small_params(cell, torch.float64, g)
    x = torch.randn(3, 2, 3, generator=g, dtype=torch.float64, requires_grad=x_grad)
    states = [torch.randn(2, 2, generator=g, dtype=torch.float64) for _ in cell.STATES]
    args = (
        cell.__name__,
        x,
        torch.tensor([3, 1]),
        states,
        list(params.values()),
        torch.tensor(hypers, dtype=torch.float64),
        [],  # no masks
    )
    torch.library.opcheck(torch.ops.gatesmith.forward.default, args)


def _torch_run(module, x, hx, lengths, batch_first):
    if lengths is None:
        return module(x, hx)
    packed = pack_padded_sequence(
        x, lengths, batch_first=batch_first, enforce_sorted=False
    )
    out, finals = module(packed, hx)
    assert isinstance(out, torch.nn.utils.rnn.PackedSequence)
    assert torch.equal(out.batch_sizes, packed.batch_sizes)
    assert torch.equal(out.sorted_indices, packed.sorted_indices)
    padded, _ = pad_packed_sequence(
        out, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0]
    )
    return padded, finals


def _close(name, got, want, tolerance):
    err = relative_error(got.detach().numpy(), want.detach().numpy())
    assert err <= tolerance, f"{name}: relative error {err:.3g} > {tolerance:g}"


@pytest.mark.parametrize("dtype", PARITY, ids=str)
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded"])
@pytest.mark.parametrize(
    "batch_first", [False, True], ids=["time_major", "batch_first"]
)
@pytest.mark.parametrize("variant", sorted(TORCH_CELLS))
def test_matches_torch_two_layers_bidirectional(variant, batch_first, packed, dtype):
    torch.manual_seed(5)
    reference = TORCH_CELLS[variant](
        4, 5, num_layers=2, bidirectional=True, batch_first=batch_first, dtype=dtype
    )
    extra = {"proj_size": 3} if variant == "lstm_proj" else {}
    name = "lstm" if variant == "lstm_proj" else variant
    module = Recurrent(
        name, 4, 5, num_layers=2, bidirectional=True, batch_first=batch_first,
        dtype=dtype, **extra,
    )  # fmt: skip
    assert module.variant == variant
    assert list(module.state_dict()) == list(reference.state_dict())
    module.load_state_dict(reference.state_dict())
    steps, batch = 6, 4
    x = torch.randn(
        (batch, steps, 4) if batch_first else (steps, batch, 4), dtype=dtype
    )
    lengths = torch.tensor([6, 2, 5, 1]) if packed else None
    cell = module.cell
    width = {"h": 3 if extra else 5, "c": 5}
    hx = tuple(torch.randn(4, batch, width[s], dtype=dtype) for s in cell.STATES)
    results = []
    for net in (reference, module):
        leaves = [x.clone().requires_grad_(), *(h.clone().requires_grad_() for h in hx)]
        out, finals = _torch_run(
            net, leaves[0], leaves[1] if len(hx) == 1 else tuple(leaves[1:]), lengths,
            batch_first,
        )  # fmt: skip
        finals = finals if isinstance(finals, tuple) else (finals,)
        weights = torch.randn_like(out, generator=torch.Generator().manual_seed(6))
        loss = (out * weights).sum() + sum((f**2).sum() for f in finals)
        grads = torch.autograd.grad(loss, [*leaves, *net.parameters()])
        results.append((out, finals, grads))
    tolerance = PARITY[dtype]
    (out_t, finals_t, grads_t), (out, finals, grads) = results
    _close("out", out, out_t, tolerance)
    for s, got, want in zip(cell.STATES, finals, finals_t, strict=True):
        _close(f"final {s}", got, want, tolerance)
    names = ["x", *cell.STATES, *reference.state_dict()]
    for key, got, want in zip(names, grads, grads_t, strict=True):
        _close(f"d {key}", got, want, tolerance)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_matches_the_numpy_runtime(variant):
    """Stacked, bidirectional (where the sizes allow), with lengths: the module against
    :class:`derive.runtime.Recurrent` (itself checked against each cell's twin), same weights."""
    cell = load_generated(variant)
    # a cell that adds its input to its state pointwise (I == H) cannot read two directions;
    # an output of the input's size would widen through them
    inputs, both = (5, False) if cell.SIZE_CONSTRAINTS else (4, True)
    both = both and cell.OUTPUT_SIZE != "I"
    sizes = sizes_for(cell, input_size=inputs, hidden_size=5, extra=3)
    extra = {k: v for k, v in sizes.items() if k not in ("input_size", "hidden_size")}
    layout = {"num_layers": 2, "bidirectional": both, **extra}
    rng = np.random.default_rng(7)
    net = NumpyRecurrent(variant, inputs, 5, dtype=np.float64, **layout)
    # lstm_proj by the name nn.LSTM users know it by; every other cell as a module
    module = Recurrent(
        "lstm" if "proj_size" in extra else cell,
        inputs,
        5,
        dtype=torch.float64,
        **layout,
    )
    assert module.variant == variant
    module.load_state_dict(net.torch_state_dict())
    steps, batch = 5, 3
    lengths = np.array([5, 1, 3])
    x = rng.standard_normal((steps, batch, inputs))
    states = tuple(rng.standard_normal(net.state_shape(s, batch)) for s in cell.STATES)
    out, finals, tape = net.forward(x, states, lengths)
    d_out = rng.standard_normal(out.shape)
    dx, d_states, dparams = net.backward(d_out, None, tape)

    x_t = torch.tensor(x, requires_grad=True)
    states_t = tuple(torch.tensor(s, requires_grad=True) for s in states)
    packed = pack_padded_sequence(x_t, torch.tensor(lengths), enforce_sorted=False)
    out_t, finals_t = module(packed, states_t if len(states_t) > 1 else states_t[0])
    out_t, _ = pad_packed_sequence(out_t, total_length=steps)
    finals_t = finals_t if isinstance(finals_t, tuple) else (finals_t,)
    (out_t * torch.tensor(d_out)).sum().backward()
    for name, got, want in [
        ("out", out_t, out), ("dx", x_t.grad, dx),
        *((f"final {s}", f, w) for s, f, w in zip(cell.STATES, finals_t, finals, strict=True)),
        *((f"d initial {s}", t.grad, w) for s, t, w in zip(cell.STATES, states_t, d_states, strict=True)),
        *((f"d {k}", p.grad, dparams[k]) for k, p in module.named_parameters()),
    ]:  # fmt: skip
        err = relative_error(got.detach().numpy(), want)
        assert err <= 1e-12, f"{variant} {name}: relative error {err:.3g}"


def test_adam_steps_equal_nn_lstm():
    """Twenty optimiser steps of a small model, one with nn.LSTM and one with the module."""
    torch.manual_seed(11)
    reference = torch.nn.LSTM(3, 6, num_layers=2, batch_first=True, dtype=torch.float64)
    module = Recurrent(
        "lstm", 3, 6, num_layers=2, batch_first=True, dtype=torch.float64
    )
    module.load_state_dict(reference.state_dict())
    heads = [torch.nn.Linear(6, 2, dtype=torch.float64) for _ in range(2)]
    heads[1].load_state_dict(heads[0].state_dict())
    data = torch.Generator().manual_seed(12)
    batches = [
        (torch.randn(4, 7, 3, generator=data, dtype=torch.float64),
         torch.randn(4, 2, generator=data, dtype=torch.float64))
        for _ in range(20)
    ]  # fmt: skip
    trained = []
    for rnn, head in zip((reference, module), heads, strict=True):
        params = [*rnn.parameters(), *head.parameters()]
        opt = torch.optim.Adam(params, lr=0.01)
        for x, y in batches:
            opt.zero_grad()
            out, _ = rnn(x)
            loss = ((head(out[:, -1]) - y) ** 2).mean()
            loss.backward()
            opt.step()
        trained.append(params)
    for a, b in zip(*trained, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-6), (a - b).abs().max()
    assert not torch.equal(
        trained[1][0], heads[0].weight
    )  # the steps moved the weights


def test_an_input_that_needs_no_gradient_gets_none_and_the_parameters_theirs():
    """An input that needs no gradient (data, not a layer's output): the kernels skip the
    products into its gradient, and every parameter's gradient is the one a call with the
    input's gradient wanted gives, to the bit, in one piece and in shards; a gradient penalty on the
    parameters (a graph of the backward made) as ``nn.LSTM``'s."""
    torch.manual_seed(3)
    module = Recurrent("lstm", 3, 4, dtype=torch.float64)
    data = torch.randn(5, 4, 3, dtype=torch.float64)
    grads = []
    for threads, wanted in [(1, True), (1, False), (2, True), (2, False)]:
        x = data.clone().requires_grad_(wanted)
        module.zero_grad()
        with _threads(threads):
            out, _ = module(x)
            (out**2).sum().backward()
        assert (x.grad is not None) == wanted
        grads.append([p.grad.clone() for p in module.parameters()])
    for wanted, not_wanted in (grads[:2], grads[2:]):  # in one piece, in shards
        for a, b in zip(not_wanted, wanted, strict=True):
            assert torch.equal(a, b)
    reference = torch.nn.LSTM(3, 4, dtype=torch.float64)
    reference.load_state_dict(module.state_dict())
    module.zero_grad()
    penalties = []
    for rnn in (reference, module):
        out, _ = rnn(data)
        first = torch.autograd.grad((out**2).sum(), list(rnn.parameters()),
                                    create_graph=True)  # fmt: skip
        sum((g**2).sum() for g in first).backward()
        penalties.append([p.grad for p in rnn.parameters()])
    for a, b in zip(*penalties, strict=True):
        assert a.abs().max() > 0
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12), (a - b).abs().max()


@contextlib.contextmanager
def _threads(count):
    """Every call split over ``count`` threads, however small."""
    from generated import _interface

    work = _interface.SHARD_WORK
    _interface.SHARD_WORK = 0
    _interface.set_threads(count)
    try:
        yield
    finally:
        _interface.SHARD_WORK = work
        _interface.set_threads(None)


@pytest.mark.parametrize("reached", ["output", "h_n", "c_n", "h_n and c_n"])
def test_gradients_of_a_loss_that_reaches_some_outputs_alone(reached):
    """A loss of some of the outputs alone (the others get no gradient, None to the backward,
    never zeros made of every output's size): every parameter's and the input's gradient as
    nn.LSTM's, through two layers."""
    torch.manual_seed(5)
    reference = torch.nn.LSTM(3, 4, num_layers=2, dtype=torch.float64)
    module = Recurrent("lstm", 3, 4, num_layers=2, dtype=torch.float64)
    module.load_state_dict(reference.state_dict())
    weights = torch.randn(6, 5, 4, dtype=torch.float64)
    grads = []
    for rnn in (reference, module):
        data = torch.Generator().manual_seed(6)
        x = torch.randn(6, 5, 3, dtype=torch.float64, generator=data, requires_grad=True)
        out, (h_n, c_n) = rnn(x)
        terms = {"output": (out * weights).sum(), "h_n": (h_n * 1.5).sum(),
                 "c_n": (c_n**2).sum()}  # fmt: skip
        loss = sum(terms[name] for name in reached.split(" and "))
        loss.backward()
        grads.append([x.grad, *(p.grad for p in rnn.parameters())])
    for a, b in zip(*grads, strict=True):
        assert a.abs().max() > 0
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12), (a - b).abs().max()


def test_state_dicts_load_both_ways():
    torch.manual_seed(13)
    for make, variant in ((torch.nn.LSTM, "lstm"), (torch.nn.GRU, "gru")):
        reference = make(4, 5, num_layers=2, bidirectional=True)
        module = Recurrent(variant, 4, 5, num_layers=2, bidirectional=True)
        module.load_state_dict(reference.state_dict())
        back = make(4, 5, num_layers=2, bidirectional=True)
        back.load_state_dict(module.state_dict())
        for (k, a), (j, b) in zip(
            reference.state_dict().items(), back.state_dict().items(), strict=True
        ):
            assert k == j and torch.equal(a, b)


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(14)
    module = Recurrent("gru", 3, 4, num_layers=2, dropout=1.0)
    x = torch.randn(5, 2, 3)
    out, _ = module(x)
    # dropout 1 zeroes the first layer's output: the second layer reads zeros
    second = module.layer_params(1)
    zeros_out, _ = recurrent("gru", second, torch.zeros(5, 2, 4))
    assert torch.equal(out, zeros_out)
    module.eval()
    kept, _ = module(x)
    first, _ = recurrent("gru", module.layer_params(0), x)
    want, _ = recurrent("gru", second, first)
    assert torch.equal(kept, want) and not torch.equal(kept, out)


def test_unbatched_input_and_multi_state_cells():
    torch.manual_seed(15)
    module = Recurrent("lstm_fgr", 3, 4)
    x = torch.randn(6, 3)
    out, finals = module(x)
    assert out.shape == (6, 4) and len(finals) == 5
    assert all(f.shape == (1, 4) for f in finals)
    batched, batched_finals = module(x[:, None])
    assert torch.equal(out, batched[:, 0])
    assert all(
        torch.equal(a, b[:, 0]) for a, b in zip(finals, batched_finals, strict=True)
    )


@pytest.mark.usefixtures("user_registry")
def test_a_module_generated_from_a_users_declaration(tmp_path, monkeypatch):
    from conftest import load_package

    from derive.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["new", "peek"]) == 0
    assert main(["generate", "--spec", "peek.py", "--out", "peek_kernels"]) == 0
    cell = load_package(tmp_path, "peek_kernels", "peek")
    module = Recurrent(cell, 3, 4, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    out, finals = module(x)
    out.sum().backward()
    assert out.shape == (5, 2, 4)
    assert x.grad.abs().sum() > 0 and module.weight_hh_l0.grad.abs().sum() > 0
    # the same cell through the NumPy runtime, with the same weights
    net = NumpyRecurrent(cell, 3, 4, dtype=np.float64)
    for key in net.params:
        net.params[key] = getattr(module, key).detach().numpy().copy()
    want, _, _ = net.forward(x.detach().numpy(), None)
    assert relative_error(out.detach().numpy(), want) <= 1e-13


def test_torch_compile_traces_the_module_without_a_graph_break():
    torch.manual_seed(16)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = Recurrent("mgu", 3, 5, num_layers=2, batch_first=True)
            self.head = torch.nn.Linear(5, 2)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    model = Model()
    x = torch.randn(4, 7, 3)
    compiled = torch.compile(
        model, fullgraph=True
    )  # fullgraph: a graph break is an error
    got = compiled(x)
    got.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    want = model(x)
    want.sum().backward()
    assert torch.allclose(got, want, atol=1e-5)
    for a, p in zip(grads, model.parameters(), strict=True):
        assert torch.allclose(a, p.grad, atol=1e-5)


@pytest.mark.parametrize(
    "make, call, error, match",
    [
        (lambda: Recurrent("lstm", 3, 4), lambda m: m(torch.randn(5, 2, 3, dtype=torch.float16)),
         ValueError, r"input dtype \(torch.float16\) does not match weight dtype"),
        (lambda: Recurrent("lstm", 3, 4), lambda m: m(torch.randn(5, 2, 3, dtype=torch.float64)),
         ValueError, r"model: model.to\(torch.float64\)"),
        (lambda: Recurrent("lstm", 3, 4), lambda m: m(torch.randn(5, 2, 3, device="meta")),
         RuntimeError, "input is on meta; the generated kernels run on the CPU"),
        (lambda: Recurrent("lstm", 3, 4), lambda m: m(torch.randn(5, 2, 4)),
         RuntimeError, "Expected 3, got 4"),
        (lambda: Recurrent("lstm", 3, 4), lambda m: m(torch.randn(5, 2, 3), torch.zeros(1, 2, 4)),
         RuntimeError, "hx must be None"),
        (lambda: Recurrent("lstm", 3, 4),
         lambda m: m(torch.randn(5, 2, 3), (torch.zeros(1, 2, 4), torch.zeros(2, 2, 4))),
         RuntimeError, r"Expected hidden\[1\] size \(1, 2, 4\), got \[2, 2, 4\]"),
        (lambda: Recurrent("mgu", 3, 4), lambda m: m(torch.randn(5, 2, 3), torch.zeros(2, 4)),
         RuntimeError, "For batched 3-D input, hidden should also be 3-D but got 2-D"),
        (lambda: Recurrent("mgu", 3, 4), lambda m: m(torch.randn(5, 2, 3, 1)),
         ValueError, "Expected input to be 2D or 3D, got 4D instead"),
    ],
)  # fmt: skip
def test_bad_input_is_a_clear_error(make, call, error, match):
    module = make()
    with pytest.raises(error, match=match):
        call(module)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"variant": "nope"}, ValueError, "unknown variant 'nope'"),
        (
            {"variant": "mut1", "bias": False},
            ValueError,
            r"mut1 has no bias-free form .* adds the biases \['b_z', 'b_r', 'b_h'\] pointwise",
        ),
        ({"variant": "nbrc", "bias": False}, ValueError, "nbrc has no bias-free form"),
        ({"bias": "True"}, TypeError, "bias should be of type bool, got: str"),
        ({"batch_first": 1}, TypeError, "batch_first should be of type bool, got: int"),
        ({"dtype": torch.int32}, TypeError, "float32, float64, float16 or bfloat16"),
        ({"device": "cuda"}, ValueError, "run on the CPU"),
        ({"dropout": 1.5}, ValueError, r"dropout must be a number in \[0, 1\]"),
        ({"hidden_size": 0}, ValueError, "hidden_size must be greater than zero"),
        (
            {"input_size": 3.0},
            TypeError,
            "input_size should be of type int, got: float",
        ),
        ({"proj_size": 4}, ValueError, "proj_size has to be smaller than hidden_size"),
        ({"variant": "gru", "proj_size": 2}, ValueError, "gru has no projection"),
        ({"variant": "lstm_proj"}, TypeError, r"needs the sizes \['proj_size'\]"),
    ],
)
def test_bad_configuration_is_a_clear_error(kwargs, error, match):
    arguments = {"variant": "lstm", "input_size": 3, "hidden_size": 4, **kwargs}
    with pytest.raises(error, match=match):
        Recurrent(**arguments)


def test_recurrent_checks_its_arguments():
    params = {
        k: torch.zeros(v) for k, v in load_generated("mgu").param_shapes(3, 4).items()
    }
    with pytest.raises(ValueError, match="exactly the keys"):
        recurrent("mgu", {"weight_ih": params["weight_ih"]}, torch.zeros(2, 1, 3))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 2\]"):
        recurrent("mgu", params, torch.zeros(2, 1, 3), lengths=[3])
    with pytest.raises(
        TypeError, match=r"weight_ih'\] must have the dtype of x, torch.float64"
    ):
        recurrent("mgu", params, torch.zeros(2, 1, 3, dtype=torch.float64))
    with pytest.raises(
        ValueError, match=r"initial_states\[0\] \(h\) must have shape \(1, 4\)"
    ):
        recurrent("mgu", params, torch.zeros(2, 1, 3), (torch.zeros(2, 4),))
    with pytest.raises(
        ValueError, match=r"params\['weight_hh'\] must have shape \(8, 4\)"
    ):
        recurrent(
            "mgu", {**params, "weight_hh": torch.zeros(8, 5)}, torch.zeros(2, 1, 3)
        )


def test_the_custom_ops_and_the_eager_path_compute_the_same():
    """Outside torch.compile, ``recurrent`` skips the ops' dispatch; both run the same calls."""
    cell = load_generated("lstm_peephole")
    g = torch.Generator().manual_seed(17)
    _, params = _small_params(cell, torch.float64, g)
    x = torch.randn(5, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    states = [torch.randn(2, 2, generator=g, dtype=torch.float64) for _ in cell.STATES]
    lengths = torch.tensor([5, 3])
    leaves = [x, *params.values()]
    ys, finals = recurrent(cell, params, x, tuple(states), lengths)
    want = torch.autograd.grad((ys**2).sum() + finals[1].sum(), leaves)
    out = torch.ops.gatesmith.forward(
        cell.__name__, x, lengths, states, list(params.values()), torch.zeros(0), []
    )
    assert torch.equal(out[0], ys) and torch.equal(out[2], finals[1])
    got = torch.autograd.grad((out[0] ** 2).sum() + out[2].sum(), leaves)
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)
    # an input that needs no gradient: the backward op skips its products (dx empty) and
    # the parameters' gradients are the eager path's, which skips them too
    data, calls = x.detach(), []
    backward = derive_torch._backward
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(derive_torch, "_backward", lambda *a: calls.append(a[-1]) or backward(*a))
        out = torch.ops.gatesmith.forward(
            cell.__name__, data, lengths, states, list(params.values()), torch.zeros(0), []
        )
        got = torch.autograd.grad((out[0] ** 2).sum() + out[2].sum(), leaves[1:])
    assert calls == [False]
    ys, finals = recurrent(cell, params, data, tuple(states), lengths)
    want = torch.autograd.grad((ys**2).sum() + finals[1].sum(), leaves[1:])
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)


def test_hyperparameters_are_constructor_arguments():
    """``Recurrent("cornn", ..., dt=...)`` runs the kernel with those values: it equals the
    generated module called with them, and differs from the defaults; gradcheck passes."""
    cell = load_generated("cornn")
    hypers = {"dt": 0.3, "gamma": 0.5, "epsilon": 1.5}
    torch.manual_seed(3)
    rnn = Recurrent("cornn", 3, 4, dtype=torch.float64, **hypers)
    assert rnn.hypers == hypers and "dt=0.3" in repr(rnn)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    ys, (y_n, z_n) = rnn(x)
    params = {n: getattr(rnn, f"{n}_l0").detach().numpy() for n in cell.PARAMS}
    want, _, _ = cell.forward(x.numpy(), None, params, **hypers)
    default, _, _ = cell.forward(x.numpy(), None, params)
    assert np.abs(ys.detach().numpy() - want).max() < 1e-14
    assert np.abs(want - default).max() > 1e-3
    g = torch.Generator().manual_seed(4)
    _, leaves = _small_params(cell, torch.float64, g)
    x = torch.randn(4, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)

    def run(x, *weights):
        ys, finals = recurrent(
            cell, dict(zip(cell.PARAMS, weights, strict=True)), x, hypers=hypers
        )
        return (ys, *finals)

    assert torch.autograd.gradcheck(run, (x, *leaves.values()))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            {"dt": float("nan")},
            ValueError,
            "hyperparameter dt must be a finite real number",
        ),
        ({"dt": True}, ValueError, "hyperparameter dt must be a finite real number"),
        (
            {"dtt": 0.1},
            TypeError,
            r"hyperparameters \['dt', 'epsilon', 'gamma'\]; got \['dtt'\]",
        ),
    ],
)
def test_bad_hyperparameters_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        Recurrent("cornn", 3, 4, **kwargs)
