"""The LSTM family: peepholes, Greff et al.'s ablations, the 1997 cell, projection, ReLU.

Every cell here keeps PyTorch's four tensors (``weight_ih``, ``weight_hh``, ``bias_ih``,
``bias_hh``) with the blocks of the gates it has, in the order i, f, g, o, and adds named
parameters: peepholes ``p_i``, ``p_f``, ``p_o`` (each of size H), the projection ``weight_hr``, or
the gate recurrences ``weight_ri``, ``weight_rf``, ``weight_ro``.
"""

from __future__ import annotations

from ..registry import register
from ..symbolic.activations import identity, relu, sigmoid, tanh
from ..symbolic.declare import Cell, CellSpec

GREFF = (
    "Greff, Srivastava, Koutnik, Steunebrink and Schmidhuber 2017, LSTM: A Search Space "
    "Odyssey, IEEE TNNLS 28(10)"
)
GERS = "Gers and Schmidhuber 2000, Recurrent nets that time and count"
HOCHREITER = (
    "Hochreiter and Schmidhuber 1997, Long short-term memory, Neural Computation 9(8)"
)

_LAYOUT = (
    "Gate order and bias layout are PyTorch's, restricted to the gates this cell has: "
    "weight_ih, weight_hh, bias_ih and bias_hh hold the blocks {order}, in that order."
)
_PEEPHOLES = (
    "Peepholes are diagonal (one weight per unit): the input and forget gates look at the "
    "previous cell state, the output gate looks at the new cell state."
)
_NO_PEEPHOLES = "No peepholes."


def _conventions(blocks, peepholes: bool, candidate, output) -> list[str]:
    """The conventions every LSTM of the family states: layout, peepholes, output."""
    conventions = [
        _LAYOUT.format(order=", ".join(blocks)),
        _PEEPHOLES if peepholes else _NO_PEEPHOLES,
    ]  # fmt: skip
    if candidate is relu or output is relu:
        conventions.append("ReLU's derivative at 0 is taken as 0, as in PyTorch.")
    return conventions


def _lstm(
    name: str,
    title: str,
    citation: str,
    convention: str,
    *,
    gates: str = "i f o",
    peepholes: bool = True,
    coupled: bool = False,
    candidate=tanh,
    output=tanh,
    gate_recurrence: bool = False,
    description: str = "",
) -> CellSpec:
    """An LSTM with the gates named in ``gates`` (a missing gate is the constant 1).

    ``coupled`` makes the forget gate ``1 - i``; ``candidate`` and ``output`` are the
    activations of the cell input and of the cell state in ``h``; ``gate_recurrence`` feeds the
    previous gate values back into the gates (Greff's FGR), which makes them carried states.
    """
    blocks = [b for b in ("i", "f", "g", "o") if b in gates.split() or b == "g"]
    conventions = _conventions(blocks, peepholes, candidate, output) + [convention]
    cell = Cell(name, title=title, citation=citation, description=description,
                conventions=conventions)  # fmt: skip
    x = cell.input()
    h, c = cell.state("h"), cell.state("c")
    carried = {}
    if gate_recurrence:
        for gate in ("i", "f", "o"):
            carried[gate] = cell.state(gate)
    W_ih, W_hh, b_ih, b_hh = cell.pytorch_params(" ".join(blocks))
    wx = cell.dense(W_ih, x, bias=b_ih)
    wh = cell.dense(W_hh, h.prev, bias=b_hh)
    recurrences = [
        cell.dense(
            cell.weight(
                f"weight_r{src}", "i f o", cols="H", latex=rf"R_{{\cdot {src}}}"
            ),
            state.prev,
        )
        for src, state in carried.items()
    ]
    peep = {}
    if peepholes:
        for gate in ("i", "f", "o"):
            if gate in blocks:
                peep[gate] = cell.vector(f"p_{gate}", latex=f"p_{{{gate}}}")

    def gate_value(gate, cell_state):
        """The gate ``gate``: a sigmoid of its projections, peephole and recurrences."""
        pre = getattr(wx, gate) + getattr(wh, gate)
        if gate in peep:
            pre += peep[gate] * cell_state
        for r in recurrences:
            pre += getattr(r, gate)
        if gate in carried:
            return cell.update(carried[gate], sigmoid(pre))
        return cell.gate(gate, sigmoid(pre))

    i = gate_value("i", c.prev) if "i" in blocks else 1
    if "f" in blocks:
        f = gate_value("f", c.prev)
    elif coupled:
        f = cell.let("f", 1 - i)
    else:
        f = 1
    g = cell.let("g", candidate(wx.g + wh.g), latex=r"\tilde{c}")
    cell.update(c, f * c.prev + i * g)
    if coupled:
        cell.relation("The coupled forget gate:", f, 1 - i)
    cell.relation("The cell state update:", c.new, f * c.prev + i * g)
    o = gate_value("o", c.new) if "o" in blocks else 1
    cell.update(h, o * output(c.new))
    applies = "no activation" if output is identity else output.__name__
    gate = "" if "o" in blocks else " (there is no output gate: o = 1)"
    cell.relation(f"The output applies {applies} to the cell state{gate}:", h.new,
                  o * output(c.new))  # fmt: skip
    return cell.build()


