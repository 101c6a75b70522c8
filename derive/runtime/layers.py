"""Layers users train with, composed from any generated cell module.

:class:`Recurrent` stacks a cell into ``num_layers`` layers, optionally in both directions, with
PyTorch's semantics (``torch.nn.LSTM`` and friends): parameter names, state layout, dropout
between layers, and variable lengths as ``pack_padded_sequence`` gives them. It works for every
generated variant through the common module interface, with no per-variant code.

Also here: :func:`truncated_bptt`. Gradient clipping and the optimisers are in
:mod:`derive.runtime.optim`.

Only NumPy and the generated modules are needed; :meth:`Recurrent.from_torch` and
:meth:`Recurrent.torch_state_dict` import PyTorch when called.
"""

from __future__ import annotations

import importlib
import sys
import types
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Recurrent", "Regularisation", "Tape", "biases_to_drop", "check_layer", "check_stacking",
    "checked_masks", "extra_sizes", "load_cell", "mask_fills", "mask_shapes", "numpy_masks",
    "param_sizes", "torch_variant", "truncated_bptt", "with_biases",
]  # fmt: skip

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
#: the torch module classes a net mirrors
_TORCH_CELLS = ("RNN", "LSTM", "GRU")
#: torch.nn.RNNBase's mode -> the variant that runs it
_TORCH_MODES = {
    "RNN_TANH": "rnn_tanh",
    "RNN_RELU": "rnn_relu",
    "LSTM": "lstm",
    "GRU": "gru",
}


def declaration_of(caller, cell):
    """The declaration ``cell`` was generated from: one built in this process
    (:func:`derive.build`), else the registered one of its name (a catalog variant, or a
    user's spec loaded with ``derive.registry.load_file``)."""
    from ..cache import built_spec
    from ..registry import get

    built = built_spec(cell)
    if built is not None:
        return built
    try:
        spec = get(cell.VARIANT)
    except Exception as error:
        raise RuntimeError(
            f"{caller}: {cell.VARIANT}'s declaration is not loaded in this process "
            f"({error}); load its spec with derive.registry.load_file(path) first"
        ) from error
    if spec.param_names != tuple(cell.PARAMS) or spec.state_names != tuple(cell.STATES):
        raise RuntimeError(
            f"{caller}: the declaration registered as {cell.VARIANT!r} is not the one "
            f"{cell.__name__} was generated from (parameters {spec.param_names} and "
            f"states {spec.state_names}, the module's {cell.PARAMS} and {cell.STATES}); "
            f"regenerate the module"
        )
    return spec


def _rate(caller, name, value):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 <= value < 1
    ):
        raise ValueError(f"{caller}: {name} must be a number in [0, 1); got {value!r}")
    return float(value)


class Regularisation:
    """A layer's zoneout, recurrent dropout and weight drop (each a rate in [0, 1)): which
    cell module runs in training and in evaluation, and what each of its masks holds.

    A rate of 0 adds nothing: the cell's own kernels run. Zoneout or recurrent dropout that
    the cell does not declare run the kernels of its declaration with them added
    (:func:`derive.symbolic.regularise.regularised`, built once and cached); masks the cell
    declares itself are filled by their kind with the layer's rate. In training a zoneout mask
    is Bernoulli(p) per step (Krueger et al. 2017) and a dropout mask Bernoulli(1 - p) /
    (1 - p) per sequence (Gal and Ghahramani 2016); in evaluation a zoneout mask holds its
    expectation p and a dropout mask 1, so recurrent dropout alone evaluates with the cell's
    own kernels. ``weight_drop`` replaces each of the cell's ``DROPPED_WEIGHTS`` by
    ``W ⊙ M / (1 - p)`` in training, ``M`` Bernoulli(1 - p) drawn once per call (Merity et
    al. 2018)."""

    def __init__(
        self, caller, cell, zoneout=0.0, recurrent_dropout=0.0, weight_drop=0.0
    ):
        self.rates = {
            "zoneout": _rate(caller, "zoneout", zoneout),
            "dropout": _rate(caller, "recurrent_dropout", recurrent_dropout),
        }
        self.weight_drop = _rate(caller, "weight_drop", weight_drop)
        if self.weight_drop and not cell.DROPPED_WEIGHTS:
            raise ValueError(
                f"{caller}: weight_drop drops the recurrent weights, and {cell.VARIANT} has "
                "none (no weight reads a state's previous value); leave weight_drop at 0"
            )
        declared = {kind for _, _, kind in cell.MASKS.values()}
        added = {k: rate > 0 and k not in declared for k, rate in self.rates.items()}
        self.trained = self.evaluated = cell.__name__
        if any(added.values()):
            from ..cache import build
            from ..symbolic.regularise import regularised

            spec = regularised(declaration_of(caller, cell), zoneout=added["zoneout"],
                               dropout=added["dropout"])  # fmt: skip
            self.trained = build(spec).__name__
            if added["zoneout"]:  # its evaluation reads the masks' expectation
                self.evaluated = self.trained

    def options(self):
        """``(keyword, rate)`` of each option that is not 0, as a layer's repr gives them."""
        named = (("zoneout", self.rates["zoneout"]), ("recurrent_dropout", self.rates["dropout"]),
                 ("weight_drop", self.weight_drop))  # fmt: skip
        return [(name, rate) for name, rate in named if rate]

    def module(self, training):
        """The name of the cell module a call runs."""
        return self.trained if training else self.evaluated

    def cell(self, training):
        """The cell module a call runs, imported (or found in the build cache) by name."""
        from ..cache import load

        name = self.module(training)
        return load(name) or importlib.import_module(name)

    @property
    def active(self):
        return any(self.rates.values()) or bool(self.weight_drop)

    def masks(self, cell, training, steps, batch, sizes):
        """Each of ``cell.MASKS`` filled for one call, with this layer's rates
        (:func:`mask_fills`)."""
        return mask_fills(cell, self.rates, training, steps, batch, sizes)

    def numpy_masks(self, cell, training, steps, batch, sizes, dtype, rng):
        """The masks of one call as NumPy arrays, drawn from ``rng``."""
        return numpy_masks(cell, self.rates, training, steps, batch, sizes, dtype, rng)


