"""Verification: generated kernels against PyTorch autograd.

:mod:`~derive.verify.twin` runs any declared cell with PyTorch tensors (the twin reference);
:mod:`~derive.verify.compare` builds random problems and measures every output's and gradient's
error. Needs ``torch``, a test dependency, not a runtime one (imported when first used).

The package is callable: ``derive.verify(mycell)`` is :func:`~derive.verify.compare.check`, a
table of errors (:class:`~derive.verify.compare.Verification`) that a notebook displays.
"""

import sys
import types

from .compare import (
    ROUNDING_OPERATIONS,
    TOLERANCE,
    Problem,
    Report,
    Verification,
    check,
    compare,
    import_kernel,
    relative_error,
    sizes_for,
    tolerance,
    verify,
)

__all__ = [
    "ROUNDING_OPERATIONS", "TOLERANCE", "Problem", "Report", "Verification",
    "check", "compare", "draw_masks", "import_kernel",
    "relative_error", "sizes_for", "tolerance", "verify",
]  # fmt: skip


class _Callable(types.ModuleType):
    """This package, called: :func:`check`."""

    def __call__(self, *args, **kwargs):
        return check(*args, **kwargs)


sys.modules[__name__].__class__ = _Callable
