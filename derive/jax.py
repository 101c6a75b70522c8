"""Generated cells inside JAX: one layer as a differentiable, jit-compatible function.

    ys, final_states = recurrent("mgu", params, x)          # x: (T, B, I)
    jax.jit(jax.grad(loss))(params, x)

:func:`recurrent` is a ``jax.custom_vjp`` function whose forward and backward run the generated
Numba kernels through ``jax.pure_callback``: under ``jit`` they are host calls, under ``vmap``
they run once per mapped element. float64 needs ``jax.config.update("jax_enable_x64", True)``.
The backward computes the input's gradient only where the input is differentiated (data, as a
training step's input usually is, needs none: the kernel skips those products), and the
outputs the loss does not reach cost no transfer (their zero cotangents are made on the host).

Needs JAX (the ``jax`` extra); the generated modules themselves do not.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import sys
import threading

import jax
import jax.numpy as jnp
import numpy as np

from .runtime.layers import (
    check_layer,
    checked_masks,
    load_cell,
    param_sizes,
    with_biases,
)

__all__ = ["init_params", "recurrent"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _host(array):
    """``array`` (a JAX array, or the NumPy array a callback is given) C-contiguous, a
    zero-dimensional (scalar) parameter kept zero-dimensional (which np.ascontiguousarray
    would make (1,)). JAX's buffers come read-only; the generated interface hands the kernels
    a writable view of them (``check_array``), so the kernels run the signatures NumPy
    callers compile."""
    return np.require(np.asarray(array), requirements="C")


def _struct(shape, dtype):
    return jax.ShapeDtypeStruct(tuple(shape), dtype)


def _host_arguments(cell, x, lengths, params, hypers):
    """``x``, the parameters by name, the lengths and the hyperparameters (an array in
    ``HYPERS`` order) as the generated interface takes them."""
    arrays = dict(zip(cell.PARAMS, map(_host, params), strict=True))
    given = dict(zip(cell.HYPERS, np.asarray(hypers).tolist(), strict=True))
    return _host(x), arrays, _host(lengths).astype(np.int64), given


def _shapes(cell, x, states, params):
    """The shapes of the forward's outputs ``(ys, finals)``."""
    steps, batch, size = x.shape
    sizes = param_sizes(cell, size, [p.shape for p in params])
    out = sizes[cell.OUTPUT_SIZE]
    return (
        _struct((steps, batch, out), x.dtype),
        tuple(_struct(s.shape, x.dtype) for s in states),
    )


def _host_masks(cell, masks):
    return dict(zip(cell.MASKS, map(_host, masks), strict=True)) or None


#: The tapes of forwards whose backward has not run yet, by token: a tape stays on the host,
#: where the kernels made it and the backward kernel reads it, instead of passing through
#: JAX's buffers (copied out of the forward's callback and into the backward's). A backward
#: takes its tape; at most ``_TAPES_KEPT`` wait, the oldest forgotten, so that forwards whose
#: backward never runs (a ``jax.vjp`` whose pullback is not called) hold no memory for long,
#: and a backward that finds no tape (such a one, or a second pullback of one forward) runs
#: the forward again for one.
_TAPES = collections.OrderedDict()
_TAPES_KEPT = 8
_TAPES_LOCK = threading.Lock()
_TOKENS = itertools.count(1)


def _keep(tape):
    """A token (an int32 array, which JAX carries to the backward) for ``tape``, kept."""
    with _TAPES_LOCK:
        # int32, which JAX carries without x64; a token comes back 2**31 - 1 forwards
        # later, when its own tape is long forgotten
        token = next(_TOKENS) % (2**31 - 1)
        _TAPES[token] = tape
        while len(_TAPES) > _TAPES_KEPT:
            _TAPES.popitem(last=False)
    return np.array(token, np.int32)


def _take(token):
    """The tape kept for ``token`` (no longer kept), or None."""
    with _TAPES_LOCK:
        return _TAPES.pop(int(token), None)


def _host_run(cell, tape, x, lengths, states, params, hypers, masks):
    """The kernels' forward on host arrays: ``(ys, finals, kept)``, ``kept`` the tape with a
    ``tape`` (None without one: the kernels that keep none)."""
    x, arrays, lengths, given = _host_arguments(cell, x, lengths, params, hypers)
    states, masks = tuple(map(_host, states)), _host_masks(cell, masks)
    if tape:  # the tape holds views of its inputs: of copies, not of JAX's buffers
        x, arrays = x.copy(), {name: a.copy() for name, a in arrays.items()}
        masks = masks and {name: m.copy() for name, m in masks.items()}
    return cell._interface.forward(x, states, arrays, lengths, given, masks, tape)