def mask_shapes(cell, steps, batch, sizes):
    """The shape each of ``cell.MASKS`` has in a call of ``steps`` x ``batch`` rows
    (``sizes``: size name -> units): ``(T, B, size)`` drawn per step, ``(B, size)`` per
    sequence."""
    return {
        name: (batch, sizes[size]) if per == "sequence" else (steps, batch, sizes[size])
        for name, (per, size, _) in cell.MASKS.items()
    }


def mask_fills(cell, rates, training, steps, batch, sizes):
    """``{name: (shape, fill)}`` for each of ``cell.MASKS`` at ``rates`` (kind -> rate):
    ``fill`` is ``("bernoulli", q, scale)`` (Bernoulli(q) times ``scale``) or ``("full",
    value)``. In training a zoneout mask is Bernoulli(p) and a dropout mask Bernoulli(1 - p) /
    (1 - p); in evaluation, and at a rate of 0, a zoneout mask holds p and a dropout mask 1."""
    out = {}
    for name, shape in mask_shapes(cell, steps, batch, sizes).items():
        kind = cell.MASKS[name][2]
        rate = rates[kind]
        if kind == "zoneout":
            fill = ("bernoulli", rate, 1.0) if training and rate else ("full", rate)
        else:
            drawn = ("bernoulli", 1 - rate, 1 / (1 - rate))
            fill = drawn if training and rate else ("full", 1.0)
        out[name] = (shape, fill)
    return out


def numpy_masks(cell, rates, training, steps, batch, sizes, dtype, rng):
    """:func:`mask_fills` as NumPy arrays of ``dtype``, drawn from ``rng``."""
    masks = {}
    for name, (shape, fill) in mask_fills(
        cell, rates, training, steps, batch, sizes
    ).items():
        if fill[0] == "full":
            masks[name] = np.full(shape, fill[1], dtype)
        else:
            masks[name] = ((rng.random(shape) < fill[1]) * fill[2]).astype(dtype)
    return masks


def checked_masks(caller, cell, masks, steps, batch, sizes, check):
    """The masks a caller passed for one call, in ``MASKS`` order: ``masks`` must name exactly
    the cell's masks (None or empty for a cell without), each value passed through
    ``check(argument, value)`` (a framework's type and dtype check) and of its shape
    (:func:`mask_shapes`)."""
    if not cell.MASKS:
        if masks:
            raise TypeError(
                f"{caller}: {cell.VARIANT} declares no mask; masks must be None or empty"
            )
        return []
    if not isinstance(masks, dict) or set(masks) != set(cell.MASKS):
        got = (
            sorted(masks, key=str) if isinstance(masks, dict) else type(masks).__name__
        )
        raise ValueError(
            f"{caller}: masks must be a dict keyed by {tuple(cell.MASKS)}; got {got!r:.120}"
        )
    out = []
    for name, shape in mask_shapes(cell, steps, batch, sizes).items():
        value = check(f"masks[{name!r}]", masks[name])
        if tuple(value.shape) != shape:
            raise ValueError(
                f"{caller}: masks[{name!r}] (drawn per {cell.MASKS[name][0]}) must have "
                f"shape {shape}; got {tuple(value.shape)}"
            )
        out.append(value)
    return out


