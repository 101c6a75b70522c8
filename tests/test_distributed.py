"""Data-parallel training on torch.distributed: two processes (gloo, launched with torchrun) on
two shards take the same steps as one process on the whole batch."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

pytest.importorskip("torch")

SCRIPT = ROOT / "examples" / "ddp_train.py"


def _run(command, tmp_path):
    # one thread per process on two cores; gloo talks over the loopback interface
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "GLOO_SOCKET_IFNAME": "lo"}  # fmt: skip
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("variant", ["lstm", "mgu"])
def test_two_processes_on_two_shards_equal_one_process_on_the_batch(variant, tmp_path):
    options = ["--variant", variant, "--steps", "3", "--dtype", "float64"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2"]  # fmt: skip
    log = _run([*launcher, str(SCRIPT), *options, "--out", "ddp.npz"], tmp_path)
    assert log.count("step ") == 3  # rank 0 reports each step
    _run([sys.executable, str(SCRIPT), *options, "--out", "single.npz"], tmp_path)
    ddp, single = np.load(tmp_path / "ddp.npz"), np.load(tmp_path / "single.npz")
    assert sorted(ddp) == sorted(single) and "rnn.weight_hh_l1" in ddp
    for key in single:
        np.testing.assert_allclose(
            ddp[key], single[key], rtol=0, atol=1e-6, err_msg=key
        )
    # the steps moved the weights: the same script with no steps gives the initial ones
    _run([sys.executable, str(SCRIPT), *options[:2], "--steps", "0", "--out", "init.npz"],
         tmp_path)  # fmt: skip
    initial = np.load(tmp_path / "init.npz")
    assert np.abs(initial["rnn.weight_hh_l0"] - single["rnn.weight_hh_l0"]).max() > 1e-3
