"""The pointwise loops vectorise: what LLVM reports of the compiled kernels, and the printed
accesses that make it possible (a view per block of a row, state gradients copied rather than
swapped, zero-dimensional gradients summed unit by unit)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, VARIANTS

from derive import registry
from derive.emit.numba import array_name, block_views, print_kernel
from derive.lower import lower
from derive.lower.plan import ArrayRole, Load, Loop, Reduction, RowIndex, Store, Sum
from derive.symbolic.adjoint import derive_adjoint

#: A sample across the families: gate blocks read and written in one loop (lstm, gru, lstm_cifg,
#: janet), two dependent products a step (mgu), zero-dimensional gradients (fastrnn), two
#: states (cornn), an input-sized block (intersection_rnn).
SAMPLE = (
    "lstm",
    "gru",
    "lstm_cifg",
    "janet",
    "mgu",
    "fastrnn",
    "cornn",
    "intersection_rnn",
)

#: Runs forward and backward of one variant with LLVM's loop-vectoriser remarks on stderr; the
#: two kernels are compiled with line numbers (their helpers as they are).
_REMARKS = """
import sys
import llvmlite.binding as llvm
import numba
for option in ("-pass-remarks=loop-vectorize", "-pass-remarks-missed=loop-vectorize"):
    llvm.set_option("", option)
plain = numba.njit
def with_lines(function=None, **options):
    if function is not None:  # numba's own bare @njit
        return plain(function, **options)
    def decorate(function):
        if function.__name__.endswith("_kernel"):
            return plain(**options, debug=True, boundscheck=False)(function)
        return plain(**options)(function)
    return decorate
