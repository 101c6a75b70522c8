"""The Numba backend's files: a variant's kernel module, and the package's shared ones (the
runtime, the interface, ``__init__.py``), laid out by the backend's templates
(``templates/numba/``)."""

from __future__ import annotations

import hashlib

from ...lower.plan import ArrayRole, Extent, KernelPlan
from ..templates import (
    LINE_LENGTH,
    bracket,
    environment,
    inputs_digest,
    stamp,
    templates_digest,
)
from .kernel import Kernel, array_name, print_kernel

__all__ = [
    "entry_points",
    "render_interface",
    "render_kernel",
    "render_package",
    "render_runtime",
    "runtime_digest",
    "runtime_import",
]


def _formula(formula) -> str:
    """A shape formula as a Python tuple literal: ``((4, "H"), (1, "I"))``, ``()`` for a scalar."""
    items = [f'({m}, "{s}")' for m, s in formula]
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


def _tuple(items, name: str, quote: bool = True) -> str:
    """``name = (items)``: on one line as the formatter lays out a tuple literal, else the
    items filled into lines (kept so by ``# fmt: skip``)."""
    items = [f'"{item}"' if quote else item for item in items]
    if len(items) == 1:
        return f"{name} = ({items[0]},)"
    one = f"{name} = ({', '.join(items)})"
    if len(one) <= LINE_LENGTH:
        return one
    lines, line = [], "   "
    for item in items:
        if len(line) + len(item) + 2 > LINE_LENGTH:
            lines.append(line)
            line = "   "
        line += f" {item},"
    return "\n".join([f"{name} = (", *lines, line, ")  # fmt: skip"])


def _init_entry(param) -> str:
    """``"name": rules,`` of ``PARAM_INIT``: one ``(kind, value, sign)`` per block, repeated
    where every block starts alike."""
    rules = [f'("{r.kind}", {r.value!r}, {r.sign})' for r in param.init]
    head = f'    "{param.name}": '
    if len(set(rules)) == 1:
        return (
            f"{head}({rules[0]},) * {len(rules)},"
            if len(rules) > 1
            else f"{head}({rules[0]},),"
        )
    return bracket(rules, f"{head}(", "),", 4, hug=False)


def _size_name(size: str | None) -> str:
    """A size in a module constant: its name, or None where a width counts columns."""
    return "None" if size is None else f'"{size}"'


def _saved_shape(array) -> str:
    """``(initial, ((mult, "size"), ...))``: an array the forward kernel returns has
    ``(steps + initial) * batch`` rows and the sum of ``mult * size`` columns."""
    initial = 1 if array.extent is Extent.STEPS_AND_INITIAL else 0
    width = ", ".join(f"({mult}, {_size_name(size)})" for mult, size in array.width)
    return (
        f"({initial}, ({width},))"
        if len(array.width) == 1
        else f"({initial}, ({width}))"
    )


def entry_points(spec) -> dict:
    """The parameters of the module's ``forward`` and ``step``."""
    keywords = [
        *(["masks=None"] if spec.masks else []),
        *(f"{hp.name}={hp.default!r}" for hp in spec.hypers),
    ]
    return {
        "forward_params": ["x", "initial_states", "params", "lengths=None", "*",
                           *keywords, "tape=True"],
        "step_params": ["x", "states", "params", *(["*"] if keywords else []), *keywords],
    }  # fmt: skip


def runtime_import(kernel: Kernel) -> str:
    """The kernel module's import of what it calls from the runtime, laid out as the formatter
    does (one line if it fits, else one name a line)."""
    names = kernel.helpers
    if not names:
        return ""
    line = f"from ._runtime import {', '.join(sorted(names))}"
    if len(line) <= LINE_LENGTH:
        return line
    return (
        "from ._runtime import (\n"
        + "".join(f"    {n},\n" for n in sorted(names))
        + ")"
    )


#: The templates a kernel module is rendered from.
_TEMPLATES = ("numba/kernel.py.j2", "numba/schedule.j2", "numba/bindings.py.j2")


