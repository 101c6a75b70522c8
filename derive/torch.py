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

import importlib
import math
import sys

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .runtime.layers import (
    _reverse_index,
    check_layer,
    check_stacking,
    extra_sizes,
    load_cell,
    param_sizes,
)

__all__ = ["Recurrent", "recurrent"]

_DTYPES = (torch.float32, torch.float64)


# -- the custom ops ----------------------------------------------------------------------------


def _module(name):
    """The generated cell module the ops name (its import name, so that any generated
    package, a user's included, works)."""
    module = sys.modules.get(name) or importlib.import_module(name)
    if not hasattr(module, "_interface"):
        raise ValueError(f"gatesmith ops: {name} is not a generated cell module")
    return module


def _np(tensor):
    return tensor.detach().contiguous().numpy()


def _hypers(module, values):
    """The hyperparameters as the generated interface takes them (``HYPERS`` order)."""
    return dict(zip(module.HYPERS, values.tolist(), strict=True))


def _forward(cell, x, lengths, states, params, hypers):
    """``[ys, *final_states, *saved]``: ``saved`` are the arrays the backward reads."""
    module = _module(cell)
    ys, finals, tape = module._interface.forward(
        _np(x),
        tuple(_np(s) for s in states),
        dict(zip(module.PARAMS, (_np(p) for p in params), strict=True)),
        _np(lengths),
        _hypers(module, hypers),
    )
    if not ys.flags.writeable:  # a view of the tape: outputs of an op never alias
        ys = ys.copy()
    arrays = (ys, *finals, *module._interface.saved_arrays(tape))
    return [torch.from_numpy(a) for a in arrays]


def _backward(cell, dys, d_final_states, x, lengths, params, saved, hypers):
    """``[dx, *d_initial_states, *d_params]``."""
    module = _module(cell)
    arrays = dict(zip(module.PARAMS, (_np(p) for p in params), strict=True))
    tape = module._interface.restore_tape(
        _np(x), arrays, _np(lengths), [_np(s) for s in saved], _hypers(module, hypers)
    )
    dx, d_initial, d_params = module.backward(
        _np(dys), tuple(_np(d) for d in d_final_states), tape
    )
    grads = (dx, *d_initial, *(d_params[name] for name in module.PARAMS))
    return [torch.from_numpy(g) for g in grads]


def _gradients(grads, shapes, x):
    """The gradients of ``ys`` and the final states, contiguous; zeros where the loss does not
    reach an output (None)."""
    return [
        x.new_zeros(shape) if g is None else g.contiguous()
        for g, shape in zip(grads, shapes, strict=True)
    ]


# -- as torch.library custom ops, which torch.compile traces ----------------------------------


@torch.library.custom_op("gatesmith::forward", mutates_args=())
def _forward_op(
    cell: str,
    x: torch.Tensor,
    lengths: torch.Tensor,
    states: list[torch.Tensor],
    params: list[torch.Tensor],
    hypers: torch.Tensor,
) -> list[torch.Tensor]:
    """Returns ``[ys, *final_states, *saved]``: ``saved`` are the arrays the backward reads."""
    return _forward(cell, x, lengths, states, params, hypers)


@_forward_op.register_fake
def _forward_fake(cell, x, lengths, states, params, hypers):
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
) -> list[torch.Tensor]:
    """Returns ``[dx, *d_initial_states, *d_params]``."""
    return _backward(cell, dys, d_final_states, x, lengths, params, saved, hypers)


@_backward_op.register_fake
def _backward_fake(cell, dys, d_final_states, x, lengths, params, saved, hypers):
    return [
        x.new_empty(x.shape),
        *(d.new_empty(d.shape) for d in d_final_states),
        *(p.new_empty(p.shape) for p in params),
    ]


