"""The Numba backend's printer: SymPy expressions as Numba source, one scalar per unit, for a
kernel compiled for float32 and float64 alike (overrides are ``_print_<Function>`` methods;
printed code is never edited as text afterwards), and the backend's table of how to print each
activation (:data:`KERNEL_FORMS`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import sympy
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.pycode import PythonCodePrinter

from ...symbolic.activations import FUNCTIONS, descriptor, missing_forms

__all__ = [
    "KERNEL_FORMS",
    "Conditional",
    "NumbaPrinter",
    "constant_name",
    "count_name",
]


def _conditional_relu(arg: str, constant) -> str:
    # "<=" rather than ">" so that NaN propagates, as in torch.relu
    zero = constant(0)
    return f"{zero} if {arg} <= {zero} else {arg}"


def _conditional_step(arg: str, constant) -> str:
    return f"{constant(1)} if {arg} > {constant(0)} else {constant(0)}"


def _conditional_elu(arg: str, constant) -> str:
    return f"{arg} if {arg} > {constant(0)} else _expm1({arg})"


def _conditional_elu_slope(arg: str, constant) -> str:
    # 1 + min(y, 0); NaN propagates through the sum
    one = constant(1)
    return f"{one} if {arg} > {constant(0)} else {arg} + {one}"


def _conditional_hard_sigmoid(arg: str, constant) -> str:
    zero, one, three = constant(0), constant(1), constant(3)
    inner = (
        f"{arg} * {constant(sympy.Rational(1, 6))} + {constant(sympy.Rational(1, 2))}"
    )
    return f"{zero} if {arg} <= -{three} else ({one} if {arg} >= {three} else {inner})"


def _conditional_hard_sigmoid_slope(arg: str, constant) -> str:
    zero = constant(0)
    inside = f"{arg} > {zero} and {arg} < {constant(1)}"
    return f"{constant(sympy.Rational(1, 6))} if {inside} else {zero}"


@dataclass(frozen=True)
class Conditional:
    """An activation printed as an expression of its argument: ``rule(arg, constant)``, with
    ``constant(value)`` printing a typed constant; ``helpers`` are the runtime functions the
    expression calls."""

    rule: Callable[[str, Callable], str]
    helpers: tuple[str, ...] = ()


#: How the Numba backend prints each activation: the name of the runtime helper it calls (the
#: package's ``_runtime.py`` defines it), or a :class:`Conditional`. One line an activation.
KERNEL_FORMS: dict[str, str | Conditional] = {
    "sigmoid": "_sigmoid",
    "tanh": "_tanh",
    "exp": "_exp",
    "log": "_log",
    "sin": "_sin",
    "cos": "_cos",
    "softplus": "_softplus",
    "relu": Conditional(_conditional_relu),
    "relu_step": Conditional(_conditional_step),
    "elu": Conditional(_conditional_elu, ("_expm1",)),
    "elu_slope": Conditional(_conditional_elu_slope),
    "hard_sigmoid": Conditional(_conditional_hard_sigmoid),
    "hard_sigmoid_slope": Conditional(_conditional_hard_sigmoid_slope),
}
missing_forms(KERNEL_FORMS, "Numba backend")


def constant_name(value: sympy.Number) -> str:
    """The name of a typed constant (``const_1``, ``const_1_2`` for 1/2)."""
    if value.is_Integer:
        return f"const_{int(value)}"
    if value.is_Rational:
        return f"const_{value.p}_{value.q}"
    raise ValueError(
        f"the kernel printer takes integer and rational constants only, got {value}"
    )


#: An operand the formatter counts as simple: a name, a number, an attribute, with its sign.
_SIMPLE = re.compile(r"-?(?:[A-Za-z_][\w.]*|\d+(?:\.\d*)?)")


def count_name(size: str) -> str:
    """The typed constant holding the number of units of ``size`` (``const_H``)."""
    return f"const_{size}"


class NumbaPrinter(PythonCodePrinter):
    """Prints one scalar per unit, for a kernel compiled for float32 and float64 alike.

    Numbers become typed constants (``const_1``, defined once per kernel as ``real(1)``), so a
    float32 kernel never widens to double; the activations call the module's inlined helpers.
    """

    printmethod = "_numbacode"
    #: how each activation is printed (a backend's own printer names its own table)
    forms: dict[str, str | Conditional] = KERNEL_FORMS
    #: the function a square root is printed as
    sqrt = "np.sqrt"

    def __init__(
        self, indexed: dict[str, str] | None = None, sizes: dict[str, str] | None = None
    ):
        super().__init__({"fully_qualified_modules": False, "standard": "python3"})
        self.indexed = indexed or {}
        self.sizes = (
            sizes or {}
        )  # a size's symbol -> the size: a typed constant (a mean's N)
        self.constants: set[sympy.Number] = set()
        self.counts: set[str] = set()  # the sizes the printed code reads as constants
        self.helpers: set[str] = set()  # the kernel helpers the printed code calls

    def _constant(self, value) -> str:
        # an exact number stays as it is: nsimplify writes a rational of large terms as a
        # product of radicals (81*2**(18/175)*... for one of many terms summed)
        value = sympy.sympify(value)
        value = value if value.is_Rational else sympy.nsimplify(value)
        if value < 0:
            return f"-{self._constant(-value)}"
        self.constants.add(value)
        return constant_name(value)

    def _print_Integer(self, expr):
        return self._constant(expr)

    _print_Rational = _print_Integer
    _print_Half = _print_Integer
    _print_One = _print_Integer
    _print_Zero = _print_Integer
    _print_NegativeOne = _print_Integer

    def _print_Float(self, expr):
        raise ValueError(
            f"a declaration must use exact numbers (Integer, Rational), not the float {expr}"
        )

    def _print_Symbol(self, expr):
        if expr.name in self.sizes:
            self.counts.add(self.sizes[expr.name])
            return count_name(self.sizes[expr.name])
        return self.indexed.get(expr.name, expr.name)

    def _print_Mul(self, expr):
        # spaces around "*" and "/", as the formatter writes them
        coeff, rest = expr.as_coeff_Mul()
        sign = ""
        if coeff.is_negative:
            sign, coeff = "-", -coeff
        factors = [] if coeff == 1 else [coeff]
        factors += list(rest.as_ordered_factors()) if rest != 1 else []
        num, den = [], []
        for f in factors:
            if f.is_Pow and f.exp.is_Rational and f.exp.is_negative:
                den.append(sympy.Pow(f.base, -f.exp))
            else:
                num.append(f)
        num_s = " * ".join(self._factor(f) for f in num) or self._constant(1)
        if not den:
            return sign + num_s
        den_s = " * ".join(self._factor(f) for f in den)
        if len(den) > 1 or den[0].is_Pow or den[0].is_Number:
            den_s = f"({den_s})"
        return f"{sign}{num_s} / {den_s}"

    def _factor(self, factor) -> str:
        if factor.is_Number:
            return self._print(factor)
        return self.parenthesize(factor, PRECEDENCE["Mul"], strict=False)

    def _print_Pow(self, expr, rational=False):
        base, exponent = expr.args
        if exponent.is_Integer and 2 <= exponent <= 4:
            factor = self.parenthesize(base, PRECEDENCE["Mul"], strict=False)
            return " * ".join([factor] * int(exponent))
        if exponent.is_Rational and exponent.is_negative:
            return self._print_Mul(sympy.Mul(1, expr, evaluate=False))
        if exponent == sympy.Rational(1, 2):
            return f"{self.sqrt}({self._print(base)})"
        prec = precedence(expr)
        base, exponent = (
            self.parenthesize(base, prec, strict=True),
            self._print(exponent),
        )
        if not _SIMPLE.fullmatch(exponent):
            exponent = f"({exponent})"
        # the formatter hugs ``**`` only between simple operands (names, numbers)
        hug = _SIMPLE.fullmatch(base) and _SIMPLE.fullmatch(exponent)
        return f"{base}**{exponent}" if hug else f"{base} ** {exponent}"

    def form(self, expr) -> str | Conditional | None:
        """How this printer prints an activation's application (None for anything else)."""
        activation = descriptor(expr)
        return None if activation is None else self.forms[activation.name]

    def statement(self, expr) -> str:
        """``expr`` printed as the whole right-hand side of an assignment."""
        if isinstance(self.form(expr), Conditional):
            return self._conditional(expr)
        return self.doprint(expr)

    def _conditional(self, expr) -> str:
        form = self.form(expr)
        self.helpers.update(form.helpers)
        return form.rule(self._print(expr.args[0]), self._constant)

    def _print_activation(self, expr, exp=None):
        form = self.form(expr)
        if isinstance(form, Conditional):
            return f"({self._conditional(expr)})"
        self.helpers.add(form)
        return f"{form}({self._print(expr.args[0])}, {self._constant(1)})"

    def _print_Function(self, expr):
        # an activation added to FUNCTIONS after this module's import has no _print_<name>
        if descriptor(expr) is not None:
            return self._print_activation(expr)
        return super()._print_Function(expr)


for _activation in FUNCTIONS.values():
    setattr(NumbaPrinter, f"_print_{_activation.function.__name__}",
            NumbaPrinter._print_activation)  # fmt: skip


# -- the plan, printed ---------------------------------------------------------------------------
