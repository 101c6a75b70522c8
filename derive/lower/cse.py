"""Common subexpressions of a loop's statements, each temporary placed before its first use.

Temporaries get readable names where they are one function of one value (``tanh_c_new`` for
``tanh(c_new)``), else ``tmpN``; a piecewise function (ReLU and its step) inside a larger
expression gets a statement of its own, so that it reads, and prints, as a whole right-hand
side. Names already used in the step are never taken.
"""

from __future__ import annotations

from dataclasses import replace

import sympy

from ..symbolic.activations import FUNCTIONS, descriptor
from .plan import Assign, Store

__all__ = ["eliminate"]


def eliminate(
    statements: list[Assign | Store], taken: set[str]
) -> list[Assign | Store]:
    """CSE over ``statements`` (in order); returns them with their temporaries interleaved."""
    temps, reduced = sympy.cse(
        [st.expr for st in statements],
        symbols=sympy.numbered_symbols("tmp"),
        order="canonical",
    )
    names = _temp_names(temps, set(taken))
    rename = {t: sympy.Symbol(names[t]) for t, _ in temps}
    temp_expr = {rename[t]: e.xreplace(rename) for t, e in temps}
    reduced = _lift_piecewise(
        [e.xreplace(rename) for e in reduced],
        temp_expr,
        set(taken) | set(names.values()),
    )
    out: list[Assign | Store] = []
    emitted: set[sympy.Symbol] = set()

    def emit_temps(expr):
        for sym in sorted(expr.free_symbols, key=sympy.default_sort_key):
            if sym in temp_expr and sym not in emitted:
                emit_temps(temp_expr[sym])
                emitted.add(sym)
                out.append(Assign(sym, temp_expr[sym]))

    for statement, expr in zip(statements, reduced, strict=True):
        emit_temps(expr)
        out.append(replace(statement, expr=expr))
    return out


def _temp_names(temps, taken: set[str]) -> dict:
    names = {}
    for n, (sym, expr) in enumerate(temps):
        name = f"tmp{n}"
        if descriptor(expr) is not None and expr.args[0].is_Symbol:
            candidate = f"{type(expr).__name__}_{expr.args[0].name}"
            if candidate not in taken:
                name = candidate
        while name in taken:
            name = f"_{name}"
        taken.add(name)
        names[sym] = name
    return names


def _lift_piecewise(exprs, temp_expr, taken) -> list:
    """Give every piecewise function inside a larger expression a statement of its own;
    ``temp_expr`` gains the new temporaries."""
    lifted: dict[sympy.Expr, sympy.Symbol] = {}
    piecewise = tuple(a.function for a in FUNCTIONS.values() if a.piecewise)

    def lift(node):
        if node in lifted:
            return lifted[node]
        inner = node.func(*(replace_inner(a) for a in node.args))
        arg = inner.args[0]
        name = f"{node.func.__name__}_{arg.name}" if arg.is_Symbol else ""
        if not name or name in taken:
            name = f"tmp_{node.func.__name__}{len(lifted)}"
        taken.add(name)
        lifted[node] = sympy.Symbol(name)
        temp_expr[lifted[node]] = inner
        return lifted[node]

    def replace_inner(expr):
        nodes = sorted(expr.atoms(*piecewise), key=sympy.count_ops)
        return expr.xreplace({n: lift(n) for n in nodes})

    def top(expr):
        if isinstance(expr, piecewise):
            return expr.func(*(replace_inner(a) for a in expr.args))
        return replace_inner(expr)

    for sym in list(temp_expr):
        temp_expr[sym] = top(temp_expr[sym])
    return [top(e) for e in exprs]
