"""The functions a declaration may apply: each one derived, printed and verified end to end (kernel
against autograd in float64 and float32), and everything else refused at the declaring line."""

from __future__ import annotations

import ast
import importlib
import math

import numpy as np
import pytest
import sympy
from conftest import assert_verifies, build_kernel
from hypothesis import given, settings
from hypothesis import strategies as st

from derive import pipeline
from derive.emit.cuda import CUDA_FORMS
from derive.emit.latex import LATEX_FORMS, DerivationPrinter
from derive.emit.numba import KERNEL_FORMS, Conditional, NumbaPrinter, constant_name
from derive.symbolic.activations import (
    ACTIVATIONS,
    FUNCTIONS,
    Activation,
    _Unary,
    cos,
    elu,
    exp,
    hard_sigmoid,
    log,
    sigmoid,
    sin,
    softplus,
    tanh,
)
from derive.symbolic.declare import Cell, DeclarationError
from derive.verify import Problem, relative_error
from derive.verify.twin import TORCH_FORMS
from derive.verify.twin import _evaluate as twin

#: Each new function inside a small gated cell; ``log`` reads a positive argument.
CASES = {
    "exp": lambda a: exp(-(a**2)),
    "log": lambda a: log(1 + a**2),
    "sin": sin,
    "cos": cos,
    "softplus": softplus,
    "elu": elu,
    "hard_sigmoid": hard_sigmoid,
}


def _cell(name: str, function):
    cell = Cell(f"uses_{name}", title="t", citation="c")
    x = cell.input()
    h = cell.state("h")
    W_x = cell.weight("weight_ih", "z n", cols="I")
    W_h = cell.weight("weight_hh", "z n", cols="H")
    b = cell.bias("bias", "z n")
    wx, wh = cell.dense(W_x, x, bias=b), cell.dense(W_h, h.prev)
    z = cell.gate("z", sigmoid(wx.z + wh.z))
    n = cell.let("n", function(wx.n + wh.n))
    cell.update(h, z * h.prev + (1 - z) * tanh(n))
    return cell.build()


