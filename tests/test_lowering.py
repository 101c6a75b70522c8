"""The lowering: a plan of plain data, the smallest tape, and declarations that once broke it."""

from __future__ import annotations

import ast
import dataclasses
import enum
from pathlib import Path

import numpy as np
import pytest
import sympy
from conftest import ROOT, VARIANTS, load_generated

from derive import pipeline
from derive.emit.latex import LATEX_FORMS, DerivationPrinter
from derive.emit.numba import KERNEL_FORMS, NumbaPrinter
from derive.lower import lower
from derive.lower.plan import ArrayRole, KernelPlan, Load, Role
from derive.symbolic.activations import (
    FUNCTIONS,
    Activation,
    missing_forms,
    sigmoid,
    tanh,
)
from derive.symbolic.adjoint import derive_adjoint
from derive.symbolic.declare import Cell, DeclarationError
from derive.verify import import_kernel, sizes_for, verify
from derive.verify.twin import TORCH_FORMS
from generated import _runtime


def _plan(spec) -> KernelPlan:
    return lower(derive_adjoint(spec))


def _verified(spec, tmp_path):
    """Generate ``spec``'s kernel, import it and compare it with autograd in both dtypes."""
    pytest.importorskip("torch")
    run = pipeline.Run()
    files = pipeline.kernel_files([spec], run, package=False)
    module = import_kernel(tmp_path, files, spec.name)
    reports = verify(spec, module)
    bad = {r.dtype: r.worst for r in reports if not r.ok}
    assert not bad, bad
    return module


# -- declarations that used to break the lowering ---------------------------------------------


def _projects_new_state():
    """SCRN-like: the output reads a projection of the cell state's new value."""
    cell = Cell("projects_new", title="t", citation="c")
    x = cell.input()
    h, c = cell.state("h"), cell.state("c")
    W_x = cell.weight("weight_x", "f g", cols="I")
    W_h = cell.weight("weight_h", "f g", cols="H")
    W_c = cell.weight("weight_c", "o", cols="H")
    wx, wh = cell.dense(W_x, x), cell.dense(W_h, h.prev)
    f = cell.gate("f", sigmoid(wx.f + wh.f))
    cell.update(c, f * c.prev + (1 - f) * tanh(wx.g + wh.g))
    wc = cell.dense(W_c, c.new)
    cell.update(h, tanh(wc.o) * f)
    return cell.build()


def _carries_input():
    """A strongly-typed-RNN-like cell carrying x_{t-1}, a state of input size."""
    cell = Cell("carries_input", title="t", citation="c")
    x = cell.input()
    h, xp = cell.state("h"), cell.state("xp", size="I")
    W = cell.weight("weight_x", "h", cols="I")
    V = cell.weight("weight_p", "h", cols="I")
    wx, wp = cell.dense(W, x), cell.dense(V, xp.prev)
    cell.update(h, tanh(wx.h + wp.h) + h.prev * sigmoid(wp.h))
    cell.update(xp, x * 2)
    return cell.build()


def _unread_state():
    """An output state whose previous value no equation reads."""
    cell = Cell("unread_state", title="t", citation="c")
    x = cell.input()
    h, y = cell.state("h"), cell.state("y", output=True)
    W_ih, W_hh, b_ih, b_hh = cell.pytorch_params("h")
    wx, wh = cell.dense(W_ih, x, bias=b_ih), cell.dense(W_hh, h.prev, bias=b_hh)
    cell.update(h, tanh(wx.h + wh.h))
    cell.update(y, h.new * h.new)
    return cell.build()


def _input_equals_extra_size():
    """The input added pointwise to a vector of a declared size P: I == P, H free."""
    cell = Cell("input_equals_extra", title="t", citation="c")
    P = cell.size("P", "proj_size")
    x = cell.input()
    h, c = cell.state("h", size=P), cell.state("c")
    W = cell.weight("weight_hh", "h", cols=P, block_size=P)
    U = cell.weight("weight_ch", "c", cols=P)
    wh, uh = cell.dense(W, h.prev), cell.dense(U, h.prev)
    cell.update(h, tanh(x + wh.h))
    cell.update(c, sigmoid(uh.c) * c.prev)
    return cell.build()


def test_a_projection_of_a_new_state_gets_its_accumulator(tmp_path):
    plan = _plan(_projects_new_state())
    assert "c_new" in {a.owner for a in plan.accumulators}
    module = _verified(_projects_new_state(), tmp_path)
    assert "buf_c_new = np.empty" in Path(module.__file__).read_text()


def test_a_state_of_input_size_reads_the_input_size(tmp_path):
    module = _verified(_carries_input(), tmp_path)
    assert module.STATE_SIZES == {"h": "H", "xp": "I"}
    assert "size_I = seq_x.shape[1]" in Path(module.__file__).read_text()


def test_a_state_whose_previous_value_is_unread_verifies(tmp_path):
    module = _verified(_unread_state(), tmp_path)
    problem_sizes = sizes_for(module)
    params = module.init_params(**problem_sizes, dtype=np.float64)
    x = np.ones((3, 2, problem_sizes["input_size"]))
    ys, finals, tape = module.forward(x, None, params)
    _, (dh0, dy0), _ = module.backward(ys, finals, tape)
    assert not dy0.any() and dh0.any()


def test_sizes_for_solves_a_constraint_with_an_extra_size(tmp_path):
    module = _verified(_input_equals_extra_size(), tmp_path)
    assert module.SIZE_CONSTRAINTS == (("I", "P"),)
    sizes = sizes_for(module)
    assert sizes["input_size"] == sizes["proj_size"] != sizes["hidden_size"]


# -- the smallest tape -----------------------------------------------------------------------


