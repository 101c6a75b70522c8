"""The benchmark command: its arguments, its FLOP count, and a tiny run end to end."""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest
from conftest import load_generated

from derive import bench


def test_shape_argument():
    assert bench._shape("100,32,128") == (100, 32, 128, 128)
    assert bench._shape("50,64,256,512") == (50, 64, 256, 512)
    for bad in ("100,32", "1,2,3,4,5", "100,0,32", "a,b,c"):
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            bench._shape(bad)


@pytest.mark.parametrize("variant, blocks", [("lstm", 4), ("gru", 3), ("rnn_tanh", 1)])
def test_flops_are_those_of_the_weight_products(variant, blocks):
    steps, batch, size, hidden = 7, 3, 5, 6
    problem = bench.Problem(
        load_generated(variant), (steps, batch, size, hidden), np.float32
    )
    forward = 2 * steps * batch * blocks * hidden * (size + hidden)
    assert problem.flops() == 3 * forward


def test_a_tiny_run_writes_its_table_json_and_report(tmp_path, capsys):
    """Every contender in processes of its own, alternated; the table, JSON and report."""
    report = tmp_path / "performance.md"
    report.write_text(
        f"# Prose before\n\n{bench.BEGIN}\nold table\n{bench.END}\n\nafter\n"
    )
    argv = ["rnn_tanh", "gru", "--shape", "6,2,3,4", "--dtype", "float32", "--repeats", "2",
            "--rounds", "2", "--no-torch", "--no-jax", "--no-retain-memory",
            "--out", str(tmp_path), "--report", str(report)]  # fmt: skip
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "matmul rate float32" in out and f"wrote {tmp_path / 'bench.json'}" in out
    assert (
        re.search(r"multiply-add peak float32 \d+ GFLOP/s", out) and "of peak)" in out
    )
    # the library Numba calls, named with its kernels
    assert re.search(r"BLAS: [^;]*scipy: \w+ [\d.]+ \(\w+ kernels, \d+ threads\)", out)
    assert "2 alternated processes per contender" in out and "limit:" in out
    result = json.loads((tmp_path / "bench.json").read_text())
    assert [r["variant"] for r in result["results"]] == ["rnn_tanh", "gru"]
    for row in result["results"]:
        assert row["shape"] == [6, 2, 3, 4] and list(row["times"]) == ["gatesmith"]
        assert [len(t) for t in row["times"]["gatesmith"]] == [2, 2]  # two processes
        stats = row["stats"]["gatesmith"]
        assert stats["min"] <= stats["median"] <= stats["max"]
        assert row["gflops"] > 0 and 0 < row["limit"] < stats["median"]
        peak = result["machine"]["fma_gflops"]["float32"]
        assert row["percent_of_peak"] == pytest.approx(100 * row["gflops"] / peak)
        assert 0 < row["percent_of_peak"] < 100
        assert row["ratio"] == {}
    text = report.read_text()
    assert text.startswith("# Prose before") and text.endswith("after\n")
    assert "old table" not in text and "| rnn_tanh | float32 | 6, 2, 3, 4 |" in text
    assert "| % of FMA peak |" in text


def test_custom_cells_race_eager_torchscript_and_jax_after_a_gradient_check(
    tmp_path, capsys
):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    argv = ["mgu", "--shape", "5,2,3,3", "--dtype", "float64", "--repeats", "1",
            "--rounds", "1", "--out", str(tmp_path)]  # fmt: skip
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "mgu: every contender's gradients agree" in out
    (row,) = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert set(row["stats"]) == {"gatesmith", "eager", "torchscript", "jax"}
    assert set(row["ratio"]) == {"eager", "torchscript", "jax"}


def test_a_contender_that_computes_something_else_is_refused(monkeypatch):
    torch = pytest.importorskip("torch")
    from derive import by_hand, contenders

    cell = load_generated("mgu")
    small = lambda dtype: bench.Problem(cell, (4, 2, 3, 3), dtype)  # noqa: E731
    errors = contenders.check(small, ("gatesmith", "eager"))
    assert errors["eager"] < 1e-12

    def flipped(x, h, w_ih, w_hh, b_ih, b_hh):  # the update on the wrong side
        size = h.size(1)
        kx = torch.matmul(x, w_ih.t()) + b_ih
        outs = []
        for t in range(x.size(0)):
            f = torch.sigmoid(kx[t, :, :size] + h @ w_hh[:size].t() + b_hh[:size])
            n = torch.tanh(kx[t, :, size:] + (f * h) @ w_hh[size:].t() + b_hh[size:])
            h = f * h + (1 - f) * n
            outs.append(h)
        return torch.stack(outs)

    monkeypatch.setattr(by_hand, "mgu", flipped)
    with pytest.raises(AssertionError, match="mgu eager: gradients differ"):
        contenders.check(small, ("gatesmith", "eager"))


def test_a_report_file_without_markers_is_not_overwritten(tmp_path):
    page = tmp_path / "notes.md"
    page.write_text("my own notes\n")
    with pytest.raises(SystemExit, match="without one pair of the markers"):
        bench._write_report(page, {})
    assert page.read_text() == "my own notes\n"


def test_unknown_variant_is_refused(tmp_path, capsys):
    assert (
        bench.main(
            ["lstmm", "--quick", "--no-torch", "--no-jax", "--out", str(tmp_path)]
        )
        == 2
    )
    assert "unknown variants ['lstmm']" in capsys.readouterr().err