def load_cell(caller, variant):
    """The generated module of ``variant``: a variant's name, a generated cell module (one
    generated from a user's declaration, say), or a declaration itself (a declaring function or
    a ``CellSpec``), built on first use (:func:`derive.build`). ``caller`` names the function
    in errors."""
    if _is_declaration(variant):
        from ..cache import build

        return build(variant)
    if isinstance(variant, types.ModuleType):
        missing = [
            name for name in ("forward", "backward", "init_params", "STATES", "PARAMS")
            if not hasattr(variant, name)
        ]  # fmt: skip
        if missing:
            raise TypeError(
                f"{caller}: variant must be a variant name or a generated cell module; "
                f"module {variant.__name__} lacks {missing}"
            )
        return variant
    if not isinstance(variant, str):
        raise TypeError(
            f"{caller}: variant must be a variant name, a generated cell module or a "
            f"declaration; got {type(variant).__name__}"
        )
    import generated

    if variant not in generated.VARIANTS:
        raise ValueError(
            f"{caller}: unknown variant {variant!r}; generated variants are "
            f"{', '.join(generated.VARIANTS)}"
        )
    return generated.load(variant)


def _is_declaration(variant) -> bool:
    """Whether ``variant`` is a declaring function or a built ``CellSpec`` (which exists only
    once the declaration language is imported)."""
    if isinstance(variant, types.FunctionType):
        return True
    declare = sys.modules.get("derive.symbolic.declare")
    return declare is not None and isinstance(variant, declare.CellSpec)


def extra_sizes(caller, cell, sizes):
    """``sizes``, the keyword sizes a net of ``cell`` takes beyond ``input_size`` and
    ``hidden_size`` (``proj_size`` for ``lstm_proj``), checked: all of them, each positive."""
    known = set(cell.SIZES.values()) - {"input_size", "hidden_size"}
    unknown = sorted(set(sizes) - known)
    if unknown:
        hypers = getattr(cell, "HYPERS", {})
        also = f" and the hyperparameters {sorted(hypers)}" if hypers else ""
        raise TypeError(
            f"{caller}: {cell.VARIANT} takes the sizes {sorted(known) or 'none'} beyond "
            f"input_size and hidden_size{also}; got {unknown}"
        )
    missing = sorted(known - set(sizes))
    if missing:
        raise TypeError(
            f"{caller}: {cell.VARIANT} needs the sizes {missing} as keywords"
        )
    return {k: _positive(caller, k, v) for k, v in sizes.items()}


def biases_to_drop(caller, cell):
    """The parameters ``bias=False`` leaves out: the cell's projection biases (``cell.bias``,
    kind ``"bias"``), which the kernels then take as arrays of length 0. A cell with none, or
    with biases it adds pointwise (vectors named ``b_...`` or ``bias...``), has no bias-free
    form: its equations need them."""
    biases = cell._interface.biases
    pointwise = [
        name for name in cell.PARAMS
        if cell.PARAM_BLOCKS[name][0] == "vector"
        and (name == "bias" or name.startswith(("b_", "bias_")))
    ]  # fmt: skip
    if not biases or pointwise:
        reason = (
            f"it adds the biases {pointwise} pointwise in its equations"
            if pointwise
            else "it has none"
        )
        raise ValueError(
            f"{caller}: {cell.VARIANT} has no bias-free form (bias=False leaves out the "
            f"biases of a cell's projections, declared with cell.bias; {reason}): use "
            f"bias=True"
        )
    return biases


def torch_variant(module):
    """The variant that runs a ``torch.nn.RNN``, ``LSTM`` or ``GRU`` (or a subclass): by its
    ``mode`` (``nn.RNN``'s nonlinearity), ``lstm_proj`` for an LSTM with ``proj_size``."""
    variant = _TORCH_MODES[module.mode]
    return "lstm_proj" if variant == "lstm" and module.proj_size else variant


def with_biases(cell, params, empty):
    """``params`` with each of the cell's biases as ``empty()`` (length 0) where all of them
    are left out (``bias=False``); otherwise as given, for the checks to judge."""
    biases = cell._interface.biases
    if isinstance(params, dict) and biases and not any(n in params for n in biases):
        return {**params, **{name: empty() for name in biases}}
    return params


def check_stacking(caller, cell, num_layers, bidirectional):
    """A cell whose output has its input's size (the Intersection RNN's depth output) keeps one
    width through a stack of one direction; two directions would widen it at every layer."""
    if cell.OUTPUT_SIZE == "I" and bidirectional and num_layers > 1:
        raise ValueError(
            f"{caller}: {cell.VARIANT}'s output has the size of its input, so bidirectional "
            f"layers would double it at every layer; use num_layers=1 or bidirectional=False "
            f"(got num_layers={num_layers}, bidirectional=True)"
        )