def _backward_reads(plan: KernelPlan) -> set:
    """The tape arrays the backward pass reads: loads in its loops, sources of its products."""
    read = {
        source.array
        for stage in plan.stages
        for loop in stage.backward
        for st in loop.body
        if isinstance(st, Load)
        for source in st.sources
    }
    read |= {p.source.array for p in plan.products}
    return {a for a in read if a.role == ArrayRole.TAPE}


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_tape_is_exactly_what_the_backward_reads(variant):
    from derive import registry

    plan = _plan(registry.get(variant))
    # ... and an output that is not a state, which the forward returns from the tape
    output = {plan.output} if plan.output.role == ArrayRole.TAPE else set()
    assert set(plan.tape) == _backward_reads(plan) | output
    assert len(set(plan.tape)) == len(plan.tape)


@pytest.mark.parametrize("variant", VARIANTS)
def test_saved_bytes_match_the_arrays_the_forward_keeps(variant):
    cell = load_generated(variant)
    sizes = sizes_for(cell)
    params = cell.init_params(**sizes, dtype=np.float64)
    steps, batch = 3, 2
    x = np.zeros((steps, batch, sizes["input_size"]))
    _, _, tape = cell.forward(x, None, params)
    kept = [tape["arrays"][name] for name in cell._FORWARD_RETURNS]
    per_step = sum(a.shape[1] for a in kept)  # scalars per batch row and step
    assert (
        cell.saved_bytes_per_step(batch, **sizes, dtype=np.float64)
        == 8 * batch * per_step
    )
    # and every kept array but the state sequences (and an output that is not a state, kept
    # for the caller) is an argument the backward kernel reads
    source = Path(cell.__file__).read_text()
    kernel = next(node for node in ast.parse(source).body
                  if isinstance(node, ast.FunctionDef) and node.name == "backward_kernel")  # fmt: skip
    loaded = {n.id for n in ast.walk(kernel) if isinstance(n, ast.Name)}
    saved = {name for name in cell._FORWARD_RETURNS if name.startswith("save_")}
    assert saved - {cell._OUTPUT_ARRAY[0]} <= loaded


@pytest.mark.parametrize(
    "variant, scalars",
    [("gru_cho", 5), ("mgu", 4), ("mut2", 5), ("mut3", 6), ("gru", 5)],
)
def test_two_stage_cells_save_no_input_projection(variant, scalars):
    # the blocks of the input projection that a second stage reads are in its result over
    # all steps; only what the backward reads is saved
    cell = load_generated(variant)
    assert cell.SAVED_PER_STEP == ((scalars, "H"),)
    assert not [name for name in cell._FORWARD_RETURNS if name.startswith("save_ih")]


# -- the plan is data ------------------------------------------------------------------------


def _strings(value, seen=None):
    """Every string inside a plan (dataclass fields, containers), SymPy objects excluded."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (sympy.Basic, enum.Enum)) or value is None:
        return
    elif type(value).__module__ == "derive.symbolic.declare":
        return  # the declaration's own objects, free text included
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _strings(getattr(value, f.name))
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, (tuple, list, set, frozenset)):
        for item in value:
            yield from _strings(item)


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_plan_holds_no_printed_code(variant):
    from derive import registry

    plan = _plan(registry.get(variant))
    strings = set(_strings(plan))
    assert strings and all(s.isidentifier() for s in strings), sorted(
        s for s in strings if not s.isidentifier()
    )
    roles = {v.role for v in plan.values.values()}
    assert {Role.INPUT, Role.PREVIOUS, Role.NEW} <= roles


def test_every_function_in_derive_is_short():
    longest = max(
        (node.end_lineno - node.lineno + 1, f"{path.relative_to(ROOT)}:{node.name}")
        for path in (ROOT / "derive").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    )
    assert longest[0] < 80, longest


# -- one descriptor per activation -----------------------------------------------------------


def test_an_activation_missing_a_piece_fails_when_described():
    with pytest.raises(TypeError, match="lacks derivative"):
        Activation("softsign", sigmoid, "y / (1 + |y|)")
    with pytest.raises(TypeError, match="lacks function"):
        Activation("softsign", object, lambda y: y)
    # a backend's table without a line for an activation fails at the backend's import
    with pytest.raises(ImportError, match=r"the Numba backend has no form .*'tanh'"):
        missing_forms({"sigmoid": "_sigmoid"}, "Numba backend")
    without_elu = {k: v for k, v in TORCH_FORMS.items() if k != "elu"}
    with pytest.raises(
        ImportError, match=r"the twin reference has no form .*\['elu'\]"
    ):
        missing_forms(without_elu, "twin reference", declarable_only=True)


def test_every_activation_is_printed_by_every_backend():
    a = sympy.Symbol("a")
    for activation in FUNCTIONS.values():
        form = KERNEL_FORMS[activation.name]
        # the runtime defines every helper a kernel form calls
        for helper in (form,) if isinstance(form, str) else form.helpers:
            assert callable(getattr(_runtime, helper)), activation.name
        applied = activation.function(a)
        head = LATEX_FORMS[activation.name][0]
        assert head in DerivationPrinter({}).doprint(applied)
        assert NumbaPrinter().statement(applied), activation.name
        if activation.declarable:
            torch = pytest.importorskip("torch")
            function = torch
            for name in TORCH_FORMS[activation.name].split("."):
                function = getattr(function, name)
            assert callable(function)


def test_an_unsupported_function_is_refused_at_declaration():
    cell = Cell("uses_erf", title="t", citation="c")
    x = cell.input()
    with pytest.raises(
        DeclarationError, match=r"test_lowering.py:\d+: .*uses erf.*sigmoid.*softplus"
    ):
        cell.let("q", sympy.erf(x))
    with pytest.raises(DeclarationError, match="exact numbers"):
        cell.let("q", x * 0.5)
