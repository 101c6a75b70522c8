"""The CUDA backend's printer: the Numba printer's expressions, with each activation through
the CUDA runtime's device functions (:data:`CUDA_FORMS`, one line an activation), square
roots too."""

from __future__ import annotations

import sympy

from ...symbolic.activations import missing_forms
from ..numba.printer import KERNEL_FORMS, Conditional, NumbaPrinter

__all__ = ["CUDA_FORMS", "CudaPrinter"]

#: How the CUDA backend prints each activation: the device function of the CUDA package's
#: ``_runtime.py`` it calls, or the Numba backend's :class:`Conditional` (plain arithmetic;
#: ``_expm1`` is a device function of that runtime too).
CUDA_FORMS: dict[str, str | Conditional] = {
    "sigmoid": "_sigmoid",
    "tanh": "_tanh",
    "exp": "_exp",
    "log": "_log",
    "sin": "_sin",
    "cos": "_cos",
    "softplus": "_softplus",
    "relu": KERNEL_FORMS["relu"],
    "relu_step": KERNEL_FORMS["relu_step"],
    "elu": KERNEL_FORMS["elu"],
    "elu_slope": KERNEL_FORMS["elu_slope"],
    "hard_sigmoid": KERNEL_FORMS["hard_sigmoid"],
    "hard_sigmoid_slope": KERNEL_FORMS["hard_sigmoid_slope"],
}
missing_forms(CUDA_FORMS, "CUDA backend")


class CudaPrinter(NumbaPrinter):
    """One scalar per thread of a CUDA kernel: typed constants (kernel arguments, made on the
    host in the kernel's float type), activations through :data:`CUDA_FORMS`."""

    forms = CUDA_FORMS
    sqrt = "_sqrt"

    def _print_Pow(self, expr, rational=False):
        if expr.exp == sympy.Rational(1, 2):
            self.helpers.add(self.sqrt)
        return super()._print_Pow(expr, rational)
