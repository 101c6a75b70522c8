"""Generated cells inside PyTorch: a drop-in for ``torch.nn.LSTM``, and a differentiable function.

:class:`Recurrent` is an ``nn.Module`` with ``nn.LSTM``'s constructor arguments and forward
semantics, for every generated variant::

    rnn = Recurrent("mgu", input_size=10, hidden_size=20, num_layers=2, batch_first=True)
    out, h_n = rnn(x)                                    # one state: like nn.GRU
    out, (h_n, c_n) = Recurrent("lstm", 10, 20)(x, (h0, c0))   # two states: like nn.LSTM

:func:`recurrent` runs one layer in one direction. Both reach the kernels through two
``torch.library`` custom ops, ``gatesmith::forward`` and ``gatesmith::backward``, with autograd
and fake (meta) implementations registered, so ``torch.compile`` traces a model containing them
without a graph break. The ops hand the kernels zero-copy NumPy views of contiguous CPU tensors.

Needs PyTorch (the ``torch`` extra); the generated modules themselves do not.
"""

from __future__ import annotations

import collections
import importlib
import math
import sys
import warnings
import weakref

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .cache import load as load_built
from .runtime.layers import (
    Regularisation,
    _reverse_index,
    biases_to_drop,
    check_layer,
    check_stacking,
    checked_masks,
    declaration_of,
    extra_sizes,
    load_cell,
    param_sizes,
    torch_variant,
    with_biases,
)

__all__ = ["GRU", "LSTM", "RNN", "Recurrent", "recurrent"]

_DTYPES = (torch.float32, torch.float64)
#: computed in float32 inside
_HALVES = (torch.float16, torch.bfloat16)


# -- the custom ops ----------------------------------------------------------------------------


def _module(name):
    """The generated cell module the ops name (its import name, so that any generated
    package, a user's included, works)."""
    module = _MODULES.get(name)
    if module is None:
        # a module built from a declaration (derive.build) lies in the build cache
        module = (
            sys.modules.get(name) or load_built(name) or importlib.import_module(name)
        )
        if not hasattr(module, "_interface"):
            raise ValueError(f"gatesmith ops: {name} is not a generated cell module")
        _MODULES[name] = module
    return module


#: The cell modules the ops have named, by import name (every forward reads them).
_MODULES = {}


def _np(tensor):
    """A tensor's values as a C-contiguous NumPy array (its own memory where it can)."""
    if tensor.requires_grad:
        tensor = tensor.detach()
    return tensor.contiguous().numpy()


def _hypers(module, values):
    """The hyperparameters as the generated interface takes them (``HYPERS`` order)."""
    return dict(zip(module.HYPERS, values.tolist(), strict=True))


def _masks(module, masks):
    """The masks as the generated interface takes them (a dict in ``MASKS`` order)."""
    return dict(zip(module.MASKS, (_np(m) for m in masks), strict=True)) or None


def _run(cell, x, lengths, states, params, hypers, masks, tape):
    """``(ys, final_states, kept)`` of the kernels as NumPy arrays: ``kept`` is the tape the
    generated backward reads (None without ``tape``); ``lengths`` None where every row runs
    every step."""
    module = _module(cell)
    with _framework_threads(module):
        ys, finals, kept = module._interface.forward(
            _np(x),
            tuple(_np(s) for s in states),
            dict(zip(module.PARAMS, (_np(p) for p in params), strict=True)),
            None if lengths is None else _np(lengths),
            _hypers(module, hypers),
            _masks(module, masks),
            tape,
        )
    if not ys.flags.writeable:  # a view of the tape: outputs of an op never alias
        ys = ys.copy()
    return ys, finals, kept


def _forward(cell, x, lengths, states, params, hypers, masks=(), tape=True):
    """``[ys, *final_states, *saved]``: ``saved`` are the arrays the backward reads, joined
    as one piece would have made them (none without a ``tape``: the kernels that keep
    none)."""
    ys, finals, kept = _run(cell, x, lengths, states, params, hypers, masks, tape)
    saved = _module(cell)._interface.saved_arrays(kept) if tape else ()
    return [torch.from_numpy(a) for a in (ys, *finals, *saved)]


def _backward(cell, dys, d_final_states, x, lengths, params, saved, hypers, masks=(),
              input_grad=True):  # fmt: skip
    """``[dx, *d_initial_states, *d_params]``; ``saved`` as :func:`_forward` gave it;
    without ``input_grad``, ``dx`` empty (its products skipped)."""
    module = _module(cell)
    arrays = dict(zip(module.PARAMS, (_np(p) for p in params), strict=True))
    tape = module._interface.restore_tape(
        _np(x), arrays, _np(lengths), [_np(s) for s in saved], _hypers(module, hypers),
        _masks(module, masks),
    )  # fmt: skip
    return _pull_back(module, dys, d_final_states, tape, input_grad)


def _pull_back(module, dys, d_final_states, tape, input_grad=True):
    """``[dx, *d_initial_states, *d_params]`` of the generated backward over ``tape``; without
    ``input_grad``, ``dx`` empty (its products skipped)."""
    with _framework_threads(module):
        dx, d_initial, d_params = module.backward(
            _np(dys), tuple(_np(d) for d in d_final_states), tape, input_grad
        )
    grads = (*d_initial, *(d_params[name] for name in module.PARAMS))
    dx = torch.from_numpy(dx) if input_grad else torch.empty(0, dtype=dys.dtype)
    return [dx, *(torch.from_numpy(g) for g in grads)]


def _framework_threads(module):
    """BLAS held to one thread while the kernels run beside torch's threads, whose OpenMP
    pool spins for a while after each of torch's operations: a BLAS call of two threads on
    two cores then waits on the spinning ones, a training step several times slower."""
    return module._interface.one_blas_thread()


def _gradients(grads, shapes, x, traced=False):
    """The gradients of ``ys`` and the final states, contiguous; zeros where the loss does not
    reach an output (None), torch's where the call is ``traced`` (the custom ops')."""
    return [
        (x.new_zeros(shape) if traced else _zeros(shape, x)) if g is None
        else g.contiguous()
        for g, shape in zip(grads, shapes, strict=True)
    ]  # fmt: skip


def _zeros(shape, like):
    """Zeros of ``shape`` of ``like``'s dtype and device: made by NumPy where it can (a
    fraction of ``new_zeros``' cost, which a training step of a small layer notices)."""
    if like.dtype in _DTYPES and like.device.type == "cpu":
        return torch.from_numpy(np.zeros(shape, _numpy_dtype(like.dtype)))
    return like.new_zeros(shape)


# -- as torch.library custom ops, which torch.compile traces ----------------------------------


@torch.library.custom_op("gatesmith::forward", mutates_args=())
def _forward_op(
    cell: str,
    x: torch.Tensor,
    lengths: torch.Tensor,
    states: list[torch.Tensor],
    params: list[torch.Tensor],
    hypers: torch.Tensor,
    masks: list[torch.Tensor],
) -> list[torch.Tensor]:
    """Returns ``[ys, *final_states, *saved]``: ``saved`` are the arrays the backward reads."""
    return _forward(cell, x, lengths, states, params, hypers, masks)