@register
def lstm_peephole() -> CellSpec:
    return _lstm(
        "lstm_peephole",
        "LSTM with peephole connections",
        f"{GERS}; {GREFF} (their vanilla LSTM); ONNX LSTM with P",
        "Greff et al.'s vanilla LSTM: every ablation below changes one thing of this cell.",
        description="The forget-gate LSTM whose gates also see the cell state through "
        "diagonal peephole weights.",
    )


@register
def lstm_nig() -> CellSpec:
    return _lstm(
        "lstm_nig", "LSTM without input gate (Greff's NIG)", GREFF,
        "No input gate (i = 1).", gates="f o",
    )  # fmt: skip


@register
def lstm_nfg() -> CellSpec:
    return _lstm(
        "lstm_nfg", "LSTM without forget gate (Greff's NFG)", GREFF,
        "No forget gate (f = 1).", gates="i o",
    )  # fmt: skip


@register
def lstm_nog() -> CellSpec:
    return _lstm(
        "lstm_nog", "LSTM without output gate (Greff's NOG)", GREFF,
        "No output gate (o = 1).", gates="i f",
    )  # fmt: skip


@register
def lstm_niaf() -> CellSpec:
    return _lstm(
        "lstm_niaf", "LSTM without input activation function (Greff's NIAF)", GREFF,
        "No input activation: the cell input is its linear pre-activation.",
        candidate=identity,
    )  # fmt: skip


@register
def lstm_noaf() -> CellSpec:
    return _lstm(
        "lstm_noaf", "LSTM without output activation function (Greff's NOAF)", GREFF,
        "No output activation.", output=identity,
    )  # fmt: skip


@register
def lstm_cifg() -> CellSpec:
    return _lstm(
        "lstm_cifg", "LSTM with coupled input and forget gate (Greff's CIFG)",
        f"{GREFF}; ONNX LSTM input_forget=1",
        "The forget gate is coupled to the input gate and has no weights of its own.",
        gates="i o", coupled=True,
    )  # fmt: skip


@register
def lstm_np() -> CellSpec:
    return _lstm(
        "lstm_np", "LSTM without peepholes (Greff's NP)", GREFF,
        "Numerically the same cell as lstm (PyTorch's nn.LSTM).", peepholes=False,
    )  # fmt: skip


@register
def lstm_fgr() -> CellSpec:
    return _lstm(
        "lstm_fgr", "LSTM with full gate recurrence (Greff's FGR)", GREFF,
        "Full gate recurrence: the pre-activations of i, f and o also receive "
        "the previous gate values through nine H x H matrices (stored as "
        "weight_ri, weight_rf and weight_ro with blocks i, f, o), so the gate values of the "
        "previous step are carried states.",
        gate_recurrence=True,
    )  # fmt: skip


@register
def lstm_1997() -> CellSpec:
    return _lstm(
        "lstm_1997", "The original LSTM, without forget gate or peepholes", HOCHREITER,
        "No forget gate: the cell state adds to itself unscaled (the constant error carousel).",
        gates="i o", peepholes=False,
    )  # fmt: skip


@register
def lstm_proj() -> CellSpec:
    cell = Cell(
        "lstm_proj",
        title="LSTM with a recurrent projection",
        citation="Sak, Senior and Beaufays 2014, Long short-term memory recurrent neural "
        "network architectures for large scale acoustic modeling; PyTorch nn.LSTM(proj_size=P)",
        description="The output o * tanh(c) is projected down to P < H units; the projection "
        "is both the output and the recurrent state.",
        conventions=(
            _LAYOUT.format(order="i, f, g, o")
            + " weight_hh reads the projected state: (4 H, P); weight_hr is (P, H), no bias.",
            _NO_PEEPHOLES,
            "h_t = W_hr (o_t * tanh(c_t)) has size P; the cell state c_t keeps size H.",
        ),
    )
    cell.size("P", "proj_size")
    x = cell.input()
    h, c = cell.state("h", size="P"), cell.state("c")
    W_ih, W_hh, b_ih, b_hh = cell.pytorch_params("i f g o", recurrent="P")
    W_hr = cell.weight("weight_hr", "h", cols="H", block_size="P", latex="W_{hr}")
    wx = cell.dense(W_ih, x, bias=b_ih)
    wh = cell.dense(W_hh, h.prev, bias=b_hh)
    i = cell.gate("i", sigmoid(wx.i + wh.i))
    f = cell.gate("f", sigmoid(wx.f + wh.f))
    g = cell.let("g", tanh(wx.g + wh.g), latex=r"\tilde{c}")
    o = cell.gate("o", sigmoid(wx.o + wh.o))
    cell.update(c, f * c.prev + i * g)
    m = cell.let("m", o * tanh(c.new))
    cell.update(h, cell.dense(W_hr, m).h)
    return cell.build()


@register
def lstm_relu() -> CellSpec:
    return _lstm(
        "lstm_relu", "LSTM with ReLU cell input and output activations",
        "Hochreiter and Schmidhuber 1997 with ReLU in place of tanh; PyTorch nn.LSTM layout",
        "The cell input and the cell output use ReLU; the gates stay sigmoid, so they map "
        "into [0, 1].",
        peepholes=False, candidate=relu, output=relu,
    )  # fmt: skip
