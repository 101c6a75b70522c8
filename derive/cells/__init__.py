"""The built-in variants; importing this package registers them.

The import order is the catalog order that ``gatesmith list`` shows: PyTorch's four cells
(rnn_tanh, rnn_relu, lstm, gru), the LSTM family (peepholes, Greff's ablations, 1997,
projection, ReLU), then the GRU family and minimal cells (GRU-Cho, MGU, MUT1-3, IndRNN), then the gated cells
of the later literature (UGRNN to RHN), then FastRNN, FastGRNN, AntisymmetricRNN, the Intersection RNN and the NAS cell, and the
layer-normalised LSTM and GRU.
"""

from . import pytorch  # noqa: I001, F401
from . import lstm_family  # noqa: F401
from . import gru_family  # noqa: F401
from . import literature  # noqa: F401
from . import fast  # noqa: F401
from . import antisymmetric  # noqa: F401
from . import intersection  # noqa: F401
from . import nas  # noqa: F401
from . import layernorm  # noqa: F401
