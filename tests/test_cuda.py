"""The CUDA backend (``generated.cuda``): every variant's kernels against the Numba kernels
they are printed beside, under Numba's CUDA simulator (or on a GPU with
``NUMBA_ENABLE_CUDASIM=0``), and the backend's pieces."""

from __future__ import annotations

import importlib
import re

import numpy as np
import pytest
from conftest import DTYPES, ROOT, VARIANTS

from derive.verify import Problem, relative_error

cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")

#: Float64 kernels agree to rounding; float32 ones to its rounding over a few steps.
AGREE = {np.float64: 1e-9, np.float32: 1e-4}
#: Small problems: the simulator runs a thread of Python per CUDA thread.
SIZES = {"steps": 3, "batch": 2, "hidden_size": 3, "input_size": 2, "extra": 2}


def _modules(name):
    return (importlib.import_module(f"generated.{name}"),
            importlib.import_module(f"generated.cuda.{name}"))  # fmt: skip


def _errors(got, want) -> dict[str, float]:
    """Relative errors of what forward and backward returned: ``(ys, finals, dx, d_states,
    d_params)`` each."""
    errors = {
        "ys": relative_error(got[0], want[0]),
        "dx": relative_error(got[2], want[2]),
    }
    for k, (a, b) in enumerate(zip(got[1], want[1], strict=True)):
        errors[f"final state {k}"] = relative_error(a, b)
    for k, (a, b) in enumerate(zip(got[3], want[3], strict=True)):
        errors[f"d initial state {k}"] = relative_error(a, b)
    for name, value in want[4].items():
        errors[f"d {name}"] = relative_error(got[4][name], value)
    return errors


def _run(cell, problem, lengths):
    masks = {"masks": problem.masks} if problem.masks else {}
    ys, finals, tape = cell.forward(
        problem.x, problem.states, problem.params, lengths, **masks
    )
    dx, d_states, d_params = cell.backward(problem.dys, problem.dfinal, tape)
    return ys, finals, dx, d_states, d_params


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", VARIANTS)
def test_the_cuda_kernels_match_the_numba_kernels(name, dtype):
    """Forward, backward (rows of different lengths: a row's state carried past its end, its
    gradient passed through) and the forward that keeps no tape, random non-zero initial
    states, masks where the cell has them."""
    cpu, gpu = _modules(name)
    problem = Problem(cpu, dtype, seed=3, **SIZES)
    lengths = np.array([SIZES["steps"], 1])
    want, got = _run(cpu, problem, lengths), _run(gpu, problem, lengths)
    errors = _errors(got, want)
    masks = {"masks": problem.masks} if problem.masks else {}
    inferred = gpu.forward(
        problem.x, problem.states, problem.params, tape=False, **masks
    )
    expected = cpu.forward(
        problem.x, problem.states, problem.params, tape=False, **masks
    )
    assert inferred[2] is None
    errors["ys without tape"] = relative_error(inferred[0], expected[0])
    for k, (a, b) in enumerate(zip(inferred[1], expected[1], strict=True)):
        errors[f"final state {k} without tape"] = relative_error(a, b)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= AGREE[dtype], (worst, errors[worst])
    assert got[0].dtype == dtype and got[2].dtype == dtype


def test_a_cuda_module_has_the_numba_modules_interface():
    """``import generated.cuda.lstm as cell`` takes what ``generated.lstm`` takes, refuses
    what it refuses, and shares its tables."""
    cpu, gpu = _modules("lstm")
    for name in ("VARIANT", "STATES", "PARAMS", "PARAM_SHAPES", "SAVED_PER_STEP"):
        assert getattr(gpu, name) == getattr(cpu, name)
    assert gpu.param_shapes(4, 3) == cpu.param_shapes(4, 3)
    params = gpu.init_params(4, 3, dtype=np.float64, seed=2)
    assert all(np.array_equal(params[k], v)
               for k, v in cpu.init_params(4, 3, dtype=np.float64, seed=2).items())  # fmt: skip
    assert gpu.saved_bytes_per_step(2, 4, 3) == cpu.saved_bytes_per_step(2, 4, 3)
    x = np.random.default_rng(0).standard_normal((2, 2, 4))
    y, states = gpu.step(x[0], None, params)
    want, _ = cpu.step(x[0], None, params)
    assert relative_error(y, want) <= AGREE[np.float64]
    with pytest.raises(ValueError, match="x"):
        gpu.forward(x[:, :, :3], None, params)
    with pytest.raises(TypeError, match="tape"):
        gpu.forward(x, None, params, tape="yes")
    assert "Run the cell over a sequence" in gpu.forward.__doc__


