"""The Numba backend, one unit.

- :mod:`.printer`: SymPy expressions as Numba source, and :data:`~.printer.KERNEL_FORMS`, how
  it prints each activation (one line an activation);
- :mod:`.kernel`: a kernel plan's arrays, loops and schedules (time loop, products, transpose
  rules, sums) printed for the kernel template;
- :mod:`.render`: the generated package's files through its templates (``templates/numba/``:
  the kernel module, the runtime every kernel module imports, the shared interface, the
  package's ``__init__``);
- :mod:`.names`: the names its generated code reserves, which a declaration may not take.
"""

from __future__ import annotations

from .kernel import Kernel, Line, access, array_name, block_views, print_kernel
from .printer import KERNEL_FORMS, Conditional, NumbaPrinter, constant_name, count_name

__all__ = [
    "KERNEL_FORMS",
    "Conditional",
    "Kernel",
    "Line",
    "NumbaPrinter",
    "access",
    "array_name",
    "block_views",
    "constant_name",
    "count_name",
    "print_kernel",
]
