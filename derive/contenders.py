"""What ``gatesmith bench`` times: one forward and backward of one layer, by each contender.

- ``gatesmith``: the generated module;
- ``torch``: ``torch.nn.RNN/LSTM/GRU`` (oneDNN's fused kernels), for the cells PyTorch has;
- ``eager``, ``torchscript``: a custom cell written by hand as a PyTorch loop over time steps
  (input projection hoisted), as is and under ``torch.jit.script``;
- ``jax``: the cell written by hand as ``lax.scan`` under ``jit``.

Every builder returns a function of no arguments that runs the contender once and returns the
gradients ``(dx, {param: gradient})`` of ``sum(ys * d_out)`` from zero initial states, so that
:func:`check` can compare every contender with the generated kernels before anything is timed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BY_HAND", "PYTORCH", "build", "check", "contenders_for"]

#: cells PyTorch ships (nn.RNN, nn.LSTM, nn.GRU)
PYTORCH = ("lstm", "gru", "rnn_tanh", "rnn_relu")
#: custom cells written by hand here, for PyTorch and JAX
BY_HAND = ("lstm_peephole", "mgu")


def contenders_for(variant, use_torch=True, use_jax=True) -> tuple[str, ...]:
    names = ["gatesmith"]
    if use_torch and variant in PYTORCH:
        names.append("torch")
    if use_torch and variant in BY_HAND:
        names += ["eager", "torchscript"]
    if use_jax and (variant in PYTORCH or variant in BY_HAND):
        names.append("jax")
    return tuple(names)


def build(name, problem, threads):
    """The step function of contender ``name`` on ``problem`` (a :class:`derive.bench.Problem`)."""
    if name == "gatesmith":
        return _gatesmith(problem)
    if name == "jax":
        return _jax(problem)
    import torch

    torch.set_num_threads(threads)
    if name == "torch":
        return _torch_module(problem)
    return _by_hand(problem, script=name == "torchscript")


def check(problem_of, names) -> dict[str, float]:
    """The largest relative difference of each contender's gradients from the generated
    kernels' on a small float64 problem (``problem_of(dtype)`` builds it); raises
    ``AssertionError`` naming the contender when it exceeds 1e-10."""
    problem = problem_of(np.float64)
    dx, grads = _host(build("gatesmith", problem, 1)())
    errors = {}
    for name in names:
        if name == "gatesmith":
            continue
        got_dx, got = _host(build(name, problem, 1)())
        pairs = [(got_dx, dx), *((got[k], grads[k]) for k in grads)]
        errors[name] = max(
            float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)) for a, b in pairs
        )
        assert errors[name] < 1e-10, (
            f"{problem.cell.VARIANT} {name}: gradients differ from the generated kernels' "
            f"(relative {errors[name]:.3g})"
        )
    return errors


def _host(result):
    dx, grads = result
    return np.asarray(dx), {k: np.asarray(v) for k, v in grads.items()}


def _gatesmith(problem):
    cell = problem.cell

    def step():
        _, _, tape = cell.forward(problem.x, None, problem.params)
        dx, _, grads = cell.backward(problem.d_out, None, tape)
        return dx, grads

    return step


def _torch_module(problem):
    import torch

    variant = problem.cell.VARIANT
    dtype = torch.float64 if problem.dtype.itemsize == 8 else torch.float32
    input_size, hidden = problem.x.shape[2], problem.d_out.shape[2]
    if variant in ("rnn_tanh", "rnn_relu"):
        kind = variant.removeprefix("rnn_")
        module = torch.nn.RNN(input_size, hidden, nonlinearity=kind, dtype=dtype)
    else:
        make = torch.nn.LSTM if variant == "lstm" else torch.nn.GRU
        module = make(input_size, hidden, dtype=dtype)
    module.load_state_dict(
        {f"{k}_l0": torch.tensor(v) for k, v in problem.params.items()}
    )
    x = torch.tensor(problem.x, requires_grad=True)
    d_out = torch.tensor(problem.d_out)

    def step():
        module.zero_grad(set_to_none=True)
        x.grad = None
        out, _ = module(x)
        out.backward(d_out)
        grads = {
            k.removesuffix("_l0"): p.grad.detach() for k, p in module.named_parameters()
        }
        return x.grad.detach(), grads

    return step


# -- custom cells by hand ---------------------------------------------------------------------


def _by_hand(problem, script):
    import torch

    from . import by_hand

    cell = problem.cell
    loop = {"lstm_peephole": by_hand.peephole, "mgu": by_hand.mgu}[cell.VARIANT]
    if script:
        loop = torch.jit.script(loop)
    x = torch.tensor(problem.x, requires_grad=True)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in problem.params.items()}
    d_out = torch.tensor(problem.d_out)
    zeros = [x.new_zeros(x.shape[1], d_out.shape[2]) for _ in cell.STATES]
    leaves = [x, *params.values()]

    def step():
        ys = loop(x, *zeros, *(params[n] for n in cell.PARAMS))
        grads = torch.autograd.grad((ys * d_out).sum(), leaves)
        return grads[0], dict(zip(params, grads[1:], strict=True))

    return step


def _jax_step(variant, p, carry, k, size):
    """One step of ``variant`` in JAX, from the input projection ``k`` of the step."""
    import jax
    import jax.numpy as jnp

    h = carry[0]
    if variant == "mgu":
        hh, bh = p["weight_hh"], p["bias_hh"]
        f = jax.nn.sigmoid(k[:, :size] + h @ hh[:size].T + bh[:size])
        n = jnp.tanh(k[:, size:] + (f * h) @ hh[size:].T + bh[size:])
        h = (1 - f) * h + f * n
        return (h,), h
    gh = h @ p["weight_hh"].T + p["bias_hh"]
    if variant in ("lstm", "lstm_peephole"):
        i, f, g, o = jnp.split(k + gh, 4, axis=-1)
        c = carry[1]
        if variant == "lstm_peephole":
            i, f = i + p["p_i"] * c, f + p["p_f"] * c
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        if variant == "lstm_peephole":
            o = o + p["p_o"] * c
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h
    if variant == "gru":
        ir, iz, in_ = jnp.split(k, 3, axis=-1)
        hr, hz, hn = jnp.split(gh, 3, axis=-1)
        r, z = jax.nn.sigmoid(ir + hr), jax.nn.sigmoid(iz + hz)
        h = (1 - z) * jnp.tanh(in_ + r * hn) + z * h
        return (h,), h
    h = (jnp.tanh if variant == "rnn_tanh" else jax.nn.relu)(k + gh)
    return (h,), h


def _jax(problem):
    import jax
    import jax.numpy as jnp

    if problem.dtype.itemsize == 8:
        jax.config.update("jax_enable_x64", True)
    cell = problem.cell
    params = {k: jnp.asarray(v) for k, v in problem.params.items()}
    x, d_out = jnp.asarray(problem.x), jnp.asarray(problem.d_out)
    size = problem.d_out.shape[2]

    def loss(p, x):
        kx = x @ p["weight_ih"].T + p["bias_ih"]
        zeros = tuple(jnp.zeros((x.shape[1], size), x.dtype) for _ in cell.STATES)
        step = lambda carry, k: _jax_step(cell.VARIANT, p, carry, k, size)  # noqa: E731
        _, ys = jax.lax.scan(step, zeros, kx)
        return jnp.sum(ys * d_out)

    grad = jax.jit(jax.grad(loss, argnums=(1, 0)))

    def step():
        return jax.block_until_ready(grad(params, x))

    return step
