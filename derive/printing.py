"""Printers: SymPy expressions to Numba source (and, in :mod:`derive.latex`, to LaTeX).

Overrides are ``_print_<Function>`` methods; printed code is never edited as text afterwards.
"""

from __future__ import annotations

import sympy
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.pycode import PythonCodePrinter

from .functions import relu, relu_step

__all__ = ["NumbaPrinter", "constant_name"]


def constant_name(value: sympy.Number) -> str:
    """The name of a typed constant (``const_1``, ``const_1_2`` for 1/2)."""
    if value.is_Integer:
        return f"const_{int(value)}"
    if value.is_Rational:
        return f"const_{value.p}_{value.q}"
    raise ValueError(
        f"the kernel printer takes integer and rational constants only, got {value}"
    )


class NumbaPrinter(PythonCodePrinter):
    """Prints one scalar per unit, for a kernel compiled for float32 and float64 alike.

    Numbers become typed constants (``const_1``, defined once per kernel as ``real(1)``), so a
    float32 kernel never widens to double; the activations call the module's inlined helpers.
    """

    printmethod = "_numbacode"

    def __init__(self, indexed: dict[str, str] | None = None):
        super().__init__({"fully_qualified_modules": False, "standard": "python3"})
        self.indexed = indexed or {}
        self.constants: set[sympy.Number] = set()

    def _constant(self, value) -> str:
        value = sympy.nsimplify(value)
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

    def terms(self, expr) -> list[tuple[str, str]]:
        """The printed terms of a sum with their signs, in the order ``_print_Add`` uses."""
        if not expr.is_Add:
            return [("", self._print(expr))]
        out = []
        for term in self._as_ordered_terms(expr, order=None):
            text = self._print(term)
            sign = "+"
            if text.startswith("-"):
                sign, text = "-", text[1:]
            if precedence(term) < PRECEDENCE["Add"]:
                text = f"({text})"
            out.append((sign, text))
        return out

    def _print_Pow(self, expr, rational=False):
        base, exponent = expr.args
        if exponent.is_Integer and 2 <= exponent <= 4:
            factor = self.parenthesize(base, PRECEDENCE["Mul"], strict=False)
            return " * ".join([factor] * int(exponent))
        if exponent.is_Rational and exponent.is_negative:
            return self._print_Mul(sympy.Mul(1, expr, evaluate=False))
        if exponent == sympy.Rational(1, 2):
            return f"np.sqrt({self._print(base)})"
        prec = precedence(expr)
        return f"{self.parenthesize(base, prec, strict=True)}**{self.parenthesize(exponent, prec)}"

    def _print_sigmoid(self, expr):
        return f"_sigmoid({self._print(expr.args[0])}, {self._constant(1)})"

    def _print_tanh(self, expr):
        return f"_tanh({self._print(expr.args[0])}, {self._constant(1)})"

    def statement(self, expr) -> str:
        """``expr`` printed as the whole right-hand side of an assignment."""
        if isinstance(expr, (relu, relu_step)):
            return self._conditional(expr)
        return self.doprint(expr)

    def _conditional(self, expr) -> str:
        arg = self._print(expr.args[0])
        zero = self._constant(0)
        if isinstance(expr, relu):
            # "<=" rather than ">" so that NaN propagates, as in torch.relu
            return f"{zero} if {arg} <= {zero} else {arg}"
        return f"{self._constant(1)} if {arg} > {zero} else {zero}"

    def _print_relu(self, expr):
        return f"({self._conditional(expr)})"

    _print_relu_step = _print_relu
