"""Verification: generated kernels against PyTorch autograd.

:mod:`~derive.verify.twin` runs any declared cell with PyTorch tensors (the twin reference);
:mod:`~derive.verify.compare` builds random problems and measures every output's and gradient's
error. Needs ``torch``, a test dependency, not a runtime one (imported when first used).
"""

from .compare import (
    ROUNDING_OPERATIONS,
    TOLERANCE,
    Problem,
    Report,
    compare,
    import_kernel,
    relative_error,
    sizes_for,
    tolerance,
    verify,
)

__all__ = [
    "ROUNDING_OPERATIONS", "TOLERANCE", "Problem", "Report", "compare", "import_kernel",
    "relative_error", "sizes_for", "tolerance", "verify",
]  # fmt: skip