@_forward_op.register_fake
def _forward_fake(cell, x, lengths, states, params, hypers, masks):
    module = _module(cell)
    steps, batch, size = x.shape
    sizes = param_sizes(module, size, [p.shape for p in params])
    out = sizes[module.OUTPUT_SIZE]
    saved = module._interface.saved_shapes(steps, batch, sizes)
    shapes = [(steps, batch, out), *(s.shape for s in states), *saved]
    return [x.new_empty(shape) for shape in shapes]


@torch.library.custom_op("gatesmith::backward", mutates_args=())
def _backward_op(
    cell: str,
    dys: torch.Tensor,
    d_final_states: list[torch.Tensor],
    x: torch.Tensor,
    lengths: torch.Tensor,
    params: list[torch.Tensor],
    saved: list[torch.Tensor],
    hypers: torch.Tensor,
    masks: list[torch.Tensor],
    input_grad: bool,
) -> list[torch.Tensor]:
    """Returns ``[dx, *d_initial_states, *d_params]``, ``dx`` empty without
    ``input_grad``."""
    return _backward(
        cell, dys, d_final_states, x, lengths, params, saved, hypers, masks, input_grad
    )


@_backward_op.register_fake
def _backward_fake(
    cell, dys, d_final_states, x, lengths, params, saved, hypers, masks, input_grad
):
    return [
        x.new_empty(x.shape if input_grad else (0,)),
        *(d.new_empty(d.shape) for d in d_final_states),
        *(p.new_empty(p.shape) for p in params),
    ]


def _setup_context(ctx, inputs, output):
    cell, x, lengths, states, params, hypers, masks = inputs
    ctx.cell, ctx.counts = cell, (len(states), len(params), len(masks))
    ctx.shapes = [o.shape for o in output[: 1 + len(states)]]
    ctx.save_for_backward(
        x, lengths, hypers, *params, *masks, *output[1 + len(states) :]
    )


def _backward_rule(ctx, grads):
    n_states, n_params, n_masks = ctx.counts
    x, lengths, hypers, *rest = ctx.saved_tensors
    params, masks = rest[:n_params], rest[n_params : n_params + n_masks]
    saved = rest[n_params + n_masks :]
    given = _gradients(grads[: 1 + n_states], ctx.shapes, x, traced=True)
    input_grad = ctx.needs_input_grad[1]  # (an input that needs none gets none)
    out = torch.ops.gatesmith.backward(
        ctx.cell, given[0], given[1:], x, lengths, list(params), list(saved), hypers,
        list(masks), input_grad,
    )  # fmt: skip
    masks_none = [None] * n_masks  # no gradient reaches a mask
    return (
        None,
        out[0] if input_grad else None,
        None,
        out[1 : 1 + n_states],
        out[1 + n_states :],
        None,
        masks_none,
    )


_forward_op.register_autograd(_backward_rule, setup_context=_setup_context)


def _no_second_order(ctx, grads):
    raise RuntimeError(SECOND_ORDER)


_backward_op.register_autograd(_no_second_order)


class _Function(torch.autograd.Function):
    """An ``autograd.Function`` with ``setup_context`` (which ``torch.func`` needs) whose
    ``apply`` binds its arguments to ``forward``'s signature only under a ``torch.func``
    transform: torch's own ``apply`` calls ``inspect.signature`` on every call, some 60 µs,
    which a step of generation notices. Its ``forward`` takes no defaults, so the binding changes
    nothing."""

    @classmethod
    def apply(cls, *args):
        if torch._C._are_functorch_transforms_active():
            return super().apply(*args)
        args = torch._functorch.utils.unwrap_dead_wrappers(args)
        return super(torch.autograd.Function, cls).apply(*args)


class _Kernels(_Function):
    """The two kernel calls outside ``torch.compile``, without the custom ops' dispatch: a
    third of a millisecond less per layer and direction, which small problems notice. Its
    backward is :class:`_Gradients`, itself differentiable; both batch under
    ``torch.func.vmap`` one problem at a time.

    The tape goes from the forward kernel to the backward kernel as the kernels made it, held
    by an empty tensor the forward returns last and the context saves (it lives as long as
    autograd keeps what it saved): not turned into tensors and checked again on the way back
    (the checks alone took 0.14 ms of a training step at (35, 20, 128, 128)). Where a
    ``torch.func`` transform wraps that tensor and the tape is not on it, the backward runs
    the forward again for one."""

    @staticmethod
    def forward(cell, x, lengths, hypers, n_states, n_masks, *tensors):
        states, params, masks = _split_tensors(tensors, n_states, n_masks)
        ys, finals, kept = _run(cell, x, lengths, states, params, hypers, masks, True)
        holder = torch.empty(0)
        setattr(holder, _TAPE, kept)
        return (*(torch.from_numpy(a) for a in (ys, *finals)), holder)

    @staticmethod
    def setup_context(ctx, inputs, output):
        cell, x, lengths, hypers, n_states, n_masks, *tensors = inputs
        ctx.cell, ctx.n_states, ctx.n_masks, ctx.hypers = (
            cell,
            n_states,
            n_masks,
            hypers,
        )
        ctx.n_tensors = len(tensors)
        ctx.shapes = [o.shape for o in output[: 1 + n_states]]
        ctx.mark_non_differentiable(output[-1])
        # an output the loss does not reach gets a gradient of None, not zeros made by
        # autograd (the binding makes the final states' own, of their size)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, lengths, *tensors, output[-1])

    @staticmethod
    def backward(ctx, *grads):
        x, lengths, *tensors, holder = ctx.saved_tensors
        given = _gradients(grads[: 1 + ctx.n_states], ctx.shapes, x)
        # an input that needs no gradient gets none: the kernels skip its products (a
        # fifth of lstm's backward), unless a graph of this backward is being made
        graph = torch.is_grad_enabled()
        input_grad = ctx.needs_input_grad[1] or graph
        args = (ctx.cell, ctx.hypers, ctx.n_states, ctx.n_masks, input_grad, holder, x,
                lengths, *tensors, *given)  # fmt: skip
        if graph or torch._C._are_functorch_transforms_active():
            out = _Gradients.apply(*args)
        else:  # no graph of this backward is made: the kernel's call, not a Function's
            out = _Gradients.forward(*args)
        dx = out[0] if input_grad else None
        return None, dx, None, None, None, None, *out[1:], *(None,) * ctx.n_masks

    @staticmethod
    def vmap(info, in_dims, *args):
        return _one_at_a_time(_Kernels, info, in_dims, args)


#: The attribute of :class:`_Kernels`' last output that holds the tape.
_TAPE = "_gatesmith_tape"


