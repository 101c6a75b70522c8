"""The CUDA backend, one unit (numba-cuda's kernels, which Numba's CUDA simulator runs too).

- :mod:`.printer`: the Numba printer with :data:`~.printer.CUDA_FORMS`, how it prints each
  activation (one line an activation);
- :mod:`.kernel`: a kernel plan's pointwise loops printed as CUDA kernels, and its schedules
  as host functions that launch them;
- :mod:`.render`: the files of the package's ``cuda`` subpackage through its templates
  (``templates/cuda/``: a kernel module per variant, the runtime, the subpackage's index);
- :mod:`.names`: the names its generated code reserves.
"""

from __future__ import annotations

from .kernel import CudaLoop, CudaModule, print_module
from .printer import CUDA_FORMS, CudaPrinter

__all__ = ["CUDA_FORMS", "CudaLoop", "CudaModule", "CudaPrinter", "print_module"]
