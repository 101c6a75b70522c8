"""Every generated kernel compiled once into Numba's cache, before the suite's test processes
start: ``python tests/warm_kernels.py PART PARTS`` compiles the kernels of every PARTS-th
variant from PART, in both dtypes, with a tape and without, and as JAX calls them (read-only
arrays are a signature of their own). ``conftest.py`` runs one such process per core from
the controlling process of a whole-suite run; each test process then loads the kernels from
the cache (a few seconds and a few hundred MB for all of them) where it would compile each
one again (minutes, and gigabytes that stay with the process)."""

from __future__ import annotations

import importlib
import sys

import numpy as np

from derive.verify import Problem


def _jax(name: str, module) -> None:
    """The kernels as ``derive.jax`` calls them, in float64 (the JAX suite's every-variant
    check): the forward without a tape, and with one and the backward under ``vjp``."""
    try:
        import jax
    except ImportError:  # the JAX tests skip too
        return
    jax.config.update("jax_enable_x64", True)
    from derive.jax import recurrent

    problem = Problem(module, np.float64)
    lengths = np.full(problem.x.shape[1], problem.x.shape[0])

    def run(params, x, states):
        return recurrent(name, params, x, states, lengths)

    run(problem.params, problem.x, problem.states)
    primal, vjp = jax.vjp(run, problem.params, problem.x, problem.states)
    vjp(primal)


def warm(part: int, parts: int) -> None:
    import generated

    for name in generated.VARIANTS[part::parts]:
        module = importlib.import_module(f"generated.{name}")
        for dtype in (np.float64, np.float32):
            problem = Problem(module, dtype)
            problem.run()
            problem.infer()
        if not module.MASKS:
            _jax(name, module)


if __name__ == "__main__":
    warm(int(sys.argv[1]), int(sys.argv[2]))