def _host_forward(cell, tape, *args):
    """``((ys, finals), token)`` of :func:`_host_run` with a ``tape``, kept for the backward
    (:func:`_keep`); ``(ys, finals)`` without one."""
    ys, finals, kept = _host_run(cell, tape, *args)
    return ((ys, finals), _keep(kept)) if tape else (ys, finals)


def _host_backward(
    cell, wanted, x, lengths, states, params, hypers, masks, token, dys, d_finals
):
    """``(dx, d_initial, d_params)`` of the backward kernel over the tape kept for
    ``token``; ``dx`` None where the input needs none (its products skipped). ``wanted``
    says which cotangents came (:class:`_Wanted`); the others are zeros, made here."""
    tape = _take(token)
    if tape is None:  # forgotten, or taken by an earlier pullback: the forward again
        tape = _host_run(cell, True, x, lengths, states, params, hypers, masks)[2]
    given = iter(d_finals)
    finals = None
    if any(wanted.finals):
        finals = tuple(
            _host(next(given)) if came else np.zeros_like(_host(state))
            for came, state in zip(wanted.finals, states, strict=True)
        )
    dx, d_initial, d_params = cell.backward(
        _host(dys) if wanted.ys else None, finals, tape, wanted.input
    )
    return dx, d_initial, tuple(d_params[n] for n in cell.PARAMS)


@functools.partial(jax.tree_util.register_dataclass, data_fields=[],
                   meta_fields=["input", "ys", "finals"])  # fmt: skip
@dataclasses.dataclass(frozen=True)
class _Wanted:
    """What a backward is asked for and given, static under ``jit`` (a pytree of no
    leaves, carried among the residuals): whether the input is differentiated (else its
    gradient is skipped), and which of the outputs' cotangents are not symbolic zeros."""

    input: bool
    ys: bool = True
    finals: tuple = ()


def _value(primal):
    """A ``CustomVJPPrimal``'s value (what a forward rule with symbolic zeros is given)."""
    return primal.value


@functools.cache
def _function(name):
    """The ``custom_vjp`` function ``(x, lengths, states, params, hypers, masks) -> (ys,
    finals)`` of the generated module ``name``, ``hypers`` an array in ``HYPERS`` order:
    values passed in, so that a new value makes no new function (nor a new trace under
    ``jit``); ``masks`` a tuple in ``MASKS`` order."""
    cell = sys.modules[name]

    def run(x, lengths, states, params, hypers, masks):
        token = _struct((), np.int32)
        return jax.pure_callback(
            functools.partial(_host_forward, cell, True),
            (_shapes(cell, x, states, params), token), x, lengths, states, params, hypers,
            masks, vmap_method="sequential",
        )  # fmt: skip

    @jax.custom_vjp
    def function(x, lengths, states, params, hypers, masks):
        # not differentiated: the kernels that keep no tape
        return jax.pure_callback(
            functools.partial(_host_forward, cell, False),
            _shapes(cell, x, states, params), x, lengths, states, params, hypers, masks,
            vmap_method="sequential",
        )  # fmt: skip

    def forward(x, lengths, states, params, hypers, masks):
        # symbolic zeros: each leaf comes as its value and whether it is differentiated
        arguments = jax.tree.map(_value, (x, lengths, states, params, hypers, masks))
        primal, token = run(*arguments)
        return primal, (*arguments, token, _Wanted(x.perturbed))

    def backward(residuals, cotangents):
        *arguments, token, wanted = residuals
        x, _, states, params, _, _ = arguments
        dys, d_finals = cotangents
        # a cotangent that is a symbolic zero (an output the loss does not reach) does not
        # cross to the host: the backward makes its zeros there
        zero = jax.custom_derivatives.SymbolicZero
        wanted = _Wanted(
            wanted.input, not isinstance(dys, zero),
            tuple(not isinstance(d, zero) for d in d_finals),
        )  # fmt: skip
        result = (
            _struct(x.shape, x.dtype) if wanted.input else None,
            tuple(_struct(s.shape, s.dtype) for s in states),
            tuple(_struct(p.shape, p.dtype) for p in params),
        )
        dx, d_initial, d_params = jax.pure_callback(
            functools.partial(_host_backward, cell, wanted), result, *arguments, token,
            dys if wanted.ys else None,
            tuple(d for d, came in zip(d_finals, wanted.finals, strict=True) if came),
            vmap_method="sequential",
        )  # fmt: skip
        # None: no gradient reaches the lengths, the hyperparameters or the masks (nor
        # the input, where it is not differentiated)
        return dx, None, d_initial, d_params, None, None

    function.defvjp(forward, backward, symbolic_zeros=True)
    return function