class _Gradients(_Function):
    """The generated backward kernel, as a function of the input, the initial states, the
    parameters and the incoming gradients ``(dys, *d_final_states)``: ``[dx, *d_initial,
    *d_params]``, over the tape ``holder`` holds (:class:`_Kernels`).

    Its own backward (a gradient penalty, a Hessian-vector product, ``gradgradcheck``) is the
    vector-Jacobian product of the first derivative, taken by autograd through the cell's
    declaration evaluated with torch operations (:func:`derive.verify.twin.twin_forward`,
    the twin the kernels are verified against), at the same input, states, parameters and
    lengths. Each order above that is autograd's too."""

    @staticmethod
    def forward(cell, hypers, n_states, n_masks, input_grad, holder, x, lengths, *rest):
        tensors, given = rest[: -1 - n_states], rest[-1 - n_states :]
        tape = getattr(holder, _TAPE, None)
        if tape is None:  # the holder as a transform wrapped it: the forward again
            states, params, masks = _split_tensors(tensors, n_states, n_masks)
            tape = _run(cell, x, lengths, states, params, hypers, masks, True)[2]
        module = _module(cell)
        return tuple(_pull_back(module, given[0], given[1:], tape, input_grad))

    @staticmethod
    def setup_context(ctx, inputs, output):
        cell, hypers, n_states, n_masks, _, _, x, lengths, *rest = inputs
        ctx.cell, ctx.hypers, ctx.n_masks = cell, hypers, n_masks
        ctx.n_states, ctx.n_tensors = n_states, len(rest) - 1 - n_states
        ctx.save_for_backward(x, lengths, *rest)

    @staticmethod
    def backward(ctx, *cotangents):
        x, lengths, *rest = ctx.saved_tensors
        tensors, given = rest[: ctx.n_tensors], rest[ctx.n_tensors :]
        n_states, n_masks, n_tensors = ctx.n_states, ctx.n_masks, ctx.n_tensors

        def outputs(x, *tensors):
            states, params, masks = _split_tensors(tensors, n_states, n_masks)
            ys, finals = _twin(ctx.cell, x, states, params, lengths, ctx.hypers, masks)
            return (ys, *finals)

        def first(x, *rest):  # the first derivative, as the kernels compute it
            _, pullback = torch.func.vjp(outputs, x, *rest[:n_tensors])
            # no gradient reaches a mask
            return pullback(tuple(rest[n_tensors:]))[: 1 + n_tensors - n_masks]

        # torch.func, not autograd.grad: partial derivatives in each argument, however the
        # arguments depend on each other in the graph around; differentiable again when
        # create_graph asks for it
        _, pullback = torch.func.vjp(first, x, *tensors, *given)
        seconds = pullback(tuple(cotangents))
        d_x, d_tensors = seconds[0], seconds[1 : 1 + n_tensors - n_masks]
        d_given = seconds[1 + n_tensors :]
        return (
            None, None, None, None, None, None, d_x, None, *d_tensors,
            *(None,) * n_masks, *d_given,
        )  # fmt: skip

    @staticmethod
    def vmap(info, in_dims, *args):
        return _one_at_a_time(_Gradients, info, in_dims, args)


def _split_tensors(tensors, n_states, n_masks):
    """``(states, params, masks)`` of the tensors a kernel call takes, in that order."""
    end = len(tensors) - n_masks
    return tensors[:n_states], tensors[n_states:end], tensors[end:]


def _one_at_a_time(function, info, in_dims, args):
    """``torch.func.vmap``'s rule for a kernel call: the call once per index of the mapped
    dimension (the kernels take one problem), the results stacked along dimension 0."""
    results = []
    for n in range(info.batch_size):
        picked = [
            a if dim is None else a.select(dim, n)
            for a, dim in zip(args, in_dims, strict=True)
        ]
        results.append(function.apply(*picked))
    stacked = tuple(torch.stack(parts) for parts in zip(*results, strict=True))
    return stacked, (0,) * len(stacked)


def _declaration(module):
    """The declaration ``module`` was generated from, for derivatives of its gradients: a
    catalog variant's, or a user's spec loaded or built in this process."""
    return declaration_of(
        f"gatesmith: differentiating {module.VARIANT}'s gradients", module
    )


def _twin(cell, x, states, params, lengths, hypers, masks=()):
    """``(ys, final_states)`` of ``cell`` evaluated from its declaration with torch
    operations: what autograd differentiates for the derivatives of the kernels' gradients."""
    from .verify.twin import twin_forward

    module = _module(cell)
    return twin_forward(
        _declaration(module), x, tuple(states),
        dict(zip(module.PARAMS, params, strict=True)), _hypers(module, hypers), lengths,
        dict(zip(module.MASKS, masks, strict=True)),
    )  # fmt: skip


#: What a second derivative through the compiled kernels' gradients raises.
SECOND_ORDER = (
    "gatesmith: under torch.compile the generated kernels' gradients are not differentiated "
    "again (a gradient penalty, a Hessian-vector product, gradgradcheck); run the model "
    "outside torch.compile for second derivatives"
)


# -- one layer, one direction ------------------------------------------------------------------


def _check_tensor(caller, argument, value, dtype=None):
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{caller}: {argument} must be a torch.Tensor; got {type(value).__name__}"
        )
    if value.device.type != "cpu":
        raise RuntimeError(
            f"{caller}: {argument} is on {value.device}; the generated kernels run on the "
            f"CPU: move it with .cpu()"
        )
    if dtype is None and value.dtype not in _DTYPES + _HALVES:
        raise TypeError(
            f"{caller}: {argument} must have a floating dtype (float32, float64, float16 or "
            f"bfloat16); got {value.dtype}"
        )
    if dtype is not None and value.dtype != dtype:
        raise TypeError(
            f"{caller}: {argument} must have the dtype of x, {dtype}; got {value.dtype}"
        )
    return value


def recurrent(variant, params, x, initial_states=None, lengths=None, hypers=None,
              masks=None):  # fmt: skip
    """Run one layer of ``variant`` over ``x`` ``(T, B, I)``, differentiably.

    ``params`` maps the cell's ``PARAMS`` to tensors (its biases may all be left out, or all
    be tensors of length 0: ``bias=False``); ``initial_states`` is None (zeros) or a tuple of
    ``(B, size)`` tensors in ``STATES`` order; ``lengths`` is None or each batch row's
    number of steps; ``hypers`` maps hyperparameters to the values that replace their
    defaults; ``masks`` maps each of a cell's ``MASKS`` to its tensor (``(T, B, size)`` drawn
    per step, ``(B, size)`` per sequence; no gradient reaches it). Returns ``ys``
    ``(T, B, size)`` (zero past a row's length) and the final states (each row's state at its
    length). Gradients reach ``x``, ``initial_states`` and ``params`` through the generated
    backward kernel; their own derivatives (``create_graph``) through the cell's declaration.
    float16 and bfloat16 run in float32 inside.
    """
    caller = "recurrent"
    cell = load_cell(caller, variant)
    sizes, states, tensors = _layer_arguments(caller, cell, params, x, initial_states)
    steps, batch = x.shape[:2]
    if batch == 0:  # nothing to run; zeros that reach every input, as nn.LSTM's do
        touch = sum(t.sum() for t in (x, *states, *tensors)) * 0
        out = x.new_zeros(steps, 0, sizes[cell.OUTPUT_SIZE]) + touch
        return out, tuple(s + touch for s in states)
    if lengths is not None:  # (None: every row runs every step, nothing to check)
        lengths = _lengths(caller, lengths, steps, batch)
    drawn = _layer_masks(caller, cell, masks, x, sizes)
    half = x.dtype in _HALVES
    if half:  # computed in float32, as nn.LSTM's CPU kernels compute these
        dtype = x.dtype
        x, states, tensors = x.float(), [s.float() for s in states], [
            t.float() for t in tensors
        ]  # fmt: skip
        drawn = [m.float() for m in drawn]
    values = _hyper_values(caller, cell, hypers, _numpy_dtype(x.dtype))
    if _exporting():  # torch.export, ONNX, jit.trace: the steps as torch operations
        out = _twin(cell.__name__, x, states, tensors, lengths, values, drawn)
        out = (out[0], *out[1])
    elif torch.compiler.is_compiling():
        if lengths is None:
            lengths = torch.full((batch,), steps, dtype=torch.int64)
        out = torch.ops.gatesmith.forward(
            cell.__name__, x, lengths, states, tensors, values, list(drawn)
        )
    elif not _wants_gradient(x, states, tensors):  # inference: the kernels keep no tape
        out = _forward(cell.__name__, x, lengths, states, tensors, values, drawn, False)
    else:
        out = _Kernels.apply(
            cell.__name__, x, lengths, values, len(states), len(drawn), *states,
            *tensors, *drawn,
        )  # fmt: skip
    ys, finals = out[0], tuple(out[1 : 1 + len(cell.STATES)])
    if half:
        ys, finals = ys.to(dtype), tuple(f.to(dtype) for f in finals)
    return ys, finals


