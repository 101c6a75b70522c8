"""The kernels' schedules as plan nodes: the time loop, the transpose rules (made in one place,
checked here against autograd) and the reductions every accumulation names."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import ROOT, VARIANTS

from derive import registry
from derive.lower import lower
from derive.lower.kernels import projection, transpose_rules
from derive.lower.plan import (
    ArrayRole,
    Direction,
    Edge,
    EdgeKind,
    Extent,
    Loop,
    MatMul,
    Reduction,
    RowIndex,
    Store,
    Sum,
)
from derive.symbolic.adjoint import derive_adjoint

_PLANS: dict = {}


def _plan(variant):
    if variant not in _PLANS:
        _PLANS[variant] = lower(derive_adjoint(registry.get(variant)))
    return _PLANS[variant]


# -- the transpose rules against autograd ------------------------------------------------------

#: A number for every size a product's arrays are measured in (distinct, so that a wrong
#: transpose cannot line up by accident).
_SIZES = {"H": 3, "I": 5, "K": 4, "P": 6, "M": 7, None: 1}


def _value(op, values):
    """An operand's value (NumPy or torch): a parameter's rows, transposed where it says."""
    value = values[op.array.role, op.array.owner]
    if op.rows is not None and not op.rows.whole:
        n = _SIZES.get(op.rows.size, 2)
        value = value[op.rows.first * n : (op.rows.first + op.rows.count) * n]
    return value.T if op.transposed else value


@pytest.mark.parametrize(
    "variant", ["lstm", "gru", "mgu3", "antisymmetric_rnn", "ugrnn"]
)
def test_transpose_rules_are_the_gradients_of_their_product(variant):
    """Each product's forward node, run in rows of the batch on random arrays, differentiated
    by autograd, gives what its transpose rules compute (both orientations, whole weights and
    row blocks, with and without a bias)."""
    products = _plan(variant).products
    assert any(p.dense.transposed for p in products) == (variant == "antisymmetric_rnn")
    rng = np.random.default_rng(7)
    for p in products:
        shape = tuple(_SIZES.get(s, 2) * m for m, s in p.weight.width)
        weight = rng.standard_normal(shape)
        columns = shape[0] if p.dense.transposed else shape[1]
        values = {
            (p.weight.role, p.weight.owner): weight,
            (p.source.array.role, p.source.array.owner): rng.standard_normal(
                (6, columns)
            ),
        }
        if p.bias:
            ((mult, size),) = p.bias.width
            values[p.bias.role, p.bias.owner] = rng.standard_normal(_SIZES[size] * mult)
        forward = projection(p)
        tensors = {
            key: torch.tensor(v, requires_grad=True) for key, v in values.items()
        }
        result = _value(forward.left, tensors) @ _value(forward.right, tensors)
        if forward.bias:
            result = result + _value(forward.bias, tensors)
        upstream = rng.standard_normal(tuple(result.shape))
        (result * torch.tensor(upstream)).sum().backward()
        values[p.adjoint.role, p.adjoint.owner] = upstream
        back, grad, bias_rule = transpose_rules(p)
        expected_source = tensors[
            p.source.array.role, p.source.array.owner
        ].grad.numpy()
        np.testing.assert_allclose(
            _value(back.left, values) @ _value(back.right, values), expected_source
        )
        assert back.out.array == p.source_adjoint
        expected_weight = tensors[p.weight.role, p.weight.owner].grad.numpy()
        got = _value(grad.left, values) @ _value(grad.right, values)
        values[ArrayRole.PARAMETER_GRADIENT, p.weight.owner] = expected_weight
        np.testing.assert_allclose(got, _value(grad.out, values))
        assert grad.out.array.role == ArrayRole.PARAMETER_GRADIENT
        assert (bias_rule is None) == (p.bias is None)
        if bias_rule is not None:
            assert (
                bias_rule.over is Reduction.ROWS and bias_rule.source.array == p.adjoint
            )
            values[ArrayRole.PARAMETER_GRADIENT, p.bias.owner] = tensors[
                p.bias.role, p.bias.owner
            ].grad.numpy()
            np.testing.assert_allclose(
                upstream.sum(axis=0), _value(bias_rule.target, values)
            )


# -- the kernels' schedules --------------------------------------------------------------------


def _edges(nodes, kind):
    return [e.arrays for e in nodes if isinstance(e, Edge) and e.kind is kind]


@pytest.mark.parametrize("variant", VARIANTS)
def test_kernels_are_scheduled_around_the_step(variant):
    plan = _plan(variant)
    spec = plan.spec
    forward, backward = plan.forward, plan.backward
    inference = plan.inference.schedule
    assert forward.loop.direction is Direction.FORWARD
    assert inference.loop.direction is Direction.FORWARD
    assert backward.loop.direction is Direction.BACKWARD
    # forward: each stage's per-step products, then its loops; the input's products before
    expected = []
    for stage in plan.stages:
        expected += [projection(p) for p in stage.products if not p.hoisted]
        expected += list(stage.forward)
    assert list(forward.loop.body) == expected
    hoisted = [p for p in plan.products if p.hoisted]
    assert [n for n in forward.before if isinstance(n, MatMul)] == [
        projection(p) for p in hoisted
    ]
    # the states: started, carried past a row's length, passed through and handed back
    states = [s.name for s in spec.states]
    assert [a[0].owner for a in _edges(forward.before, EdgeKind.START)] == states
    assert [a[0].owner for a in _edges(forward.loop.leave, EdgeKind.CARRY)] == states
    assert [a[0].owner for a in _edges(inference.loop.leave, EdgeKind.CARRY)] == states
    assert [
        a[0].owner for a in _edges(backward.loop.enter, EdgeKind.PASS_THROUGH)
    ] == states
    assert [
        a[0].owner for a in _edges(backward.loop.leave, EdgeKind.HAND_BACK)
    ] == states
    assert [a[0] for a in _edges(backward.loop.enter, EdgeKind.CLEAR)] == list(
        plan.accumulators
    )
    # backward: the stages in reverse, each followed by its per-step products' source rules
    body = list(backward.loop.body)
    for stage in reversed(plan.stages):
        loops = [body.pop(0) for _ in stage.backward]
        assert [lp.stage for lp in loops] == [stage.index] * len(stage.backward)
        for p in stage.products:
            if not p.hoisted:
                rule = body.pop(0)
                assert (rule.product, rule.rule, rule.per_step) == (p, "source", True)
                assert rule.accumulate
    assert body == []
    # after the loop: every product's weight rule, its bias's sum, the input's source rules
    after = backward.after
    weights = [n for n in after if isinstance(n, MatMul) and n.rule == "weight"]
    assert [n.product for n in weights] == list(plan.products)
    sources = [n for n in after if isinstance(n, MatMul) and n.rule == "source"]
    assert [n.product for n in sources] == hoisted
    biases = [n for n in after if isinstance(n, Sum) and n.over is not Reduction.UNITS
              and n.target.array.role == ArrayRole.PARAMETER_GRADIENT]  # fmt: skip
    assert [n.target.array.owner for n in biases] == [
        p.bias.owner for p in plan.products if p.bias
    ]
    for n in biases:  # from the adjoint's rows, or from their sum made once for several
        assert n.over is (Reduction.NONE if n.unless else Reduction.ROWS)
    for n in weights:  # written whole only where no other product writes that weight
        others = [m for m in weights if m.out.array == n.out.array and m is not n]
        assert n.accumulate == bool(others or not n.product.rows.whole)
    loops_write_dx = any(
        isinstance(st, Store) and st.target.array.role == ArrayRole.INPUT_ADJOINT
        for n in backward.loop.body if isinstance(n, Loop) for st in n.body
    )  # fmt: skip
    written = [n for n in sources if not n.accumulate]
    assert len(written) == (0 if loops_write_dx or not sources else 1)
    assert not written or written[0] is sources[0]


def _reduction(store) -> Reduction:
    """What an accumulating store must reduce over, read off its target alone."""
    target = store.target
    if target.row == RowIndex.WHOLE:
        return Reduction.SEQUENCE
    if target.row == RowIndex.UNIT:
        return Reduction.ROWS
    if target.array.per_row:  # one element a row, for every unit of the loop
        return Reduction.UNITS
    return Reduction.NONE


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_accumulation_names_its_reduction(variant):
    plan = _plan(variant)
    loops = [lp for stage in plan.stages for lp in (*stage.forward, *stage.backward)]
    loops += [n for n in plan.backward.loop.body if isinstance(n, Loop)]
    for loop in loops:
        for st in loop.body:
            if not isinstance(st, Store):
                continue
            if not st.accumulate:
                assert st.over is Reduction.NONE, st
                continue
            expected = _reduction(st)
            if st.target.array.role == ArrayRole.UNIT_SUM:
                assert loop in plan.backward.loop.body
            assert st.over is expected, (variant, st.target, st.over, expected)
    # the kernel's loops hold no sum over the whole sequence: a unit sum and a Sum after
    kernel_stores = [st for n in plan.backward.loop.body if isinstance(n, Loop)
                     for st in n.body if isinstance(st, Store)]  # fmt: skip
    assert all(st.over is not Reduction.SEQUENCE for st in kernel_stores)
    for node in plan.backward.after:
        if isinstance(node, Sum) and node.over is Reduction.UNITS:
            assert node.source.array.role == ArrayRole.UNIT_SUM
            assert node.source.array.extent is Extent.NONE
            assert node.target.array.role == ArrayRole.PARAMETER_GRADIENT


def test_the_kernel_template_holds_no_schedule():
    """The time loop, the products and their transpose rules and every sum are printed from
    the plan's nodes: the kernel template writes none of them."""
    template = (ROOT / "templates" / "numba" / "kernel.py.j2").read_text()
    for text in ("range(steps", "np.dot", ".T", "+=", "_product", "add_rows"):
        assert text not in template, text
    assert re.findall(r"_runtime\.\w+(?=\()", template) == ["_runtime.cached"]


