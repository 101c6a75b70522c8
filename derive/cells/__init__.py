"""The built-in variants; importing this package registers them, in catalog order."""

from . import pytorch  # noqa: F401  (rnn_tanh, rnn_relu, lstm, gru)
from . import lstm_family  # noqa: F401  (peepholes, Greff's ablations, 1997, projection, ReLU)
from . import gru_family  # noqa: F401  (GRU-Cho, MGU, MUT1-3, IndRNN)
