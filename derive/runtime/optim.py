"""Gradient clipping and optimisers on parameter dicts, with PyTorch's semantics.

:func:`clip_grad_norm` and :func:`clip_grad_value` are ``torch.nn.utils.clip_grad_norm_`` and
``clip_grad_value_``; :class:`SGD` and :class:`Adam` are ``torch.optim.SGD`` and ``Adam``. Each
works on the dicts :class:`~derive.runtime.Recurrent` returns; only NumPy is needed.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SGD", "Adam", "clip_grad_norm", "clip_grad_value"]


def clip_grad_norm(grads, max_norm, norm_type=2.0):
    """Scale every gradient in place so their global norm is at most ``max_norm``.

    PyTorch's ``clip_grad_norm_``: the norm is taken over all arrays together (``norm_type``
    2, any p >= 1, or ``inf``); when it exceeds ``max_norm`` every array is multiplied by
    ``max_norm / (norm + 1e-6)``. A NaN anywhere makes the norm NaN and, as in PyTorch, every
    gradient NaN. Returns the norm before clipping.
    """
    if not isinstance(grads, dict):
        raise TypeError(
            f"clip_grad_norm: grads must be a dict of arrays; got {type(grads).__name__}"
        )
    if not max_norm >= 0:
        raise ValueError(f"clip_grad_norm: max_norm must be >= 0; got {max_norm!r}")
    norm_type = float(norm_type)
    if not norm_type >= 1:
        raise ValueError(
            f"clip_grad_norm: norm_type must be >= 1 or inf; got {norm_type!r}"
        )
    if not grads:
        return 0.0
    for key, g in grads.items():
        if not isinstance(g, np.ndarray) or g.dtype.kind != "f":
            raise TypeError(
                f"clip_grad_norm: grads[{key!r}] must be a float array; got {_kind(g)}"
            )
    wide = [np.abs(g.astype(np.float64)) for g in grads.values() if g.size]
    if not wide:
        return 0.0
    if math.isinf(norm_type):  # np.max propagates NaN whatever the order
        total = float(np.max([g.max() for g in wide]))
    else:
        total = sum(float(np.sum(g**norm_type)) for g in wide) ** (1 / norm_type)
    coefficient = max_norm / (total + 1e-6)
    if not coefficient >= 1:  # below 1, or NaN
        for g in grads.values():
            g *= g.dtype.type(coefficient)
    return total


def _kind(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype}"
    return type(value).__name__


def _at_least(owner: str, name: str, value, low: float = 0.0) -> float:
    """``value`` as a float ``>= low`` (NaN fails), or a ValueError naming it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not number >= low or isinstance(value, bool):
        raise ValueError(f"{owner}: {name} must be a number >= {low:g}; got {value!r}")
    return number


def clip_grad_value(grads, clip_value):
    """Clip every gradient in place to ``[-clip_value, clip_value]`` (``clip_grad_value_``)."""
    if not isinstance(grads, dict):
        raise TypeError(
            f"clip_grad_value: grads must be a dict of arrays; got {type(grads).__name__}"
        )
    if not clip_value >= 0:
        raise ValueError(
            f"clip_grad_value: clip_value must be >= 0; got {clip_value!r}"
        )
    for g in grads.values():
        np.clip(g, -clip_value, clip_value, out=g)


class _Optimizer:
    def __init__(self, params, lr):
        if not isinstance(params, dict):
            raise TypeError(
                f"{type(self).__name__}: params must be a dict of arrays; "
                f"got {type(params).__name__}"
            )
        if (
            not isinstance(lr, (int, float, np.floating))
            or not lr > 0
            or not math.isfinite(lr)
        ):
            raise ValueError(
                f"{type(self).__name__}: lr must be a finite number > 0; got {lr!r}"
            )
        self.params = params
        self.lr = lr

    def _grads(self, grads):
        owner = f"{type(self).__name__}.step"
        if not isinstance(grads, dict) or set(grads) != set(self.params):
            missing = (
                sorted(set(self.params) - set(grads))
                if isinstance(grads, dict)
                else "all"
            )
            raise ValueError(
                f"{owner}: grads must have the keys of params; missing {missing}"
            )
        for key, g in grads.items():
            want = self.params[key].shape
            if not isinstance(g, np.ndarray) or g.dtype.kind != "f" or g.shape != want:
                got = (
                    f"shape {g.shape}, {g.dtype}"
                    if isinstance(g, np.ndarray)
                    else _kind(g)
                )
                raise ValueError(
                    f"{owner}: grads[{key!r}] must be a float array of shape {want} like "
                    f"params[{key!r}]; got {got}"
                )
        return grads


class SGD(_Optimizer):
    """Stochastic gradient descent with PyTorch's momentum, dampening, Nesterov and weight
    decay; updates ``params`` in place."""

    def __init__(
        self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False
    ):
        super().__init__(params, lr)
        momentum = _at_least("SGD", "momentum", momentum)
        weight_decay = _at_least("SGD", "weight_decay", weight_decay)
        dampening = _at_least("SGD", "dampening", dampening)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening = 0")
        self.momentum, self.dampening = momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        self._buffers = {}

    def step(self, grads):
        for key, g in self._grads(grads).items():
            p = self.params[key]
            d = g + self.weight_decay * p if self.weight_decay else g
            if self.momentum:
                buf = self._buffers.get(key)
                if buf is None:
                    buf = self._buffers[key] = np.array(d, copy=True)
                else:
                    buf *= self.momentum
                    buf += (1 - self.dampening) * d
                d = d + self.momentum * buf if self.nesterov else buf
            p -= (self.lr * d).astype(p.dtype, copy=False)


class Adam(_Optimizer):
    """Adam (Kingma and Ba 2015) as ``torch.optim.Adam`` computes it; updates ``params`` in
    place."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        if (
            not isinstance(betas, (tuple, list))
            or len(betas) != 2
            or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)
        ):
            raise ValueError(
                f"Adam: betas must be two numbers in [0, 1); got {betas!r}"
            )
        eps = _at_least("Adam", "eps", eps)
        weight_decay = _at_least("Adam", "weight_decay", weight_decay)
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self.steps = 0
        self._moments = {
            k: (np.zeros_like(v), np.zeros_like(v)) for k, v in params.items()
        }

    def step(self, grads):
        self.steps += 1
        b1, b2 = self.betas
        correction1 = 1 - b1**self.steps
        root2 = math.sqrt(1 - b2**self.steps)
        for key, g in self._grads(grads).items():
            p = self.params[key]
            if self.weight_decay:
                g = g + self.weight_decay * p
            m, v = self._moments[key]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            denominator = np.sqrt(v) / root2 + self.eps
            p -= ((self.lr / correction1) * m / denominator).astype(p.dtype, copy=False)
