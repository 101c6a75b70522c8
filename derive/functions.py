"""Activation functions as SymPy functions whose derivatives are written through their outputs.

Each derivative refers back to the function itself (``sigmoid'(a) = sigmoid(a)(1 - sigmoid(a))``),
so that after differentiation every occurrence of ``f(a)`` can be replaced by the saved forward
value ``y = f(a)``: the backward pass then needs ``y`` only, never ``cosh`` or ``exp`` of ``a``.
"""

from __future__ import annotations

import sympy

__all__ = [
    "ACTIVATIONS",
    "GATE_ACTIVATIONS",
    "identity",
    "relu",
    "relu_step",
    "sigmoid",
    "tanh",
]


class sigmoid(sympy.Function):  # noqa: N801 (SymPy functions are lower case)
    """Logistic sigmoid ``1 / (1 + exp(-a))``; derivative ``s (1 - s)``."""

    nargs = 1

    def fdiff(self, argindex=1):
        return self * (1 - self)

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return sympy.Rational(1, 2)
        return None


class relu_step(sympy.Function):  # noqa: N801
    """Derivative of ReLU written through ReLU's output: ``1`` where ``y > 0``, else ``0``.

    ReLU'(0) is 0, as in PyTorch (SymPy's ``Heaviside(0)`` would be 1/2).
    """

    nargs = 1

    def fdiff(self, argindex=1):
        return sympy.Integer(0)


class relu(sympy.Function):  # noqa: N801
    """Rectified linear unit ``max(a, 0)``; derivative ``relu_step(relu(a))``."""

    nargs = 1

    def fdiff(self, argindex=1):
        return relu_step(self)


tanh = (
    sympy.tanh
)  # its derivative, 1 - tanh(a)**2, is already written through its output


def identity(arg):
    """No activation: the argument itself."""
    return sympy.sympify(arg)


#: Activations a declaration may apply, by name.
ACTIVATIONS = {"sigmoid": sigmoid, "tanh": tanh, "relu": relu, "identity": identity}

#: Activations whose range lies in [0, 1], as a gate's must.
GATE_ACTIVATIONS = (sigmoid,)
