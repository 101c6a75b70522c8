"""Verification: a generated kernel against PyTorch autograd, through the twin reference.

A :class:`Problem` is a random sequence with random non-zero initial states, parameters larger
than the default initialisation (so every nonlinearity leaves its linear range) and a loss on the
outputs and on the final states. :func:`compare` runs the kernel forward and backward and
measures, for every output and gradient, ``max |kernel - torch| / max |torch|``.

Needs ``torch`` (a test dependency, not a runtime one); the kernels themselves do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from ..cache import import_package
from ..symbolic.declare import CellSpec, operations
from .twin import _torch, twin_forward

__all__ = [
    "ROUNDING_OPERATIONS",
    "TOLERANCE",
    "Problem",
    "Report",
    "Verification",
    "draw_masks",
    "check",
    "compare",
    "import_kernel",
    "relative_error",
    "sizes_for",
    "tolerance",
    "verify",
]

#: Relative tolerances against autograd, per dtype, for equations of up to
#: :data:`ROUNDING_OPERATIONS` operations.
TOLERANCE = {np.float64: 1e-9, np.float32: 1e-4}
#: A larger equation accumulates rounding over more operations (a sum of n terms, each rounded,
#: errs by up to about n units in the last place): past this many, the tolerance grows with
#: the largest equation's operations.
ROUNDING_OPERATIONS = 64


def tolerance(spec: CellSpec, dtype) -> float:
    """The relative tolerance for ``spec``'s kernels in ``dtype``: :data:`TOLERANCE`, scaled
    by the operations of its largest equation past :data:`ROUNDING_OPERATIONS`."""
    largest = max((operations(eq.expr) for eq in spec.equations), default=0)
    return TOLERANCE[np.dtype(dtype).type] * max(1.0, largest / ROUNDING_OPERATIONS)


def sizes_for(cell, input_size: int = 4, hidden_size: int = 5, extra: int = 3) -> dict:
    """Keyword sizes for ``cell.param_shapes``: ``extra`` for a cell's own sizes (such as
    ``proj_size``); sizes the cell requires to be equal take one value (the hidden size's where
    it is among them, else the first one's)."""
    by_name = dict.fromkeys(cell.SIZES, extra)
    by_name.update(I=input_size, H=hidden_size)
    groups = {name: {name} for name in by_name}
    for a, b in cell.SIZE_CONSTRAINTS:
        merged = groups[a] | groups[b]
        for name in merged:
            groups[name] = merged
    for name in by_name:
        members = [m for m in cell.SIZES if m in groups[name]]
        by_name[name] = by_name["H" if "H" in members else members[0]]
    return {cell.SIZES[name]: value for name, value in by_name.items()}


class Problem:
    """A random sequence, non-zero initial states, parameters and loss weights for ``cell``."""

    def __init__(
        self, cell, dtype, steps=4, batch=3, seed=0, hypers=None, **size_overrides
    ):
        rng = np.random.default_rng(seed)
        self.cell = cell
        self.dtype = dtype
        self.hypers = dict(hypers or {})  # hyperparameters other than the defaults
        sizes = sizes_for(cell, **size_overrides)
        # every parameter random, whatever the declaration starts it at (a layer norm's gain
        # of 1 would hide a mistake in its blocks), and larger than PyTorch's default start,
        # so that every nonlinearity is exercised
        bound = 2 / np.sqrt(sizes["hidden_size"])
        draw = np.random.default_rng(seed + 1)
        self.params = {
            name: np.asarray(draw.uniform(-bound, bound, shape), dtype)
            for name, shape in cell.param_shapes(**sizes).items()
        }
        by_name = {name: sizes[argument] for name, argument in cell.SIZES.items()}
        self.x = rng.standard_normal((steps, batch, by_name["I"])).astype(dtype)
        self.states = tuple(
            rng.standard_normal((batch, by_name[cell.STATE_SIZES[s]])).astype(dtype)
            for s in cell.STATES
        )
        out = by_name[cell.OUTPUT_SIZE]
        self.dys = rng.standard_normal((steps, batch, out)).astype(dtype)
        self.dfinal = tuple(
            rng.standard_normal(s.shape).astype(dtype) for s in self.states
        )
        self.masks = draw_masks(cell, steps, batch, by_name, rng, dtype)

    def run(self):
        """Forward and backward with the generated kernel."""
        masks = {"masks": self.masks} if self.masks else {}
        ys, finals, tape = self.cell.forward(
            self.x, self.states, self.params, **masks, **self.hypers
        )
        dx, dstates, dparams = self.cell.backward(self.dys, self.dfinal, tape)
        return ys, finals, dx, dstates, dparams

    def infer(self):
        """``(ys, finals)`` of the forward that keeps no tape."""
        masks = {"masks": self.masks} if self.masks else {}
        ys, finals, tape = self.cell.forward(
            self.x, self.states, self.params, **masks, **self.hypers, tape=False
        )
        assert tape is None, "forward(tape=False) returned a tape"
        return ys, finals

    def infer_packed(self, steps=None):
        """``(ys, finals)`` over the first ``steps`` steps (all by default), through
        ``CellInterface.inference(..., pack=True)`` as ``derive.torch``'s inference plans call
        it: the kernel that keeps no tape reading the weights packed once (no masks)."""
        interface = self.cell._interface
        x = np.ascontiguousarray(self.x[:steps])
        kind = np.dtype(self.dtype)
        sizes, params = interface.check_params(
            "infer_packed", self.params, x.shape[2], kind
        )
        values = interface.check_hypers("infer_packed", self.hypers or None, kind)
        run = interface.inference(*x.shape[:2], params, sizes, values, pack=True)
        return run(x, self.states)

    def torch_leaves(self):
        """``x``, the initial states and the parameters as float64 torch leaves."""
        torch = _torch()

        def leaf(a):
            return torch.tensor(a.astype(np.float64), requires_grad=True)

        return (
            leaf(self.x),
            tuple(leaf(s) for s in self.states),
            {k: leaf(v) for k, v in self.params.items()},
        )

    def torch_loss(self, ys, finals):
        """The loss whose gradient the kernel's backward pass computes."""
        torch = _torch()
        loss = (ys * torch.tensor(self.dys.astype(np.float64))).sum()
        for f, d in zip(finals, self.dfinal, strict=True):
            weights = torch.tensor(d.astype(np.float64))
            loss = loss + (f.reshape(d.shape) * weights).sum()
        return loss


def draw_masks(cell, steps, batch, sizes, rng, dtype, rate=0.3) -> dict:
    """Random masks for ``cell``'s ``MASKS`` (``sizes``: size name -> units), as a layer
    draws them in training at ``rate`` (:func:`derive.runtime.layers.numpy_masks`)."""
    from ..runtime.layers import numpy_masks

    rates = {"zoneout": rate, "dropout": rate}
    return numpy_masks(cell, rates, True, steps, batch, sizes, rng=rng, dtype=dtype)


def relative_error(got, want) -> float:
    """max |got - want| / max |want|: the error relative to the reference's scale."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64).reshape(got.shape)
    scale = max(np.abs(want).max(), 1e-30)
    return float(np.abs(got - want).max() / scale)


def compare(problem: Problem, ys_t, finals_t, leaves) -> dict[str, float]:
    """Backpropagate the problem's loss through torch's ``ys_t, finals_t`` (computed from
    ``leaves``); the relative error of every output and gradient of the kernel, by name."""
    x, states, params = leaves
    problem.torch_loss(ys_t, finals_t).backward()
    ys, finals, dx, dstates, dparams = problem.run()
    cell = problem.cell
    errors = {"ys": relative_error(ys, ys_t.detach().numpy())}
    for name, got, want in zip(cell.STATES, finals, finals_t, strict=True):
        errors[f"final {name}"] = relative_error(got, want.detach().numpy())
    # the forward that keeps no tape (inference) computes the same outputs
    ys, finals = problem.infer()
    errors["ys (no tape)"] = relative_error(ys, ys_t.detach().numpy())
    for name, got, want in zip(cell.STATES, finals, finals_t, strict=True):
        errors[f"final {name} (no tape)"] = relative_error(got, want.detach().numpy())
    errors["dx"] = relative_error(dx, _grad(x))
    for name, got, want in zip(cell.STATES, dstates, states, strict=True):
        errors[f"d initial {name}"] = relative_error(got, _grad(want))
    for name in cell.PARAMS:
        errors[f"d {name}"] = relative_error(dparams[name], _grad(params[name]))
    return errors


def _grad(leaf) -> np.ndarray:
    """A leaf's gradient; zeros where the loss does not depend on it (autograd gives None:
    a state whose previous value no equation reads)."""
    if leaf.grad is None:
        return np.zeros(tuple(leaf.shape))
    return leaf.grad.numpy()


@dataclass(frozen=True)
class Report:
    """The errors of one kernel in one dtype."""

    variant: str
    dtype: str
    errors: dict[str, float]
    tolerance: float

    @property
    def worst(self) -> tuple[str, float]:
        return max(self.errors.items(), key=lambda item: item[1])

    @property
    def ok(self) -> bool:
        return self.worst[1] <= self.tolerance


@dataclass(frozen=True)
class Verification:
    """The reports of one or more kernels: a table, printed as text and, in Jupyter, as HTML;
    true when every comparison is within its tolerance."""

    reports: tuple[Report, ...]

    @property
    def ok(self) -> bool:
        return all(report.ok for report in self.reports)

    def __bool__(self) -> bool:
        return self.ok

    def __iter__(self):
        return iter(self.reports)

    def __len__(self) -> int:
        return len(self.reports)

    HEADER = ("variant", "dtype", "max relative error", "tolerance", "worst", "verdict")

    def rows(self) -> list[tuple[str, ...]]:
        """One row per report, as :data:`HEADER` names the columns."""
        return [
            (r.variant, r.dtype, f"{r.worst[1]:.2e}", f"{r.tolerance:.0e}", r.worst[0],
             "ok" if r.ok else "FAILED")
            for r in self.reports
        ]  # fmt: skip

    def __str__(self) -> str:
        table = [self.HEADER, *self.rows()]
        widths = [max(len(row[i]) for row in table) for i in range(len(self.HEADER))]
        right = {2, 3}  # the numbers
        return "\n".join(
            "  ".join(c.rjust(w) if i in right else c.ljust(w)
                      for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
            for row in table
        )  # fmt: skip

    def _repr_html_(self) -> str:
        from ..emit.templates import html_escape

        def row(cells, tag):
            return (
                "<tr>"
                + "".join(f"<{tag}>{html_escape(c)}</{tag}>" for c in cells)
                + "</tr>"
            )

        body = "".join(row(cells, "td") for cells in self.rows())
        return f"<table>{row(self.HEADER, 'th')}{body}</table>"


def check(
    declaration, dtypes=(np.float64, np.float32), seed=0, hypers=None
) -> Verification:
    """Verify ``declaration`` against autograd: a declaring function or a ``CellSpec`` (built
    with :func:`derive.build`), a module built from one, or a catalog variant's name. This is
    what ``derive.verify(declaration)`` calls."""
    from ..cache import build, built_spec

    if isinstance(declaration, str):
        from .. import registry

        spec, cell = registry.get(declaration), _catalog(declaration)
    elif isinstance(declaration, ModuleType):
        spec, cell = built_spec(declaration), declaration
        if spec is None:
            raise ValueError(
                f"verify: {declaration.__name__} was not built in this process; pass its "
                "declaration (derive.verify(mycell)) or a catalog variant's name"
            )
    else:
        cell = build(declaration)
        spec = built_spec(cell)
    return Verification(tuple(verify(spec, cell, dtypes, seed, hypers)))


def _catalog(name: str):
    import generated

    return generated.load(name)


def verify(
    spec: CellSpec, cell, dtypes=(np.float64, np.float32), seed=0, hypers=None
) -> list[Report]:
    """Compare the kernel module ``cell`` with autograd through the twin of ``spec`` (with the
    hyperparameters' defaults, or ``hypers``)."""
    reports = []
    for dtype in dtypes:
        problem = Problem(cell, dtype, steps=5, seed=seed, hypers=hypers)
        leaves = problem.torch_leaves()
        masks = {
            k: _torch().tensor(v.astype(np.float64)) for k, v in problem.masks.items()
        }
        ys_t, finals_t = twin_forward(spec, *leaves, hypers=hypers, masks=masks)
        errors = compare(problem, ys_t, finals_t, leaves)
        reports.append(
            Report(spec.name, np.dtype(dtype).name, errors, tolerance(spec, dtype))
        )
    return reports


def import_kernel(folder: Path, files: dict[str, str], name: str):
    """Write the generated package ``files`` into a new folder under ``folder`` and import its
    module ``name``, under a private package name (importing again gives fresh modules; a
    runtime that is the installed one's is shared: :func:`derive.cache.import_package`)."""
    package = f"_gatesmith_kernels_{name}"
    root = Path(folder) / package
    root.mkdir(parents=True)
    for relative, text in {"__init__.py": "", **files}.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text, encoding="utf-8")
    return import_package(root, package, name)
