"""The runtime, defined once in ``generated/_runtime.py``: every kernel module imports it and
records its digest; a kernel module compiles without Numba's cache where the runtime on disk is
not the one it was generated with, since Numba keys a cached kernel on its own file alone."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import VARIANTS, load_generated

from derive import build, pipeline, registry
from derive.cli import main
from derive.emit.numba import render
from derive.verify import import_kernel
from generated import _runtime

#: Runs the package's ``rnn_tanh`` forward once; prints whether the kernel module may use the
#: cache, whether its forward came from the cache, and the outputs' sum. With "trust", the
#: runtime's digest check is taken out first.
SCRIPT = """
import sys, warnings
import numpy as np
sys.path.insert(0, sys.argv[1])
if sys.argv[2:] == ["trust"]:
    from kernels import _runtime
    _runtime.cached = lambda digest, module: True
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from kernels import rnn_tanh as cell
params = cell.init_params(3, 4, dtype=np.float64, seed=1)
x = np.linspace(-2, 2, 5 * 2 * 3).reshape(5, 2, 3)
ys, _, _ = cell.forward(x, None, params)
hits = sum(cell.forward_kernel.stats.cache_hits.values())
print(cell.CACHE, hits > 0, repr(float(ys.sum())), len(caught))
"""


def test_every_kernel_module_imports_the_one_runtime_and_records_its_digest():
    assert _runtime.DIGEST == render.runtime_digest(render.render_runtime())
    assert Path(_runtime.__file__).read_text() == render.render_runtime()
    call = f'CACHE = _runtime.cached("{_runtime.DIGEST}", __name__)'
    for variant in VARIANTS:
        module = load_generated(variant)
        assert module._runtime is _runtime
        assert module.CACHE == _runtime.CACHE
        text = Path(module.__file__).read_text()
        assert call in text and "@intrinsic" not in text and "def _pack" not in text


def test_another_runtime_changes_every_kernel_module_and_its_stamp(monkeypatch):
    source = Path(load_generated("lstm").__file__).read_text()
    monkeypatch.setattr(pipeline, "runtime_digest", lambda text: "0123456789abcdef")
    files = pipeline.kernel_files([registry.get("lstm")], pipeline.Run(), package=False)
    changed = files["lstm.py"]
    # the stamp's inputs digest changes too: `gatesmith check` reports the module stale, and
    # `gatesmith generate` writes it again (a new modification time for Numba's cache)
    assert changed.splitlines()[2] != source.splitlines()[2]
    assert 'CACHE = _runtime.cached("0123456789abcdef", __name__)' in changed


def test_cached_refuses_the_cache_for_another_runtime_and_warns_once():
    assert _runtime.cached(_runtime.DIGEST, "test_module_a") == _runtime.CACHE
    with pytest.warns(
        RuntimeWarning, match="generated with another _runtime.py"
    ) as got:
        assert _runtime.cached("0" * 16, "test_module_b") is False
    assert "gatesmith generate" in str(got[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _runtime.cached("0" * 16, "test_module_b") is False


def test_a_package_with_the_installed_runtime_runs_that_module(tmp_path):
    """A package verified or built in the process whose runtime is byte for byte the installed
    one runs the installed module, whose functions compile once a process; a runtime one byte
    apart is the package's own."""
    spec = registry.get("rnn_tanh")
    files = pipeline.kernel_files([spec], pipeline.Run(), package=False)
    same = import_kernel(tmp_path / "same", files, "rnn_tanh")
    assert same._runtime is _runtime
    assert sys.modules[f"{same.__package__}._runtime"] is _runtime
    assert build(spec, cache=tmp_path / "built")._runtime is _runtime
    changed = {**files, "_runtime.py": files["_runtime.py"] + "\n"}
    with pytest.warns(RuntimeWarning, match="generated with another _runtime.py"):
        other = import_kernel(tmp_path / "other", changed, "rnn_tanh")
    assert other._runtime is not _runtime
    assert other._runtime.__name__ == f"{other.__package__}._runtime"
    assert other._runtime.__file__ == str(
        tmp_path / "other" / other.__package__ / "_runtime.py"
    )
    # the choices the compiled code reads are the process's, whichever runtime sets them
    before = _runtime.tuning()
    assert other._runtime.tuning() == before
    try:
        other._runtime.set_tuning(few_rows=before["few_rows"] + 1)
        assert _runtime.tuning()["few_rows"] == before["few_rows"] + 1
    finally:
        _runtime.set_tuning(**before)
    assert other._runtime.tuning() == before


def test_a_package_that_fails_to_import_leaves_nothing_imported(tmp_path):
    spec = registry.get("rnn_tanh")
    files = pipeline.kernel_files([spec], pipeline.Run(), package=False)
    files["rnn_tanh.py"] += "\nraise ImportError('the kernel module fails')\n"
    with pytest.raises(ImportError, match="the kernel module fails"):
        import_kernel(tmp_path, files, "rnn_tanh")
    assert not [k for k in sys.modules if k.startswith("_gatesmith_kernels_rnn_tanh")]


def _run(folder: Path, cache: Path, *flags: str) -> list[str]:
    env = {
        **os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONDONTWRITEBYTECODE": "1",
        "GATESMITH_NUMBA_CACHE": "1",
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(folder), *flags],
        capture_output=True, text=True, env=env, check=True, timeout=300,
    )  # fmt: skip
    return done.stdout.split()


def test_a_changed_runtime_is_never_served_from_a_stale_cached_kernel(tmp_path, capsys):
    """Numba's cache keys a kernel on its own module file (its bytes, in Numba 0.68): a kernel
    compiled with one runtime would run it after the runtime changed. The recorded digest turns
    the cache off for that module instead."""
    out = tmp_path / "kernels"
    assert main(["generate", "rnn_tanh", "--out", str(out)]) == 0
    capsys.readouterr()
    cache = tmp_path / "numba-cache"
    cached, hit, first, warned = _run(tmp_path, cache)
    assert (cached, hit, warned) == ("True", "False", "0")
    assert _run(tmp_path, cache) == ["True", "True", first, "0"]
    # the runtime changed by hand: its tanh doubled
    runtime = out / "_runtime.py"
    text = runtime.read_text()
    tanh = "    return t if a >= one - one else -t\n"
    assert text.count(tanh) == 1
    runtime.write_text(
        text.replace(tanh, tanh.replace("return", "return (one + one) *"))
    )
    cached, hit, doubled, warned = _run(tmp_path, cache)
    assert (cached, hit, warned) == ("False", "False", "1")
    assert float(doubled) != pytest.approx(float(first))
    # what the digest guards against: without its check, the unchanged kernel module is served
    # from the cache with the old runtime compiled in
    assert _run(tmp_path, cache, "trust") == ["True", "True", first, "0"]
