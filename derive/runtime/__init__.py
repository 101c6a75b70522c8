"""The runtime: layers to train with, over any generated cell module, and their optimisers.

Not a pipeline stage: it uses the generated modules' common interface and never imports the
symbolic core. :mod:`~derive.runtime.layers` holds :class:`Recurrent` and :func:`truncated_bptt`;
:mod:`~derive.runtime.optim` gradient clipping, :class:`SGD` and :class:`Adam`.
"""

from .layers import Recurrent, Tape, truncated_bptt
from .optim import SGD, Adam, clip_grad_norm, clip_grad_value

__all__ = [
    "SGD", "Adam", "Recurrent", "Tape", "clip_grad_norm", "clip_grad_value", "truncated_bptt",
]  # fmt: skip