# -- the backend as a unit ---------------------------------------------------------------------


def test_the_backend_reserves_the_prefixes_of_the_arrays_it_names():
    from derive.emit.numba import kernel, names

    for role, pattern in kernel._NAMES.items():
        prefix = pattern.split("{}")[0]
        if "{}" in pattern:
            assert prefix.startswith(names.RESERVED_PREFIXES) or prefix == "", role
        else:
            assert pattern in names.RESERVED, role


def test_a_declaration_may_take_no_name_an_enabled_backend_reserves(monkeypatch):
    """The names a declaration may not take are the union of what the enabled backends
    reserve: a second backend's names and prefixes are refused beside the Numba backend's."""
    import sys
    import types

    from derive import backends
    from derive.symbolic.declare import Cell, DeclarationError

    other = types.SimpleNamespace(
        RESERVED=frozenset({"gain_table"}), RESERVED_PREFIXES=("gpu_",),
        PACKAGE_NAMES=frozenset({"devices"}),
    )  # fmt: skip
    monkeypatch.setitem(sys.modules, "derive.emit.other.names", other)
    monkeypatch.setattr(backends, "ENABLED", ("numba", "other"))
    backends.reserved.cache_clear()
    try:
        names, prefixes, packages = backends.reserved()
        assert {"gain_table", "lengths"} <= names and {"gpu_", "seq_"} <= set(prefixes)
        cell = Cell("mine", title="t", citation="c")
        for name in ("gain_table", "gpu_state", "lengths", "seq_h"):
            with pytest.raises(
                DeclarationError, match="reserved for the generated code"
            ):
                cell.state(name)
        cell.state("h")  # a name no backend reserves
        with pytest.raises(DeclarationError, match="taken by the generated package"):
            Cell("devices", title="t", citation="c")
    finally:
        monkeypatch.undo()
        backends.reserved.cache_clear()
    assert "gain_table" not in backends.reserved()[0]