def render_kernel(plan: KernelPlan, runtime: str) -> str:
    """The generated Numba module of one variant, importing the runtime of digest ``runtime``
    (:func:`runtime_digest`)."""
    spec = plan.spec
    env = environment()
    digest = inputs_digest(spec.fingerprint(), templates_digest(_TEMPLATES), runtime)
    kernel = print_kernel(plan)
    param_shapes = [(p.name, _formula(p.shape_formula())) for p in spec.params]
    param_blocks = [
        (p.name, _tuple(p.blocks, "").removeprefix(" = "), p.kind) for p in spec.params
    ]
    sizes_dict = (
        "{" + ", ".join(f'"{s.name}": "{s.argument}"' for s in spec.sizes) + "}"
    )
    state_sizes = "{" + ", ".join(f'"{s.name}": "{s.size}"' for s in spec.states) + "}"
    constraints = [f'("{a}", "{b}")' for a, b in spec.constraints]
    saved = [f"({n}, {_size_name(s)})" for n, s in plan.saved_per_step]
    saved_text = " + ".join(
        str(n) if s is None else (f"{n} {s}" if n != 1 else s)
        for n, s in plan.saved_per_step
    )
    return env.get_template("numba/kernel.py.j2").render(
        stamp=stamp("#", f'the declaration of "{spec.name}"', digest),
        spec=spec,
        kernel=kernel,
        runtime_import=runtime_import(kernel),
        runtime_digest=runtime,
        equations=[f"{eq.target} = {eq.expr}" for eq in spec.equations],
        states_tuple=_tuple(kernel.states, "STATES"),
        params_tuple=_tuple(kernel.params, "PARAMS"),
        sizes_dict=sizes_dict,
        state_sizes_dict=state_sizes,
        output_array=array_name(plan.output),
        output_skip=int(plan.output.role == ArrayRole.SEQUENCE),
        param_shapes=param_shapes,
        param_blocks=param_blocks,
        param_init=[_init_entry(p) for p in spec.params if p.init],
        constraints=_tuple(constraints, "SIZE_CONSTRAINTS", quote=False),
        saved_per_step=_tuple(saved, "SAVED_PER_STEP", quote=False),
        saved_text=saved_text,
        forward_returns=_tuple(kernel.forward_returns, "_FORWARD_RETURNS"),
        infer_returns=_tuple(kernel.inference_returns, "_INFER_RETURNS"),
        forward_shapes=_tuple(
            [_saved_shape(array) for array in plan.forward_returns],
            "_FORWARD_SHAPES",
            quote=False,
        ),
        backward_tape=_tuple(
            kernel.backward_args[
                1 + len(kernel.states) : len(kernel.backward_args) - len(plan.hypers)
            ],
            "_BACKWARD_TAPE",
        ),
        hypers=[(hp.name, repr(hp.default)) for hp in spec.hypers],
        masks=spec.masks,
        dropped_weights=_tuple(spec.recurrent_weights, "DROPPED_WEIGHTS"),
        **entry_points(spec),
        size_args=", ".join(s.argument for s in spec.sizes),
    )


def render_package(variants: tuple[str, ...]) -> str:
    """The ``__init__.py`` of a generated package: the list of its variants."""
    env = environment()
    digest = inputs_digest(*variants, templates_digest(("numba/package.py.j2",)))
    return env.get_template("numba/package.py.j2").render(
        stamp=stamp("#", "the registered declarations", digest), variants=variants
    )


def _render_shared(name: str, what: str) -> str:
    """A module every kernel module of a generated package shares, from ``name``'s template."""
    digest = inputs_digest(templates_digest((name,)))
    return (
        environment()
        .get_template(name)
        .render(stamp=stamp("#", f"the {what} template", digest))
    )


def render_interface() -> str:
    """The ``_interface.py`` every kernel module of a generated package binds to itself."""
    return _render_shared("numba/interface.py.j2", "interface")


def render_runtime() -> str:
    """The ``_runtime.py`` every kernel module of a generated package imports: activations,
    the schedule's bookkeeping and per-step products, defined once."""
    return _render_shared("numba/runtime.py.j2", "runtime")


def runtime_digest(text: str) -> str:
    """The digest of the runtime's ``text`` (``render_runtime()``) that each kernel module
    records and ``_runtime.cached`` compares with the file's own."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]
