"""Inference: the forward that keeps no tape, the step API, and the bindings' paths without a
gradient.

Every variant's kernels that keep no tape are compared with autograd wherever a kernel is
verified (:func:`derive.verify.compare`, rows "(no tape)"); here: lengths and shards, one step
at a time, the products of one step (BLAS's, unpacked) in training, and ``derive.torch``'s
path under ``no_grad``.
"""

from __future__ import annotations

import copy
import itertools
import sys

import numpy as np
import pytest
from conftest import (
    DTYPES,
    VARIANTS,
    Problem,
    compare_with_torch,
    load_generated,
    relative_error,
)

import generated
from derive import registry
from generated import _interface

torch = pytest.importorskip("torch")
from derive import torch as gtorch  # noqa: E402

#: a plain cell, one whose per-step product reads a workspace (its source is computed by an
#: earlier stage of the step), one with means, one with hyperparameters and one with masks
SOME = ["lstm", "mgu3", "lstm_layernorm", "cornn", "lstm_zoneout"]


def _regularised(name):
    if name != "lstm_zoneout":
        return load_generated(name)
    from derive import build
    from derive.symbolic.regularise import regularised

    return build(regularised(registry.get("lstm"), zoneout=True))


def _masks(problem):
    return {"masks": problem.masks} if problem.masks else {}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("variant", SOME)
def test_no_tape_gives_the_numbers_of_the_tape_with_lengths_and_shards(
    variant, dtype, monkeypatch, cell_cache
):
    cell = _regularised(variant)
    problem = Problem(cell, dtype, steps=5, batch=7)
    lengths = np.array([5, 3, 5, 1, 4, 5, 2])
    package = sys.modules[type(cell._interface).__module__]  # a built cell's own
    monkeypatch.setattr(package, "SHARD_WORK", 0)
    for threads in (1, 3):
        package.set_threads(threads)
        try:
            want = cell.forward(problem.x, problem.states, problem.params, lengths,
                                **_masks(problem), **problem.hypers)  # fmt: skip
            got = cell.forward(problem.x, problem.states, problem.params, lengths,
                               **_masks(problem), **problem.hypers, tape=False)  # fmt: skip
        finally:
            package.set_threads(None)
        assert got[2] is None
        assert ("shards" in want[2]) == (threads == 3)
        assert got[0].flags.writeable  # nothing else reads it
        for g, w in zip((got[0], *got[1]), (want[0], *want[1]), strict=True):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_array_equal(g, w)


def test_the_kernel_that_keeps_no_tape_returns_no_saved_values():
    cell = load_generated("lstm")
    assert cell._INFER_RETURNS == ("seq_h", "seq_c")
    assert set(cell._FORWARD_RETURNS) > set(cell._INFER_RETURNS)
    # mgu3's per-step product reads a value of an earlier stage: a workspace of one step
    mgu3 = load_generated("mgu3")
    assert mgu3._INFER_RETURNS == ("seq_h",)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("variant", SOME)
