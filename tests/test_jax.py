"""The JAX binding: ``derive.jax.recurrent`` under ``check_grads``, ``jit``, ``grad`` and ``vmap``,
against the generated modules it wraps, in float64 and float32, and its argument checks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import VARIANTS, load_generated, relative_error, sizes_for

jax = pytest.importorskip("jax")
jax.config.update(
    "jax_enable_x64", True
)  # float32 arrays stay float32; float64 is allowed
import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

from derive.jax import recurrent  # noqa: E402


@pytest.fixture(autouse=True)
def _forget_compiled_functions():
    """JAX keeps what it traced and compiled for the life of the process (over a gigabyte for
    every variant's check); each test's goes when the test ends."""
    yield
    jax.clear_caches()


def _problem(variant, dtype, seed=0, steps=4, batch=3):
    cell = load_generated(variant)
    kwargs = sizes_for(cell, input_size=3, hidden_size=4, extra=2)
    sizes = {name: kwargs[argument] for name, argument in cell.SIZES.items()}
    rng = np.random.default_rng(seed)
    params = {
        name: (rng.standard_normal(shape) * 0.5).astype(dtype)
        for name, shape in cell.param_shapes(**kwargs).items()
    }
    x = rng.standard_normal((steps, batch, sizes["I"])).astype(dtype)
    states = tuple(
        rng.standard_normal((batch, sizes[cell.STATE_SIZES[s]])).astype(dtype)
        for s in cell.STATES
    )
    lengths = np.array([steps, 1, steps - 1][:batch])
    return cell, params, x, states, lengths


@pytest.mark.parametrize("variant", VARIANTS)
def test_check_grads_every_variant(variant):
    """Reverse mode against finite differences in float64, with random non-zero initial
    states and padded rows."""
    cell, params, x, states, lengths = _problem(variant, np.float64)

    def run(params, x, states):
        return recurrent(variant, params, x, states, jnp.asarray(lengths))

    check_grads(run, (params, x, states), order=1, modes=("rev",))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("variant", ["lstm", "gru", "mgu", "lstm_proj"])
def test_jit_grad_equals_the_generated_module(variant, dtype):
    cell, params, x, states, lengths = _problem(variant, dtype, seed=1)
    rng = np.random.default_rng(2)
    ys_np, finals_np, tape = cell.forward(x, states, params, lengths)
    d_ys = rng.standard_normal(ys_np.shape).astype(dtype)
    d_finals = tuple(rng.standard_normal(f.shape).astype(dtype) for f in finals_np)
    dx_np, d_states_np, d_params_np = cell.backward(d_ys, d_finals, tape)
    cell.forward(x, states, params, lengths, tape=False)
    kernels = (cell.forward_kernel, cell.infer_kernel, cell.backward_kernel)
    compiled = [list(k.signatures) for k in kernels]

    def loss(params, x, states):
        ys, finals = recurrent(variant, params, x, states, lengths)
        total = (ys * d_ys).sum()
        return total + sum((f * d).sum() for f, d in zip(finals, d_finals, strict=True))

    ys, finals = jax.jit(lambda p, x, s: recurrent(variant, p, x, s, lengths))(
        params, x, states
    )
    assert ys.dtype == dtype and relative_error(np.asarray(ys), ys_np) == 0
    d_params, dx, d_states = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(
        params, x, states
    )
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    assert relative_error(np.asarray(dx), dx_np) <= tolerance
    for got, want in zip(d_states, d_states_np, strict=True):
        assert relative_error(np.asarray(got), want) <= tolerance
    for name in cell.PARAMS:
        err = relative_error(np.asarray(d_params[name]), d_params_np[name])
        assert err <= tolerance, name
    # JAX's read-only buffers reached the kernels as the writable arrays NumPy callers pass:
    # nothing was compiled again for them
    assert [list(k.signatures) for k in kernels] == compiled


def test_vmap_over_independent_batches_equals_a_loop():
    cell, params, x, states, _ = _problem("mgu", np.float64, seed=3)
    xs = np.random.default_rng(4).standard_normal((3, *x.shape))

    def loss(x):
        ys, (h,) = recurrent("mgu", params, x, states)
        return (ys**2).sum() + h.sum()

    values = jax.vmap(loss)(xs)
    grads = jax.jit(jax.vmap(jax.grad(loss)))(xs)
    for n in range(3):
        assert float(values[n]) == pytest.approx(float(loss(xs[n])), rel=1e-14)
        assert (
            relative_error(np.asarray(grads[n]), np.asarray(jax.grad(loss)(xs[n]))) == 0
        )


def test_zero_initial_states_by_default():
    cell, params, x, states, _ = _problem("lstm", np.float64, seed=5)
    ys, finals = recurrent("lstm", params, x)
    zeros = tuple(np.zeros_like(s) for s in states)
    want, want_finals, _ = cell.forward(x, zeros, params)
    assert relative_error(np.asarray(ys), want) == 0 and len(finals) == 2


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda p, x: recurrent("nope", p, x), ValueError, "unknown variant 'nope'"),
        (lambda p, x: recurrent("lstm", p, x[0]), ValueError, r"shape \(T, B, input_size\)"),
        (lambda p, x: recurrent("lstm", {}, x), ValueError, "exactly the keys"),
        (lambda p, x: recurrent("lstm", p, x.astype(np.int32)), TypeError, "float32 or float64"),
        (lambda p, x: recurrent("lstm", p, x.astype(np.float32)), TypeError, "dtype of x"),
        (lambda p, x: recurrent("lstm", p, x, (x[0],)), ValueError, "tuple of 2 arrays"),
        (lambda p, x: recurrent("lstm", p, x, lengths=[9, 1, 1]), ValueError, r"\[1, 4\]"),
        (lambda p, x: recurrent("lstm", p, x, lengths=[1.0, 1, 1]), ValueError, "integers"),
    ],
)  # fmt: skip
def test_bad_arguments_are_clear_errors(call, error, match):
    _, params, x, _, _ = _problem("lstm", np.float64)
    with pytest.raises(error, match=match):
        call(params, x)


def test_hyperparameters_reach_the_kernel_under_jit_and_grad():
    cell, params, x, states, lengths = _problem("lem", np.float64, seed=4)
    hypers = {"dt": 0.4}
    ys_np, finals_np, tape = cell.forward(x, states, params, lengths, **hypers)
    d_ys = np.ones_like(ys_np)
    _, _, d_params_np = cell.backward(d_ys, None, tape)

    def loss(params):
        ys, _ = recurrent("lem", params, x, states, lengths, hypers=hypers)
        return (ys * d_ys).sum()

    ys, _ = jax.jit(lambda p: recurrent("lem", p, x, states, lengths, hypers=hypers))(
        params
    )
    assert relative_error(np.asarray(ys), ys_np) == 0
    grads = jax.jit(jax.grad(loss))(params)
    for name in cell.PARAMS:
        assert relative_error(np.asarray(grads[name]), d_params_np[name]) <= 1e-12, name
    default, _ = recurrent("lem", params, x, states, lengths)
    assert np.abs(np.asarray(default) - ys_np).max() > 1e-3
    check_grads(
        lambda p: recurrent("lem", p, x, states, lengths, hypers=hypers)[0],
        (params,), order=1, modes=("rev",),
    )  # fmt: skip
    with pytest.raises(TypeError, match="has no hyperparameter 'gamma'"):
        recurrent("lem", params, x, hypers={"gamma": 1.0})


@pytest.mark.parametrize("variant", ["lstm", "gru", "rhn"])
def test_biases_left_out_are_zero_biases(variant):
    """``params`` without the cell's biases (bias=False): under jit and grad, the values and
    gradients of the same call with zero biases."""
    cell, params, x, states, lengths = _problem(variant, np.float64)
    biases = cell._interface.biases
    zeros = {**params, **{b: np.zeros_like(params[b]) for b in biases}}
    without = {k: v for k, v in params.items() if k not in biases}

    def loss(p):
        ys, finals = recurrent(variant, p, x, states, lengths)
        return (ys**2).sum() + sum((f**2).sum() for f in finals)

    got_value, got = jax.jit(jax.value_and_grad(loss))(without)
    want_value, want = jax.jit(jax.value_and_grad(loss))(zeros)
    assert set(got) == set(without)
    assert abs(float(got_value) - float(want_value)) <= 1e-12 * abs(float(want_value))
    for name in without:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("threads", [1, 2])
def test_the_tape_stays_on_the_host_for_its_backward(monkeypatch, threads):
    """The forward's tape waits on the host for the backward (a token passes through JAX):
    one forward per gradient under jit, in shards where the threads split the batch, and
    the gradients NumPy's. A second pullback of one forward, whose tape the first took, and
    the pullback of a forward forgotten among many run the forward again for a tape; at most
    ``_TAPES_KEPT`` tapes wait."""
    import generated
    from derive import jax as gjax
    from generated import _interface

    monkeypatch.setattr(_interface, "SHARD_WORK", 0)
    cell, params, x, states, lengths = _problem("gru", np.float64, seed=3)
    d_ys = np.random.default_rng(4).standard_normal((x.shape[0], x.shape[1], 4))
    generated.set_threads(threads)
    try:
        ys, _, tape = cell.forward(x, states, params, lengths)
        assert ("shards" in tape) == (threads > 1)
        want = cell.backward(d_ys, None, tape)
        taped, forward = [], cell._interface.forward
        monkeypatch.setattr(
            cell._interface, "forward",
            lambda *args: taped.append(args[-1]) or forward(*args),
        )  # fmt: skip

        def run(params, x, states):
            return recurrent("gru", params, x, states, lengths)[0]

        def loss(params, x, states):
            return (run(params, x, states) * d_ys).sum()

        grad = jax.jit(jax.grad(loss, argnums=(1, 2, 0)))
        for _ in range(2):
            got = grad(params, x, states)
        assert taped == [True, True]  # one forward, with a tape, per gradient
        _, pullback = jax.vjp(run, params, x, states)
        again = [pullback(jnp.asarray(d_ys)) for _ in range(2)]
        assert taped == [True] * 4
        _, first = jax.vjp(run, params, x, states)
        for _ in range(gjax._TAPES_KEPT + 2):
            jax.vjp(run, params, x, states)
        assert len(gjax._TAPES) <= gjax._TAPES_KEPT
        taped.clear()
        forgotten = first(jnp.asarray(d_ys))
        assert taped == [True]
    finally:
        generated.set_threads(None)
    for d_params, dx, d_states in [
        (got[2], got[0], got[1]), *again, forgotten,
    ]:  # fmt: skip
        assert relative_error(np.asarray(dx), want[0]) <= 1e-12
        assert relative_error(np.asarray(d_states[0]), want[1][0]) <= 1e-12
        for name in cell.PARAMS:
            assert relative_error(np.asarray(d_params[name]), want[2][name]) <= 1e-12


@pytest.mark.parametrize("reached", ["ys", "h", "c", "all"])
@pytest.mark.parametrize("argnums", [(0,), (0, 1)], ids=["params", "params and x"])
def test_only_what_is_differentiated_crosses_to_the_backward(monkeypatch, reached, argnums):
    """An input that is not differentiated gets no gradient computed (the backward kernel
    asked for none), and a cotangent JAX knows to be zero (an output the loss does not
    reach) is not made and passed but made on the host: the gradients are the generated
    module's with those zeros, to rounding."""
    cell, params, x, states, lengths = _problem("lstm", np.float64, seed=5)
    rng = np.random.default_rng(6)
    _, finals_np, tape = cell.forward(x, states, params, lengths)
    d_ys = rng.standard_normal((x.shape[0], x.shape[1], 4))
    d_finals = [rng.standard_normal(f.shape) for f in finals_np]
    uses = {"ys": (True, False, False), "h": (False, True, False),
            "c": (False, False, True), "all": (True, True, True)}[reached]  # fmt: skip
    want_finals = tuple(d if used else np.zeros_like(d)
                        for d, used in zip(d_finals, uses[1:], strict=True))  # fmt: skip
    want = cell.backward(d_ys if uses[0] else np.zeros_like(d_ys), want_finals, tape)
    calls, backward = [], cell.backward
    monkeypatch.setattr(
        cell, "backward",
        lambda dys, finals, tape, input_grad: calls.append(
            (dys is None, finals is None, input_grad)
        ) or backward(dys, finals, tape, input_grad),
    )  # fmt: skip

    def loss(params, x):
        ys, finals = recurrent("lstm", params, x, states, lengths)
        total = (ys * d_ys).sum() if uses[0] else 0.0
        for f, d, used in zip(finals, d_finals, uses[1:], strict=True):
            total = total + ((f * d).sum() if used else 0.0)
        return total

    got = jax.jit(jax.grad(loss, argnums=argnums))(params, x)
    assert calls == [(not uses[0], not any(uses[1:]), 1 in argnums)]
    for name in cell.PARAMS:
        assert relative_error(np.asarray(got[0][name]), want[2][name]) <= 1e-12, name
    if 1 in argnums:
        assert relative_error(np.asarray(got[1]), want[0]) <= 1e-12
