"""Every generated kernel compiled once into Numba's cache, before the suite's test processes
start: ``python tests/warm_kernels.py PROCESSES`` compiles each variant's kernels, in both
dtypes, with a tape and without (``derive.jax`` calls the same signatures; without, with
weights packed too, as ``derive.torch``'s inference calls it), the variants
shared out one at a time among PROCESSES processes. ``conftest.py`` runs it from the
controlling process of a whole-suite run; each test process then loads the
kernels from the cache (a few seconds and a few hundred MB for all of them) where it would
compile each one again (minutes, and gigabytes that stay with the process). Where
``GATESMITH_TEST_IR`` names a folder, the LLVM IR of each kernel it compiled for float32 is
written there, for the test that reads it (code loaded from the cache cannot be inspected)."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numba
import numpy as np

from derive.verify import Problem


def _float32_ir(name: str, module, folder: Path) -> None:
    for kernel in (module.forward_kernel, module.infer_kernel, module.backward_kernel):
        for signature in kernel.signatures:
            if signature[0].dtype == numba.float32:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    try:
                        ir = kernel.inspect_llvm(signature)
                    except UserWarning:  # loaded from the cache: the test compiles
                        return
                path = folder / f"{name}.{kernel.__name__}.ll"
                path.write_text(ir)


def warm(name: str) -> None:
    """The kernels of the generated variant ``name``, compiled into the cache (the one that
    keeps no tape also as ``derive.torch``'s inference plans call it, with weights packed)."""
    module = importlib.import_module(f"generated.{name}")
    for dtype in (np.float64, np.float32):
        problem = Problem(module, dtype)
        problem.run()
        problem.infer()
        problem.infer_packed()
    if os.environ.get("GATESMITH_TEST_IR"):
        _float32_ir(name, module, Path(os.environ["GATESMITH_TEST_IR"]))


if __name__ == "__main__":
    import generated

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(int(sys.argv[1]), mp_context=context) as pool:
        list(pool.map(warm, generated.VARIANTS))