def param_sizes(cell, input_size, param_shapes):
    """Size name -> int, read off the parameters' shapes (in ``cell.PARAMS`` order) as the
    module's own check reads them: for frameworks that know shapes before they hold arrays."""
    sizes = {"I": input_size}
    for name, shape in zip(cell.PARAMS, param_shapes, strict=True):
        if tuple(shape) == (0,) and name in cell._interface.biases:
            continue  # an absent bias (bias=False) says nothing of the sizes
        for axis, (mult, size) in enumerate(cell.PARAM_SHAPES[name]):
            sizes.setdefault(size, shape[axis] // mult)
    return sizes


def check_layer(caller, cell, x_shape, param_shapes, state_shapes):
    """The sizes (size name -> int) of one layer's call of ``cell``, checked from shapes alone,
    for the framework bindings: ``x_shape`` ``(T, B, I)``; ``param_shapes`` a dict keyed by
    exactly ``cell.PARAMS``; ``state_shapes`` None or one ``(B, size)`` per state."""
    if len(x_shape) != 3 or 0 in x_shape:
        raise ValueError(
            f"{caller}: x must have shape (T, B, input_size) with T, B >= 1; got "
            f"{tuple(x_shape)}"
        )
    if not isinstance(param_shapes, dict) or set(param_shapes) != set(cell.PARAMS):
        got = sorted(param_shapes) if isinstance(param_shapes, dict) else "no dict"
        raise ValueError(
            f"{caller}: params must be a dict with exactly the keys {cell.PARAMS}; got {got}"
        )
    shapes = [tuple(param_shapes[name]) for name in cell.PARAMS]
    sizes = param_sizes(cell, x_shape[2], shapes)
    biases = cell._interface.biases
    absent = [name for name in biases if tuple(param_shapes[name]) == (0,)]
    if absent and absent != list(biases):
        raise ValueError(
            f"{caller}: the biases {biases} must all be given or all be absent (length 0, "
            f"bias=False); {absent} are absent, the others not"
        )
    for name, shape in zip(cell.PARAMS, shapes, strict=True):
        want = tuple(mult * sizes[size] for mult, size in cell.PARAM_SHAPES[name])
        want = (0,) if name in absent else want
        if shape != want:
            detail = ", ".join(f"{cell.SIZES[s]}={n}" for s, n in sizes.items())
            raise ValueError(
                f"{caller}: params[{name!r}] must have shape {want} for {detail}; got {shape}"
            )
    for a, b in cell.SIZE_CONSTRAINTS:
        if sizes[a] != sizes[b]:
            raise ValueError(
                f"{caller}: {cell.VARIANT} needs {cell.SIZES[a]} = {cell.SIZES[b]}; got "
                f"{sizes[a]} and {sizes[b]}"
            )
    if state_shapes is None:
        return sizes
    if len(state_shapes) != len(cell.STATES):
        raise ValueError(
            f"{caller}: initial_states must be None or a tuple of {len(cell.STATES)} arrays "
            f"{cell.STATES}; got {len(state_shapes)}"
        )
    for n, (name, shape) in enumerate(zip(cell.STATES, state_shapes, strict=True)):
        want = (x_shape[1], sizes[cell.STATE_SIZES[name]])
        if tuple(shape) != want:
            raise ValueError(
                f"{caller}: initial_states[{n}] ({name}) must have shape {want} (batch, "
                f"size); got {tuple(shape)}"
            )
    return sizes


def _positive(caller, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{caller}: {name} must be a positive integer; got {value!r}")
    return int(value)


def _reverse_index(steps, lengths):
    """Row indices that reverse each sequence within its own length (padding stays put)."""
    t = np.arange(steps)[:, None]
    return np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


def _reverse(seq, index):
    """``seq`` ``(T, B, n)`` with each batch row reversed along time by ``index``."""
    if index is None:
        return np.ascontiguousarray(seq[::-1])
    return np.take_along_axis(seq, index[:, :, None], axis=0)


@dataclass
class Tape:
    """What :meth:`Recurrent.forward` keeps for :meth:`Recurrent.backward`."""

    cells: list  # [layer][direction] -> the cell module's tape
    masks: list  # [layer] -> the dropout multiplier applied to that layer's output, or None
    reverse: (
        np.ndarray | None
    )  # the time reversal of the reverse direction (None: plain flip)
    shape: tuple  # (T, B, I) in time-major order
    batch_first: bool
    cell: object = None  # the cell module that ran (one with masks, when regularised)
    #: [layer][direction] -> each dropped weight's multiplier M / (1 - p) (weight drop)
    dropped: list | None = None


class Recurrent:
    """A stack of ``num_layers`` recurrent layers of one cell, as ``torch.nn.LSTM`` has them.

    ``variant`` is a generated variant's name (``"lstm"``) or a generated module. Sizes beyond
    the input and hidden size (``proj_size=`` for ``lstm_proj``) and the cell's hyperparameters
    (``HYPERS``: ``dt=`` for ``cornn``) are keyword arguments. Layer
    ``l > 0`` reads the previous layer's output, ``D`` times the output state's size, where
    ``D`` is 2 when ``bidirectional``. ``dropout`` is applied to each layer's output except the
    last while ``training`` is true (:meth:`train`, :meth:`eval`). ``forget_bias``, for a cell
    with a forget gate, sets the ``f`` block of the first bias to that value and of the others to
    0, so the gate's bias starts at ``forget_bias`` (Jozefowicz et al. 2015 use 1).
    ``bias=False`` leaves out the biases of the cell's projections, as ``torch.nn.LSTM`` does
    (:func:`biases_to_drop`). ``zoneout``, ``recurrent_dropout`` and ``weight_drop`` regularise
    every layer in training (:class:`Regularisation`; masks drawn from the net's generator).
    """

    def __init__(
        self,
        variant,
        input_size,
        hidden_size,
        num_layers=1,
        bidirectional=False,
        batch_first=False,
        dropout=0.0,
        dtype=np.float32,
        seed=0,
        forget_bias=None,
        bias=True,
        zoneout=0.0,
        recurrent_dropout=0.0,
        weight_drop=0.0,
        **sizes,
    ):
        self.cell = load_cell("Recurrent", variant)
        self.regularisation = Regularisation(
            "Recurrent", self.cell, zoneout, recurrent_dropout, weight_drop
        )
        if not isinstance(bias, bool):
            raise TypeError(
                f"Recurrent: bias should be of type bool, got: {type(bias).__name__}"
            )
        self.bias = bias
        dropped = () if bias else biases_to_drop("Recurrent", self.cell)
        self.variant = self.cell.VARIANT
        self.input_size = _positive("Recurrent", "input_size", input_size)
        self.hidden_size = _positive("Recurrent", "hidden_size", hidden_size)
        self.num_layers = _positive("Recurrent", "num_layers", num_layers)
        self.bidirectional = bool(bidirectional)
        self.batch_first = bool(batch_first)
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not (0 <= dropout < 1)
        ):
            raise ValueError(
                f"Recurrent: dropout must be a number in [0, 1); got {dropout!r}"
            )
        self.dropout = float(dropout)
        check_stacking("Recurrent", self.cell, self.num_layers, self.bidirectional)
        self.dtype = np.dtype(dtype)
        if self.dtype not in _FLOATS:
            raise TypeError(
                f"Recurrent: dtype must be float32 or float64; got {self.dtype}"
            )
        # the cell's hyperparameters are keywords too, checked by the generated interface
        self.hypers = {n: sizes.pop(n) for n in list(sizes) if n in self.cell.HYPERS}
        self.cell._interface.check_hypers("Recurrent", self.hypers, self.dtype)
        self.sizes = extra_sizes("Recurrent", self.cell, sizes)
        self.training = True
        self._rng = np.random.default_rng(seed)
        shapes = self._layer_sizes()
        # one seed per layer and direction, drawn from the net's seed
        seeds = self._rng.integers(0, 2**63 - 1, len(shapes))
        self.params = {}
        #: The recurrent parameters' names, in PyTorch's order.
        self.param_keys = tuple(
            self.key(name, layer, direction)
            for layer, direction, _ in shapes
            for name in self.cell.PARAMS
            if name not in dropped
        )
        for (layer, direction, layer_sizes), layer_seed in zip(
            shapes, seeds, strict=True
        ):
            layer_params = self.cell.init_params(
                dtype=self.dtype, seed=int(layer_seed), **layer_sizes
            )
            for name in self.cell.PARAMS:
                if name not in dropped:
                    self.params[self.key(name, layer, direction)] = layer_params[name]
        if forget_bias is not None:
            self._init_forget_bias(float(forget_bias))

    # -- layout ------------------------------------------------------------------------------

    @property
    def directions(self):
        return 2 if self.bidirectional else 1

    @property
    def output_size(self):
        """The size of the output state of one direction (``proj_size`` for ``lstm_proj``)."""
        sizes = self._size_values(self.input_size)
        return sizes[self.cell.OUTPUT_SIZE]

    def _size_values(self, input_size):
        named = {
            "input_size": input_size,
            "hidden_size": self.hidden_size,
            **self.sizes,
        }
        return {size: named[argument] for size, argument in self.cell.SIZES.items()}

    def _layer_sizes(self):
        out = []
        for layer in range(self.num_layers):
            width = (
                self.input_size if layer == 0 else self.directions * self.output_size
            )
            kwargs = {
                "input_size": width,
                "hidden_size": self.hidden_size,
                **self.sizes,
            }
            for direction in range(self.directions):
                out.append((layer, direction, kwargs))
        return out

    @staticmethod
    def key(name, layer, direction=0):
        """PyTorch's parameter name: ``weight_ih_l0``, ``bias_hh_l1_reverse``."""
        return f"{name}_l{layer}" + ("_reverse" if direction else "")

    def layer_params(self, layer, direction=0):
        """The cell's parameter dict (keys ``cell.PARAMS``, without the biases when
        ``bias=False``) of one layer and direction."""
        return {
            name: self.params[self.key(name, layer, direction)]
            for name in self.cell.PARAMS
            if self.key(name, layer, direction) in self.params
        }

    def state_shape(self, state, batch):
        """The shape of an initial or final state: ``(D * num_layers, B, size)``."""
        sizes = self._size_values(self.input_size)
        size = sizes[self.cell.STATE_SIZES[state]]
        return (self.directions * self.num_layers, batch, size)

    def _init_forget_bias(self, value):
        biases = [
            name for name in self.cell.PARAMS
            if self.cell.PARAM_BLOCKS[name][0] == "bias" and "f" in self.cell.PARAM_BLOCKS[name][1]
        ]  # fmt: skip
        if not biases:
            raise ValueError(
                f"Recurrent: forget_bias needs a cell with a forget gate (a bias block 'f'); "
                f"{self.variant} has none"
            )
        for layer, direction, _ in self._layer_sizes():
            for n, name in enumerate(biases):
                array = self.params[self.key(name, layer, direction)]
                blocks = self.cell.PARAM_BLOCKS[name][1]
                size = array.shape[0] // len(blocks)
                start = blocks.index("f") * size
                array[start : start + size] = value if n == 0 else 0

    def train(self, mode=True):
        """Dropout on (the default) or off; returns the net."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Dropout off; returns the net."""
        return self.train(False)

    def __repr__(self):
        extra = "".join(f", {k}={v}" for k, v in self.sizes.items())
        return (
            f"Recurrent({self.variant!r}, input_size={self.input_size}, "
            f"hidden_size={self.hidden_size}{extra}, num_layers={self.num_layers}, "
            f"bidirectional={self.bidirectional}, batch_first={self.batch_first}, "
            f"dropout={self.dropout}, dtype={self.dtype.name})"
        )

    # -- argument checks -----------------------------------------------------------------------

    def _check_input(self, x):
        if not isinstance(x, np.ndarray):
            raise TypeError(
                f"Recurrent.forward: x must be a numpy.ndarray; got {type(x).__name__}"
            )
        layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
        if x.ndim != 3 or x.shape[2] != self.input_size or 0 in x.shape:
            raise ValueError(
                f"Recurrent.forward: x must have shape {layout} with input_size="
                f"{self.input_size} and T, B >= 1; got {x.shape}"
            )
        if x.dtype != self.dtype:
            raise TypeError(
                f"Recurrent.forward: x must have the net's dtype {self.dtype}; got {x.dtype}"
            )
        seq = x.transpose(1, 0, 2) if self.batch_first else x
        return np.ascontiguousarray(seq)

    def _check_states(self, caller, argument, states, batch):
        names = self.cell.STATES
        if states is None:
            return None
        if isinstance(states, np.ndarray) and len(names) == 1:
            states = (states,)
        if not isinstance(states, (tuple, list)) or len(states) != len(names):
            raise ValueError(
                f"{caller}: {argument} must be None or a tuple of {len(names)} arrays "
                f"{names}; got {type(states).__name__}"
            )
        out = []
        for name, value in zip(names, states, strict=True):
            want = self.state_shape(name, batch)
            if not isinstance(value, np.ndarray):
                raise TypeError(
                    f"{caller}: {argument} ({name}) must be a numpy.ndarray; "
                    f"got {type(value).__name__}"
                )
            if value.shape != want:
                raise ValueError(
                    f"{caller}: {argument} ({name}) must have shape {want} "
                    f"(directions * num_layers = {want[0]}, batch, size); got {value.shape}"
                )
            if value.dtype != self.dtype:
                raise TypeError(
                    f"{caller}: {argument} ({name}) must have the net's dtype {self.dtype}; "
                    f"got {value.dtype}"
                )
            out.append(np.ascontiguousarray(value))
        return out

    def _check_masks(self, masks, steps, batch):
        """Dropout multipliers per layer: from ``masks`` (boolean keep-masks, one per layer but
        the last) or drawn here; None where no dropout applies."""
        count = self.num_layers - 1
        active = self.training and self.dropout > 0 and count > 0
        if masks is not None and not active:
            raise ValueError(
                "Recurrent.forward: dropout_masks given, but no dropout applies (it needs "
                f"dropout > 0, training mode and 2 or more layers; dropout={self.dropout}, "
                f"training={self.training}, num_layers={self.num_layers})"
            )
        if not active:
            return [None] * self.num_layers
        width = self.directions * self.output_size
        if masks is None:
            keep = [
                self._rng.random((steps, batch, width)) >= self.dropout
                for _ in range(count)
            ]
        else:
            if not isinstance(masks, (tuple, list)) or len(masks) != count:
                raise ValueError(
                    f"Recurrent.forward: dropout_masks must be a list of {count} arrays, one per "
                    f"layer but the last; got {type(masks).__name__}"
                )
            keep = []
            for n, mask in enumerate(masks):
                mask = np.asarray(mask)
                if mask.shape != (steps, batch, width) or mask.dtype != bool:
                    raise ValueError(
                        f"Recurrent.forward: dropout_masks[{n}] must be a boolean array of shape "
                        f"{(steps, batch, width)} (T, B, D * output size); got {mask.dtype} "
                        f"{mask.shape}"
                    )
                keep.append(mask)
        scale = self.dtype.type(1 / (1 - self.dropout))
        return [k * scale for k in keep] + [None]

    # -- forward and backward ------------------------------------------------------------------

    def forward(self, x, initial_states=None, lengths=None, dropout_masks=None):
        """Run every layer over ``x``.

        ``x`` is ``(T, B, input_size)`` (``(B, T, input_size)`` when ``batch_first``);
        ``initial_states`` is None (zeros) or a tuple in ``cell.STATES`` order of
        ``(D * num_layers, B, size)`` arrays, layer-major, direction-minor; ``lengths`` is None
        or each batch row's number of steps, the rest being padding; ``dropout_masks`` are
        boolean keep-masks ``(T, B, D * output size)``, one per layer but the last (None: drawn
        from the net's generator). Returns ``out`` ``(T, B, D * output size)`` (batch first when
        ``batch_first``; zero at padded steps), the final states (each row's state at its
        length) in the layout of ``initial_states``, and the tape for :meth:`backward`.
        """
        seq = self._check_input(x)
        steps, batch, _ = seq.shape
        # the cell module's own check, named for this caller: (B,) int64 lengths, and the
        # padding mask (None where no row is padded)
        lengths, padded = self.cell._check_lengths(
            "Recurrent.forward", lengths, steps, batch
        )
        states = self._check_states(
            "Recurrent.forward", "initial_states", initial_states, batch
        )
        masks = self._check_masks(dropout_masks, steps, batch)
        index = None if padded is None else _reverse_index(steps, lengths)
        finals = [
            np.empty(self.state_shape(s, batch), self.dtype) for s in self.cell.STATES
        ]
        tapes, dropped = [], []
        cell = self.regularisation.cell(self.training)
        inp = seq
        for layer in range(self.num_layers):
            outs, layer_tapes = [], []
            dropped.append([])
            for direction in range(self.directions):
                slot = layer * self.directions + direction
                init = None if states is None else tuple(s[slot] for s in states)
                src = inp if direction == 0 else _reverse(inp, index)
                params, drops = self._dropped_weights(cell, layer, direction)
                drawn = self.regularisation.numpy_masks(
                    cell, self.training, steps, batch, self._size_values(src.shape[2]),
                    self.dtype, self._rng,
                )  # fmt: skip
                ys, last, tape = cell.forward(
                    src, init, params, lengths, **({"masks": drawn} if drawn else {}),
                    **self.hypers,
                )  # fmt: skip
                dropped[-1].append(drops)
                outs.append(ys if direction == 0 else _reverse(ys, index))
                layer_tapes.append(tape)
                for final, value in zip(finals, last, strict=True):
                    final[slot] = value
            tapes.append(layer_tapes)
            out = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=2)
            inp = out if masks[layer] is None else out * masks[layer]
        out = inp
        if self.batch_first:
            out = np.ascontiguousarray(out.transpose(1, 0, 2))
        if (
            not out.flags.writeable
        ):  # a view of a cell's tape: the caller gets their own copy
            out = out.copy()
        tape = Tape(tapes, masks, index, seq.shape, self.batch_first, cell, dropped)
        return out, tuple(finals), tape

    def _dropped_weights(self, cell, layer, direction):
        """One layer's parameters with weight drop applied in training, and each dropped
        weight's multiplier ``M / (1 - p)`` (which its gradient is multiplied by)."""
        params = self.layer_params(layer, direction)
        rate = self.regularisation.weight_drop
        if not (self.training and rate):
            return params, {}
        drops = {}
        for name in cell.DROPPED_WEIGHTS:
            keep = self._rng.random(params[name].shape) >= rate
            drops[name] = (keep / (1 - rate)).astype(self.dtype)
            params[name] = params[name] * drops[name]
        return params, drops

    def backward(self, d_out, d_final_states=None, tape=None):
        """Backpropagate through every layer and direction.

        ``d_out`` is the gradient of the loss with respect to ``out`` (None: zeros) and
        ``d_final_states`` with respect to the final states (None: zeros). Returns ``dx`` (in
        the layout of ``x``), the gradients of the initial states (a tuple like the states) and
        ``dparams``, keyed like :attr:`params`. A tape serves one backward.
        """
        if not isinstance(tape, Tape):
            raise TypeError(
                f"Recurrent.backward: tape must be the Tape that forward returned; "
                f"got {type(tape).__name__}"
            )
        layout = [len(directions) for directions in tape.cells]
        if layout != [self.directions] * self.num_layers:
            raise ValueError(
                f"Recurrent.backward: tape comes from a net of {len(layout)} layer(s) of "
                f"{max(layout, default=0)} direction(s); this net has {self.num_layers} of "
                f"{self.directions}. Pass the tape this net's forward returned."
            )
        steps, batch, _ = tape.shape
        width = self.directions * self.output_size
        shape = (batch, steps, width) if tape.batch_first else (steps, batch, width)
        if d_out is None:
            grad = np.zeros((steps, batch, width), self.dtype)
        else:
            if not isinstance(d_out, np.ndarray) or d_out.shape != shape:
                got = (
                    d_out.shape
                    if isinstance(d_out, np.ndarray)
                    else type(d_out).__name__
                )
                raise ValueError(
                    f"Recurrent.backward: d_out must have shape {shape}; got {got}"
                )
            if d_out.dtype != self.dtype:
                raise TypeError(
                    f"Recurrent.backward: d_out must have the net's dtype {self.dtype}; "
                    f"got {d_out.dtype}"
                )
            grad = d_out.transpose(1, 0, 2) if tape.batch_first else d_out
        d_finals = self._check_states(
            "Recurrent.backward", "d_final_states", d_final_states, batch
        )
        d_inits = [
            np.empty(self.state_shape(s, batch), self.dtype) for s in self.cell.STATES
        ]
        dparams = {}
        size = self.output_size
        for layer in range(self.num_layers - 1, -1, -1):
            if tape.masks[layer] is not None:
                grad = grad * tape.masks[layer]
            d_inp = None
            for direction in range(self.directions):
                slot = layer * self.directions + direction
                part = np.ascontiguousarray(
                    grad[:, :, direction * size : (direction + 1) * size]
                )
                if direction:
                    part = _reverse(part, tape.reverse)
                finals = None if d_finals is None else tuple(d[slot] for d in d_finals)
                dx, d_init, grads = tape.cell.backward(
                    part, finals, tape.cells[layer][direction]
                )
                for name, multiplier in tape.dropped[layer][direction].items():
                    grads[name] = grads[name] * multiplier
                if direction:
                    dx = _reverse(dx, tape.reverse)
                d_inp = dx if d_inp is None else d_inp + dx
                for d_state, value in zip(d_inits, d_init, strict=True):
                    d_state[slot] = value
                for name, value in grads.items():
                    dparams[self.key(name, layer, direction)] = value
            grad = d_inp
        dx = np.ascontiguousarray(grad.transpose(1, 0, 2)) if tape.batch_first else grad
        ordered = {key: dparams[key] for key in self.param_keys}
        return dx, tuple(d_inits), ordered

    # -- PyTorch interop -----------------------------------------------------------------------

    @classmethod
    def from_torch(cls, module):
        """A net with the configuration and a copy of the weights of a ``torch.nn.RNN``,
        ``torch.nn.LSTM`` (``proj_size`` included) or ``torch.nn.GRU``."""
        kind = type(module).__name__
        if kind not in _TORCH_CELLS or not hasattr(module, "state_dict"):
            raise TypeError(
                f"Recurrent.from_torch: module must be a torch.nn.RNN, LSTM or GRU; got {kind}"
            )
        variant = torch_variant(module)
        sizes = {"proj_size": module.proj_size} if variant == "lstm_proj" else {}
        state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
        dtype = next(iter(state.values())).dtype
        net = cls(
            variant, module.input_size, module.hidden_size, num_layers=module.num_layers,
            bidirectional=module.bidirectional, batch_first=module.batch_first,
            dropout=float(module.dropout), dtype=dtype, bias=module.bias, **sizes,
        )  # fmt: skip
        if set(state) != set(net.param_keys):
            raise ValueError(
                f"Recurrent.from_torch: the module's parameters {sorted(state)} do not match "
                f"{sorted(net.params)}"
            )
        for key in net.param_keys:
            net.params[key] = np.array(state[key], dtype=dtype, copy=True)
        net.training = bool(module.training)
        return net

    def torch_state_dict(self):
        """The parameters as torch tensors under PyTorch's names, for ``load_state_dict``."""
        try:
            import torch
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError(
                "torch_state_dict needs PyTorch: pip install torch"
            ) from error
        return {k: torch.from_numpy(self.params[k].copy()) for k in self.param_keys}


