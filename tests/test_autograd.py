"""Twin computations: every kernel against PyTorch autograd.

Outputs, final states and every gradient (input, initial states, each parameter) are compared,
with random non-zero initial states and a loss on both the outputs and the final states.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    DTYPES,
    PYTORCH_MODULES,
    VARIANTS,
    Problem,
    compare_with_torch,
    load_generated,
)

from derive import registry
from generated import _runtime

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("variant", VARIANTS)
def test_kernel_matches_twin_autograd(variant, dtype):
    from derive.verify.twin import twin_forward

    problem = Problem(load_generated(variant), dtype)
    leaves = problem.torch_leaves()
    ys_t, finals_t = twin_forward(registry.get(variant), *leaves)
    compare_with_torch(problem, ys_t, finals_t, leaves)


@pytest.mark.parametrize("variant", VARIANTS)
def test_per_step_products_in_every_kind_of_tile_match_twin_autograd(variant):
    """The per-step products run by tiles of batch rows times a panel of columns, of each
    vector width the processor runs. Here the batch fills the tallest tile and one of every
    smaller height of each width, and the hidden size is no multiple of the panel width (the
    last panel is partial), in both dtypes; the products of every step at once run by tiles
    too (``tile_rows``), whatever the processor chose."""
    from derive.verify.twin import twin_forward

    module = load_generated(variant)
    hidden, extra = 37, 23
    assert hidden % 8 != 0  # panels are 8, 16 or 32 columns wide
    before = _runtime.tuning()
    try:
        for bits in _runtime._NATIVE:  # the widths the processor runs
            _runtime.set_tuning(tile_bits=bits, tile_rows=1)
            for dtype in DTYPES:
                problem = Problem(module, dtype, steps=3, batch=sum(_runtime._HEIGHTS[bits]),
                                  input_size=5, hidden_size=hidden, extra=extra)  # fmt: skip
                leaves = problem.torch_leaves()
                ys_t, finals_t = twin_forward(registry.get(variant), *leaves)
                compare_with_torch(problem, ys_t, finals_t, leaves)
    finally:
        _runtime.set_tuning(**before)


def _torch_module(variant, input_size, hidden_size):
    if variant == "lstm":
        return torch.nn.LSTM(input_size, hidden_size)
    if variant == "gru":
        return torch.nn.GRU(input_size, hidden_size)
    return torch.nn.RNN(
        input_size, hidden_size, nonlinearity=variant.removeprefix("rnn_")
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("variant", sorted(PYTORCH_MODULES))
def test_kernel_matches_torch_nn(variant, dtype):
    problem = Problem(load_generated(variant), dtype, steps=5)
    x, states, params = problem.torch_leaves()
    module = _torch_module(variant, x.shape[2], states[0].shape[1]).double()
    # the state_dict names of one layer, `_l0` dropped, load without reshuffling
    module.load_state_dict({f"{k}_l0": v.detach() for k, v in params.items()})
    for name, p in module.named_parameters():
        params[name.removesuffix("_l0")] = p
    init = tuple(s.unsqueeze(0) for s in states)
    ys_t, finals_t = module(x, init if len(init) > 1 else init[0])
    finals_t = finals_t if isinstance(finals_t, tuple) else (finals_t,)
    compare_with_torch(problem, ys_t, finals_t, (x, states, params))


def test_lstm_and_rnn_biases_get_equal_gradients_and_both_are_checked():
    problem = Problem(load_generated("lstm"), np.float64)
    *_, dparams = problem.run()
    np.testing.assert_allclose(dparams["bias_ih"], dparams["bias_hh"], rtol=1e-12)
    problem = Problem(load_generated("gru"), np.float64)
    *_, dparams = problem.run()
    # GRU's b_hn sits inside r * (W_hn h + b_hn): its gradient differs from b_in's
    H = dparams["bias_ih"].shape[0] // 3
    assert not np.allclose(dparams["bias_ih"][2 * H :], dparams["bias_hh"][2 * H :])
