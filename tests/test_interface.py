"""The generated modules' interface: shapes, defaults, bad input, NaN and extreme values."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numba
import numpy as np
import pytest
from conftest import VARIANTS, Problem, load_generated, sizes_for

from derive import registry
from derive.symbolic.activations import relu


@pytest.fixture(params=VARIANTS)
def cell(request):
    return load_generated(request.param)


def test_interface_names(cell):
    if cell.OUTPUT in cell.STATES:  # the output state comes first
        assert cell.STATES[0] == cell.OUTPUT
        assert cell.OUTPUT_SIZE == cell.STATE_SIZES[cell.OUTPUT]
        assert cell._OUTPUT_ARRAY == (f"seq_{cell.OUTPUT}", 1)
    else:  # a value of the step that is not carried: read from the tape
        assert cell._OUTPUT_ARRAY == (f"save_{cell.OUTPUT}", 0)
    shapes = cell.param_shapes(**sizes_for(cell))
    assert tuple(shapes) == cell.PARAMS
    params = cell.init_params(**sizes_for(cell), dtype=np.float32, seed=0)
    assert {k: v.shape for k, v in params.items()} == shapes
    assert all(v.dtype == np.float32 for v in params.values())
    bound = 1 / np.sqrt(sizes_for(cell)["hidden_size"])  # PyTorch's, where none is declared
    assert all(
        np.abs(v).max() <= bound for k, v in params.items() if k not in cell.PARAM_INIT
    )


def test_lstm_interface_is_pytorchs():
    cell = load_generated("lstm")
    assert cell.STATES == ("h", "c")
    assert cell.PARAMS == ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    assert cell.param_shapes(10, 20) == {
        "weight_ih": (80, 10), "weight_hh": (80, 20), "bias_ih": (80,), "bias_hh": (80,),
    }  # fmt: skip


def test_none_means_zeros(cell):
    problem = Problem(cell, np.float64)
    zeros = tuple(np.zeros_like(s) for s in problem.states)
    ys1, finals1, tape1 = cell.forward(problem.x, None, problem.params)
    ys2, finals2, tape2 = cell.forward(problem.x, zeros, problem.params)
    np.testing.assert_array_equal(ys1, ys2)
    grads1 = cell.backward(problem.dys, None, tape1)
    grads2 = cell.backward(problem.dys, tuple(np.zeros_like(f) for f in finals2), tape2)
    np.testing.assert_array_equal(grads1[0], grads2[0])
    dx, dstates, dparams = cell.backward(None, None, tape1)
    assert not dx.any() and not any(d.any() for d in dstates)


def test_outputs_do_not_alias_the_tape(cell):
    problem = Problem(cell, np.float64)
    ys, finals, tape = cell.forward(problem.x, problem.states, problem.params)
    before = cell.backward(problem.dys, problem.dfinal, tape)
    with pytest.raises(ValueError, match="read-only"):
        ys[:] = 1e6  # a view of the tape: read-only
    ys = ys.copy()
    ys[:] = 1e6
    for f in finals:
        f[:] = 1e6
    after = cell.backward(problem.dys, problem.dfinal, tape)
    np.testing.assert_array_equal(before[0], after[0])


def _good(cell):
    problem = Problem(cell, np.float32)
    return problem.x, problem.states, dict(problem.params)


@pytest.mark.parametrize(
    "mutate, error, words",
    [
        (lambda x, s, p, k: (x[0], s, p), ValueError, "x must have 3 dimensions"),
        (lambda x, s, p, k: (x.astype(np.float64), s, p), TypeError, "must have dtype float64 like the other arrays; got float32"),
        (lambda x, s, p, k: (x.astype(np.int32), s, p), TypeError, "float32 or float64"),
        (lambda x, s, p, k: (x.tolist(), s, p), TypeError, "numpy.ndarray"),
        (lambda x, s, p, k: (np.asfortranarray(x), s, p), ValueError, "C-contiguous"),
        (lambda x, s, p, k: (x[:, :, :-1].copy(), s, p), ValueError, "params['{first}']"),
        (lambda x, s, p, k: (x, s[:-1] or None, p) if len(s) > 1 else (x, (s[0], s[0]), p), ValueError, "initial_states"),
        (lambda x, s, p, k: (x, tuple(a[:-1] for a in s), p), ValueError, "initial_states[0] ({state})"),
        (lambda x, s, p, k: (x, s, {key: v for key, v in p.items() if key != k}), ValueError, "missing ['{last}']"),
        (lambda x, s, p, k: (x, s, {**p, "bias_xx": p[k]}), ValueError, "unexpected ['bias_xx']"),
        (lambda x, s, p, k: (x, s, {**p, k: p[k][..., :-1].copy()}), ValueError, "params['{last}'] must have shape"),
        (lambda x, s, p, k: (x, s, {**p, k: p[k].astype(np.float64)}), TypeError, "params['{last}']"),
        (lambda x, s, p, k: (x, s, [p]), TypeError, "params must be a dict"),
    ],
)  # fmt: skip
def test_bad_input_is_named_before_numba_sees_it(cell, mutate, error, words):
    # k: the cell's last parameter with an axis, which some mutations remove, narrow or retype
    # (not a cell's only bias: leaving out all of a cell's biases is bias=False)
    last = next(
        n
        for n in reversed(cell.PARAMS)
        if cell.PARAM_SHAPES[n] and cell._interface.biases != (n,)
    )
    x, states, params = mutate(*_good(cell), last)
    with pytest.raises(error) as info:
        cell.forward(x, states, params)
    # {first}: the first parameter that reads the input; {state}: the first state
    first = next(
        n for n in cell.PARAMS if "I" in dict(map(reversed, cell.PARAM_SHAPES[n]))
    )
    words = words.replace("{first}", first).replace("{state}", cell.STATES[0])
    assert words.replace("{last}", last) in str(info.value)
    assert str(info.value).startswith("forward: ")


def test_bad_backward_input(cell):
    x, states, params = _good(cell)
    ys, finals, tape = cell.forward(x, states, params)
    with pytest.raises(ValueError, match=r"backward: dys must have shape"):
        cell.backward(ys[:-1], None, tape)
    with pytest.raises(TypeError, match="dys must have dtype float32"):
        cell.backward(ys.astype(np.float64), None, tape)
    with pytest.raises(ValueError, match="d_final_states"):
        cell.backward(ys, (finals[0][:1],) * len(finals), tape)
    with pytest.raises(ValueError, match="tape must be the tape"):
        cell.backward(ys, None, {"variant": "other"})


def test_bad_sizes(cell):
    with pytest.raises(
        ValueError, match="hidden_size must be a positive integer; got 0"
    ):
        cell.param_shapes(**{**sizes_for(cell), "hidden_size": 0})
    with pytest.raises(
        ValueError, match="input_size must be a positive integer; got 2.5"
    ):
        cell.init_params(**{**sizes_for(cell), "input_size": 2.5})
    with pytest.raises(TypeError, match="float32 or float64"):
        cell.init_params(**sizes_for(cell), dtype=np.int64)


def test_unknown_generated_variant():
    import generated

    with pytest.raises(
        ValueError, match="unknown variant 'lstmx'; generated variants: rnn_tanh"
    ):
        generated.load("lstmx")
    assert generated.load("lstm") is load_generated("lstm")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_nan_propagates(cell, dtype):
    problem = Problem(cell, dtype)
    x = problem.x.copy()
    x[1, 0, 0] = np.nan
    ys, finals, tape = cell.forward(x, problem.states, problem.params)
    assert (
        np.isnan(ys[1:, 0]).any()
        and np.isfinite(ys[0]).all()
        and np.isfinite(ys[:, 1:]).all()
    )
    dx, _, _ = cell.backward(problem.dys, problem.dfinal, tape)
    # ReLU's derivative is 0 where its output is NaN (NaN > 0 is false), as in torch, so a
    # cell whose state passes through ReLU alone may cut the NaN from the gradient
    spec = registry.get(cell.VARIANT)
    uses_relu = any(eq.expr.has(relu) for eq in spec.equations)
    assert np.isnan(dx).any() or uses_relu


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_extreme_pre_activations_do_not_overflow(cell, dtype):
    problem = Problem(cell, dtype)
    params = {k: np.zeros_like(v) for k, v in problem.params.items()}
    for name in params:
        if params[name].ndim == 1:  # biases and per-unit vectors
            params[name][::2] = 1000
            params[name][1::2] = -1000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            ys, finals, tape = cell.forward(problem.x, problem.states, params)
            grads = cell.backward(problem.dys, problem.dfinal, tape)
    assert np.isfinite(ys).all() and all(
        np.isfinite(g).all() for g in grads[2].values()
    )


def _float32_ir(cell, kernel, args) -> str:
    """The LLVM IR of ``kernel`` for float32: as the suite's warm-up compiled it
    (``warm_kernels.py``, into ``GATESMITH_TEST_IR``), else compiled here by a fresh dispatcher
    (code loaded from Numba's cache cannot be inspected)."""
    folder = os.environ.get("GATESMITH_TEST_IR")
    path = Path(folder or ".") / f"{cell.VARIANT}.{kernel.__name__}.ll"
    if folder and path.is_file():
        return path.read_text()
    fresh = numba.njit(error_model="numpy")(kernel.py_func)
    fresh(*args)
    return fresh.inspect_llvm(fresh.signatures[0])


def test_float32_kernels_stay_float32(cell):
    problem = Problem(cell, np.float32)
    ys, finals, tape = cell.forward(problem.x, problem.states, problem.params)
    arrays = tape["arrays"]
    forward_args = [
        arrays["seq_x"], arrays["lengths"], *problem.states, *(arrays[p] for p in cell.PARAMS),
        *tape["hypers"],  # float32 scalars: a hyperparameter must not widen the kernel either
    ]  # fmt: skip
    flat_dys = problem.dys.reshape(-1, problem.dys.shape[2])
    backward_args = [
        flat_dys,
        *problem.dfinal,
        *(arrays[n] for n in cell._BACKWARD_TAPE),
        *tape["hypers"],
        True,  # input_grad
    ]
    for kernel, args in (
        (cell.forward_kernel, forward_args),
        (cell.infer_kernel, forward_args),
        (cell.backward_kernel, backward_args),
    ):
        ir = _float32_ir(cell, kernel, args)
        # the kernel's own functions: the CPython wrapper reads any scalar argument as a
        # double (PyFloat_AsDouble) and truncates it to the argument's type
        ir = "\n".join(
            line
            for f in ir.split("\ndefine ")
            if "cpython" not in f.split("(")[0]
            for line in f.splitlines()
            if "@PyFloat_AsDouble" not in line
        )
        assert "float" in ir
        assert "double" not in ir, (
            f"{kernel.__name__} of {cell.VARIANT} widens to double"
        )


def test_lengths_stop_each_row_and_padding_never_matters(cell):
    problem = Problem(cell, np.float64, steps=5, batch=3)
    lengths = np.array([5, 2, 3])
    x = problem.x.copy()
    x[2:, 1] = np.nan  # padding may hold anything
    x[3:, 2] = np.inf
    ys, finals, tape = cell.forward(x, problem.states, problem.params, lengths)
    dys = problem.dys.copy()
    dys[2:, 1] = np.nan  # a padded output is a constant zero: its gradient goes nowhere
    dx, d_states, grads = cell.backward(dys, problem.dfinal, tape)
    assert not ys[2:, 1].any() and not ys[3:, 2].any()
    assert not dx[2:, 1].any() and not dx[3:, 2].any()
    assert all(np.isfinite(g).all() for g in grads.values())
    for b, n in enumerate(lengths):  # each row equals its sequence run alone
        rows = (slice(0, n), slice(b, b + 1))
        alone = cell.forward(
            problem.x[rows].copy(),
            tuple(s[b : b + 1] for s in problem.states),
            problem.params,
        )
        np.testing.assert_allclose(ys[:n, b], alone[0][:, 0], rtol=1e-12)
        back = cell.backward(
            problem.dys[rows].copy(),
            tuple(d[b : b + 1] for d in problem.dfinal),
            alone[2],
        )
        np.testing.assert_allclose(dx[:n, b], back[0][:, 0], rtol=1e-12, atol=1e-14)
        for got, want in zip(d_states, back[1], strict=True):
            np.testing.assert_allclose(got[b], want[0], rtol=1e-12, atol=1e-14)
        for final, want in zip(finals, alone[1], strict=True):
            np.testing.assert_allclose(final[b], want[0], rtol=1e-12)


@pytest.mark.parametrize(
    "lengths, words",
    [
        (
            [3, 5, 1],
            "lengths must lie in [1, 4] (the number of steps); got lengths[1] = 5",
        ),
        ([3, 0, 1], "got lengths[1] = 0"),
        ([3, 1], "lengths must be 3 integers, one per batch row; got [3, 1]"),
        (np.array([1.0, 2.0, 3.0]), "lengths must be 3 integers"),
    ],
    ids=["over_T", "zero", "count", "float"],
)
def test_bad_lengths(lengths, words):
    cell = load_generated("gru")
    x, states, params = _good(cell)
    with pytest.raises(ValueError) as info:
        cell.forward(x, states, params, lengths)
    assert str(info.value).startswith("forward: ") and words in str(info.value)


def test_batch_rows_are_independent(cell):
    problem = Problem(cell, np.float64, batch=3)
    ys, finals, _ = cell.forward(problem.x, problem.states, problem.params)
    one = cell.forward(
        problem.x[:, 1:2].copy(),
        tuple(s[1:2].copy() for s in problem.states),
        problem.params,
    )
    np.testing.assert_allclose(one[0][:, 0], ys[:, 1], rtol=1e-12)


@pytest.mark.parametrize(
    "variant", [v for v in VARIANTS if load_generated(v).SIZE_CONSTRAINTS]
)
def test_cells_that_add_the_input_to_a_state_need_equal_sizes(variant):
    cell = load_generated(variant)
    words = "must be equal; got input_size=4, hidden_size=5"
    with pytest.raises(ValueError, match=f"param_shapes: {variant} adds .* {words}"):
        cell.param_shapes(input_size=4, hidden_size=5)
    with pytest.raises(ValueError, match=f"init_params: .*{words}"):
        cell.init_params(input_size=4, hidden_size=5)
    sizes = {"I": 4, "H": 5}
    params = {
        name: np.zeros(tuple(m * sizes[size] for m, size in formula))
        for name, formula in cell.PARAM_SHAPES.items()
    }
    with pytest.raises(ValueError, match=f"forward: .*{words}"):
        cell.forward(np.zeros((3, 2, 4)), None, params)


def test_tape_holds_what_saved_bytes_per_step_states_for_a_long_sequence(cell):
    """T = 100,000 steps: the arrays kept for the backward pass are the stated bytes per step
    (times T + 1: the state sequences also hold the initial states), no more."""
    sizes = sizes_for(cell, input_size=4, hidden_size=4, extra=2)
    params = cell.init_params(**sizes, dtype=np.float32)
    steps = 100_000
    x = np.zeros((steps, 1, sizes["input_size"]), np.float32)
    _, _, tape = cell.forward(x, None, params)
    kept = sum(tape["arrays"][name].nbytes for name in cell._FORWARD_RETURNS)
    per_step = cell.saved_bytes_per_step(1, **sizes, dtype=np.float32)
    assert per_step * steps <= kept <= per_step * (steps + 1)


def test_a_tape_rebuilt_from_its_arrays_gives_the_same_backward(cell):
    """What the framework bindings keep between the passes: ``saved_arrays`` have the shapes
    ``saved_shapes`` predicts, and ``restore_tape`` rebuilds a tape whose backward is the
    original's, padding included."""
    interface = cell._interface
    problem = Problem(cell, np.float64, steps=4, batch=3)
    lengths = np.array([4, 1, 3])
    x = problem.x.copy()
    x[1:, 1] = np.nan  # padding, which the rebuilt tape must mask again
    ys, finals, tape = cell.forward(x, problem.states, problem.params, lengths)
    saved = interface.saved_arrays(tape)
    sizes, _ = interface.check_params("test", problem.params, x.shape[2], x.dtype)
    assert [a.shape for a in saved] == list(interface.saved_shapes(4, 3, sizes))
    rebuilt = interface.restore_tape(
        x, problem.params, lengths, [a.copy() for a in saved]
    )
    want = cell.backward(problem.dys, problem.dfinal, tape)
    got = cell.backward(problem.dys, problem.dfinal, rebuilt)
    np.testing.assert_array_equal(got[0], want[0])
    for a, b in zip(got[1], want[1], strict=True):
        np.testing.assert_array_equal(a, b)
    for name in cell.PARAMS:
        np.testing.assert_array_equal(got[2][name], want[2][name])
    with pytest.raises(ValueError, match=f"must be the {len(saved)} arrays"):
        interface.restore_tape(x, problem.params, lengths, saved[:-1])
    with pytest.raises(
        ValueError, match=f"saved {cell._FORWARD_RETURNS[0]} must have shape"
    ):
        interface.restore_tape(x, problem.params, lengths, [saved[0][1:], *saved[1:]])


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_the_kernels_never_write_their_inputs(cell, dtype):
    """What lets ``derive.jax`` hand the kernels JAX's read-only buffers as writable arrays,
    without a copy and without a read-only signature compiled beside each one: every input of
    the forward (with a tape and without), of a tape rebuilt from its arrays and of the
    backward is, byte for byte, as it was."""
    interface = cell._interface
    problem = Problem(cell, dtype)
    lengths = np.array([4, 1, 3])
    inputs = [problem.x, *problem.states, *problem.params.values(), lengths]
    before = [a.copy() for a in inputs]
    ys, finals, tape = cell.forward(problem.x, problem.states, problem.params, lengths)
    cell.forward(problem.x, problem.states, problem.params, lengths, tape=False)
    saved = interface.saved_arrays(tape)
    rebuilt = interface.restore_tape(problem.x, problem.params, lengths, saved)
    kept = [a.copy() for a in saved]
    given = [problem.dys, *problem.dfinal]
    given_before = [a.copy() for a in given]
    cell.backward(problem.dys, problem.dfinal, rebuilt)
    for got, want in zip(
        [*inputs, *saved, *given], [*before, *kept, *given_before], strict=True
    ):
        np.testing.assert_array_equal(got, want)


def _read_only(value):
    if isinstance(value, dict):
        return {k: _read_only(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_read_only(v) for v in value)
    view = value.view()
    view.flags.writeable = False
    return view


@pytest.mark.parametrize("variant", ["lstm", "gru", "fastgrnn", "lstm_layernorm"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_read_only_arrays_run_the_kernels_compiled_for_writable_ones(variant, dtype):
    """A read-only input (a memory map, a forward's ``ys``, JAX's buffers) reaches the
    kernels as a writable view of its memory: the same results, and no kernel compiled again
    for it."""
    cell = load_generated(variant)
    interface = cell._interface
    problem = Problem(cell, dtype)
    lengths = np.array([4, 1, 3])
    args = (problem.x, problem.states, problem.params, lengths)
    want = cell.forward(*args)
    want_infer = cell.forward(*args, tape=False)
    want_step = cell.step(problem.x[0], problem.states, problem.params)
    saved = interface.saved_arrays(want[2])
    want_grads = cell.backward(problem.dys, problem.dfinal, want[2])
    kernels = (cell.forward_kernel, cell.infer_kernel, cell.backward_kernel)
    compiled = [list(k.signatures) for k in kernels]
    frozen = _read_only(args)
    got = cell.forward(*frozen)
    got_infer = cell.forward(*frozen, tape=False)
    got_step = cell.step(*_read_only((problem.x[0], problem.states, problem.params)))
    rebuilt = interface.restore_tape(*_read_only((args[0], args[2], lengths, saved)))
    got_grads = cell.backward(*_read_only((problem.dys, problem.dfinal)), rebuilt)
    pairs = [(got[0], want[0]), (got_infer[0], want_infer[0]), (got_step[0], want_step[0])]
    pairs += list(zip(got[1] + got_infer[1] + got_step[1],
                      want[1] + want_infer[1] + want_step[1], strict=True))  # fmt: skip
    pairs += list(zip(got_grads[0:1] + got_grads[1], want_grads[0:1] + want_grads[1],
                      strict=True))  # fmt: skip
    pairs += [(got_grads[2][n], want_grads[2][n]) for n in cell.PARAMS]
    for a, b in pairs:
        np.testing.assert_array_equal(a, b)
    assert [list(k.signatures) for k in kernels] == compiled


def test_hyperparameters_are_checked_and_kept_on_the_tape():
    """A hyperparameter is a keyword of ``forward``; a bad one is refused naming it; the
    backward differentiates the step the forward ran (the tape keeps the values)."""
    cell = load_generated("cornn")
    assert cell.HYPERS == {"dt": 0.042, "gamma": 2.7, "epsilon": 4.7}
    params = cell.init_params(input_size=3, hidden_size=4, dtype=np.float64, seed=1)
    x = np.random.default_rng(0).standard_normal((6, 2, 3))
    for bad, error, match in [
        (
            {"dt": float("inf")},
            ValueError,
            "hyperparameter dt must be a finite real number",
        ),
        (
            {"gamma": "2"},
            ValueError,
            "hyperparameter gamma must be a finite real number",
        ),
        ({"epsilon": np.bool_(True)}, ValueError, "hyperparameter epsilon"),
        ({"beta": 1.0}, TypeError, "unexpected keyword argument 'beta'"),
    ]:
        with pytest.raises(error, match=match):
            cell.forward(x, None, params, **bad)
    with pytest.raises(TypeError, match="cornn has no hyperparameter 'beta'"):
        cell._interface.forward(x, None, params, None, {"beta": 1.0})
    ys, _, tape = cell.forward(x, None, params, dt=0.5)
    assert tape["hypers"] == (0.5, 2.7, 4.7)
    # directional derivative of sum(ys) along a random dx: the backward of dt=0.5's step
    dx, _, _ = cell.backward(np.ones_like(ys), None, tape)
    v = np.random.default_rng(1).standard_normal(x.shape)
    eps = 1e-6
    up = cell.forward(x + eps * v, None, params, dt=0.5)[0].sum()
    down = cell.forward(x - eps * v, None, params, dt=0.5)[0].sum()
    assert abs((up - down) / (2 * eps) - (dx * v).sum()) < 1e-7
    default = cell.forward(x + eps * v, None, params)[0].sum()
    assert abs(default - up) > 1e-3


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "variant", [v for v in VARIANTS if load_generated(v)._interface.biases]
)
def test_biases_left_out_are_zero_biases_and_cost_no_gradient(variant, dtype):
    """``params`` without the cell's biases (all of them, or all of length 0): the outputs and
    gradients of the same kernels given zero biases, the biases' gradients of length 0, and
    a half-given set refused naming the biases. The zero-bias run is the one verified against
    autograd, so this holds the bias-free path to it (a padded row included)."""
    cell = load_generated(variant)
    biases = cell._interface.biases
    problem = Problem(cell, dtype, steps=4, batch=3)
    lengths = np.array([4, 2, 3])
    zeros = {**problem.params, **{b: np.zeros_like(problem.params[b]) for b in biases}}
    want = _run_both(cell, problem, zeros, lengths)
    without = {k: v for k, v in problem.params.items() if k not in biases}
    empty = {**problem.params, **{b: np.empty(0, dtype) for b in biases}}
    for params in (without, empty):
        got = _run_both(cell, problem, params, lengths)
        for name, a, b in zip(("ys", "finals", "dx", "d_initial"), got[:4], want[:4],
                              strict=True):  # fmt: skip
            for x, y in zip(_arrays(a), _arrays(b), strict=True):
                np.testing.assert_array_equal(x, y, err_msg=name)
        for name in cell.PARAMS:
            expect = (0,) if name in biases else want[4][name].shape
            assert got[4][name].shape == expect
            if name not in biases:
                np.testing.assert_array_equal(got[4][name], want[4][name], err_msg=name)
    if len(biases) > 1:
        half = {**problem.params, biases[0]: np.empty(0, dtype)}
        with pytest.raises(ValueError, match="must all be given or all be absent"):
            cell.forward(problem.x, problem.states, half)


def _run_both(cell, problem, params, lengths):
    ys, finals, tape = cell.forward(problem.x, problem.states, params, lengths)
    dx, d_initial, d_params = cell.backward(problem.dys, problem.dfinal, tape)
    return ys, finals, dx, d_initial, d_params


def _arrays(value):
    return [value] if isinstance(value, np.ndarray) else list(value)
