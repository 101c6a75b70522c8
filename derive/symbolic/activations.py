"""Activations: one descriptor each, holding the mathematics of the function.

A descriptor names the SymPy function and its derivative written through its own output
(``sigmoid'(a) = y (1 - y)`` with ``y = sigmoid(a)``). Adding an activation is one entry in
:data:`FUNCTIONS` plus one line in each backend's table of forms: the Numba kernels'
(``KERNEL_FORMS``), the documents' (``LATEX_FORMS``) and the PyTorch twin's (``TORCH_FORMS``).
An entry with a missing piece fails when this module is imported, and each backend checks at
its own import that its table covers every entry (:func:`missing_forms`).

Where a derivative refers back to the function itself, every occurrence of ``f(a)`` in a
derived expression is replaced by the saved forward value ``y = f(a)``: the backward pass then
reads ``y`` only, never ``cosh`` or ``exp`` of ``a``. That holds for sigmoid, tanh, ReLU, ELU,
the hard sigmoid and exp; the derivatives of softplus (``sigmoid(a)``), log (``1/a``), sin and
cos read the argument ``a``, which the backward pass then keeps on the tape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy

__all__ = [
    "ACTIVATIONS",
    "FUNCTIONS",
    "GATE_ACTIVATIONS",
    "Activation",
    "cos",
    "descriptor",
    "elu",
    "exp",
    "hard_sigmoid",
    "identity",
    "log",
    "missing_forms",
    "relu",
    "relu_step",
    "sigmoid",
    "sin",
    "softplus",
    "tanh",
]


class _Unary(sympy.Function):
    """A function of one argument whose derivative is its :data:`FUNCTIONS` entry's, written
    through its output; ``at_zero`` is its value at a literal 0 (None: left unevaluated).
    Zero is recognised structurally: asking an argument's assumptions recurses through it."""

    nargs = 1
    at_zero: sympy.Expr | None = None

    def fdiff(self, argindex=1):
        return FUNCTIONS[type(self).__name__].derivative(self)

    @classmethod
    def eval(cls, arg):
        return cls.at_zero if arg == 0 else None


class sigmoid(_Unary):  # noqa: N801 (SymPy functions are lower case)
    """Logistic sigmoid ``1 / (1 + exp(-a))``; derivative ``s (1 - s)``."""

    at_zero = sympy.Rational(1, 2)


class relu_step(_Unary):  # noqa: N801
    """Derivative of ReLU written through ReLU's output: ``1`` where ``y > 0``, else ``0``.

    ReLU'(0) is 0, as in PyTorch (SymPy's ``Heaviside(0)`` would be 1/2).
    """


class relu(_Unary):  # noqa: N801
    """Rectified linear unit ``max(a, 0)``; derivative ``relu_step(relu(a))``."""


class tanh(_Unary):  # noqa: N801
    """Hyperbolic tangent; derivative ``1 - t**2``.

    A function of gatesmith's own rather than SymPy's ``tanh``, whose evaluation asks its
    argument's assumptions at every application: nested applications then take time
    exponential in their depth before any declaration sees them."""

    at_zero = sympy.Integer(0)


#: SymPy's own exp, log, sin and cos, differentiated by SymPy: exp' is exp itself (the saved
#: output); log' = 1/a, sin' = cos(a) and cos' = -sin(a) read the argument, which the backward
#: pass then keeps.
exp, log, sin, cos = sympy.exp, sympy.log, sympy.sin, sympy.cos


class softplus(_Unary):  # noqa: N801
    """``log(1 + exp(a))``, as ``torch.nn.functional.softplus``; derivative ``sigmoid(a)``."""


class elu_slope(_Unary):  # noqa: N801
    """Derivative of ELU written through ELU's output ``y``: ``1 + min(y, 0)``."""


class elu(_Unary):  # noqa: N801
    """Exponential linear unit (alpha = 1): ``a`` where ``a > 0``, else ``exp(a) - 1``."""


class hard_sigmoid_slope(_Unary):  # noqa: N801
    """Derivative of the hard sigmoid through its output ``y``: ``1/6`` where ``0 < y < 1``."""


