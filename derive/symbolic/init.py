"""How a parameter starts: the initialisation rules a declaration can give each parameter, or
each row block of one, as plain data.

A rule is mathematics only: its kind, its one number and the source that recommends it. The
generated interface draws the values (``init_params``), and the documents print the rule with
its citation. A parameter that says nothing starts as PyTorch's recurrent layers start every
parameter, from U(-1/sqrt(H), 1/sqrt(H)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "CITATIONS",
    "Init",
    "chrono",
    "constant",
    "identity",
    "ones",
    "orthogonal",
    "uniform",
    "zeros",
]

#: The source of each kind of rule, as the documents cite it.
CITATIONS = {
    "uniform": "PyTorch's nn.RNN, nn.LSTM and nn.GRU, reset_parameters",
    "constant": "a constant, as declared",
    "orthogonal": "Saxe, McClelland and Ganguli 2014, Exact solutions to the nonlinear "
    "dynamics of learning in deep linear neural networks, ICLR",
    "identity": "Le, Jaitly and Hinton 2015, A simple way to initialize recurrent networks "
    "of rectified linear units, arXiv:1504.00941",
    "chrono": "Tallec and Ollivier 2018, Can recurrent neural networks warp time?, ICLR",
}
#: The parameter kinds each rule applies to: a matrix rule needs rows and columns, chrono one
#: number per unit.
APPLIES_TO = {
    "uniform": ("weight", "bias", "vector", "scalar"),
    "constant": ("weight", "bias", "vector", "scalar"),
    "orthogonal": ("weight",),
    "identity": ("weight",),
    "chrono": ("bias", "vector"),
}


@dataclass(frozen=True)
class Init:
    """One rule: ``kind`` and its number ``value`` (uniform's bound, None for 1/sqrt(H); a
    constant; orthogonal's gain; identity's scale; chrono's T_max), ``sign`` (chrono's -1 for a
    gate that opens as the forget gate closes, b_i = -b_f, drawn from the same numbers) and
    the ``citation`` the documents give."""

    kind: str
    value: float | None = None
    sign: int = 1
    citation: str = ""

    def __post_init__(self):
        if self.kind not in CITATIONS:
            raise ValueError(
                f"Init: kind must be one of {sorted(CITATIONS)}; got {self.kind!r}"
            )
        if not self.citation:
            object.__setattr__(self, "citation", CITATIONS[self.kind])

    @property
    def data(self) -> tuple:
        """What the generated module keeps of the rule: ``(kind, value, sign)``."""
        return (self.kind, self.value, self.sign)


def _number(caller: str, argument: str, value, low: float | None = None) -> float:
    real = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not real or not math.isfinite(value) or (low is not None and value <= low):
        want = "a finite real number" + ("" if low is None else f" above {low:g}")
        raise ValueError(f"{caller}: {argument} must be {want}; got {value!r}")
    return float(value)


def uniform(bound: float | None = None, citation: str = "") -> Init:
    """U(-bound, bound); ``bound`` None is PyTorch's 1/sqrt(H)."""
    if bound is None:
        return Init("uniform", citation=citation)
    bound = _number("uniform", "bound", bound, 0)
    return Init(
        "uniform", bound, citation=citation or "a uniform distribution, as declared"
    )


def constant(value: float, citation: str = "") -> Init:
    """Every element ``value`` (a forget-gate bias of 1: Jozefowicz et al. 2015)."""
    return Init("constant", _number("constant", "value", value), citation=citation)


def zeros(citation: str = "") -> Init:
    return constant(0.0, citation)


def ones(citation: str = "") -> Init:
    return constant(1.0, citation)


def orthogonal(gain: float = 1.0, citation: str = "") -> Init:
    """Each block a (semi-)orthogonal matrix times ``gain``: the Q of a Gaussian matrix's QR
    decomposition, its signs fixed by R's diagonal, as ``torch.nn.init.orthogonal_``."""
    return Init("orthogonal", _number("orthogonal", "gain", gain, 0), citation=citation)


def identity(scale: float = 1.0, citation: str = "") -> Init:
    """Each block ``scale`` times the identity (ones on the diagonal of a block that is not
    square): the IRNN's recurrent weights."""
    return Init("identity", _number("identity", "scale", scale), citation=citation)


def chrono(t_max: float, negate: bool = False, citation: str = "") -> Init:
    """Chrono initialisation: each unit log(u), u ~ U(1, T_max - 1), so the gate's time
    constants spread over the dependencies' range up to ``t_max`` steps; ``negate`` for the
    input gate, -log(u) with the same u."""
    value = _number("chrono", "t_max", t_max, 2)
    return Init("chrono", value, -1 if negate else 1, citation)
