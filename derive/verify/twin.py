"""The twin reference: any declared cell run with PyTorch, so autograd can check its kernel.

The twin is built from the same declaration as the kernel, but shares nothing else with it: it
evaluates the forward equations with PyTorch tensors step by step, and PyTorch's autograd (not
the derived adjoint) gives the gradients. Importing this module needs ``torch``, which is a test
dependency, not a runtime one.
"""

from __future__ import annotations

from ..symbolic.activations import descriptor, missing_forms
from ..symbolic.declare import CellSpec, size_symbol

__all__ = ["TORCH_FORMS", "twin_forward"]

#: The ``torch`` function the twin applies for each activation a declaration may use (those
#: that only derivatives produce never reach it). One line an activation.
TORCH_FORMS = {
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "relu": "relu",
    "exp": "exp",
    "log": "log",
    "sin": "sin",
    "cos": "cos",
    "softplus": "nn.functional.softplus",
    "elu": "nn.functional.elu",
    "hard_sigmoid": "nn.functional.hardsigmoid",
}
missing_forms(TORCH_FORMS, "twin reference", declarable_only=True)


def _torch():
    try:
        import torch
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the twin reference needs PyTorch: pip install torch==2.13.0 (or gatesmith[test])"
        ) from error
    return torch


def _evaluate(expr, env, torch):
    if expr.is_Symbol:
        return env[expr]
    if expr.is_Number:
        return float(expr)
    args = [_evaluate(a, env, torch) for a in expr.args]
    if expr.is_Add:
        return sum(args[1:], args[0])
    if expr.is_Mul:
        out = args[0]
        for a in args[1:]:
            out = out * a
        return out
    if expr.is_Pow:
        return args[0] ** args[1]
    activation = descriptor(expr)
    if activation is None or activation.name not in TORCH_FORMS:
        raise NotImplementedError(
            f"the twin reference cannot evaluate {expr.func.__name__}"
        )
    if not torch.is_tensor(args[0]):  # a function of a constant: sigmoid(2)
        args[0] = torch.tensor(args[0], dtype=torch.float64)
    if activation.name in _EXACT:
        return _EXACT[activation.name](torch, args[0])
    function = torch
    for name in TORCH_FORMS[activation.name].split(
        "."
    ):  # "tanh", "nn.functional.softplus"
        function = getattr(function, name)
    return function(args[0])


def _hard_sigmoid(torch, a):
    inside = (a > -3) & (a < 3)
    return torch.where(inside, a / 6 + 0.5, (a >= 3).to(a.dtype))


#: Functions whose torch gradient is not exact in float64, composed from exact operations with
#: the same values and the same one-sided choices at the kinks: torch's hardsigmoid backward
#: multiplies by 1/6 rounded to float32 (a relative error of 3e-8).
_EXACT = {"hard_sigmoid": _hard_sigmoid}


def _block_of(tensor, count: int, n: int):
    """Block ``n`` of the ``count`` blocks of a vector (a scalar is its own single block)."""
    if count == 1:
        return tensor
    size = tensor.shape[0] // count
    return tensor[n * size : (n + 1) * size]


def _project(spec: CellSpec, d, params, source) -> dict:
    """The blocks of the projection ``d`` of ``source``, by symbol."""
    if d.transposed:  # one whole block, no bias
        return {d.symbols[0]: source @ params[d.weight]}
    block = params[d.weight].shape[0] // len(spec.param(d.weight).blocks)
    rows = slice(d.first_block * block, (d.first_block + len(d.blocks)) * block)
    value = source @ params[d.weight][rows].T
    if d.bias and params[d.bias].numel():  # a bias of length 0 is absent (bias=False)
        value = value + params[d.bias][rows]
    return {
        sym: value[:, n * block : (n + 1) * block] for n, sym in enumerate(d.symbols)
    }


def twin_forward(spec: CellSpec, x, initial_states, params, hypers=None, lengths=None,
                 masks=None):  # fmt: skip
    """Run ``spec`` over ``x`` ``(T, B, I)`` with torch tensors.

    ``initial_states`` is a tuple in ``spec.state_names`` order, ``params`` a dict of tensors,
    ``hypers`` the hyperparameters that differ from their defaults, ``lengths`` None or each
    batch row's number of steps (its states stop there, its outputs are zero past it),
    ``masks`` each mask's tensor by name (``(T, B, size)`` drawn per step, ``(B, size)`` per
    sequence). Returns ``(ys, final_states)``, differentiable by autograd.
    """
    torch = _torch()
    states = dict(zip(spec.state_names, initial_states, strict=True))
    vectors = {
        sym: _block_of(params[p.name], len(p.blocks), n)
        for sym, (p, n) in spec.pointwise.items()
    }
    given = hypers or {}
    vectors.update(
        {hp.symbol: float(given.get(hp.name, hp.default)) for hp in spec.hypers}
    )
    # a mean's expression is its blocks' mean per unit when its size reads 1; the twin then
    # takes the mean over the units (the last axis) itself
    vectors.update({size_symbol(size.name): 1.0 for size in spec.sizes})
    ys = []
    for t in range(x.shape[0]):
        env = dict(vectors)
        env[spec.input] = x[t]
        for m in spec.masks:
            env[m.symbol] = masks[m.name][t] if m.per == "step" else masks[m.name]
        for s in spec.states:
            env[s.prev] = states[s.name]
        pending = list(spec.denses)
        for eq in spec.equations:
            for d in list(pending):
                if d.source in env:  # a projection runs once its source is known
                    env.update(_project(spec, d, params, env[d.source]))
                    pending.remove(d)
            env[eq.target] = _evaluate(eq.expr, env, torch)
            if eq.role == "mean":
                env[eq.target] = env[eq.target].mean(-1, keepdim=True)
        y = env[spec.output_symbol]
        if lengths is None:
            for s in spec.states:
                states[s.name] = env[s.new]
        else:
            live = (lengths > t)[:, None]
            for s in spec.states:
                states[s.name] = torch.where(live, env[s.new], states[s.name])
            y = torch.where(live, y, torch.zeros_like(y))
        ys.append(y)
    return torch.stack(ys), tuple(states[s] for s in spec.state_names)