class hard_sigmoid(_Unary):  # noqa: N801
    """``min(max(a / 6 + 1/2, 0), 1)``, as ``torch.nn.functional.hardsigmoid``."""


def identity(arg):
    """No activation: the argument itself."""
    return sympy.sympify(arg)


@dataclass(frozen=True)
class Activation:
    """The mathematics of one function of a cell's equations: how each backend prints it is
    that backend's table (:data:`derive.emit.numba.KERNEL_FORMS`,
    :data:`derive.emit.latex.LATEX_FORMS`, :data:`derive.verify.twin.TORCH_FORMS`).

    ``derivative`` maps the function's application ``y = f(a)`` to ``f'(a)`` written through
    ``y``; ``piecewise`` marks a function defined by cases (the lowering gives it a statement
    of its own); ``gate`` marks a range inside [0, 1]; ``declarable`` is False for a function
    that only derivatives produce.
    """

    name: str
    function: type[sympy.Function]
    derivative: Callable[[sympy.Expr], sympy.Expr]
    piecewise: bool = False
    gate: bool = False
    declarable: bool = True

    def __post_init__(self):
        missing = [] if isinstance(self.name, str) and self.name else ["name"]
        if not callable(self.derivative):
            missing.append("derivative")
        if not (
            isinstance(self.function, type)
            and issubclass(self.function, sympy.Function)
        ):
            missing.append("function")
        if missing:
            raise TypeError(f"activation {self.name!r} lacks {', '.join(missing)}")


#: Every function a derived expression may contain, by name.
FUNCTIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("sigmoid", sigmoid, lambda y: y * (1 - y), gate=True),
        Activation("tanh", tanh, lambda y: 1 - y**2),
        Activation("relu", relu, relu_step, piecewise=True),
        Activation("relu_step", relu_step, lambda y: sympy.Integer(0), piecewise=True,
                   declarable=False),
        Activation("exp", sympy.exp, lambda y: y),
        Activation("log", sympy.log, lambda y: 1 / y.args[0]),
        Activation("sin", sympy.sin, lambda y: sympy.cos(y.args[0])),
        Activation("cos", sympy.cos, lambda y: -sympy.sin(y.args[0])),
        Activation("softplus", softplus, lambda y: sigmoid(y.args[0])),
        Activation("elu", elu, elu_slope, piecewise=True),
        Activation("elu_slope", elu_slope, lambda y: sympy.Integer(0), piecewise=True,
                   declarable=False),
        Activation("hard_sigmoid", hard_sigmoid, hard_sigmoid_slope, piecewise=True,
                   gate=True),
        Activation("hard_sigmoid_slope", hard_sigmoid_slope, lambda y: sympy.Integer(0),
                   piecewise=True, declarable=False),
    )
}  # fmt: skip


def missing_forms(table: dict, backend: str, declarable_only: bool = False) -> None:
    """Refuse, at a backend's import, an activation its ``table`` has no form for: a new
    activation fails there, not in generated code."""
    wanted = [a.name for a in FUNCTIONS.values() if a.declarable or not declarable_only]
    missing = [name for name in wanted if name not in table]
    if missing:
        raise ImportError(f"the {backend} has no form for the activations {missing}")


def descriptor(function) -> Activation | None:
    """The descriptor of a SymPy function class (or of its application), if it has one (read
    from :data:`FUNCTIONS` at each call: an entry added there is known at once)."""
    if isinstance(function, sympy.Basic):
        function = type(function)
    activation = FUNCTIONS.get(getattr(function, "__name__", None))
    return (
        activation
        if activation is not None and activation.function is function
        else None
    )


#: Activations a declaration may apply, by name (``identity`` applies none).
ACTIVATIONS = {
    **{a.name: a.function for a in FUNCTIONS.values() if a.declarable},
    "identity": identity,
}

#: Activations whose range lies in [0, 1], as a gate's must.
GATE_ACTIVATIONS = tuple(a.function for a in FUNCTIONS.values() if a.gate)
