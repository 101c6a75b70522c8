"""Property-based tests: random declarations and random arguments.

* Any identifiers and free text in a declaration either are refused with the declaration's file
  and line, or yield a module that imports (no string in it runs), kernels that agree with
  autograd, and documents that render (and compile, where pdflatex is installed).
* Any arguments to a generated module's ``forward`` and ``backward`` either are refused with a
  ``ValueError`` or ``TypeError`` naming the argument, or give the result of the twin reference
  run row by row: never a Numba error, never a crash.
"""

from __future__ import annotations

import builtins
import shutil

import numpy as np
import pytest
from conftest import load_generated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_robustness import HOSTILE, _cell, _module

from derive import pipeline, registry
from derive.emit.pdf import compile_pdf
from derive.symbolic.declare import DeclarationError
from derive.verify import TOLERANCE, verify

SETTINGS = {
    "deadline": None,
    "database": None,
    "derandomize": True,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
    ],
}

#: Identifiers as users might write them, the reserved and NFKC-folding ones among them.
_plain = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,6}", fullmatch=True)
identifiers = st.one_of(
    _plain,
    st.text(st.characters(categories=("Lu", "Ll", "Lo", "Nd", "Pc")), min_size=1, max_size=5),
    st.sampled_from(["range", "np", "lengths", "x", "dx", "tmp1", "_a", "ｐ", "ﬁ", "batch",
                     "real", "n", "unit", "load", "h", "f", "p", "input", "math", "row"]),
)  # fmt: skip
free_text = st.one_of(st.text(max_size=40), st.sampled_from(HOSTILE))


def _declare(names, texts):
    title, citation, convention = texts
    try:
        return _cell(title=title, citation=citation, conventions=(convention,), **names)
    except DeclarationError as error:
        assert str(error).startswith("test_robustness.py:"), error
        return None


def _names(identifier):
    return st.fixed_dictionaries(
        {"state": identifier, "gate": identifier, "weight": identifier.map("weight_{}".format),
         "vector": identifier, "scalar": identifier.map("{}_s".format),
         "size": identifier}
    )  # fmt: skip


#: Mostly plain names, so that most declarations are accepted and exercised end to end.
names_strategy = st.one_of(_names(_plain), _names(_plain), _names(identifiers))


@settings(max_examples=60, **SETTINGS)
@given(names=names_strategy, texts=st.tuples(free_text, free_text, free_text))
def test_accepted_declarations_import_and_document(tmp_path_factory, names, texts):
    spec = _declare(names, texts)
    if spec is None:
        return
    module = _module(spec, tmp_path_factory.mktemp("kernels"))
    assert not getattr(builtins, "gatesmith_injected", False)
    assert texts[0] in module.__doc__ and module.STATES == (names["state"], "m")
    run = pipeline.Run()
    for fmt, environment in (("latex", "align*"), ("markdown", "aligned")):
        (text,) = pipeline.doc_files([spec], run, fmt, catalog=False).values()
        opened = text.count(f"\\begin{{{environment}}}")
        assert opened == text.count(f"\\end{{{environment}}}") > 0
        text.encode("utf-8")  # every character writable


@settings(max_examples=10, **SETTINGS)
@given(names=names_strategy, texts=st.tuples(free_text, free_text, free_text))
def test_accepted_declarations_run_verify_and_compile(tmp_path_factory, names, texts):
    pytest.importorskip("torch")
    spec = _declare(names, texts)
    if spec is None:
        return
    folder = tmp_path_factory.mktemp("kernels")
    module = _module(spec, folder)
    reports = verify(spec, module)
    assert all(r.ok for r in reports), [(r.dtype, r.worst) for r in reports]
    if shutil.which("pdflatex"):
        run = pipeline.Run()
        files = pipeline.doc_files([spec], run, "latex", catalog=False)
        pipeline.write_docs(folder, files, run, prune=False)
        (name,) = files
        assert compile_pdf(folder / name).pages >= 1


# -- the generated modules' arguments ----------------------------------------------------------

#: What one call may have wrong, and the argument its error must name.
DAMAGES = {
    "steps": "x", "batch": "x", "dtype": "x", "fortran": "x", "strided": "x", "list": "x",
    "size": "params", "param drop": "params", "param extra": "params",
    "param shape": "params", "param dtype": "params", "state rows": "initial_states",
    "state count": "initial_states", "state dtype": "initial_states",
    "lengths range": "lengths", "lengths count": "lengths", "lengths float": "lengths",
}  # fmt: skip


def _layout(x, damage):
    if damage == "fortran":
        return np.asfortranarray(x)
    if damage == "strided":
        return np.repeat(x, 2, axis=2)[:, :, ::2]
    if damage == "list":
        return x.tolist()
    if damage == "dtype":
        return x.astype(np.float16)
    return x