def test_native_blas_takes_the_pin_out_of_every_child_and_only_then(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "512")
    pinned = bench._environment(2)
    assert (
        pinned["OPENBLAS_CORETYPE"] == "Haswell" and pinned["OPENBLAS_L2_SIZE"] == "512"
    )
    native = bench._environment(2, native_blas=True)
    assert not set(bench.BLAS_PINS) & set(native)
    assert native["OPENBLAS_NUM_THREADS"] == "2" == pinned["OPENBLAS_NUM_THREADS"]
    assert bench._pins(False) == {
        "OPENBLAS_CORETYPE": "Haswell",
        "OPENBLAS_L2_SIZE": "512",
    }
    assert bench._pins(True) == {}


def test_a_pinned_blas_is_named_in_the_preamble_and_warned_about():
    machine = {
        "processor": "CPU",
        "extensions": ["avx2"],
        "cpus": 2,
        "threads": 2,
        "blas": [
            {
                "package": "scipy",
                "internal_api": "openblas",
                "version": "0.3",
                "architecture": "Haswell",
                "num_threads": "2",
            }
        ],
        "blas_pins": {"OPENBLAS_CORETYPE": "Haswell"},
        "fma_gflops": {"float32": 150.0},
    }
    # fmt: skip
    text = bench._preamble(machine, {"float32": 100.0}, 3, 5, True)
    assert "BLAS: scipy: openblas 0.3 (Haswell kernels, 2 threads)" in text
    assert "pinned by OPENBLAS_CORETYPE=Haswell" in text
    assert "multiply-add peak float32 150 GFLOP/s" in text
    assert "--native-blas" in bench._pin_warning(machine)
    unpinned = {**machine, "blas_pins": {}}
    assert "pinned" not in bench._preamble(unpinned, {"float32": 100.0}, 3, 5, True)
    assert bench._pin_warning(unpinned) is None
    unknown = {**unpinned, "blas": None}
    assert "not known" in bench._preamble(unknown, {"float32": 100.0}, 3, 5, True)


def test_the_blas_numba_calls_is_found_with_the_package_that_ships_it():
    pytest.importorskip("threadpoolctl")
    found = bench._blas()
    assert found and all(set(b) == {"package", "internal_api", "version", "architecture",
                                    "num_threads"} for b in found)  # fmt: skip
    assert "scipy" in {b["package"] for b in found}
    assert bench._shipped_by("/v/site-packages/numpy.libs/libopenblas.so") == "numpy"
    assert bench._shipped_by("/v/site-packages/torch/lib/libgomp.so") == "torch"
    assert bench._shipped_by("/usr/lib/x86_64-linux-gnu/libopenblas.so.0") == "system"


#: three tiny cases, one of each kind
_TINY = (("train", 3, 2, 4, 5), ("forward", 3, 2, 4, 5), ("step", 1, 2, 5, 5))


def test_inside_times_each_case_in_processes_of_its_own(monkeypatch):
    """``--inside``: each contender of each case in a fresh process (``child``), the kernels
    alone beside them, start-up from fresh processes; every time positive."""
    pytest.importorskip("torch")
    from derive import inside

    monkeypatch.setattr(inside, "CASES", _TINY)
    tasks = []

    def child(task):
        tasks.append(task)
        return bench._child(task, 2)

    report = inside.run(["lstm"], 1, 2, child, bench._environment(2))
    assert [t["name"] for t in tasks] == list(inside.CONTENDERS) * len(_TINY)
    # every contender's process alike: torch's own keeps freed memory as the kernels' do
    assert all(t["retain"] is True for t in tasks) and report["freed_memory_retained"]
    assert [row["case"] for row in report["rows"]] == [list(c) for c in _TINY]
    for row in report["rows"]:
        assert sorted(row["ms"]) == sorted(inside.CONTENDERS)
        assert all(len(v) == 1 and v[0] > 0 for v in row["ms"].values())
    assert set(report["startup_seconds"]) == {"lstm gatesmith", "lstm torch"}
    assert all(0 < s < 60 for s in report["startup_seconds"].values())
    table = inside.markdown(report)
    assert table.count("\n| lstm |") == len(_TINY) and "lstm gatesmith" in table


def test_inside_writes_its_json_and_its_own_block_of_the_report(
    tmp_path, monkeypatch, capsys
):
    pytest.importorskip("torch")
    from derive import inside

    monkeypatch.setattr(inside, "CASES", _TINY)
    monkeypatch.setattr(bench, "_child", lambda task, *_: bench._work(task))
    monkeypatch.setattr(inside, "_startup", lambda *_: 1.5)
    report = tmp_path / "performance.md"
    begin, end = bench.INSIDE_MARKERS
    report.write_text(
        f"{bench.BEGIN}\nmain table\n{bench.END}\n{begin}\nold\n{end}\nafter\n"
    )
    argv = ["gru", "mgu", "--inside", "--rounds", "1", "--repeats", "1",
            "--no-retain-memory", "--out", str(tmp_path), "--report", str(report)]  # fmt: skip
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "processor:" in out and "| gru | step | (1, 2, 5, 5) |" in out
    result = json.loads((tmp_path / "inside.json").read_text())
    assert [r["variant"] for r in result["rows"]] == ["gru"] * 3  # mgu: not in PyTorch
    assert result["startup_seconds"] == {"gru gatesmith": 1.5, "gru torch": 1.5}
    assert result["freed_memory_retained"] is False
    assert "Freed memory returned in every contender's process" in out
    text = report.read_text()
    assert "main table" in text and "old" not in text and text.endswith("after\n")
    assert "Processor: " in text and "| gru | train | (3, 2, 4, 5) |" in text
    (tmp_path / "bare.md").write_text("no markers\n")
    with pytest.raises(SystemExit, match="without one pair of the markers"):
        bench.main([*argv[:-1], str(tmp_path / "bare.md")])