def _setup_context(ctx, inputs, output):
    cell, x, lengths, states, params, hypers = inputs
    ctx.cell, ctx.counts = cell, (len(states), len(params))
    ctx.shapes = [o.shape for o in output[: 1 + len(states)]]
    ctx.save_for_backward(x, lengths, hypers, *params, *output[1 + len(states) :])


def _backward_rule(ctx, grads):
    n_states, n_params = ctx.counts
    x, lengths, hypers, *rest = ctx.saved_tensors
    params, saved = rest[:n_params], rest[n_params:]
    given = _gradients(grads[: 1 + n_states], ctx.shapes, x)
    out = torch.ops.gatesmith.backward(
        ctx.cell, given[0], given[1:], x, lengths, list(params), list(saved), hypers
    )
    return None, out[0], None, out[1 : 1 + n_states], out[1 + n_states :], None


_forward_op.register_autograd(_backward_rule, setup_context=_setup_context)


def _no_second_order(ctx, grads):
    raise RuntimeError(SECOND_ORDER)


_backward_op.register_autograd(_no_second_order)


class _Eager(torch.autograd.Function):
    """The same two calls outside ``torch.compile``, without the custom ops' dispatch: a third
    of a millisecond less per layer and direction, which small problems notice."""

    @staticmethod
    def forward(ctx, cell, x, lengths, hypers, n_states, *tensors):
        states, params = tensors[:n_states], tensors[n_states:]
        out = _forward(cell, x, lengths, states, params, hypers)
        ctx.cell, ctx.n_states, ctx.hypers = cell, n_states, hypers
        ctx.shapes = [o.shape for o in out[: 1 + n_states]]
        ctx.save_for_backward(x, lengths, *states, *params, *out[1 + n_states :])
        ctx.mark_non_differentiable(*out[1 + n_states :])
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):
        n_states = ctx.n_states
        x, lengths, *rest = ctx.saved_tensors
        states, rest = rest[:n_states], rest[n_states:]
        n_params = len(rest) - (len(grads) - 1 - n_states)
        params, saved = rest[:n_params], rest[n_params:]
        given = _gradients(grads[: 1 + n_states], ctx.shapes, x)
        out = _backward(
            ctx.cell, given[0], given[1:], x, lengths, params, saved, ctx.hypers
        )
        # create_graph=True: the gradients must refuse a backward through them
        if torch.is_grad_enabled():
            out = _FirstOrderOnly.apply(len(out), *out, x, *states, *params, *given)
        return None, out[0], None, None, None, *out[1:]


class _FirstOrderOnly(torch.autograd.Function):
    """The kernels' gradients as the outputs of a node whose backward raises
    :data:`SECOND_ORDER`, connected to everything they depend on (the input, the initial
    states, the parameters and the incoming gradients).

    Under ``create_graph=True`` autograd would otherwise take them for constants: a gradient
    penalty would add nothing and a Hessian-vector product come out 0 (``once_differentiable``
    connects them to nothing when the incoming gradients need none, and
    ``torch.autograd.functional.hvp`` then fills in zeros). Through this node, any second
    derivative reaches the error."""

    @staticmethod
    def forward(ctx, count, *tensors):
        return tuple(t.clone() for t in tensors[:count])

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(SECOND_ORDER)


#: What a backward through the kernels' gradients raises.
SECOND_ORDER = (
    "gatesmith: the generated kernels' gradients are computed once, not as a graph, so they "
    "cannot be differentiated again (a gradient penalty, a Hessian-vector product, "
    "gradgradcheck); compute such terms with torch.nn's cells"
)


# -- one layer, one direction ------------------------------------------------------------------


def _check_tensor(caller, argument, value, dtype=None):
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{caller}: {argument} must be a torch.Tensor; got {type(value).__name__}"
        )
    if value.device.type != "cpu":
        raise ValueError(
            f"{caller}: {argument} is on {value.device}; the generated kernels run on the "
            f"CPU: move it with .cpu()"
        )
    if dtype is None and value.dtype not in _DTYPES:
        raise TypeError(
            f"{caller}: {argument} must have dtype torch.float32 or torch.float64; got "
            f"{value.dtype}"
        )
    if dtype is not None and value.dtype != dtype:
        raise TypeError(
            f"{caller}: {argument} must have the dtype of x, {dtype}; got {value.dtype}"
        )
    return value