def _damage_params(params, damage):
    if damage == "param drop":
        params.pop("bias_hh")
    elif damage == "param extra":
        params["bias_xx"] = params["bias_hh"]
    elif damage == "param shape":
        params["weight_hh"] = params["weight_hh"][:, :2].copy()
    elif damage == "param dtype":
        params["bias_ih"] = params["bias_ih"].astype(np.int64)
    return params


@st.composite
def calls(draw):
    """A variant and arguments for its forward: half of them valid, the others with one
    thing wrong (``damage``, None when valid)."""
    variant = draw(st.sampled_from(["gru", "lstm"]))
    cell = load_generated(variant)
    damage = draw(st.one_of(st.none(), st.sampled_from(sorted(DAMAGES))))
    steps = 0 if damage == "steps" else draw(st.integers(1, 4))
    batch = 0 if damage == "batch" else draw(st.integers(1, 3))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((steps, batch, 3 if damage == "size" else 2)).astype(dtype)
    x = _layout(x, damage)
    if damage in ("fortran", "strided") and x.flags.c_contiguous:
        damage = None  # too small for the layout to differ
    params = _damage_params(cell.init_params(2, 3, dtype=dtype, seed=1), damage)
    states = None
    if draw(st.booleans()) or damage and damage.startswith("state"):
        rows = batch + (damage == "state rows")
        states = [rng.standard_normal((rows, 3)).astype(dtype) for _ in cell.STATES]
        if damage == "state count":
            states.pop()
        if damage == "state dtype":
            states[0] = states[0].astype(np.float16)
        states = tuple(states)
    lengths = None
    if steps and (draw(st.booleans()) or damage and damage.startswith("lengths")):
        count = batch + (damage == "lengths count")
        low, high = (0, steps + 1) if damage == "lengths range" else (1, steps)
        lengths = draw(st.lists(st.integers(low, high), min_size=count, max_size=count))
        if damage == "lengths range":
            lengths[0] = draw(st.sampled_from([0, -1, steps + 1]))
        lengths = np.array(
            lengths, dtype=float if damage == "lengths float" else np.int64
        )
    return variant, damage, x, states, params, lengths


def _reference(variant, x, states, params, lengths):
    """The twin reference run row by row over each row's own length, in float64."""
    import torch

    from derive.verify.twin import twin_forward

    spec = registry.get(variant)
    steps, batch, _ = x.shape
    ys = np.zeros((steps, batch, 3))
    finals = [np.zeros((batch, 3)) for _ in spec.states]
    tensors = {k: torch.tensor(v.astype(np.float64)) for k, v in params.items()}
    for b in range(batch):
        length = steps if lengths is None else int(lengths[b])
        if states is None:
            initial = tuple(
                torch.zeros((1, 3), dtype=torch.float64) for _ in spec.states
            )
        else:
            initial = tuple(
                torch.tensor(s[b : b + 1].astype(np.float64)) for s in states
            )
        row = torch.tensor(x[:length, b : b + 1].astype(np.float64))
        out, last = twin_forward(spec, row, initial, tensors)
        ys[:length, b] = out[:, 0].numpy()
        for final, value in zip(finals, last, strict=True):
            final[b] = value[0].numpy()
    return ys, finals


@settings(max_examples=250, **SETTINGS)
@given(call=calls())
def test_module_arguments_are_refused_by_name_or_computed_right(call):
    torch = pytest.importorskip("torch")  # noqa: F841  (the reference)
    variant, damage, x, states, params, lengths = call
    cell = load_generated(variant)
    try:
        ys, finals, tape = cell.forward(x, states, params, lengths)
    except (ValueError, TypeError) as error:
        assert damage is not None, error
        assert type(error) in (ValueError, TypeError)
        assert f"forward: {DAMAGES[damage]}" in str(error), (damage, error)
        return
    assert damage is None
    want_ys, want_finals = _reference(variant, np.asarray(x), states, params, lengths)
    tolerance = (
        TOLERANCE[np.float32] if ys.dtype == np.float32 else TOLERANCE[np.float64]
    )
    scale = max(1.0, float(np.abs(want_ys).max(initial=0)))
    assert np.abs(ys - want_ys).max(initial=0) <= tolerance * scale
    for got, want in zip(finals, want_finals, strict=True):
        assert np.abs(got - want).max(initial=0) <= tolerance * scale
    dx, d_initial, dparams = cell.backward(np.ones_like(ys), None, tape)
    assert dx.shape == np.shape(x) and np.isfinite(dx).all()
    assert set(dparams) == set(cell.PARAMS)
