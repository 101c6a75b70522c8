"""Shards of the batch on threads: the numbers of one piece for every variant, autograd's
gradients, the standard tape layout for the framework bindings, the policy, BLAS held to one
thread while shards run, and errors raised only once every shard has finished; shards on
the team of the OpenMP runtime PyTorch loads, or on a pool of the interface's own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import (
    VARIANTS,
    Problem,
    compare_with_torch,
    load_generated,
    relative_error,
)

import generated
from derive import registry
from generated import _interface


@pytest.fixture(params=["team", "pool"])
def sharded(request, monkeypatch):
    """Every call split over three threads, however small: on the team of the OpenMP runtime
    PyTorch loads, or on the interface's own pool where no such runtime is loaded."""
    if request.param == "team":
        pytest.importorskip("torch")
        assert _interface._TEAM.region() is not None
    else:
        monkeypatch.setattr(_interface._TEAM, "region", lambda: None)
    monkeypatch.setattr(_interface, "SHARD_WORK", 0)
    generated.set_threads(3)
    yield 3
    generated.set_threads(None)


def _run(cell, problem, lengths):
    ys, finals, tape = cell.forward(problem.x, problem.states, problem.params, lengths)
    dx, dstates, dparams = cell.backward(problem.dys, problem.dfinal, tape)
    return tape, [ys, *finals, dx, *dstates, *(dparams[k] for k in cell.PARAMS)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_backward_that_wants_no_input_gradient_gives_the_others_unchanged(
    variant, monkeypatch
):
    """``backward(..., input_grad=False)``: ``dx`` None (its products skipped), every other
    gradient the same to the bit, in one piece and in shards; anything but a bool is
    refused, naming the argument."""
    cell = load_generated(variant)
    problem = Problem(cell, np.float64, steps=4, batch=5)
    monkeypatch.setattr(_interface, "SHARD_WORK", 0)
    for threads in (1, 2):
        generated.set_threads(threads)
        try:
            tape, want = _run(cell, problem, None)
            dx, dstates, dparams = cell.backward(problem.dys, problem.dfinal, tape,
                                                 input_grad=False)  # fmt: skip
        finally:
            generated.set_threads(None)
        assert ("shards" in tape) == (threads == 2)
        assert dx is None
        got = [*dstates, *(dparams[k] for k in cell.PARAMS)]
        for g, w in zip(got, want[-len(got) :], strict=True):
            np.testing.assert_array_equal(g, w)
    with pytest.raises(TypeError, match="backward: input_grad must be True or False; got 0"):
        cell.backward(problem.dys, problem.dfinal, tape, input_grad=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_shards_give_the_numbers_of_one_piece(variant, sharded):
    """Seven rows in shards of 2, 2 and 3, some rows shorter than the sequence."""
    cell = load_generated(variant)
    problem = Problem(cell, np.float64, steps=5, batch=7)
    lengths = np.array([5, 3, 5, 1, 4, 5, 2])
    tape, got = _run(cell, problem, lengths)
    assert [(first, last) for first, last, _ in tape["shards"]] == [
        (0, 2),
        (2, 4),
        (4, 7),
    ]
    generated.set_threads(1)
    one_tape, want = _run(cell, problem, lengths)
    assert "shards" not in one_tape
    for n, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert relative_error(g, w) < 1e-13, f"{variant}: output {n} differs"


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: d.__name__)
@pytest.mark.parametrize(
    "variant", ["lstm", "gru", "lstm_peephole", "lstm_layernorm", "fastgrnn", "cornn"]
)
def test_sharded_kernels_match_autograd(variant, dtype, sharded):
    """Weights, vectors, means, scalar parameters and hyperparameters, each row a shard."""
    pytest.importorskip("torch")
    from derive.verify.twin import twin_forward

    problem = Problem(load_generated(variant), dtype, batch=sharded)
    leaves = problem.torch_leaves()
    ys_t, finals_t = twin_forward(registry.get(variant), *leaves)
    compare_with_torch(problem, ys_t, finals_t, leaves)  # asserts every error


def test_bindings_read_a_sharded_tape_in_the_layout_of_one_piece(sharded):
    cell = load_generated("lstm_layernorm")
    problem = Problem(cell, np.float64, steps=4, batch=5)
    lengths = np.array([4, 2, 4, 3, 1])
    _, _, tape = cell.forward(problem.x, problem.states, problem.params, lengths)
    saved = cell._interface.saved_arrays(tape)
    assert [a.shape for a in saved] == list(
        cell._interface.saved_shapes(4, 5, tape["sizes"])
    )
    generated.set_threads(1)
    _, _, whole = cell.forward(problem.x, problem.states, problem.params, lengths)
    for got, want in zip(saved, cell._interface.saved_arrays(whole), strict=True):
        assert relative_error(got, want) < 1e-13
    rebuilt = cell._interface.restore_tape(problem.x, problem.params, lengths, saved)
    got = cell.backward(problem.dys, problem.dfinal, rebuilt)
    want = cell.backward(problem.dys, problem.dfinal, whole)
    assert relative_error(got[0], want[0]) < 1e-13
    for name in cell.PARAMS:
        assert relative_error(got[2][name], want[2][name]) < 1e-13


def test_the_policy_shards_large_calls_over_the_threads_set(monkeypatch):
    interface = load_generated("lstm")._interface
    sizes = {"I": 64, "H": 64}  # 8 H (I + H) = 65,536 multiply-adds per row and step
    generated.set_threads(4)
    try:
        assert interface.shard_count(1000, 8, sizes) == 4
        assert interface.shard_count(1000, 3, sizes) == 3  # no more shards than rows
        assert interface.shard_count(1000, 1, sizes) == 1
        assert interface.shard_count(10, 8, sizes) == 1  # below SHARD_WORK
        generated.set_threads(1)
        assert interface.shard_count(1000, 8, sizes) == 1
        generated.set_threads(None)
        import numba

        assert generated.get_threads() == numba.config.NUMBA_NUM_THREADS
        generated.set_threads(2)
        monkeypatch.setattr(_interface._ONE_BLAS_THREAD, "_libraries", False)
        assert interface.shard_count(1000, 8, sizes) == 1  # no threadpoolctl: one piece
    finally:
        generated.set_threads(None)
    for bad in (0, -1, 2.0, True, "2"):
        with pytest.raises(
            ValueError, match="set_threads: count must be a positive integer"
        ):
            generated.set_threads(bad)
    generated.set_threads(np.int64(3))
    assert generated.get_threads() == 3 and type(generated.get_threads()) is int
    generated.set_threads(None)


def _blas_threads(threadpoolctl):
    return [i["num_threads"] for i in threadpoolctl.threadpool_info()
            if i["user_api"] == "blas"]  # fmt: skip


def test_shards_run_on_three_threads_at_once_with_blas_on_one(sharded, monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    cell = load_generated("gru")
    kernel, seen = cell.forward_kernel, []
    # every shard waits for the two others: they run at once, or the barrier breaks (a warm
    # pool's thread that finished a short shard could otherwise take the next one as well)
    together = threading.Barrier(3, timeout=60)

    def watched(*args):
        name = threading.current_thread().name
        seen.append((threading.get_ident(), _blas_threads(threadpoolctl), name))
        together.wait()
        return kernel(*args)

    assert _interface._ONE_BLAS_THREAD.available()  # loads the BLAS the kernels call
    before = _blas_threads(threadpoolctl)
    monkeypatch.setattr(cell, "forward_kernel", watched)
    problem = Problem(cell, np.float32, batch=6)
    cell.forward(problem.x, problem.states, problem.params)
    assert len(seen) == 3 and len({ident for ident, _, _ in seen}) == 3
    assert all(blas and set(blas) == {1} for _, blas, _ in seen)
    assert _blas_threads(threadpoolctl) == before
    # the team's threads are the runtime's, which Python meets as foreign threads
    pool = [name.startswith("gatesmith-shard") for _, _, name in seen]
    assert sum(pool) == (2 if _interface._TEAM.region() is None else 0)


def test_blas_is_held_to_one_thread_for_a_call_on_another_thread(monkeypatch):
    """threadpoolctl lets only the thread that last set OpenBLAS's limit set it again: the
    main thread, here, as after any limit set there. A call on another thread still holds
    BLAS to one thread while its shards run, and gives the limit back after."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    assert _interface._ONE_BLAS_THREAD.available()
    controller = threadpoolctl.ThreadpoolController().select(user_api="blas")
    controller.limit(limits=1).restore_original_limits()  # the main thread in control
    cell = load_generated("lstm")
    kernel, seen = cell.forward_kernel, []

    def watched(*args):
        seen.append(_blas_threads(threadpoolctl))
        return kernel(*args)

    monkeypatch.setattr(_interface, "SHARD_WORK", 0)
    monkeypatch.setattr(cell, "forward_kernel", watched)
    before = _blas_threads(threadpoolctl)
    problem = Problem(cell, np.float32, batch=4)
    generated.set_threads(2)
    try:
        thread = threading.Thread(
            target=cell.forward, args=(problem.x, problem.states, problem.params)
        )
        thread.start()
        thread.join()
    finally:
        generated.set_threads(None)
    assert len(seen) == 2 and all(blas and set(blas) == {1} for blas in seen)
    assert _blas_threads(threadpoolctl) == before


def test_openblas_is_held_by_its_own_functions_which_threadpoolctl_sees():
    """An OpenBLAS with its own threads is held through its own ``openblas_set_num_threads``
    (a ctypes call, where threadpoolctl's limit costs tens of microseconds): what
    threadpoolctl reads is what was set, and the first count comes back after."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    assert _interface._ONE_BLAS_THREAD.available()
    libraries = _interface._blas_libraries()
    info = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert len(libraries) == len(info)
    for (get, _), lib in zip(libraries, info, strict=True):
        if lib["internal_api"] == "openblas" and lib["threading_layer"] == "pthreads":
            assert type(get).__name__ == "_FuncPtr"  # the library's own function
    before = _blas_threads(threadpoolctl)
    hold = _interface._OneBlasThread()  # entered before anything asked for its libraries
    with hold:
        assert set(_blas_threads(threadpoolctl)) == {1}
        assert [get() for get, _ in libraries] == [1] * len(libraries)
    assert _blas_threads(threadpoolctl) == before


def test_beside_a_framework_blas_is_held_for_small_products_of_several_rows():
    """``beside_framework``: BLAS on one thread for a product of several rows below
    ``SHARD_WORK``; a product of one row, or a large one, keeps BLAS's threads."""
    pytest.importorskip("threadpoolctl")
    interface = load_generated("lstm")._interface
    small, large = {"I": 256, "H": 256}, {"I": 1024, "H": 1024}
    assert interface.beside_framework(1, 16, small) is interface.one_blas_thread()
    assert interface.beside_framework(2, 8, small) is interface.one_blas_thread()
    for steps, batch, sizes in [(1, 1, small), (1, 16, large), (4, 16, small)]:
        context = interface.beside_framework(steps, batch, sizes)
        assert context is not interface.one_blas_thread(), (steps, batch, sizes)
        with context:  # nothing
            assert _interface._ONE_BLAS_THREAD._entered == 0


def test_calls_on_other_threads_run_their_shards_on_the_pool():
    """The team is the main thread's: another thread would start a team of its own."""
    pytest.importorskip("torch")
    assert _interface._TEAM.region() is not None
    seen = []
    thread = threading.Thread(target=lambda: seen.append(_interface._TEAM.region()))
    thread.start()
    thread.join()
    assert seen == [None]


def test_jobs_a_smaller_team_left_run_on_the_calling_thread(monkeypatch):
    """A team of one thread (nested regions, a thread limit): every job still runs, once."""
    cell = load_generated("lstm")
    kernel, seen = cell.forward_kernel, []

    def watched(*args):
        seen.append(threading.get_ident())
        return kernel(*args)

    def region_of_one(key, threads):
        _interface._TEAM._enter(key)  # the calling thread alone, as thread 0

    monkeypatch.setattr(_interface._TEAM, "region", lambda: region_of_one)
    monkeypatch.setattr(_interface, "SHARD_WORK", 0)
    monkeypatch.setattr(cell, "forward_kernel", watched)
    generated.set_threads(3)
    try:
        problem = Problem(cell, np.float64, batch=6)
        ys, _, _ = cell.forward(problem.x, problem.states, problem.params)
        generated.set_threads(1)
        want, _, _ = cell.forward(problem.x, problem.states, problem.params)
    finally:
        generated.set_threads(None)
    assert seen[:3] == [threading.get_ident()] * 3 and len(seen) == 4
    assert relative_error(ys, want) < 1e-13
    assert not _interface._TEAM._calls  # nothing of the call is kept


def test_an_error_in_one_shard_is_raised_once_every_shard_has_finished(
    sharded, monkeypatch
):
    cell = load_generated("rnn_tanh")
    kernel, finished = cell.forward_kernel, []

    def failing(*args):
        if args[0].shape[0] == 4 * 3:  # the last shard: rows 4 to 6, four steps
            raise MemoryError("no room for this shard's tape")
        out = kernel(*args)
        finished.append(args[0].shape[0])
        return out

    monkeypatch.setattr(cell, "forward_kernel", failing)
    problem = Problem(cell, np.float64, batch=7)
    with pytest.raises(MemoryError, match="no room"):
        cell.forward(problem.x, problem.states, problem.params)
    assert finished == [4 * 2, 4 * 2]  # the two other shards ran to their end first
    assert _interface._ONE_BLAS_THREAD._entered == 0  # the BLAS limit is given back


_FORKED = """
import os, sys
import numpy as np
import torch
import generated
import generated.lstm as cell
from generated import _interface

_interface.SHARD_WORK = 0
generated.set_threads(2)
torch.tanh(torch.ones(1 << 20)).sum()  # torch's team exists, and spins
params = cell.init_params(8, 8)
x = np.ones((5, 4, 8), np.float32)
states = [np.zeros((4, 8), np.float32)] * 2
want, _, tape = cell.forward(x, states, params)
assert _interface._TEAM.region() is not None and len(tape["shards"]) == 2
child = os.fork()
if child == 0:
    ys, _, tape = cell.forward(x, states, params)
    os._exit(0 if len(tape["shards"]) == 2 and np.array_equal(ys, want) else 3)
_, status = os.waitpid(child, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_process_runs_its_shards_on_a_pool_not_the_parents_team():
    """GNU's OpenMP runtime hangs in a child forked after a parallel region: there, shards
    run on the interface's pool, and the same numbers come out."""
    pytest.importorskip("torch")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    process = subprocess.Popen(
        [sys.executable, "-c", _FORKED], env=env, start_new_session=True
    )
    try:
        code = process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the hung child with its parent
        process.wait()
        pytest.fail("the forked child waited on its parent's OpenMP team")
    assert code == 0


def test_no_team_is_looked_for_again_until_more_modules_are_imported(monkeypatch):
    """Where no OpenMP runtime is loaded (JAX alone, NumPy alone), each sharded call looked
    for one again, a failed dlopen of every name; now only once more modules are loaded."""
    import types

    looks = []
    monkeypatch.setattr(
        _interface, "_openmp_region", lambda enter: looks.append(enter) or False
    )
    team = _interface._Team()
    assert team.region() is None and team.region() is None
    assert len(looks) == 1
    monkeypatch.setitem(sys.modules, "_imported_since", types.ModuleType("_imported"))
    assert team.region() is None and len(looks) == 2