def test_steps_one_at_a_time_give_the_forward(variant, dtype, cell_cache):
    cell = _regularised(variant)
    problem = Problem(cell, dtype, steps=4, batch=3)
    ys, finals, _ = cell.forward(problem.x, problem.states, problem.params,
                                 **_masks(problem), **problem.hypers)  # fmt: skip
    states = problem.states
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    for t in range(problem.x.shape[0]):
        masks = {}
        if problem.masks:  # a per-step mask's row of the step; a per-sequence one whole
            steps = problem.x.shape[0]
            masks = {"masks": {
                name: value.reshape(steps, 3, -1)[t] if cell.MASKS[name][0] == "step"
                else value for name, value in problem.masks.items()
            }}  # fmt: skip
        y, states = cell.step(problem.x[t], states, problem.params, **masks,
                              **problem.hypers)  # fmt: skip
        assert y.shape == ys[t].shape and y.dtype == dtype
        assert relative_error(y, ys[t]) < tolerance, t
    for got, want in zip(states, finals, strict=True):
        assert relative_error(got, want) < tolerance


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("variant", VARIANTS)
def test_weights_packed_once_give_the_numbers_of_the_forward(variant, dtype, monkeypatch):
    """``CellInterface.inference(..., pack=True)``: the products read the weights packed
    for the tiles once (``infer_kernel``'s ``panels``) instead of packing them or calling
    BLAS; one step and three, a batch that fills every tile height of the widest tiles, a
    hidden size no multiple of a panel; in one piece and, past ``SHARD_WORK``, in three
    shards over the same panels (one step too), each shard's rows filling tiles of their
    own."""
    module = load_generated(variant)
    batch = sum(generated._runtime._HEIGHTS[generated._runtime._NATIVE[0]])
    problem = Problem(module, dtype, steps=3, batch=batch, hidden_size=37)
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    monkeypatch.setattr(_interface, "SHARD_WORK", 0)
    sizes = module._interface.check_params("test", problem.params, problem.x.shape[2],
                                           np.dtype(dtype))[0]  # fmt: skip
    for threads, steps in itertools.product((1, 3), (1, 3)):
        _interface.set_threads(threads)
        try:
            shards = module._interface.shard_count(steps, batch, sizes, packed=True)
            ys, finals = problem.infer_packed(steps)
        finally:
            _interface.set_threads(None)
        assert shards == threads
        want, want_finals, _ = module.forward(problem.x[:steps], problem.states,
                                              problem.params, tape=False)  # fmt: skip
        assert relative_error(ys, want) < tolerance
        for got, wanted in zip(finals, want_finals, strict=True):
            assert relative_error(got, wanted) < tolerance


def test_a_step_from_no_states_starts_at_zeros():
    cell = load_generated("gru")
    params = cell.init_params(3, 4, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 3))
    y, states = cell.step(x, None, params)
    want, finals, _ = cell.forward(x[None], None, params)
    np.testing.assert_allclose(y, want[0], rtol=1e-13)
    np.testing.assert_allclose(states[0], finals[0], rtol=1e-13)


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda c, p: c.step(np.ones(3), None, p), ValueError, "step: x must have 2"),
        (lambda c, p: c.step(np.ones((2, 3), np.float32), None, p), TypeError,
         "step: params"),
        (lambda c, p: c.step(np.ones((2, 3)), (np.ones((2, 5)),) * 2, p), ValueError,
         r"step: states\[0\] \(h\) must have shape \(2, 4\)"),
        (lambda c, p: c.step(np.ones((2, 3)), np.ones((2, 4)), p), ValueError,
         "step: states must be None or a tuple of 2 arrays"),
        (lambda c, p: c.forward(np.ones((1, 2, 3)), None, p, tape="no"), TypeError,
         "forward: tape must be True or False; got 'no'"),
    ],
)  # fmt: skip
def test_bad_steps_are_clear_errors(call, error, words):
    cell = load_generated("lstm")
    params = cell.init_params(3, 4, dtype=np.float64)
    with pytest.raises(error, match=words):
        call(cell, params)


