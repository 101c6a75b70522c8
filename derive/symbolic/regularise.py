"""Zoneout and recurrent dropout for any cell: its declaration with masks added, as the papers
place them, so that the derivation, the kernels and the documents handle them like any other
value of the step.

- Zoneout (Krueger et al. 2017): each state ``s`` is carried as ``m s_{t-1} + (1 - m) s'``,
  where ``s'`` is the value the cell computes and ``m`` a mask drawn per step; the rest of the
  step reads ``s'``, as the paper's LSTM computes ``h`` from the cell state before it is zoned
  out.
- Recurrent dropout (variational, Gal and Ghahramani 2016): every projection of a state's
  previous value reads it times a mask drawn once per sequence; the pointwise equations read
  it whole.

Weight drop needs no change of the step: a layer drops the weights of
:attr:`~derive.symbolic.declare.CellSpec.recurrent_weights` before the kernels read them.
"""

from __future__ import annotations

from dataclasses import replace

import sympy

from .declare import CellSpec, Equation, Mask, dropped_latex, latex_problem

__all__ = ["regularised"]

_SOURCES = {
    "zoneout": "Krueger et al. 2017, Zoneout: regularizing RNNs by randomly preserving hidden "
    "activations, ICLR",
    "dropout": "Gal and Ghahramani 2016, A theoretically grounded application of dropout in "
    "recurrent neural networks, NeurIPS",
}


def regularised(
    spec: CellSpec, zoneout: bool = False, dropout: bool = False
) -> CellSpec:
    """``spec`` with zoneout on every state and recurrent dropout on every projection of a
    state's previous value (those asked for), named ``{name}_zoneout``, ``{name}_rdrop`` or
    ``{name}_zoneout_rdrop``; ``spec`` itself when neither is asked for."""
    if not (zoneout or dropout):
        return spec
    names = _Names(spec)
    equations, denses, masks = list(spec.equations), list(spec.denses), list(spec.masks)
    if dropout:
        equations, denses = _drop_recurrent(spec, equations, denses, masks, names)
    if zoneout:
        equations, denses = _zone_out(spec, equations, denses, masks, names)
    kinds = [k for k, on in (("zoneout", zoneout), ("dropout", dropout)) if on]
    said = {
        "zoneout": "Zoneout on every state: m s_{t-1} + (1 - m) s' is carried, s' the value "
        "the cell computes, which the rest of the step reads; m drawn per step.",
        "dropout": "Recurrent dropout: each projection of a state's previous value reads it "
        "times a mask drawn once per sequence.",
    }
    return replace(
        spec,
        name=spec.name + "".join("_zoneout" if k == "zoneout" else "_rdrop" for k in kinds),
        title=spec.title + " with " + " and ".join(
            {"zoneout": "zoneout", "dropout": "recurrent dropout"}[k] for k in kinds),
        citation="; ".join([spec.citation, *(_SOURCES[k] for k in kinds)]),
        conventions=(*spec.conventions, *(said[k] for k in kinds)),
        equations=tuple(equations),
        denses=tuple(denses),
        masks=tuple(masks),
        # a relation of the cell's own values may no longer hold of the zoned-out ones
        relations=(),
    )  # fmt: skip


class _Names:
    """Fresh names for the values and masks added, none a name the cell already has."""

    def __init__(self, spec: CellSpec):
        self.taken = {sym.name for sym in spec.quantities}
        self.taken |= {eq.target.name for eq in spec.equations}
        self.taken |= set(spec.param_names) | set(spec.state_names)

    def __call__(self, stem: str) -> str:
        name, n = stem, 1
        while name in self.taken:
            n += 1
            name = f"{stem}{n}"
        self.taken.add(name)
        return name


def _drop_recurrent(spec, equations, denses, masks, names):
    """A dropped copy of each state's previous value that a projection reads, which those
    projections read instead."""
    read = {d.source for d in denses}
    added = []
    for state in spec.states:
        if state.prev not in read:
            continue
        mask = Mask(names(f"dropout_{state.name}"), state.size, "sequence", "dropout",
                    of=state.name)  # fmt: skip
        masks.append(mask)
        dropped = sympy.Symbol(names(f"{state.name}_dropped"))
        added.append(Equation(dropped, state.prev * mask.symbol, state.size, "let",
                              latex=dropped_latex(state)))  # fmt: skip
        denses = [replace(d, source=dropped) if d.source == state.prev else d
                  for d in denses]  # fmt: skip
    return added + equations, denses


def _zone_out(spec, equations, denses, masks, names):
    """Each state's equation split in two: the value the cell computes (which every later
    equation and projection reads) and the zoned-out state carried."""
    for state in spec.states:
        mask = Mask(names(f"zoneout_{state.name}"), state.size, "step", "zoneout",
                    of=state.name)  # fmt: skip
        masks.append(mask)
        computed = sympy.Symbol(names(f"{state.name}_computed"))
        base = state.latex or state.name
        latex = f"{base}'" if latex_problem(f"{base}'") is None else None
        index = next(n for n, eq in enumerate(equations) if eq.target == state.new)
        own = equations[index]
        carried = mask.symbol * state.prev + (1 - mask.symbol) * computed
        swap = {state.new: computed}
        equations = [
            *(replace(eq, owner=computed) if eq.owner == state.new else eq
              for eq in equations[:index]),
            Equation(computed, own.expr, own.size, "let", own.where, latex),
            replace(own, expr=carried),
            *(replace(eq, expr=eq.expr.xreplace(swap),
                      owner=computed if eq.owner == state.new else eq.owner)
              for eq in equations[index + 1 :]),
        ]  # fmt: skip
        denses = [replace(d, source=computed) if d.source == state.new else d
                  for d in denses]  # fmt: skip
    return equations, denses
