"""Layer 3: identities that need no reference implementation.

A seeded random direction ``v`` in every input at once and a random cotangent ``u``:
``<J v, u>`` by central differences must equal ``<v, Jᵀ u>`` from the backward pass, and the
Taylor remainder must shrink with slope 2 (slope 1 without the gradient term).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import VARIANTS, Problem, load_generated


def _flatten(problem):
    return [
        problem.x,
        *problem.states,
        *(problem.params[k] for k in problem.cell.PARAMS),
    ]


def _objective(problem, arrays):
    cell = problem.cell
    n = len(cell.STATES)
    x, states, params = (
        arrays[0],
        tuple(arrays[1 : 1 + n]),
        dict(zip(cell.PARAMS, arrays[1 + n :], strict=True)),
    )
    ys, finals, _ = cell.forward(x, states, params)
    return float(
        np.sum(ys * problem.dys)
        + sum(np.sum(f * d) for f, d in zip(finals, problem.dfinal, strict=True))
    )


def _gradient(problem):
    _, _, dx, dstates, dparams = problem.run()
    return [dx, *dstates, *(dparams[k] for k in problem.cell.PARAMS)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_random_direction_matches_central_differences(variant):
    problem = Problem(load_generated(variant), np.float64, steps=5, seed=3)
    rng = np.random.default_rng(11)
    base = _flatten(problem)
    direction = [rng.standard_normal(a.shape) for a in base]
    grad = _gradient(problem)
    analytic = sum(float(np.sum(g * v)) for g, v in zip(grad, direction, strict=True))
    eps = 1e-6
    plus = _objective(
        problem, [a + eps * v for a, v in zip(base, direction, strict=True)]
    )
    minus = _objective(
        problem, [a - eps * v for a, v in zip(base, direction, strict=True)]
    )
    numeric = (plus - minus) / (2 * eps)
    assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic)), (
        numeric,
        analytic,
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_taylor_remainders_have_slopes_one_and_two(variant):
    problem = Problem(load_generated(variant), np.float64, steps=4, seed=5)
    rng = np.random.default_rng(7)
    base = _flatten(problem)
    direction = [rng.standard_normal(a.shape) * 0.1 for a in base]
    f0 = _objective(problem, base)
    slope = sum(
        float(np.sum(g * v)) for g, v in zip(_gradient(problem), direction, strict=True)
    )
    hs = np.array([1e-1, 5e-2, 2.5e-2, 1.25e-2, 6.25e-3])
    first, second = [], []
    for h in hs:
        fh = _objective(
            problem, [a + h * v for a, v in zip(base, direction, strict=True)]
        )
        first.append(abs(fh - f0))
        second.append(abs(fh - f0 - h * slope))
    # |f(h) - f(0)| = |h s + h^2 c / 2|: slope near 1 where the first term dominates, so over
    # the three smallest h (at the largest, s and c of opposite signs can cancel: SRU's and
    # gru_layernorm's objectives along this direction)
    fit1 = np.polyfit(np.log(hs[2:]), np.log(first[2:]), 1)[0]
    fit2 = np.polyfit(np.log(hs), np.log(second), 1)[0]
    assert 0.6 < fit1 < 1.2, fit1
    # a wrong gradient leaves a first-order remainder (slope 1); a right one shrinks at least
    # quadratically (faster where the second-order term happens to be small)
    assert fit2 > 1.8, fit2