def test_the_kernels_take_device_arrays_and_return_them():
    """Device arrays in, device arrays out (nothing copied back to the host); host arrays in,
    host arrays out."""
    cpu, gpu = _modules("gru")
    problem = Problem(cpu, np.float64, seed=5, **SIZES)
    flat = problem.x.reshape(-1, problem.x.shape[2])
    lengths = np.full(SIZES["batch"], SIZES["steps"], np.int64)
    weights = [problem.params[n] for n in cpu.PARAMS]
    args = (flat, lengths, *problem.states, *weights)
    on_host = gpu.forward_kernel(*args)
    on_device = gpu.forward_kernel(*(cuda.to_device(a) for a in args))
    assert all(isinstance(a, np.ndarray) for a in on_host)
    assert not any(isinstance(a, np.ndarray) for a in on_device)
    assert all(hasattr(a, "copy_to_host") for a in on_device)
    for a, b in zip(on_device, cpu.forward_kernel(*args), strict=True):
        assert relative_error(a.copy_to_host(), b) <= AGREE[np.float64]


def test_the_runtimes_products_and_sums():
    """The runtime's launches on their own: a product with a bias, an accumulating product of
    transposed operands, the sums over rows and over units, a bias of length 0."""
    from generated.cuda import _runtime

    rng = np.random.default_rng(7)
    left, right, bias = (
        rng.standard_normal((5, 3)),
        rng.standard_normal((4, 3)),
        rng.standard_normal(4),
    )
    out = cuda.device_array((5, 4), np.float64)
    _runtime.product(
        out, cuda.to_device(left), cuda.to_device(right).T, cuda.to_device(bias)
    )
    np.testing.assert_allclose(out.copy_to_host(), left @ right.T + bias, rtol=1e-12)
    start = rng.standard_normal((3, 4))
    total = cuda.to_device(start)
    _runtime.product(total, cuda.to_device(left).T, cuda.to_device(out.copy_to_host()),
                     accumulate=True)  # fmt: skip
    expected = start + left.T @ (left @ right.T + bias)
    np.testing.assert_allclose(total.copy_to_host(), expected, rtol=1e-12)
    sums = _runtime.zeros(4, np.float64)
    _runtime.add_rows(sums, cuda.to_device(start), 2)
    np.testing.assert_allclose(sums.copy_to_host(), start[:2].sum(0), rtol=1e-12)
    empty = _runtime.zeros(0, np.float64)
    _runtime.add_rows(empty, cuda.to_device(start), 3)  # no bias: nothing to add
    scalar = cuda.to_device(np.array(1.5))
    _runtime.add_units(scalar, cuda.to_device(start[0]))
    assert scalar.copy_to_host()[()] == pytest.approx(1.5 + start[0].sum())


def test_the_cuda_templates_hold_no_schedule_and_the_package_lists_every_variant():
    """The time loop, the products and the sums are printed from the plan's nodes; the
    subpackage's index lists every generated variant."""
    template = (ROOT / "templates" / "cuda" / "kernel.py.j2").read_text()
    for text in ("range(steps", "product(", "add_rows", "+="):
        assert text not in template, text
    # the template allocates the backward's accumulators; the plan's nodes do the rest
    assert set(re.findall(r"_runtime\.\w+(?=\()", template)) == {
        "_runtime.copy",
        "_runtime.zeros",
    }
    import generated.cuda as package

    assert package.VARIANTS == tuple(VARIANTS)
    assert package.load("mgu").VARIANT == "mgu"
    with pytest.raises(ValueError, match="unknown variant"):
        package.load("nope")


def test_the_device_script_runs_under_the_simulator(tmp_path):
    """``benchmarks/cuda_device.py``, ready for a GPU: its checks against autograd and its
    table, run under the simulator at a small size."""
    pytest.importorskip("torch")
    import importlib.util

    path = ROOT / "benchmarks" / "cuda_device.py"
    spec = importlib.util.spec_from_file_location("cuda_device", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "table.md"
    assert script.main(["--simulate", "--variants", "lstm,mgu", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:]] == [
        "| lstm", "| gru", "| lstm_peephole", "| mgu"
    ]  # fmt: skip
    assert all(float(row.split(" | ")[2]) > 0 for row in rows[1:])