def recurrent(variant, params, x, initial_states=None, lengths=None, hypers=None):
    """Run one layer of ``variant`` over ``x`` ``(T, B, I)``, differentiably.

    ``params`` maps the cell's ``PARAMS`` to tensors; ``initial_states`` is None (zeros) or a
    tuple of ``(B, size)`` tensors in ``STATES`` order; ``lengths`` is None or each batch row's
    number of steps; ``hypers`` maps hyperparameters to the values that replace their
    defaults. Returns ``ys`` ``(T, B, size)`` (zero past a row's length) and the final states
    (each row's state at its length). Gradients reach ``x``, ``initial_states`` and
    ``params`` through the generated backward kernel.
    """
    caller = "recurrent"
    cell = load_cell(caller, variant)
    _check_tensor(caller, "x", x)
    if isinstance(initial_states, torch.Tensor) or not (
        initial_states is None or isinstance(initial_states, (tuple, list))
    ):
        raise ValueError(
            f"{caller}: initial_states must be None or a tuple of tensors {cell.STATES}; "
            f"got {type(initial_states).__name__}"
        )
    shapes = (
        {name: getattr(value, "shape", ()) for name, value in params.items()}
        if isinstance(params, dict)
        else params
    )
    sizes = check_layer(
        caller, cell, tuple(x.shape), shapes,
        None if initial_states is None else [getattr(s, "shape", ()) for s in initial_states],
    )  # fmt: skip
    tensors = [
        _check_tensor(caller, f"params[{n!r}]", params[n], x.dtype) for n in cell.PARAMS
    ]
    steps, batch, _ = x.shape
    if initial_states is None:
        initial_states = [
            x.new_zeros(batch, sizes[cell.STATE_SIZES[s]]) for s in cell.STATES
        ]
    states = [
        _check_tensor(caller, f"initial_states[{n}] ({s})", v, x.dtype)
        for n, (s, v) in enumerate(zip(cell.STATES, initial_states, strict=True))
    ]
    lengths = _lengths(caller, lengths, steps, batch)
    values = torch.tensor(
        cell._interface.check_hypers(caller, hypers, _numpy_dtype(x.dtype)),
        dtype=torch.float64,
    )
    if torch.compiler.is_compiling():
        out = torch.ops.gatesmith.forward(
            cell.__name__, x, lengths, states, tensors, values
        )
    else:
        out = _Eager.apply(
            cell.__name__, x, lengths, values, len(states), *states, *tensors
        )
    return out[0], tuple(out[1 : 1 + len(cell.STATES)])


def _lengths(caller, lengths, steps, batch):
    """``lengths`` as a CPU int64 tensor ``(B,)``, every entry in [1, steps]."""
    if lengths is None:
        return torch.full((batch,), steps, dtype=torch.int64)
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


# -- the module --------------------------------------------------------------------------------


def _numpy_dtype(dtype):
    """The NumPy dtype of a float32 or float64 torch dtype."""
    return np.dtype("f4" if dtype == torch.float32 else "f8")


def _variant_and_sizes(variant, proj_size, sizes, dtype):
    """The cell module and its extra sizes; ``proj_size > 0`` turns ``"lstm"`` into
    ``"lstm_proj"``, as it turns ``nn.LSTM`` into an LSTM with projections."""
    if isinstance(proj_size, bool) or not isinstance(proj_size, int) or proj_size < 0:
        raise ValueError(
            f"Recurrent: proj_size must be a non-negative integer; got {proj_size!r}"
        )
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
        sizes = {**sizes, "proj_size": proj_size}
    return cell, extra_sizes("Recurrent", cell, sizes), hypers