@pytest.mark.parametrize("variant", ["lstm", "mgu3", "cornn", "gru"])
def test_a_step_like_one_checked_before_goes_the_short_way_to_the_same_numbers(
    variant, monkeypatch
):
    """A step on parameters checked before, with plain arrays and no hyperparameters or
    masks given, skips the full checks (``_known_step``) and gives their numbers to the bit
    (hyperparameters at their defaults); every other call takes the full checks. (A module's
    own ``step`` passes a cell's hyperparameters always: the interface's is called here.)"""
    cell = load_generated(variant)
    interface = cell._interface
    problem = Problem(cell, np.float64, steps=1, batch=3)
    x, states, params = problem.x[0], tuple(problem.states), problem.params
    want_y, want_states = interface.step(x, states, params, {})  # the full checks
    full = []
    run = interface._run
    monkeypatch.setattr(interface, "_run", lambda *a: full.append(a) or run(*a))
    y, new_states = interface.step(x, states, params)
    assert not full  # the short way
    np.testing.assert_array_equal(y, want_y)
    for got, want in zip(new_states, want_states, strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.flags.writeable and got.base is None  # the caller's own
    read_only = x.copy()
    read_only.flags.writeable = False
    others = [
        (read_only, states, params),  # a read-only array: viewed by the full checks
        (x, list(states), params),  # a list of states
        (x, (states[0][:, ::-1], *states[1:]), params),  # a state not C-contiguous
        (x, tuple(s.astype(np.float32) for s in states), params),  # another dtype
        (x[:, :-1].copy(), states, params),  # another input size: parameters not checked so
        (x.astype(np.float32), states, params),  # nor for this dtype
    ]
    for n, args in enumerate(others):
        try:
            interface.step(*args)
        except (TypeError, ValueError):
            pass  # the full checks' error
        assert len(full) == n + 1, n


def test_a_step_without_biases_or_with_masks_takes_the_full_checks(monkeypatch):
    cell = load_generated("lstm")
    params = cell.init_params(3, 4, dtype=np.float64)
    without = {k: v for k, v in params.items() if not k.startswith("bias")}
    x = np.ones((2, 3))
    cell.step(x, None, without)  # checked once
    full = []
    run = cell._interface._run
    monkeypatch.setattr(cell._interface, "_run", lambda *a: full.append(a) or run(*a))
    for _ in range(2):
        cell.step(x, (np.zeros((2, 4)), np.zeros((2, 4))), without)
    assert len(full) == 2  # the biases of length 0 are the full checks' to add
    zoneout = _regularised("lstm_zoneout")
    assert zoneout._interface._known_step(x, None, without) is None  # masks to check


def test_a_check_passed_before_hides_no_later_error():
    """``check_params`` takes a checked call's result for a call alike; a parameter of another
    shape or dtype, a missing one or one too many is still refused."""
    cell = load_generated("lstm")
    params = cell.init_params(3, 4, dtype=np.float64)
    x = np.ones((2, 3))
    cell.step(x, None, params)
    for bad, error in [
        ({**params, "weight_hh": np.ones((16, 5))}, ValueError),
        ({**params, "weight_hh": params["weight_hh"].astype(np.float32)}, TypeError),
        ({**params, "extra": params["bias_ih"]}, ValueError),
        ({k: v for k, v in params.items() if k != "weight_ih"}, ValueError),
        ({**params, "weight_hh": np.asfortranarray(params["weight_hh"])}, ValueError),
        ({**params, "weight_hh": params["weight_hh"].tolist()}, TypeError),
    ]:
        with pytest.raises(error, match="step: params"):
            cell.step(x, None, bad)
    # biases left out are lengths 0, as before
    without = {k: v for k, v in params.items() if not k.startswith("bias")}
    for _ in range(2):
        y, _ = cell.step(x, None, without)
        want, _, _ = cell.forward(x[None], None, without)
        np.testing.assert_allclose(y, want[0], rtol=1e-13)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("variant", ["lstm", "gru", "mgu3", "lstm_layernorm", "cornn"])
def test_one_step_trains_as_autograd(variant, batch):
    """One step: the per-step products run through BLAS unpacked (``_pack``), forward and
    backward, for one row and for several; both dtypes."""
    from derive.verify.twin import twin_forward

    module = load_generated(variant)
    for dtype in DTYPES:
        problem = Problem(module, dtype, steps=1, batch=batch)
        leaves = problem.torch_leaves()
        ys_t, finals_t = twin_forward(registry.get(variant), *leaves)
        compare_with_torch(problem, ys_t, finals_t, leaves)


# -- derive.torch without a gradient -----------------------------------------------------------


@pytest.fixture
def no_kernels_for_gradients(monkeypatch):
    """The autograd path of the kernels refuses to run: a call must take the inference path."""

    def refuse(*args):
        raise AssertionError("the autograd path ran")

    monkeypatch.setattr(gtorch._Kernels, "apply", refuse)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize(
    ("variant", "layers", "bidirectional", "batch_first"),
    [("lstm", 2, True, True), ("gru", 1, False, False), ("cornn", 2, False, True)],
)
def test_no_grad_takes_the_inference_path_with_the_same_numbers(
    variant, layers, bidirectional, batch_first, dtype
):
    torch.manual_seed(0)
    rnn = gtorch.Recurrent(variant, 5, 6, num_layers=layers, batch_first=batch_first,
                           bidirectional=bidirectional).to(dtype)  # fmt: skip
    x = torch.randn(3, 4, 5, dtype=dtype)
    batch = 3 if batch_first else 4
    hx = tuple(
        torch.randn(layers * (2 if bidirectional else 1), batch, 6, dtype=dtype)
        for _ in rnn.cell.STATES
    )
    hx = hx[0] if len(hx) == 1 else hx
    want = rnn(x, hx)  # the autograd path (parameters require gradients)
    assert want[0].grad_fn is not None
    with torch.no_grad():
        got = rnn(x, hx)
        unbatched = rnn(x[0] if batch_first else x[:, 0], _unbatched(hx))
    assert got[0].grad_fn is None
    _assert_same(got, want)
    first = want[0][0] if batch_first else want[0][:, 0]
    torch.testing.assert_close(unbatched[0], first.detach(), rtol=1e-6, atol=1e-6)


def _unbatched(hx):
    return hx[:, 0] if isinstance(hx, torch.Tensor) else tuple(h[:, 0] for h in hx)


def _assert_same(got, want):
    out, states = got
    torch.testing.assert_close(out, want[0].detach(), rtol=0, atol=0)
    states = states if isinstance(states, tuple) else (states,)
    wanted = want[1] if isinstance(want[1], tuple) else (want[1],)
    for g, w in zip(states, wanted, strict=True):
        torch.testing.assert_close(g, w.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("frozen", [True, False], ids=["frozen", "no_grad"])
def test_inference_follows_the_parameters(no_kernels_for_gradients, frozen):
    """The checked NumPy views, and the plan of a call like the one before under
    ``no_grad``, follow an in-place step and a loaded state dict, and are taken again after
    ``.to(float64)``, ``.data`` set or a new Parameter."""
    torch.manual_seed(0)
    rnn = gtorch.LSTM(4, 5).requires_grad_(not frozen)
    reference = torch.nn.LSTM(4, 5).requires_grad_(False)
    reference.load_state_dict(rnn.state_dict())
    x = torch.randn(3, 2, 4)

    def check():
        with torch.set_grad_enabled(frozen):
            out, (h, c) = rnn(x)
            out_again, _ = rnn(x)
        want, (h_want, c_want) = reference(x)
        torch.testing.assert_close(out_again, out, rtol=0, atol=0)
        for got, wanted in [(out, want), (h, h_want), (c, c_want)]:
            assert got.dtype == wanted.dtype
            torch.testing.assert_close(got, wanted, rtol=1e-5, atol=1e-6)

    check()
    with torch.no_grad():
        for module in (rnn, reference):
            module.weight_hh_l0.mul_(0.5)  # an optimiser's step
    check()
    data = torch.randn(20, 4)
    rnn.weight_ih_l0.data = data  # new storage under the same Parameter
    reference.weight_ih_l0.data = data.clone()
    check()
    with torch.no_grad():  # new storage again, strided: copied at every call, no plan kept
        rnn.bias_hh_l0.data = torch.randn(40)[::2]
        reference.bias_hh_l0.data = rnn.bias_hh_l0.data.clone()
    check()
    state = {k: torch.randn_like(v) for k, v in rnn.state_dict().items()}
    rnn.load_state_dict(state)
    reference.load_state_dict(state)
    check()
    rnn.double()
    reference.double()
    x = x.double()
    check()
    clone = copy.deepcopy(rnn)  # its own parameters, its own views of them
    with torch.no_grad():
        clone.weight_hh_l0.mul_(2)
        assert not torch.equal(clone(x)[0], rnn(x)[0])
    check()
    new = torch.nn.Parameter(
        torch.randn(20, 5, dtype=torch.float64), requires_grad=not frozen
    )
    rnn.weight_hh_l0 = new
    reference.weight_hh_l0 = torch.nn.Parameter(new.clone(), requires_grad=False)
    check()


def test_a_call_like_the_one_before_takes_its_plan(monkeypatch, no_kernels_for_gradients):
    """Under ``no_grad`` a call like the one before (its key: shapes, dtypes, states given or
    not, mode, parameters) skips the checks and gives that call's numbers to the bit; a call
    that differs plans again, with torch's numbers; training mode with dropout between the
    layers takes no plan."""
    torch.manual_seed(0)
    rnn = gtorch.LSTM(4, 5, num_layers=2, dropout=0.5).eval()
    reference = torch.nn.LSTM(4, 5, num_layers=2, dropout=0.5).eval()
    reference.load_state_dict(rnn.state_dict())
    planned, infer = [], gtorch._Layers._infer

    def counted(self, *args):
        planned.append(args[0].shape)
        return infer(self, *args)

    monkeypatch.setattr(gtorch._Layers, "_infer", counted)
    x = torch.randn(3, 2, 4)
    hx = (torch.randn(2, 2, 5), torch.randn(2, 2, 5))
    calls = [
        (x, hx), (x, None), (x[:, :1], tuple(h[:, :1] for h in hx)),
        (x[:, 0], tuple(h[:, 0] for h in hx)), (x[:1], hx), (x.double(), None),
    ]  # fmt: skip
    with torch.no_grad():
        for n, (given, states) in enumerate(calls):
            if given.dtype == torch.float64:
                rnn.double(), reference.double()
            first = rnn(given, states)
            again = rnn(given.clone(), states and tuple(h.clone() for h in states))
            assert len(planned) == n + 1, (n, planned)
            _assert_same(again, first)
            _assert_close_to(first, reference(given, states))
        rnn.batch_first = reference.batch_first = True
        _assert_close_to(rnn(x.double()), reference(x.double()))
        assert len(planned) == len(calls) + 1
        rnn.train()  # dropout between the layers: neither the plan nor the inference path
        monkeypatch.setattr(gtorch._Layers, "_run_plan", None)
        monkeypatch.setattr(gtorch._Layers, "_infer", None)
        assert not torch.equal(rnn(x.double())[0], rnn(x.double())[0])


def test_calls_of_a_few_shapes_in_turn_each_keep_their_plan(
    monkeypatch, no_kernels_for_gradients
):
    """A beam that changes width plans each width once; past ``_PLANS_KEPT`` shapes the
    oldest plan is forgotten; new parameters (new storage) forget the plans of the old."""
    planned, infer = [], gtorch._Layers._infer

    def counted(self, x, *args):
        planned.append(x.shape[1])
        return infer(self, x, *args)

    monkeypatch.setattr(gtorch._Layers, "_infer", counted)
    torch.manual_seed(0)
    rnn = gtorch.GRU(4, 5)
    reference = torch.nn.GRU(4, 5)
    reference.load_state_dict(rnn.state_dict())
    kept = gtorch._PLANS_KEPT
    x = torch.randn(1, kept + 1, 4)
    with torch.no_grad():
        for width in (2, 3, 2, 3, 2):
            _assert_close_to(rnn(x[:, :width]), reference(x[:, :width]))
        assert planned == [2, 3]
        for width in range(1, kept + 2):  # 2 and 3 kept, kept - 1 more, then one too many
            rnn(x[:, :width])
        assert planned == [2, 3, 1, *range(4, kept + 2)]
        assert len(gtorch._INFERENCE_PLANS[rnn]) == kept
        before = len(planned)
        rnn(x[:, :3])
        assert len(planned) == before  # 3 kept
        rnn(x[:, :2])
        assert planned[before:] == [2]  # 2, the oldest, forgotten: planned again
        rnn.weight_hh_l0.data = rnn.weight_hh_l0.data * 2
        reference.weight_hh_l0.data = reference.weight_hh_l0.data * 2
        _assert_close_to(rnn(x[:, :3]), reference(x[:, :3]))
        assert planned[-1] == 3 and len(gtorch._INFERENCE_PLANS[rnn]) == 1


def test_inference_mode_takes_the_plan_with_torchs_numbers(
    monkeypatch, no_kernels_for_gradients
):
    """Under ``torch.inference_mode`` too: inference tensors out, the second call by the
    first's plan, torch's numbers."""
    planned, infer = [], gtorch._Layers._infer
    monkeypatch.setattr(
        gtorch._Layers, "_infer", lambda *args: planned.append(1) or infer(*args)
    )
    torch.manual_seed(0)
    rnn = gtorch.GRU(4, 5, num_layers=2, bidirectional=True)
    reference = torch.nn.GRU(4, 5, num_layers=2, bidirectional=True)
    reference.load_state_dict(rnn.state_dict())
    x = torch.randn(3, 2, 4)
    with torch.inference_mode():
        first, again, want = rnn(x), rnn(x), reference(x)
    assert first[0].is_inference() and first[1].is_inference() and planned == [1]
    _assert_same(again, first)
    for got, wanted in zip(first, want, strict=True):
        torch.testing.assert_close(got, wanted, rtol=1e-5, atol=1e-6)


def test_parameters_made_under_inference_mode_are_not_packed_and_give_torchs_numbers():
    """Tensors made under ``torch.inference_mode`` have no version counter, by which a plan
    would see an in-place change of weights it packed: their plans pack none."""
    torch.manual_seed(0)
    x = torch.randn(1, 4, 6)
    with torch.inference_mode():
        rnn, reference = gtorch.LSTM(6, 5), torch.nn.LSTM(6, 5)
        reference.load_state_dict(rnn.state_dict())
        first, want = rnn(x), reference(x)
        rnn.weight_hh_l0.mul_(0.5)
        reference.weight_hh_l0.mul_(0.5)
        again, want_again = rnn(x), reference(x)
    assert rnn.weight_hh_l0.is_inference()
    assert all(plan.versions is None for plan in gtorch._INFERENCE_PLANS[rnn].values())
    usual = gtorch.LSTM(6, 5)  # parameters of its own: packed for a batch of four rows
    with torch.no_grad():
        usual(x)
    assert all(plan.versions for plan in gtorch._INFERENCE_PLANS[usual].values())
    _assert_close_to(first, want)
    _assert_close_to(again, want_again)


def _assert_close_to(got, want):
    for a, b in zip((got[0], *got[1]), (want[0], *want[1]), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_one_step_at_a_time_through_the_module_under_no_grad(no_kernels_for_gradients):
    torch.manual_seed(0)
    rnn = gtorch.Recurrent("lstm", 8, 16)
    x = torch.randn(6, 2, 8)
    with torch.no_grad():
        want, (h, c) = rnn(x)
        state = None
        outs = []
        for t in range(6):
            y, state = rnn(x[t : t + 1], state)
            outs.append(y)
    torch.testing.assert_close(torch.cat(outs), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state[0], h, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state[1], c, rtol=1e-5, atol=1e-6)


def test_a_step_through_the_module_holds_blas_to_one_thread_beside_torch(monkeypatch):
    """Under ``no_grad`` a small call of several rows runs with BLAS on one thread (two
    BLAS threads meet torch's spinning ones at every step); a call of one row keeps BLAS's
    threads; the count comes back after each."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    cell = load_generated("gru")
    kernel, seen = cell.infer_kernel, []

    def watched(*args):
        seen.append({i["num_threads"] for i in threadpoolctl.threadpool_info()
                     if i["user_api"] == "blas"})  # fmt: skip
        return kernel(*args)

    rnn = gtorch.GRU(8, 16)
    monkeypatch.setattr(cell, "infer_kernel", watched)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        with torch.no_grad():
            rnn(torch.randn(1, 4, 8))
            rnn(torch.randn(1, 1, 8))
        after = {i["num_threads"] for i in threadpoolctl.threadpool_info()
                 if i["user_api"] == "blas"}  # fmt: skip
    assert seen == [{1}, {2}] and after == {2}


def test_inputs_that_need_a_gradient_take_the_autograd_path():
    rnn = gtorch.Recurrent("gru", 3, 4).requires_grad_(False)
    x = torch.randn(2, 1, 3, requires_grad=True)
    out, _ = rnn(x)
    assert out.grad_fn is not None  # the input's gradient is wanted
    out.sum().backward()
    assert x.grad is not None
    with torch.no_grad():
        assert rnn(x)[0].grad_fn is None


def test_sharded_training_keeps_its_pieces_and_matches_one_piece(monkeypatch):
    """Through ``derive.torch`` a forward in shards keeps each shard's arrays as they are, and
    its backward runs in the same shards: the gradients of one piece."""
    monkeypatch.setattr(_interface, "SHARD_WORK", 0)
    torch.manual_seed(0)
    rnn = gtorch.Recurrent("lstm", 5, 6, dtype=torch.float64)
    x = torch.randn(4, 7, 5, dtype=torch.float64, requires_grad=True)
    results = []
    for threads in (3, 1):
        generated.set_threads(threads)
        try:
            rnn.zero_grad()
            x.grad = None
            out, (h, c) = rnn(x)
            (out.square().sum() + h.sum() + c.sum()).backward()
        finally:
            generated.set_threads(None)
        results.append([out.detach(), x.grad, *(p.grad for p in rnn.parameters())])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)