def _hyper_values(caller, cell, hypers, dtype):
    """The hyperparameters, checked, as a float64 tensor in ``HYPERS`` order (what the ops
    take); the defaults' made once for each cell and dtype (read, never written), except
    under a compiler, which traces them made."""
    defaults = hypers is None or (type(hypers) is dict and not hypers)
    if not defaults or torch.compiler.is_compiling():
        values = cell._interface.check_hypers(caller, hypers, dtype)
        return torch.tensor(values, dtype=torch.float64)
    key = (cell.__name__, dtype)
    known = _DEFAULT_HYPERS.get(key)
    if known is None:
        values = cell._interface.check_hypers(caller, None, dtype)
        known = _DEFAULT_HYPERS[key] = torch.tensor(values, dtype=torch.float64)
    return known


#: The default hyperparameters' tensor of each cell module and dtype (:func:`_hyper_values`).
_DEFAULT_HYPERS = {}


def _wants_gradient(x, states, tensors):
    """Whether autograd may differentiate a call on these inputs: grad mode on and one of
    them requiring a gradient, or a ``torch.func`` transform active (its wrapped tensors
    carry their gradients where ``requires_grad`` does not show them)."""
    if torch._C._are_functorch_transforms_active():
        return True
    return torch.is_grad_enabled() and any(
        t.requires_grad for t in (x, *states, *tensors)
    )


def _layer_masks(caller, cell, masks, x, sizes):
    """The masks of one layer's call in ``MASKS`` order, checked (:func:`checked_masks`) in
    ``x``'s dtype."""
    steps, batch = x.shape[:2]

    def check(argument, value):
        return _check_tensor(caller, argument, value, x.dtype)

    drawn = checked_masks(caller, cell, masks, steps, batch, sizes, check)
    return [value.detach().contiguous() for value in drawn]


def _layer_arguments(caller, cell, params, x, initial_states):
    """``(sizes, states, tensors)`` of one layer's call, checked: the initial states (zeros
    when None) and the parameters in ``PARAMS`` order (absent biases as length 0). A batch of
    0 rows is checked as one row: the sizes are what the parameters say."""
    _check_tensor(caller, "x", x)
    if isinstance(initial_states, torch.Tensor) or not (
        initial_states is None or isinstance(initial_states, (tuple, list))
    ):
        raise TypeError(
            f"{caller}: initial_states must be None or a tuple of tensors {cell.STATES}; "
            f"got {type(initial_states).__name__}"
        )
    params = with_biases(cell, params, lambda: x.new_empty(0))
    shapes = (
        {name: getattr(value, "shape", ()) for name, value in params.items()}
        if isinstance(params, dict)
        else params
    )
    if x.dim() == 3 and x.shape[0] == 0:
        raise RuntimeError(f"{caller}: Expected sequence length to be larger than 0")
    state_shapes = None
    if initial_states is not None:
        state_shapes = [tuple(getattr(s, "shape", ())) for s in initial_states]
    x_shape = tuple(x.shape)
    if x.dim() == 3 and x.shape[1] == 0:
        x_shape = (x.shape[0], 1, x.shape[2])
        state_shapes = state_shapes and [(1, *shape[1:]) for shape in state_shapes]
    sizes = check_layer(caller, cell, x_shape, shapes, state_shapes)
    tensors = [
        _check_tensor(caller, f"params[{n!r}]", params[n], x.dtype) for n in cell.PARAMS
    ]
    if initial_states is None:
        initial_states = [
            x.new_zeros(x.shape[1], sizes[cell.STATE_SIZES[s]]) for s in cell.STATES
        ]
    states = [
        _check_tensor(caller, f"initial_states[{n}] ({s})", v, x.dtype)
        for n, (s, v) in enumerate(zip(cell.STATES, initial_states, strict=True))
    ]
    return sizes, states, tensors


def _exporting():
    """Whether the call is being traced into a graph that leaves this process (``torch.export``,
    ``torch.onnx.export`` with either exporter, ``torch.jit.trace``): the kernels are Python
    calls such a graph cannot hold, so the cell runs as its declaration's torch operations,
    one step after another (the twin the kernels are verified against)."""
    # torch.onnx's TorchScript exporter traces with torch.jit; its dynamo exporter exports
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


def _lengths(caller, lengths, steps, batch):
    """``lengths`` as a CPU int64 tensor ``(B,)``, every entry in [1, steps]."""
    given = torch.as_tensor(lengths)
    if given.shape != (batch,) or given.dtype.is_floating_point or given.is_complex():
        raise ValueError(
            f"{caller}: lengths must be {batch} integers, one per batch row; got "
            f"{given.dtype} {tuple(given.shape)}"
        )
    given = given.to("cpu", torch.int64)
    if bool(((given < 1) | (given > steps)).any()):
        raise ValueError(
            f"{caller}: lengths must lie in [1, {steps}] (the number of steps); got "
            f"{given.tolist()}"
        )
    return given


# -- the modules -------------------------------------------------------------------------------


def _numpy_dtype(dtype):
    """The NumPy dtype the kernels run in for a torch dtype (float32 for the halves)."""
    return np.dtype("f8" if dtype == torch.float64 else "f4")