# -- training helpers -------------------------------------------------------------------------


def truncated_bptt(net, x, chunk, loss, initial_states=None, step=None):
    """Truncated backpropagation through time over a long sequence.

    ``x`` is walked in chunks of ``chunk`` steps (the last may be shorter). Each chunk starts
    from the previous chunk's final states, but no gradient crosses a chunk edge, as with
    ``detach()`` there. ``loss(out, start)`` receives a chunk's output and the index of its first
    step and returns ``(value, d_out)``. ``step(dparams)``, when given, is called after each
    chunk's backward (an optimiser step, say). Returns the list of chunk losses, the final states
    and the sum over chunks of the parameter gradients.
    """
    chunk = _positive("truncated_bptt", "chunk", chunk)
    if not callable(loss):
        raise TypeError(
            f"truncated_bptt: loss must be callable; got {type(loss).__name__}"
        )
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        raise ValueError(
            f"truncated_bptt: x must be a 3-D numpy.ndarray; got "
            f"{getattr(x, 'shape', type(x).__name__)}"
        )
    axis = 1 if net.batch_first else 0
    states = initial_states
    losses, total = [], None
    for start in range(0, x.shape[axis], chunk):
        part = x[:, start : start + chunk] if axis else x[start : start + chunk]
        out, finals, tape = net.forward(np.ascontiguousarray(part), states)
        value, d_out = loss(out, start)
        _, _, grads = net.backward(d_out, None, tape)
        losses.append(value)
        if total is None:
            total = {k: v.copy() for k, v in grads.items()}
        else:
            for k, v in grads.items():
                total[k] += v
        if step is not None:
            step(grads)
        states = finals
    return losses, states, total