def test_every_declarable_function_has_a_case():
    assert set(CASES) | {"sigmoid", "tanh", "relu", "identity"} == set(ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_function_verifies_against_autograd(name, tmp_path):
    spec = _cell(name, CASES[name])
    text, module = build_kernel(spec, tmp_path)
    assert_verifies(spec, module)
    # the function reached the kernel through its own helper or conditional, not a library call
    form = KERNEL_FORMS[name]
    assert isinstance(form, Conditional) or f"{form}(" in text


class silu(_Unary):  # noqa: N801 (SymPy functions are lower case)
    """``a sigmoid(a)``: an activation the test below adds."""


def test_a_new_activation_is_one_core_entry_and_one_line_per_backend(
    monkeypatch, tmp_path
):
    """SiLU added as users would add it: its mathematics in the core, and a line in the
    table of each backend (the Numba and CUDA kernels, the documents, the PyTorch twin)."""

    def derivative(y):  # d(a s)/da = s + a s (1 - s), s = sigmoid(a), through y = a s
        s = sigmoid(y.args[0])
        return s + y * (1 - s)

    def kernel(a, constant):
        return f"({a}) * _sigmoid({a}, {constant(1)})"

    monkeypatch.setitem(FUNCTIONS, "silu", Activation("silu", silu, derivative))
    monkeypatch.setitem(KERNEL_FORMS, "silu", Conditional(kernel, ("_sigmoid",)))
    monkeypatch.setitem(CUDA_FORMS, "silu", Conditional(kernel, ("_sigmoid",)))
    monkeypatch.setitem(LATEX_FORMS, "silu", (r"\operatorname{SiLU}",))
    monkeypatch.setitem(TORCH_FORMS, "silu", "nn.functional.silu")
    spec = _cell("silu", silu)
    text, module = build_kernel(spec, tmp_path)
    assert "_sigmoid(n_pre, const_1)" in text
    assert_verifies(spec, module)
    (document,) = pipeline.doc_files([spec], pipeline.Run(), catalog=False).values()
    assert r"\operatorname{SiLU}" in document
    package = module.__name__.rpartition(".")[0]
    on_gpu = importlib.import_module(f"{package}.cuda.{spec.name}")
    got, want = (
        Problem(c, np.float64, steps=2, batch=2).run() for c in (on_gpu, module)
    )
    assert relative_error(got[0], want[0]) <= 1e-9  # the outputs
    assert relative_error(got[2], want[2]) <= 1e-9  # the input's gradient
    assert all(relative_error(got[4][k], v) <= 1e-9 for k, v in want[4].items())


def test_the_kernel_imports_only_the_helpers_it_calls_from_the_one_runtime():
    files = pipeline.kernel_files(
        [_cell("softplus", softplus)], pipeline.Run(), package=False
    )
    text = files["uses_softplus.py"]
    imported = {
        alias.name
        for node in ast.parse(text).body
        if isinstance(node, ast.ImportFrom) and node.module == "_runtime"
        for alias in node.names
    }
    assert "_softplus" in imported and not {"_log", "_exp", "_sin"} & imported
    # the runtime defines every helper, and the kernel module none
    assert "def _" not in text
    helpers = {"_softplus", "_log", "_exp", "_sigmoid", "_tanh", "_sin", "_cos"}
    assert all(f"def {h}(" in files["_runtime.py"] for h in helpers)


@pytest.mark.parametrize(
    "name, reference", [("elu", "elu"), ("hard_sigmoid", "hardsigmoid")]
)
def test_a_piecewise_kernel_form_matches_torch_at_its_kinks(name, reference):
    """The printed conditional of the function and of its slope (written through the output),
    evaluated on both sides of each kink and on it, against torch's value and gradient."""
    torch = pytest.importorskip("torch")
    a, y = sympy.symbols("a y")
    applied = FUNCTIONS[name].function(a)
    printer = NumbaPrinter()
    value_code = printer.statement(applied)
    slope_code = printer.statement(sympy.diff(applied, a).xreplace({applied: y}))
    constants = {constant_name(c): float(c) for c in printer.constants}
    namespace = {**constants, "_expm1": math.expm1}
    for value in (-4.0, -3.0, -2.999, -1e-3, 0.0, 1e-3, 2.999, 3.0, 4.0):
        got = eval(value_code, {**namespace, "a": value})  # noqa: S307 (the printer's own text)
        slope = eval(slope_code, {**namespace, "y": got})  # noqa: S307
        for want, tolerance in (
            (twin, 1e-15),
            (getattr(torch.nn.functional, reference), 1e-7),
        ):
            t = torch.tensor(value, dtype=torch.float64, requires_grad=True)
            out = want(t) if want is not twin else twin(applied, {a: t}, torch)
            out.backward()
            assert got == pytest.approx(out.item(), rel=1e-15, abs=1e-15), value
            # torch's hardsigmoid gradient uses 1/6 rounded to float32; the twin's is exact
            assert slope == pytest.approx(t.grad.item(), rel=tolerance, abs=1e-15), (
                value
            )


def test_max_and_min_are_written_through_relu_and_verify(tmp_path):
    """``Max`` and ``Min`` (of two or more arguments, symbols or numbers) become ReLUs at the
    declaring line, so that every stage prints and differentiates them."""
    torch = pytest.importorskip("torch")
    a, b, c = sympy.symbols("a b c")
    rng = torch.Generator().manual_seed(0)
    for extremum, reference in ((sympy.Max, torch.maximum), (sympy.Min, torch.minimum)):
        spec = _cell(
            extremum.__name__, lambda v, f=extremum: f(v, sympy.Rational(1, 2), -v)
        )
        (n,) = [eq for eq in spec.equations if eq.target.name == "n"]
        assert not n.expr.atoms(sympy.Max, sympy.Min) and n.expr.has(
            FUNCTIONS["relu"].function
        )
        # the rewritten form equals torch's extremum, value and gradient, away from ties
        values = [torch.randn(64, generator=rng, dtype=torch.float64, requires_grad=True)
                  for _ in range(3)]  # fmt: skip
        rewritten = _check(extremum(a, b, c))
        got = twin(rewritten, dict(zip((a, b, c), values, strict=True)), torch)
        want = reference(reference(values[0], values[1]), values[2])
        # the same up to rounding (c + (a - c) is a within an ulp); the same gradients
        torch.testing.assert_close(got, want, rtol=0, atol=1e-15)
        grads = torch.autograd.grad(got.sum(), values)
        for g, w in zip(grads, torch.autograd.grad(want.sum(), values), strict=True):
            assert torch.equal(g, w)
        _, module = build_kernel(spec, tmp_path / extremum.__name__)
        assert_verifies(spec, module)


def _check(expr):
    from derive.symbolic.declare import _check_functions

    return _check_functions(expr, "here")


REFUSED = {
    "Abs": sympy.Abs,
    "erf": sympy.erf,
    "Piecewise": lambda x: sympy.Piecewise((x, x > 0), (0, True)),
    "pi": lambda x: sympy.pi * x,
    "E": lambda x: sympy.E * x,
    "oo": lambda x: sympy.oo * x,
    "nan": lambda x: sympy.nan * x,
    "I": lambda x: sympy.I * x,
    "power": lambda x: x ** sympy.Symbol("h_prev"),
    "undefined": lambda x: sympy.Function("f")(x),
    "relu_step": lambda x: FUNCTIONS["relu_step"].function(x),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_what_cannot_be_printed_is_refused_at_the_declaring_line(name):
    cell = Cell("refused", title="t", citation="c")
    x = cell.input()
    cell.state("h")
    with pytest.raises(
        DeclarationError,
        match=r"test_functions.py:\d+: .* uses (.*sigmoid|.*exact number)",
    ):
        cell.let("q", REFUSED[name](x))


_LEAVES = st.sampled_from([sympy.Symbol("x"), sympy.Symbol("h_prev"), sympy.Integer(2),
                           sympy.Rational(1, 3)])  # fmt: skip
_UNARY = st.sampled_from([*(f for n, f in ACTIVATIONS.items() if n != "identity"),
                          sympy.erf, sympy.Abs, sympy.sinh, sympy.atan])  # fmt: skip


def _expressions():
    return st.recursive(
        _LEAVES,
        lambda inner: st.one_of(
            st.builds(lambda a, b: a + b, inner, inner),
            st.builds(lambda a, b: a * b, inner, inner),
            st.builds(lambda f, a: f(a), _UNARY, inner),
            st.builds(lambda a: a ** sympy.Rational(3, 2), inner),
        ),
        max_leaves=6,
    )


@settings(max_examples=150, deadline=None)
@given(_expressions())
def test_an_expression_is_accepted_only_if_every_emitter_prints_it(expr):
    """Hypothesis: whatever a declaration is given, it is refused with the line, or it is
    printed by the kernel printer and the LaTeX printer and evaluated by the twin."""
    cell = Cell("fuzzed", title="t", citation="c")
    x = cell.input()
    h = cell.state("h")
    assert x.name == "x" and h.prev.name == "h_prev"
    try:
        cell.let("q", expr)
    except DeclarationError as error:
        assert "test_functions.py:" in str(error)
        # an unsupported function, or what SymPy evaluated a supported one to: log(-a) is
        # log(a) + I*pi, log(0) is zoo
        assert any(
            isinstance(node, (sympy.erf, sympy.Abs, sympy.sinh, sympy.atan,
                              sympy.NumberSymbol, sympy.core.numbers.ImaginaryUnit))
            or (node.is_Number and not (node.is_Rational and node.is_finite))
            for node in sympy.preorder_traversal(expr)
        ), error  # fmt: skip
        return
    NumbaPrinter().doprint(expr)
    DerivationPrinter({}).doprint(expr)
    torch = pytest.importorskip("torch")
    env = {sympy.Symbol("x"): torch.tensor(0.3, dtype=torch.float64),
           sympy.Symbol("h_prev"): torch.tensor(0.7, dtype=torch.float64)}  # fmt: skip
    twin(expr, env, torch)


# -- hyperparameters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "default, match",
    [
        (float("nan"), "finite real number"),
        (float("inf"), "finite real number"),
        (True, "finite real number"),
        ("0.5", "finite real number"),
        (sympy.Symbol("a"), "finite real number"),
    ],
)
def test_a_hyperparameter_default_must_be_a_finite_number(default, match):
    cell = Cell("hyper", title="t", citation="c")
    with pytest.raises(DeclarationError, match=rf"test_functions.py:\d+: .*{match}"):
        cell.hyper("dt", default)


def test_hyperparameter_names_and_use_are_checked():
    cell = Cell("hyper", title="t", citation="c")
    x = cell.input()
    h = cell.state("h")
    with pytest.raises(DeclarationError, match="reserved"):
        cell.hyper("lengths", 1)
    with pytest.raises(DeclarationError, match="already taken"):
        cell.hyper("h_prev", 1)
    cell.hyper("unused", 1)
    dt = cell.hyper("dt", sympy.Rational(1, 2))
    wx = cell.dense(cell.weight("weight_ih", "h", cols="I"), x)
    cell.update(h, h.prev + dt * wx.h)
    with pytest.raises(DeclarationError, match="hyperparameter 'unused' is never used"):
        cell.build()


def test_a_hyperparameter_is_a_symbol_without_a_gradient():
    from derive import registry
    from derive.symbolic.adjoint import derive_adjoint

    spec = registry.get("cornn")
    assert [h.name for h in spec.hypers] == ["dt", "gamma", "epsilon"]
    adjoint = derive_adjoint(spec)
    hypers = {h.symbol for h in spec.hypers}
    assert not hypers & set(adjoint.terms) and not hypers & set(adjoint.saved)
    assert any(
        hypers & t.expr.free_symbols for ts in adjoint.terms.values() for t in ts
    )
