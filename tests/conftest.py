"""Shared helpers: random problems, the PyTorch side of each comparison, error measures."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# the CUDA modules run on Numba's CUDA simulator unless the run says otherwise (set before
# Numba is imported; NUMBA_ENABLE_CUDASIM=0 tests them on a GPU)
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np
import pytest

from derive import pipeline, registry
from derive.verify import (
    TOLERANCE,
    Problem,
    compare,
    import_kernel,
    relative_error,
    sizes_for,
    verify,
)

__all__ = [
    "DTYPES", "PYTORCH_MODULES", "ROOT", "TOLERANCE", "VARIANTS", "Problem", "assert_close",
    "assert_verifies", "build_kernel", "chromium", "compare_with_torch", "load_generated",
    "load_package",
    "relative_error", "sizes_for",
]  # fmt: skip

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = registry.names()
PYTORCH_MODULES = {"rnn_tanh", "rnn_relu", "lstm", "gru"}
DTYPES = (np.float64, np.float32)


def pytest_configure(config):
    """Before a whole-suite run's test processes start (in the controlling process, or the one
    process without xdist): every generated kernel compiled once into Numba's cache, one
    process per core (``warm_kernels.py``), so that the test processes load them instead of
    each compiling all of them. A run of chosen tests, or one without Numba's cache, skips it;
    a warm-up that fails only costs the tests their compile time (they check everything)."""
    chosen = [Path(a).resolve() for a in config.args]
    whole = chosen in ([], [ROOT / "tests"])
    if (hasattr(config, "workerinput") or not whole
            or os.environ.get("GATESMITH_NUMBA_CACHE") == "0"):  # fmt: skip
        return
    # the float32 IR the warm-up compiled, for the test that reads it
    folder = tempfile.mkdtemp(prefix="gatesmith-ir-")
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
    os.environ["GATESMITH_TEST_IR"] = folder  # the test processes inherit it
    processes = max(1, min(2, len(os.sched_getaffinity(0))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    script = str(Path(__file__).with_name("warm_kernels.py"))
    print("compiling every generated kernel into Numba's cache before the tests (minutes when"
          " the cache is cold)", file=sys.stderr)  # fmt: skip
    start = time.perf_counter()
    run = subprocess.run([sys.executable, script, str(processes)], env=env, check=False,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    what = "done"
    if run.returncode:
        what = f"failed ({(run.stderr.strip().splitlines() or ['?'])[-1]})"
    print(f"kernels compiled into Numba's cache: {what} in {time.perf_counter() - start:.0f} s",
          file=sys.stderr)  # fmt: skip


@pytest.fixture
def user_registry():
    """Variants that a test loads from declaration files are forgotten after it."""
    saved = dict(registry._DECLARATIONS), dict(registry._ORIGINS)
    yield
    for table, before in zip(
        (registry._DECLARATIONS, registry._ORIGINS), saved, strict=True
    ):
        table.clear()
        table.update(before)
    registry.get.cache_clear()


@pytest.fixture(scope="session")
def cell_cache(tmp_path_factory):
    """One build cache (``derive.build``) for the session's tests, so that a cell one test
    builds is derived and compiled once; the environment points at it from the first test that
    asks for it."""
    folder = tmp_path_factory.mktemp("built-cells")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GATESMITH_CACHE_DIR", str(folder))
        yield folder


def build_kernel(spec, folder: Path):
    """A declaration's generated kernel module, imported from ``folder``, and its source."""
    files = pipeline.kernel_files([spec], pipeline.Run(), package=False)
    return files[f"{spec.name}.py"], import_kernel(folder, files, spec.name)


def assert_verifies(spec, module) -> None:
    """``module`` (generated from ``spec``) matches autograd in float64 and float32."""
    pytest.importorskip("torch")
    reports = verify(spec, module)
    assert {r.dtype for r in reports} == {"float64", "float32"}
    assert all(r.ok for r in reports), reports


def chromium() -> str:
    """Headless Chromium's executable; the test skips without it, or fails where
    GATESMITH_REQUIRE_CHROMIUM says it must be there."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("GATESMITH_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is required here (GATESMITH_REQUIRE_CHROMIUM is set)")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    return found


def load_generated(name: str):
    """The committed generated module of a variant."""
    return importlib.import_module(f"generated.{name}")


def load_package(folder: Path, package: str, name: str):
    """A module from a package generated into ``folder`` (added to sys.path)."""
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return importlib.import_module(f"{package}.{name}")


def assert_close(name, got, want, dtype):
    err = relative_error(got, want)
    assert err <= TOLERANCE[dtype], (
        f"{name}: relative error {err:.3g} > {TOLERANCE[dtype]:g}"
    )
    return err


def compare_with_torch(problem, ys_t, finals_t, leaves) -> dict[str, float]:
    """Backpropagate the problem's loss through torch's ``ys_t, finals_t`` (computed from
    ``leaves``); assert that every output and gradient of the kernel is close."""
    errors = compare(problem, ys_t, finals_t, leaves)
    tolerance = TOLERANCE[problem.dtype]
    bad = {k: f"{v:.3g}" for k, v in errors.items() if not v <= tolerance}
    assert not bad, f"{problem.cell.VARIANT}: relative errors over {tolerance:g}: {bad}"
    return errors