def init_params(variant, input_size, hidden_size, *, dtype=np.float32, seed=0, **sizes):
    """One layer's parameters of ``variant`` (a name, a generated module or a declaration) as
    JAX arrays, each started as the cell's declaration says (the generated ``init_params``:
    PyTorch's U(-1/sqrt(H), 1/sqrt(H)) unless declared otherwise), reproducibly from
    ``seed``; ``sizes`` are the cell's other sizes (``proj_size=``)."""
    cell = load_cell("init_params", variant)
    params = cell.init_params(input_size, hidden_size, **sizes, dtype=dtype, seed=seed)
    return {name: jnp.asarray(value) for name, value in params.items()}


def _check(caller, argument, value, dtype=None):
    """``value`` as a JAX array of a float dtype (``dtype`` when given)."""
    array = jnp.asarray(value)
    if dtype is None and array.dtype not in _FLOATS:
        raise TypeError(
            f"{caller}: {argument} must be float32 or float64; got {array.dtype}"
        )
    if dtype is not None and array.dtype != dtype:
        raise TypeError(
            f"{caller}: {argument} must have the dtype of x, {dtype}; got {array.dtype}"
        )
    return array


def recurrent(variant, params, x, initial_states=None, lengths=None, hypers=None,
              masks=None):  # fmt: skip
    """Run one layer of ``variant`` over ``x`` ``(T, B, I)``, differentiably.

    ``variant`` is a generated variant's name or a generated cell module; ``params`` maps the
    cell's ``PARAMS`` to arrays (its biases may all be left out: ``bias=False``);
    ``initial_states`` is None (zeros) or a tuple of ``(B, size)``
    arrays in ``STATES`` order; ``lengths`` is None or each batch row's number of steps (it
    must lie in [1, T]; outside ``jit`` it is checked). Returns ``ys`` ``(T, B, size)`` (zero
    past a row's length) and the tuple of final states (each row's state at its length).
    ``hypers`` maps hyperparameters to the values that replace their defaults: Python
    numbers, checked in the dtype of ``x`` and passed to the kernels as values (a new value
    is no new trace). ``masks`` maps each of a cell's ``MASKS`` (zoneout, recurrent dropout)
    to its array, ``(T, B, size)`` drawn per step and ``(B, size)`` per sequence; no gradient
    reaches it.
    """
    caller = "recurrent"
    cell = load_cell(caller, variant)
    x = _check(caller, "x", x)
    if not (initial_states is None or isinstance(initial_states, (tuple, list))):
        raise ValueError(
            f"{caller}: initial_states must be None or a tuple of arrays {cell.STATES}; "
            f"got {type(initial_states).__name__}"
        )
    params = with_biases(cell, params, lambda: jnp.zeros((0,), x.dtype))  # bias=False
    shapes = (
        {name: np.shape(value) for name, value in params.items()}
        if isinstance(params, dict)
        else params
    )
    sizes = check_layer(
        caller, cell, x.shape, shapes,
        None if initial_states is None else [np.shape(s) for s in initial_states],
    )  # fmt: skip
    arrays = tuple(
        _check(caller, f"params[{n!r}]", params[n], x.dtype) for n in cell.PARAMS
    )
    steps, batch, _ = x.shape
    if initial_states is None:
        states = tuple(
            jnp.zeros((batch, sizes[cell.STATE_SIZES[s]]), x.dtype) for s in cell.STATES
        )
    else:
        states = tuple(
            _check(caller, f"initial_states[{n}]", s, x.dtype)
            for n, s in enumerate(initial_states)
        )
    lengths = _lengths(caller, lengths, steps, batch)
    values = cell._interface.check_hypers(caller, hypers, np.dtype(x.dtype))
    drawn = _masks(caller, cell, masks, x, sizes)
    return _function(cell.__name__)(
        x, lengths, states, arrays, jnp.asarray(np.array(values, dtype=x.dtype)), drawn
    )


def _masks(caller, cell, masks, x, sizes):
    """The masks in ``MASKS`` order, checked (:func:`checked_masks`) in ``x``'s dtype."""
    steps, batch, _ = x.shape

    def check(argument, value):
        return _check(caller, argument, value, x.dtype)

    return tuple(checked_masks(caller, cell, masks, steps, batch, sizes, check))


def _lengths(caller, lengths, steps, batch):
    if lengths is None:
        return jnp.full((batch,), steps, jnp.int32)
    given = jnp.asarray(lengths)
    if given.shape != (batch,) or not jnp.issubdtype(given.dtype, jnp.integer):
        raise ValueError(
            f"{caller}: lengths must be {batch} integers, one per batch row; got "
            f"{given.dtype} {given.shape}"
        )
    if not isinstance(given, jax.core.Tracer):
        bad = np.asarray((given < 1) | (given > steps))
        if bad.any():
            raise ValueError(
                f"{caller}: lengths must lie in [1, {steps}] (the number of steps); got "
                f"{np.asarray(given).tolist()}"
            )
    return given
