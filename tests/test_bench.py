"""The benchmark command: its arguments, its FLOP count, and a tiny run end to end."""

from __future__ import annotations

import argparse
import json

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


def test_a_tiny_run_writes_its_table_and_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(
        bench._CHILD, "1"
    )  # run in this process; thread counts as they are
    argv = ["rnn_tanh", "gru", "--shape", "6,2,3,4", "--dtype", "float32", "--repeats", "2",
            "--no-torch", "--no-jax", "--no-retain-memory", "--out", str(tmp_path)]  # fmt: skip
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "matmul rate float32" in out and f"wrote {tmp_path / 'bench.json'}" in out
    report = json.loads((tmp_path / "bench.json").read_text())
    assert [r["variant"] for r in report["results"]] == ["rnn_tanh", "gru"]
    for row in report["results"]:
        assert row["shape"] == [6, 2, 3, 4] and len(row["times"]["gatesmith"]) == 2
        assert row["gflops"] > 0 and 0 < row["limit"] < row["medians"]["gatesmith"]
        assert "ratio_torch" not in row


def test_unknown_variant_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(bench._CHILD, "1")
    assert (
        bench.main(
            ["lstmm", "--quick", "--no-torch", "--no-jax", "--out", str(tmp_path)]
        )
        == 2
    )
    assert "unknown variants ['lstmm']" in capsys.readouterr().err