numba.njit = with_lines
import generated
from derive.verify import Problem
cell = generated.load(sys.argv[1])
problem = Problem(cell, "float32")
ys, finals, tape = cell.forward(problem.x, problem.states, problem.params)
cell.backward(problem.dys, problem.dfinal, tape)
cell.forward(problem.x, problem.states, problem.params, tape=False)
"""


def _plan(variant):
    return lower(derive_adjoint(registry.get(variant)))


def _accesses(loop):
    for st in loop.body:
        if isinstance(st, Load):
            yield from st.sources
        elif isinstance(st, Store):
            yield st.target


def _pointwise_loops(source: str) -> list[int]:
    """Line numbers of the kernels' loops over units that follow a row's set-up."""
    lines = source.splitlines()
    start = next(
        i for i, line in enumerate(lines) if line.startswith("def forward_kernel")
    )
    stop = next(i for i, line in enumerate(lines) if line.startswith("# -- the Python"))
    found, in_row = [], False
    for number in range(start, stop):
        text = lines[number].strip()
        if text == "row = first + b":
            in_row = True
        elif in_row and re.fullmatch(r"for j in range\(size_\w+\):", text):
            found.append(number + 1)
            in_row = False
        elif in_row and not re.match(r"(row_\w+ = |\w+\[b, 0\] = 0)", text):
            in_row = False
    return found


@pytest.mark.parametrize("variant", SAMPLE)
def test_every_pointwise_loop_vectorises(variant):
    path = ROOT / "generated" / f"{variant}.py"
    loops = _pointwise_loops(path.read_text())
    # at least one loop of each kernel: forward, forward without a tape, backward
    assert len(loops) >= 3, loops
    env = dict(
        os.environ,
        GATESMITH_NUMBA_CACHE="0",
    )
    done = subprocess.run([sys.executable, "-c", _REMARKS, variant], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    vectorised = {
        int(m.group(1))
        for m in re.finditer(
            rf"remark: {variant}\.py:(\d+):\d+: vectorized loop", done.stderr
        )
    }
    if not vectorised:
        pytest.skip("this LLVM reports no vectorised loops with line numbers")
    missed = [n for n in loops if n not in vectorised]
    assert not missed, (
        f"{variant}: the pointwise loops at lines {missed} of {path.name} stay scalar:\n"
        + "\n".join(
            line for line in done.stderr.splitlines() if f"{variant}.py:" in line
        )
    )


def test_pointwise_loops_are_found():
    source = (ROOT / "generated" / "lstm.py").read_text()
    lines = source.splitlines()
    loops = _pointwise_loops(source)
    assert len(loops) == 3  # forward_kernel's, infer_kernel's and backward_kernel's
    assert all(lines[n - 1].strip() == "for j in range(size_H):" for n in loops)


@pytest.mark.parametrize("variant", VARIANTS)
def test_blocks_of_a_row_are_read_through_views(variant):
    plan = _plan(variant)
    kernel = print_kernel(plan)
    loops = [node for schedule in (plan.forward, plan.backward)
             for node in schedule.loop.body if isinstance(node, Loop)]  # fmt: skip
    printed = [node.loop for schedule in (kernel.forward, kernel.backward)
               for node in schedule.body if node.loop]  # fmt: skip
    for loop, out in zip(loops, printed, strict=True):
        blocked = {(a.array, a.row) for a in _accesses(loop)
                   if a.block and a.row not in (RowIndex.UNIT, RowIndex.WHOLE)
                   and not a.array.per_row}  # fmt: skip
        assert set(block_views(loop)) == blocked
        # every element of a row is indexed by j alone, never at a printed offset
        for line in out.lines:
            text = f"{line.target} {line.value}"
            assert not re.search(r"\[(row|b|row \+ batch), [^\]]*\+ j\]", text), line
        # one view for each block of a viewed row, each a slice of that row
        blocks = {
            (a.array, a.row, a.block)
            for a in _accesses(loop)
            if (a.array, a.row) in blocked
        }
        assert len(out.views) == len(blocks)
        for view in out.views:
            assert view.target.startswith("row_")
            assert re.fullmatch(
                r"\w+\[(row|b|row \+ batch), [^\]]*:[^\]]*\]", view.value
            )


@pytest.mark.parametrize("variant", ("fastrnn", "fastgrnn"))
def test_zero_dimensional_gradients_are_summed_by_unit(variant):
    plan = _plan(variant)
    kernel = print_kernel(plan)
    wholes = {
        st.target.array.owner
        for stage in plan.stages for lp in stage.backward for st in lp.body
        if isinstance(st, Store) and st.target.row == RowIndex.WHOLE and st.accumulate
    }  # fmt: skip
    assert wholes
    # the step's stores name the reduction; the kernel sums each unit by unit, then the units
    assert all(
        st.over is Reduction.SEQUENCE
        for stage in plan.stages for lp in stage.backward for st in lp.body
        if isinstance(st, Store) and st.target.array.owner in wholes
        and st.target.array.role == ArrayRole.PARAMETER_GRADIENT
    )  # fmt: skip
    sums = [n for n in plan.backward.after
            if isinstance(n, Sum) and n.over is Reduction.UNITS]  # fmt: skip
    assert {n.target.array.owner for n in sums} == wholes
    assert plan.unit_sums == tuple(n.source.array for n in sums)
    scheduled = [st for n in plan.backward.loop.body if isinstance(n, Loop)
                 for st in n.body if isinstance(st, Store)]  # fmt: skip
    assert not any(st.over is Reduction.SEQUENCE for st in scheduled)
    printed = [line for n in kernel.backward.body if n.loop for line in n.loop.lines]
    assert not any("[()]" in line.target for line in printed)
    assert all(
        any(line.target == f"{array_name(n.source.array)}[j]" and line.op == "+="
            for line in printed)
        for n in sums
    )  # fmt: skip


def test_state_gradients_are_copied_not_swapped():
    source = (ROOT / "generated" / "lstm.py").read_text()
    assert not re.search(r"dnext_\w+, dprev_\w+ = dprev_\w+, dnext_\w+", source)
    assert "_runtime.hand_back(dnext_c, dprev_c)" in source
    runtime = (ROOT / "generated" / "_runtime.py").read_text()
    assert "dnext[b, j] = dprev[b, j]" in runtime
