"""Shared helpers: random problems, the PyTorch side of each comparison, error measures."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from derive import registry

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = registry.names()
PYTORCH_MODULES = {"rnn_tanh", "rnn_relu", "lstm", "gru"}
DTYPES = (np.float64, np.float32)
#: relative tolerances against autograd
TOLERANCE = {np.float64: 1e-9, np.float32: 1e-4}


def load_generated(name: str):
    """The committed generated module of a variant."""
    return importlib.import_module(f"generated.{name}")


def load_package(folder: Path, package: str, name: str):
    """A module from a package generated into ``folder`` (added to sys.path)."""
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return importlib.import_module(f"{package}.{name}")


def sizes_for(cell, input_size=4, hidden_size=5):
    """Keyword sizes for ``param_shapes``: equal sizes where the cell needs them."""
    names = list(cell.SIZES.values())
    sizes = {"input_size": input_size, "hidden_size": hidden_size}
    for arg in names[2:]:
        sizes[arg] = 3
    if cell.SIZE_CONSTRAINTS:
        sizes["input_size"] = sizes["hidden_size"]
    return sizes


class Problem:
    """A random sequence, non-zero initial states, parameters and loss weights."""

    def __init__(self, cell, dtype, steps=4, batch=3, seed=0, **size_overrides):
        rng = np.random.default_rng(seed)
        self.cell = cell
        self.dtype = dtype
        sizes = sizes_for(cell, **size_overrides)
        self.params = cell.init_params(**sizes, dtype=dtype, seed=seed + 1)
        # larger weights than the default init, so that every nonlinearity is exercised
        self.params = {k: (v * 2).astype(dtype) for k, v in self.params.items()}
        by_name = {s.name: sizes[s.argument] for s in map(_Size, cell.SIZES.items())}
        self.x = rng.standard_normal((steps, batch, by_name["I"])).astype(dtype)
        self.states = tuple(
            rng.standard_normal((batch, by_name[cell.STATE_SIZES[s]])).astype(dtype)
            for s in cell.STATES
        )
        out = by_name[cell.STATE_SIZES[cell.OUTPUT]]
        self.dys = rng.standard_normal((steps, batch, out)).astype(dtype)
        self.dfinal = tuple(
            rng.standard_normal(s.shape).astype(dtype) for s in self.states
        )

    def run(self):
        """Forward and backward with the generated kernel."""
        ys, finals, tape = self.cell.forward(self.x, self.states, self.params)
        dx, dstates, dparams = self.cell.backward(self.dys, self.dfinal, tape)
        return ys, finals, dx, dstates, dparams

    def torch_leaves(self):
        torch = pytest.importorskip("torch")

        def leaf(a):
            return torch.tensor(a.astype(np.float64), requires_grad=True)

        return (
            leaf(self.x),
            tuple(leaf(s) for s in self.states),
            {k: leaf(v) for k, v in self.params.items()},
        )

    def torch_loss(self, ys, finals):
        torch = pytest.importorskip("torch")
        loss = (ys * torch.tensor(self.dys.astype(np.float64))).sum()
        for f, d in zip(finals, self.dfinal, strict=True):
            loss = (
                loss + (f.reshape(d.shape) * torch.tensor(d.astype(np.float64))).sum()
            )
        return loss


class _Size:
    def __init__(self, item):
        self.name, self.argument = item


def relative_error(got, want) -> float:
    """max |got - want| / max |want|: the error relative to the reference's scale."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64).reshape(got.shape)
    scale = max(np.abs(want).max(), 1e-30)
    return float(np.abs(got - want).max() / scale)


def assert_close(name, got, want, dtype):
    err = relative_error(got, want)
    assert err <= TOLERANCE[dtype], (
        f"{name}: relative error {err:.3g} > {TOLERANCE[dtype]:g}"
    )
    return err