class _Layers:
    """What :class:`Recurrent`, :class:`LSTM`, :class:`GRU` and :class:`RNN` share: the
    stack of layers and directions run through the kernels, with ``nn.LSTM``'s checks,
    errors and layouts. A class using it has ``torch.nn.RNNBase``'s attributes."""

    #: the name errors give (the torch class's for the drop-ins)
    _caller = "Recurrent"
    #: a drop-in's hyperparameters and regularisation: none (:class:`Recurrent` sets its
    #: own; read on every call, where nn.Module's lookup of a missing one raises inside)
    hypers = None
    regularisation = None

    @property
    def cell(self):
        """The generated cell module."""
        return _module(self.cell_module)

    @property
    def directions(self):
        return 2 if self.bidirectional else 1

    def _size(self, name, input_size=None):
        """The value of size ``name`` (``"H"``, ``"P"``, ...) in a layer reading
        ``input_size``."""
        named = {
            "input_size": input_size,
            "hidden_size": self.hidden_size,
            "proj_size": self.proj_size,
            **getattr(self, "sizes", {}),
        }
        return named[self.cell.SIZES[name]]

    @property
    def output_size(self):
        """The size of the output of one direction (the input's, for an output of size I)."""
        return self._size(self.cell.OUTPUT_SIZE, self.input_size)

    def layer_params(self, layer, direction=0):
        """The cell's parameter dict (keys ``cell.PARAMS``, without the biases when
        ``bias=False``) of one layer and direction."""
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        biases = () if self.bias else self.cell._interface.biases
        return {
            name: getattr(self, name + suffix)
            for name in self.cell.PARAMS
            if name not in biases
        }

    def _initial_states(self, hx, seq, batched):
        """The initial states ``(D * num_layers, B, size)`` in ``STATES`` order, checked as
        ``nn.LSTM`` checks them (RuntimeError, its wording)."""
        cell, caller, batch = self.cell, self._caller, seq.shape[1]
        shapes = [
            (self.directions * self.num_layers, batch, self._size(cell.STATE_SIZES[s]))
            for s in cell.STATES
        ]
        if hx is None:
            return [_zeros(shape, seq) for shape in shapes]
        if isinstance(hx, torch.Tensor) and len(cell.STATES) == 1:
            hx = (hx,)
        if not isinstance(hx, (tuple, list)) or len(hx) != len(cell.STATES):
            raise RuntimeError(
                f"{caller}: hx must be None, "
                + ("a tensor or " if len(cell.STATES) == 1 else "")
                + f"a tuple of {len(cell.STATES)} tensors {cell.STATES}; got "
                f"{type(hx).__name__}"
                + (f" of {len(hx)}" if isinstance(hx, (tuple, list)) else "")
            )
        out = []
        for n, (value, shape) in enumerate(zip(hx, shapes, strict=True)):
            which = "hidden" if len(shapes) == 1 else f"hidden[{n}]"
            if not isinstance(value, torch.Tensor):
                raise TypeError(
                    f"{caller}: {which} must be a torch.Tensor; got {type(value).__name__}"
                )
            want = 3 if batched else 2
            if value.dim() != want:
                raise RuntimeError(
                    f"For {'batched 3-D' if batched else 'unbatched 2-D'} input, {which} "
                    f"should also be {want}-D but got {value.dim()}-D tensor"
                )
            value = value if batched else value.unsqueeze(1)
            if tuple(value.shape) != shape:
                got = list(value.shape) if batched else [value.shape[0], value.shape[2]]
                raise RuntimeError(
                    f"Expected {which} size {shape if batched else shape[::2]}, got {got}"
                )
            if value.dtype != seq.dtype or value.device != seq.device:
                raise RuntimeError(
                    f"{caller}: {which} must have the input's dtype and device, "
                    f"{seq.dtype} on {seq.device}; got {value.dtype} on {value.device}"
                )
            out.append(value)
        return out

    def _inferring(self, input, hx):
        """Whether a call takes the inference path (:meth:`_infer`): no gradient wanted, a
        plain CPU tensor of the weights' dtype, no lengths, masks or dropout between layers,
        and nothing tracing or transforming the call."""
        if type(input) is not torch.Tensor or not input.is_cpu:
            return False
        weight = self._flat_weight(self._flat_weights_names[0])
        if torch.is_grad_enabled() and weight.requires_grad:
            return False  # training: the checks below cost a training step 20 µs
        plain = (
            weight.is_cpu
            and input.dtype == weight.dtype
            and input.dtype in _DTYPES
            and input.dim() in (2, 3)
            and 0 not in input.shape
            and input.shape[-1] == self.input_size
        )
        regular = self.regularisation
        masked = bool(self.cell.MASKS) or (regular is not None and regular.active)
        dropped = bool(self.dropout) and self.training and self.num_layers > 1
        traced = torch.compiler.is_compiling() or torch.jit.is_tracing()
        if not plain or masked or dropped or traced:
            return False
        hx = () if hx is None else (hx,) if isinstance(hx, torch.Tensor) else hx
        if not isinstance(hx, (tuple, list)) or not all(
            isinstance(h, torch.Tensor) for h in hx
        ):
            return False  # the other path names what is wrong
        # (map: the weights are read only where grad mode is on)
        weights = map(self._flat_weight, self._flat_weights_names)
        return not _wants_gradient(input, tuple(hx), weights)

    def _flat_weight(self, name):
        """The weight or bias ``name`` (from ``_parameters`` where it is one: ``getattr``
        takes nn.Module's slower way there)."""
        parameters = self._parameters
        return parameters[name] if name in parameters else getattr(self, name)

    def _flat_weights_tensors(self):
        return [self._flat_weight(name) for name in self._flat_weights_names]

    @property
    def _state_sizes(self):
        """The size name of each state, in ``STATES`` order."""
        cell = self.cell
        return [cell.STATE_SIZES[s] for s in cell.STATES]

    def _infer(self, input, hx, key):
        """The forward of :meth:`forward` when no gradient is wanted: the kernels that keep
        no tape, on NumPy views of the parameters checked once for their shapes, dtypes and
        storage (:meth:`_inference_params`). The plan of the call is kept for the next
        call of its ``key`` (:meth:`_call_key`), which skips every check but the key's."""
        seq, _, _, batched = self._sequence(input)
        slots, units, lasting = self._inference_params(seq.dtype)
        direct = hx is None or self._states_direct(hx, seq, batched, units)
        interface, (steps, batch) = self.cell._interface, seq.shape[:2]
        # the weights packed once for a batch of several rows (a step's products then run
        # by tiles, not BLAS), while their versions stay
        versions = _versions(self._flat_weights_tensors()) if batch > 1 else None
        pack = versions is not None
        runs = [interface.inference(steps, batch, *slot, pack) for slot in slots]
        context = interface.beside_framework(steps, batch, slots[0][1])
        plan = _Plan(runs, units, direct, context, versions)
        # (the run checks hx whole where it is not direct, before the plan is kept)
        out = self._run_plan(plan, input, hx)
        if lasting and key is not None:
            _keep_plan(self, key, plan)
        return out

    def _call_key(self, input, hx):
        """What the inference of a call depends on beyond what :meth:`_inferring` judged:
        ``(call, weights)``, its shapes, dtypes and devices and the module's mode, then the
        hyperparameters and each parameter's storage, shape and strides; None for a call
        that cannot take a kept plan (grad mode on, a subclass of Tensor, a ``torch.func``
        transform, a compiler or an exporter tracing it)."""
        if (
            torch.is_grad_enabled()
            or type(input) is not torch.Tensor
            or torch._C._are_functorch_transforms_active()
            or torch.compiler.is_compiling()
            or _exporting()
        ):
            return None
        if hx is None or type(hx) is torch.Tensor:
            given = () if hx is None else (hx,)
        elif type(hx) in (tuple, list):
            given = hx
        else:
            return None
        states = []
        for h in given:
            if type(h) is not torch.Tensor:
                return None
            states.append((h.shape, h.dtype, h.is_cpu))
        regular = self.regularisation
        return (
            input.shape, input.dtype, input.is_cpu, hx is None, *states, self.training,
            self.batch_first, regular is not None and regular.active,
        ), self._weights_key(self.hypers)  # fmt: skip

    def _run_plan(self, plan, input, hx):
        """The inference of a call by ``plan`` (:meth:`_infer`'s)."""
        runs, units, direct, context, _ = plan
        seq, _, _, batched = self._sequence(input)
        x = _np(seq)
        if hx is None:  # zeros, as _initial_states gives them
            held = [None] * len(units)
        else:
            given = (hx,) if type(hx) is torch.Tensor else hx
            if not direct:
                given = self._initial_states(hx, seq, batched)
            held = [_np(s) for s in given]
        with context:
            x, finals = self._run_layers(runs, x, held, units)
        out = torch.from_numpy(x)
        h_n = [
            torch.from_numpy(np.stack(f) if len(f) > 1 else f[0][None]) for f in finals
        ]
        if not batched:
            out, h_n = out.squeeze(1), [h.squeeze(1) for h in h_n]
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, (h_n[0] if len(h_n) == 1 else tuple(h_n))

    def _run_layers(self, runs, x, held, units):
        """``(ys, finals)``: every layer and direction over ``x`` (``runs``, one for each, from
        :meth:`CellInterface.inference`) from the states ``held`` (None for zeros), and each
        state's final value of every layer and direction."""
        directions = self.directions
        if len(runs) == 1:  # one layer, one direction: a step's path, kept short
            ys, last = runs[0](x, _initial_arrays(held, units, 0, x))
            return ys, [[value] for value in last]
        finals = [[] for _ in held]
        for layer in range(self.num_layers):
            outs = []
            for direction in range(directions):
                slot = layer * directions + direction
                src = x if direction == 0 else np.ascontiguousarray(x[::-1])
                ys, last = runs[slot](src, _initial_arrays(held, units, slot, x))
                outs.append(ys if direction == 0 else ys[::-1])
                for final, value in zip(finals, last, strict=True):
                    final.append(value)
            x = outs[0] if directions == 1 else np.concatenate(outs, axis=2)
        return np.ascontiguousarray(x), finals

    def _states_direct(self, hx, seq, batched, units):
        """Whether ``hx`` (tensors, :meth:`_inferring` saw) are each the batched state of the
        shape (``units`` its last dimension), dtype and device the call needs, as they are;
        else :meth:`_initial_states` checks them whole (and names what is wrong)."""
        given = (hx,) if isinstance(hx, torch.Tensor) else hx
        leading = (self.directions * self.num_layers, seq.shape[1])
        return batched and len(given) == len(units) and all(
            h.shape == (*leading, size) and h.dtype == seq.dtype and h.device == seq.device
            for h, size in zip(given, units, strict=True)
        )  # fmt: skip

    def _inference_params(self, dtype):
        """``(slots, units, lasting)``: for each layer and direction, its parameters as
        checked NumPy views, its sizes and its hyperparameters' values; the units of each
        state; and whether the views last (not copies of a parameter that is not
        contiguous, which go stale). Kept while every parameter keeps its storage, shape and
        layout (an optimiser's in-place step keeps them; ``load_state_dict`` copies in
        place; ``.to()`` and a new Parameter change them)."""
        hypers = self.hypers
        key = (dtype, *self._weights_key(hypers))
        cached = _INFERENCE_PARAMS.get(self)
        if cached is not None and cached[0] == key:
            return cached[1]
        interface, caller = self.cell._interface, self._caller
        numpy_dtype = _numpy_dtype(dtype)
        values = interface.check_hypers(caller, hypers, numpy_dtype)
        slots = []
        for layer in range(self.num_layers):
            width = (
                self.input_size if layer == 0 else self.output_size * self.directions
            )
            for direction in range(self.directions):
                params = {
                    name: np.ascontiguousarray(value.detach().numpy())
                    for name, value in self.layer_params(layer, direction).items()
                }
                sizes, params = interface.check_params(
                    caller, params, width, numpy_dtype
                )
                slots.append((params, sizes, values))
        lasting = all(t.is_contiguous() for t in self._flat_weights_tensors())
        kept = (slots, [self._size(size) for size in self._state_sizes], lasting)
        if lasting:
            _INFERENCE_PARAMS[self] = (key, kept)
        return kept

    def _weights_key(self, hypers):
        """The hyperparameters and each parameter's storage, shape and strides: while they
        stay, the parameters' checked NumPy views hold."""
        return hypers and tuple(hypers.items()), *[
            (t.data_ptr(), t.shape, t.stride()) for t in self._flat_weights_tensors()
        ]

    def _layer(self, layer, direction, src, initial, lengths):
        """One layer and direction over ``src``: ``(ys, final_states)``."""
        return recurrent(
            self.cell, self.layer_params(layer, direction), src, initial, lengths,
            self.hypers,
        )  # fmt: skip

    def _sequence(self, input):
        """``(seq, lengths, packed, batched)``: the input time-major ``(T, B, I)``."""
        caller = self._caller
        if isinstance(input, PackedSequence):
            seq, lengths = pad_packed_sequence(input)
            return seq, lengths.to(torch.int64), input, True
        if not isinstance(input, torch.Tensor):
            raise TypeError(
                f"{caller}: input must be a torch.Tensor or a PackedSequence; got "
                f"{type(input).__name__}"
            )
        if input.dim() not in (2, 3):
            raise ValueError(
                f"{caller}: Expected input to be 2D or 3D, got {input.dim()}D instead"
            )
        if input.dim() == 2:
            return input.unsqueeze(1), None, None, False
        return (input.transpose(0, 1) if self.batch_first else input), None, None, True

    def forward(self, input, hx=None):
        if not torch.jit.is_tracing():
            return self._forward(input, hx)
        # the shapes checked are the trace's own, fixed as it is: nothing to warn of
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return self._forward(input, hx)

    def _forward(self, input, hx):
        # (the key first: where it is None, a compiler may be tracing, and the plans, which
        # come and go, are not to be guarded on; where it is not, nothing is exporting)
        key = self._call_key(input, hx)
        if key is not None:
            plan = _kept_plan(self, key)
            if plan is not None and (
                plan.versions is None
                or plan.versions == _versions(self._flat_weights_tensors())
            ):
                return self._run_plan(plan, input, hx)
        elif _exporting() and isinstance(self, _DropIn):
            # torch's own forward, which the exporters turn into ONNX's LSTM, GRU and RNN
            return super().forward(input, hx)
        if self._inferring(input, hx):
            return self._infer(input, hx, key)
        # (each parameter is read by name below: _flat_weights, which torch's own forward
        # refreshes first, is not needed)
        seq, lengths, packed, batched = self._sequence(input)
        weight = getattr(self, self._flat_weights_names[0])
        if seq.dtype != weight.dtype:
            raise ValueError(
                f"RNN input dtype ({seq.dtype}) does not match weight dtype "
                f"({weight.dtype}). Convert input: input.to({weight.dtype}), or convert "
                f"model: model.to({seq.dtype})"
            )
        if seq.size(-1) != self.input_size:
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                f"got {seq.size(-1)}"
            )
        if seq.device.type != "cpu":
            raise RuntimeError(
                f"{self._caller}: the input is on {seq.device}; the generated kernels run "
                f"on the CPU"
            )
        if seq.shape[0] == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
        states = self._initial_states(hx, seq, batched)
        steps = seq.shape[0]
        reverse = None
        if self.bidirectional and lengths is not None:
            index = torch.from_numpy(_reverse_index(steps, lengths.numpy()))
            reverse = index[:, :, None].expand(-1, -1, self.output_size)
        finals = [[] for _ in self.cell.STATES]
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self.directions):
                slot = layer * self.directions + direction
                src = seq if direction == 0 else _flip(seq, reverse, seq.shape[2])
                initial = tuple(s[slot] for s in states)
                ys, last = self._layer(layer, direction, src, initial, lengths)
                outs.append(ys if direction == 0 else _flip(ys, reverse, ys.shape[2]))
                for final, value in zip(finals, last, strict=True):
                    final.append(value)
            seq = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
            if layer < self.num_layers - 1 and self.dropout and self.training:
                seq = nn.functional.dropout(seq, self.dropout, training=True)
        h_n = [torch.stack(f) for f in finals]
        if not batched:
            seq, h_n = seq.squeeze(1), [h.squeeze(1) for h in h_n]
        if packed is not None:
            seq = _repack(seq, lengths, packed)
        elif self.batch_first and batched:
            seq = seq.transpose(0, 1)
        return seq, (h_n[0] if len(h_n) == 1 else tuple(h_n))


