"""gatesmith: recurrent cells declared once in SymPy; gradients, kernels and documents derived.

The pipeline ``declare → derive → lower → render → write`` is driven by
:mod:`derive.pipeline`, which times each stage:

``declare``  (:mod:`derive.symbolic.declare`, :mod:`derive.cells`)
    a cell's forward step as frozen data: sizes, states, parameters, dense projections and
    pointwise SymPy equations; :mod:`derive.symbolic.activations` describes each activation;
``derive``   (:mod:`derive.symbolic.adjoint`)
    symbolic reverse mode over one step, every derivative written through saved forward values;
``lower``    (:mod:`derive.lower`)
    named passes from the derived step to a :class:`~derive.lower.plan.KernelPlan`: stages,
    storage (the smallest tape), adjoint accumulation, loops and products; plain data;
``render``   (:mod:`derive.emit`)
    the Numba backend and the derivation document print the plan; Jinja lays it out;
``write``    (:mod:`derive.emit.write`)
    stamped files, written atomically and only when their bytes change.

Beside the pipeline: :mod:`derive.verify` (kernels against PyTorch autograd),
:mod:`derive.runtime` (layers and optimisers over generated modules), :mod:`derive.torch` and
:mod:`derive.jax` (the kernels inside PyTorch and JAX), :mod:`derive.cache` (``derive.build``: a
declaration built in the process, from a notebook), :mod:`derive.bench` and :mod:`derive.cli`. The symbolic core imports no emitter; the generated modules import nothing of
``derive``.

A declaration file imports what it needs from here::

    from derive import Cell, register, sigmoid, tanh
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: The declaration language, imported on first use (``import derive.runtime`` needs no SymPy).
_DECLARATION_API = {
    "Cell": "derive.symbolic.declare",
    "DeclarationError": "derive.symbolic.declare",
    "register": "derive.registry",
    "build": "derive.cache",
    **{name: "derive.symbolic.activations"
       for name in ("identity", "relu", "sigmoid", "tanh", "exp", "log", "sin", "cos",
                    "softplus", "elu", "hard_sigmoid")},
}  # fmt: skip

__all__ = [*_DECLARATION_API, "__version__", "verify"]


def __getattr__(name: str):
    if (
        name == "verify"
    ):  # the package, callable: derive.verify(mycell) is a table of errors
        return importlib.import_module("derive.verify")
    if name in _DECLARATION_API:
        return getattr(importlib.import_module(_DECLARATION_API[name]), name)
    raise AttributeError(f"module 'derive' has no attribute {name!r}")