class Recurrent(nn.Module):
    """``num_layers`` layers of a generated cell, with ``torch.nn.LSTM``'s arguments and
    semantics.

    ``variant`` is a generated variant's name or a generated cell module (one generated from a
    user's declaration, say). The other arguments are ``nn.LSTM``'s: ``bias`` must be True (every
    generated cell has its biases); ``proj_size > 0`` selects ``lstm_proj`` for ``"lstm"``.
    Further sizes a cell declares, and its hyperparameters (``HYPERS``), are keywords. Parameters are named as PyTorch names them
    (``weight_ih_l0``, ``bias_hh_l1_reverse``), so ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` state
    dicts load into ``rnn_tanh``/``rnn_relu``, ``lstm``/``lstm_proj`` and ``gru`` and back.

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
        **sizes,
    ):
        super().__init__()
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if dtype not in _DTYPES:
            raise TypeError(
                f"Recurrent: dtype must be torch.float32 or torch.float64; got {dtype}"
            )
        cell, self.sizes, self.hypers = _variant_and_sizes(
            variant, proj_size, sizes, dtype
        )
        # the module by name, so that the net deep-copies and pickles like any nn.Module
        self.cell_module, self.variant = cell.__name__, cell.VARIANT
        for name, value in (
            ("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers),
        ):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"Recurrent: {name} must be a positive integer; got {value!r}"
                )
        if bias is not True:
            raise ValueError(
                f"Recurrent: bias must be True (every generated cell has its biases); got "
                f"{bias!r}"
            )
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not 0 <= dropout <= 1
        ):
            raise ValueError(
                f"Recurrent: dropout must be a number in [0, 1]; got {dropout!r}"
            )
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(
                f"Recurrent: the generated kernels run on the CPU; got device={device!r}"
            )
        self.input_size, self.hidden_size, self.num_layers = (
            input_size, hidden_size, num_layers,
        )  # fmt: skip
        self.bias, self.batch_first, self.dropout = (
            True,
            bool(batch_first),
            float(dropout),
        )
        self.bidirectional, self.proj_size = bool(bidirectional), proj_size
        check_stacking("Recurrent", cell, num_layers, self.bidirectional)
        for layer in range(num_layers):
            for direction in range(self.directions):
                for name, shape in self._param_shapes(layer).items():
                    key = f"{name}_l{layer}" + ("_reverse" if direction else "")
                    self.register_parameter(
                        key, nn.Parameter(torch.empty(shape, dtype=dtype))
                    )
        self.reset_parameters()

    @property
    def directions(self):
        return 2 if self.bidirectional else 1

    @property
    def cell(self):
        """The generated cell module."""
        return _module(self.cell_module)

    def _size(self, name, input_size=None):
        """The value of size ``name`` (``"H"``, ``"P"``, ...) in a layer reading
        ``input_size``."""
        named = {
            "input_size": input_size,
            "hidden_size": self.hidden_size,
            **self.sizes,
        }
        return named[self.cell.SIZES[name]]

    @property
    def output_size(self):
        """The size of the output of one direction (the input's, for an output of size I)."""
        return self._size(self.cell.OUTPUT_SIZE, self.input_size)

    def _param_shapes(self, layer):
        width = self.input_size if layer == 0 else self.directions * self.output_size
        return {
            name: tuple(mult * self._size(size, width) for mult, size in shape)
            for name, shape in self.cell.PARAM_SHAPES.items()
        }

    def reset_parameters(self):
        """Every parameter from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as ``nn.LSTM``."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def flatten_parameters(self):
        """Nothing to do (the kernels read each parameter where it lies); kept so that code
        written for ``nn.LSTM`` runs unchanged."""

    def layer_params(self, layer, direction=0):
        """The cell's parameter dict (keys ``cell.PARAMS``) of one layer and direction."""
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        return {name: getattr(self, name + suffix) for name in self.cell.PARAMS}

    def extra_repr(self):
        extra = "".join(f", {k}={v}" for k, v in {**self.sizes, **self.hypers}.items())
        return (
            f"{self.variant!r}, {self.input_size}, {self.hidden_size}{extra}, "
            f"num_layers={self.num_layers}, batch_first={self.batch_first}, "
            f"dropout={self.dropout}, bidirectional={self.bidirectional}"
        )

    # -- forward -------------------------------------------------------------------------------

    def _states(self, hx, batch, dtype, unbatched):
        cell = self.cell
        shapes = [
            (self.directions * self.num_layers, batch, self._size(cell.STATE_SIZES[s]))
            for s in cell.STATES
        ]
        if hx is None:
            return [torch.zeros(shape, dtype=dtype) for shape in shapes]
        if isinstance(hx, torch.Tensor) and len(cell.STATES) == 1:
            hx = (hx,)
        if not isinstance(hx, (tuple, list)) or len(hx) != len(cell.STATES):
            raise ValueError(
                "Recurrent: hx must be None, "
                + ("a tensor or " if len(cell.STATES) == 1 else "")
                + f"a tuple of {len(cell.STATES)} tensors {cell.STATES}; got "
                f"{type(hx).__name__}"
            )
        out = []
        for name, value, shape in zip(cell.STATES, hx, shapes, strict=True):
            _check_tensor("Recurrent", f"hx ({name})", value, dtype)
            want = shape[::2] if unbatched else shape
            if tuple(value.shape) != want:
                raise ValueError(
                    f"Recurrent: hx ({name}) must have shape {want} (directions * "
                    f"num_layers, {'' if unbatched else 'batch, '}size); got "
                    f"{tuple(value.shape)}"
                )
            out.append(value.unsqueeze(1) if unbatched else value)
        return out

    def _input(self, input):
        """``(seq, lengths, packed, unbatched)``: the input time-major ``(T, B, I)``."""
        if isinstance(input, PackedSequence):
            seq, lengths = pad_packed_sequence(input)
            return seq, lengths, input, False
        _check_tensor("Recurrent", "input", input)
        if input.dim() not in (2, 3) or input.shape[-1] != self.input_size:
            layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
            raise ValueError(
                f"Recurrent: input must have shape {layout} or (T, input_size) with "
                f"input_size={self.input_size}; got {tuple(input.shape)}"
            )
        if input.dim() == 2:
            return input.unsqueeze(1), None, None, True
        return (input.transpose(0, 1) if self.batch_first else input), None, None, False

    def forward(self, input, hx=None):
        seq, lengths, packed, unbatched = self._input(input)
        dtype = next(self.parameters()).dtype
        if seq.dtype != dtype:
            raise TypeError(
                f"Recurrent: input must have the module's dtype {dtype}; got {seq.dtype}"
            )
        steps, batch, _ = seq.shape
        states = self._states(hx, batch, dtype, unbatched)
        if packed is not None:  # hx comes in the batch's own order, like nn.LSTM's
            lengths = lengths.to(torch.int64)
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
                ys, last = recurrent(
                    self.cell, self.layer_params(layer, direction), src,
                    tuple(s[slot] for s in states), lengths, self.hypers,
                )  # fmt: skip
                outs.append(ys if direction == 0 else _flip(ys, reverse, ys.shape[2]))
                for final, value in zip(finals, last, strict=True):
                    final.append(value)
            seq = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
            if layer < self.num_layers - 1 and self.dropout and self.training:
                seq = nn.functional.dropout(seq, self.dropout, training=True)
        h_n = [torch.stack(f) for f in finals]
        if unbatched:
            seq, h_n = seq.squeeze(1), [h.squeeze(1) for h in h_n]
        if packed is not None:
            seq = _repack(seq, lengths, packed)
        elif self.batch_first and not unbatched:
            seq = seq.transpose(0, 1)
        return seq, (h_n[0] if len(h_n) == 1 else tuple(h_n))


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