def _initial_arrays(held, units, slot, x):
    """The initial states of layer and direction ``slot`` over ``x`` ``(T, B, I)``: of the
    states ``held`` (an array of every slot's, or None for zeros of ``units`` columns)."""
    batch, dtype = x.shape[1], x.dtype
    return [
        np.zeros((batch, size), dtype) if s is None else s[slot]
        for s, size in zip(held, units, strict=True)
    ]


#: Each module's checked NumPy views of its parameters for the inference path, by the key
#: that keeps them valid (:meth:`_Layers._inference_params`); beside the module, not in it, so
#: that neither ``torch.save`` nor ``copy.deepcopy`` carries them.
_INFERENCE_PARAMS = weakref.WeakKeyDictionary()

#: Each module's plans of its last inference calls (at most ``_PLANS_KEPT``, all of one
#: weights key), by the key of each call (:meth:`_Layers._call_key`): what
#: :meth:`_Layers._infer` decided and checked, for the next call like it.
_INFERENCE_PLANS = weakref.WeakKeyDictionary()
#: The plans kept a module: a few shapes in turn (a beam that changes width, two batch sizes).
_PLANS_KEPT = 8


def _kept_plan(module, key):
    """The plan kept for ``module``'s call of ``key``, or None."""
    plans = _INFERENCE_PLANS.get(module)
    if plans is None:
        return None
    try:
        return plans.get(key)
    except TypeError:  # a hyperparameter that cannot be hashed: no plan is kept for it
        return None


def _keep_plan(module, key, plan):
    """``plan`` kept for ``module``'s calls of ``key``: beside the plans of the same weights
    (the oldest forgotten past ``_PLANS_KEPT``), in place of those of others (whose
    parameters' views they hold)."""
    plans = _INFERENCE_PLANS.get(module)
    try:
        hash(key)
        other = plans is None or (plans and next(iter(plans))[1] != key[1])
    except (TypeError, RuntimeError):  # a hyperparameter without a hash or an equality
        return
    if other:
        plans = _INFERENCE_PLANS[module] = {}
    elif len(plans) >= _PLANS_KEPT:
        del plans[next(iter(plans))]
    plans[key] = plan


#: An inference call's plan: the kernels' call of each layer and direction
#: (:meth:`CellInterface.inference`), the units of each state, whether ``hx`` is taken as it
#: is, the context the kernels run in beside torch's threads, and the parameters' versions
#: its runs' packed weights hold (None where they hold none).
_Plan = collections.namedtuple("_Plan", "runs units direct context versions")


def _versions(tensors):
    """Each tensor's version counter (which every in-place change advances), or None where
    one has none (a tensor made under ``torch.inference_mode``)."""
    try:
        return tuple(t._version for t in tensors)
    except RuntimeError:
        return None


def _check_int(caller, name, value, positive=True):
    """torch's checks of a size argument: TypeError for a non-int, ValueError below 1 (below
    0 where 0 is allowed)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{caller}: {name} should be of type int, got: {type(value).__name__}"
        )
    if value < (1 if positive else 0):
        raise ValueError(
            f"{caller}: {name} must be {'greater than' if positive else 'at least'} zero; "
            f"got {value}"
        )
    return value


def _check_flag(caller, name, value):
    if not isinstance(value, bool):
        raise TypeError(
            f"{caller}: {name} should be of type bool, got: {type(value).__name__}"
        )
    return value


def _check_device(caller, device):
    if device is not None and torch.device(device).type not in ("cpu", "meta"):
        raise ValueError(
            f"{caller}: the generated kernels run on the CPU; got device={device!r}"
        )


def _check_module_dtype(caller, dtype):
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if dtype not in _DTYPES + _HALVES:
        raise TypeError(
            f"{caller}: dtype must be torch.float32, float64, float16 or bfloat16; got {dtype}"
        )
    return dtype


def _variant_and_sizes(variant, proj_size, hidden_size, sizes, dtype):
    """The cell module and its extra sizes; ``proj_size > 0`` turns ``"lstm"`` into
    ``"lstm_proj"``, as it turns ``nn.LSTM`` into an LSTM with projections."""
    _check_int("Recurrent", "proj_size", proj_size, positive=False)
    if proj_size and variant == "lstm":
        variant = "lstm_proj"
    cell = load_cell("Recurrent", variant)
    hypers = {name: sizes.pop(name) for name in list(sizes) if name in cell.HYPERS}
    cell._interface.check_hypers("Recurrent", hypers, _numpy_dtype(dtype))
    if proj_size:
        if "proj_size" not in cell.SIZES.values():
            raise ValueError(
                f"Recurrent: {cell.VARIANT} has no projection; proj_size must be 0, got "
                f"{proj_size}"
            )
        if proj_size >= hidden_size:
            raise ValueError("Recurrent: proj_size has to be smaller than hidden_size")
        sizes = {**sizes, "proj_size": proj_size}
    return cell, extra_sizes("Recurrent", cell, sizes), hypers


class Recurrent(_Layers, nn.RNNBase):
    """``num_layers`` layers of a generated cell, with ``torch.nn.LSTM``'s arguments,
    semantics and attributes (a ``torch.nn.RNNBase``: ``all_weights``, ``_flat_weights``,
    ``_flat_weights_names``, ``mode``, the variant's name).

    ``variant`` is a generated variant's name or a generated cell module (one generated from a
    user's declaration, say). The other arguments are ``nn.LSTM``'s: ``bias=False`` leaves
    out the biases of the cell's projections (a cell that adds biases pointwise is refused);
    ``proj_size > 0`` selects ``lstm_proj`` for ``"lstm"``; float16 and bfloat16 run in
    float32 inside. Further sizes a cell declares, and its hyperparameters (``HYPERS``), are
    keywords. Parameters are named as PyTorch names them (``weight_ih_l0``,
    ``bias_hh_l1_reverse``), so ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` state dicts load into
    ``rnn_tanh``/``rnn_relu``, ``lstm``/``lstm_proj`` and ``gru`` and back; :class:`LSTM`,
    :class:`GRU` and :class:`RNN` are those three as subclasses of torch's own.

    :meth:`forward` takes ``input`` ``(T, B, input_size)`` (``(B, T, input_size)`` when
    ``batch_first``, ``(T, input_size)`` unbatched) or a ``PackedSequence``, and ``hx``: None
    (zeros), a tensor ``(D * num_layers, B, size)`` for a one-state cell, or a tuple of them in
    the cell's ``STATES`` order. It returns ``(output, h_n)`` like ``nn.GRU`` for a one-state
    cell and ``(output, (h_n, c_n, ...))`` like ``nn.LSTM`` otherwise.
    """

    def __init__(
        self,
        variant,
        input_size,
        hidden_size,
        num_layers=1,
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        proj_size=0,
        device=None,
        dtype=None,
        zoneout=0.0,
        recurrent_dropout=0.0,
        weight_drop=0.0,
        **sizes,
    ):
        nn.Module.__init__(self)
        caller = "Recurrent"
        dtype = _check_module_dtype(caller, dtype)
        _check_device(caller, device)
        _check_int(caller, "input_size", input_size)
        _check_int(caller, "hidden_size", hidden_size)
        _check_int(caller, "num_layers", num_layers)
        _check_flag(caller, "bias", bias)
        _check_flag(caller, "batch_first", batch_first)
        _check_flag(caller, "bidirectional", bidirectional)
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not 0 <= dropout <= 1
        ):
            raise ValueError(
                f"{caller}: dropout must be a number in [0, 1]; got {dropout!r}"
            )
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout adds dropout after all but the last recurrent layer, so a non-zero "
                f"dropout expects num_layers greater than 1; got dropout={dropout} and "
                f"num_layers={num_layers}",
                stacklevel=2,
            )
        cell, self.sizes, self.hypers = _variant_and_sizes(
            variant, proj_size, hidden_size, sizes, dtype
        )
        dropped = () if bias else biases_to_drop(caller, cell)
        self.regularisation = Regularisation(
            caller, cell, zoneout, recurrent_dropout, weight_drop
        )
        # the module by name, so that the net deep-copies and pickles like any nn.Module
        self.cell_module, self.variant, self.mode = (
            cell.__name__,
            cell.VARIANT,
            cell.VARIANT,
        )
        self.input_size, self.hidden_size, self.num_layers = (
            input_size, hidden_size, num_layers,
        )  # fmt: skip
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        check_stacking(caller, cell, num_layers, bidirectional)
        self._flat_weights_names, self._all_weights = [], []
        for layer in range(num_layers):
            for direction in range(self.directions):
                names = []
                for name, shape in self._param_shapes(layer).items():
                    if name in dropped:
                        continue
                    key = f"{name}_l{layer}" + ("_reverse" if direction else "")
                    self.register_parameter(
                        key,
                        nn.Parameter(torch.empty(shape, dtype=dtype, device=device)),
                    )
                    names.append(key)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self._init_flat_weights()
        self.reset_parameters()

    def _param_shapes(self, layer):
        width = self.input_size if layer == 0 else self.directions * self.output_size
        return {
            name: tuple(mult * self._size(size, width) for mult, size in shape)
            for name, shape in self.cell.PARAM_SHAPES.items()
        }

    def reset_parameters(self):
        """Each parameter as the cell's declaration says it starts (``PARAM_INIT``: a layer
        norm's gains at 1, a chrono or orthogonal rule, ...), drawn from torch's generator; the
        others from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as ``nn.LSTM``'s."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        interface = self.cell._interface
        for key in self._flat_weights_names:
            weight, name = getattr(self, key), key.rsplit("_l", 1)[0]
            if name not in self.cell.PARAM_INIT:
                nn.init.uniform_(weight, -bound, bound)
                continue
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
            value = interface.initial(name, tuple(weight.shape), self.hidden_size, rng)
            with torch.no_grad():
                weight.copy_(torch.from_numpy(value))

    def _layer(self, layer, direction, src, initial, lengths):
        regular = self.regularisation
        if not regular.active and not self.cell.MASKS:
            return super()._layer(layer, direction, src, initial, lengths)
        cell = _module(regular.module(self.training))
        params = self.layer_params(layer, direction)
        if (
            self.training and regular.weight_drop
        ):  # DropConnect, differentiated by autograd
            params = {
                name: nn.functional.dropout(value, regular.weight_drop)
                if name in cell.DROPPED_WEIGHTS else value
                for name, value in params.items()
            }  # fmt: skip
        steps, batch, width = src.shape
        sizes = {name: self._size(name, width) for name in cell.SIZES}
        masks = {}
        for name, (shape, fill) in regular.masks(
            cell, self.training, steps, batch, sizes
        ).items():
            value = torch.full(shape, fill[1], dtype=src.dtype)
            masks[name] = (
                value if fill[0] == "full" else torch.bernoulli(value) * fill[2]
            )
        return recurrent(
            cell, params, src, initial, lengths, self.hypers, masks or None
        )

    def flatten_parameters(self):
        """Nothing to do (the kernels read each parameter where it lies); kept so that code
        written for ``nn.LSTM`` runs unchanged."""

    def extra_repr(self):
        extra = "".join(f", {k}={v}" for k, v in {**self.sizes, **self.hypers}.items())
        return (
            f"{self.variant!r}, {self.input_size}, {self.hidden_size}{extra}, "
            f"num_layers={self.num_layers}, bias={self.bias}, "
            f"batch_first={self.batch_first}, dropout={self.dropout}, "
            f"bidirectional={self.bidirectional}"
            + "".join(
                f", {name}={rate}" for name, rate in self.regularisation.options()
            )
        )


class _DropIn(_Layers):
    """A subclass of a torch RNN class whose forward runs the generated kernels; everything
    else (constructor, checks, attributes, ``repr``, ``state_dict``) is torch's own."""

    def __init__(self, *args, **kwargs):
        _check_device(self._caller, kwargs.get("device"))
        super().__init__(*args, **kwargs)
        dtype = getattr(self, self._flat_weights_names[0]).dtype
        _check_module_dtype(self._caller, dtype)
        # imported now, not inside a first forward that torch.compile may trace
        _module(self.cell_module)

    @property
    def cell_module(self):
        return "generated." + self.variant

    @property
    def variant(self):
        return torch_variant(self)


class LSTM(_DropIn, nn.LSTM):
    """``torch.nn.LSTM`` (a subclass of it) whose forward runs the generated ``lstm`` kernels
    (``lstm_proj`` with ``proj_size``); float16 and bfloat16 run in float32 inside, and
    second derivatives go through the cell's declaration."""

    _caller = "LSTM"


class GRU(_DropIn, nn.GRU):
    """``torch.nn.GRU`` (a subclass of it) whose forward runs the generated ``gru``
    kernels."""

    _caller = "GRU"


class RNN(_DropIn, nn.RNN):
    """``torch.nn.RNN`` (a subclass of it) whose forward runs the generated ``rnn_tanh`` or
    ``rnn_relu`` kernels, by its ``nonlinearity``."""

    _caller = "RNN"


# whole models load with torch.load's default weights_only=True, no user step
torch.serialization.add_safe_globals([Recurrent, LSTM, GRU, RNN, Regularisation])


def _flip(seq, reverse, width):
    """``seq`` ``(T, B, n)`` with each row reversed along time within its own length."""
    if reverse is None:
        return seq.flip(0)
    index = (
        reverse
        if reverse.shape[2] == width
        else reverse[:, :, :1].expand(-1, -1, width)
    )
    return torch.gather(seq, 0, index)


def _repack(seq, lengths, packed):
    """``seq`` padded ``(T, B, n)`` in the batch's own order, packed like ``packed``."""
    order = packed.sorted_indices
    if order is not None:
        seq, lengths = seq.index_select(1, order), lengths.index_select(0, order)
    data = pack_padded_sequence(seq, lengths, enforce_sorted=True)
    return PackedSequence(
        data.data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices
    )
