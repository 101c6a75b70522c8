"""The CUDA backend's files: the ``cuda`` subpackage of a generated package, a kernel module
per variant, its runtime and its index, laid out by the backend's templates
(``templates/cuda/``)."""

from __future__ import annotations

from ...lower.plan import KernelPlan
from ..numba.render import entry_points, runtime_import
from ..templates import environment, inputs_digest, stamp, templates_digest
from .kernel import print_module

__all__ = ["FOLDER", "TABLES", "render_kernel", "render_package", "render_runtime"]

#: The subpackage of a generated package that holds the CUDA modules.
FOLDER = "cuda"

#: The tables a CUDA module imports from the Numba module of its variant (described in the
#: package's ``_interface.py``), in the order the formatter sorts them; each imported as
#: itself, which marks it as the module's own.
TABLES = (
    "_BACKWARD_TAPE", "_FORWARD_RETURNS", "_FORWARD_SHAPES", "_INFER_RETURNS",
    "_OUTPUT_ARRAY", "DROPPED_WEIGHTS", "HYPERS", "MASKS", "OUTPUT", "OUTPUT_SIZE",
    "PARAM_BLOCKS", "PARAM_INIT", "PARAM_SHAPES", "PARAMS", "SAVED_PER_STEP",
    "SIZE_CONSTRAINTS", "SIZES", "STATE_SIZES", "STATES", "VARIANT",
)  # fmt: skip

_TEMPLATES = ("cuda/kernel.py.j2", "numba/schedule.j2", "numba/bindings.py.j2")


def render_kernel(plan: KernelPlan, runtime: str) -> str:
    """The CUDA module of one variant; ``runtime`` is the digest of the CUDA runtime's text."""
    spec = plan.spec
    digest = inputs_digest(spec.fingerprint(), templates_digest(_TEMPLATES), runtime)
    module = print_module(plan)
    return (
        environment()
        .get_template("cuda/kernel.py.j2")
        .render(
            stamp=stamp("#", f'the declaration of "{spec.name}"', digest),
            spec=spec,
            module=module,
            host=module.host,
            tables=TABLES,
            runtime_import=runtime_import(module.host),
            hypers=[(hp.name, repr(hp.default)) for hp in spec.hypers],
            masks=spec.masks,
            size_args=", ".join(s.argument for s in spec.sizes),
            **entry_points(spec),
        )
    )


def render_package(variants: tuple[str, ...]) -> str:
    """The ``__init__.py`` of the CUDA subpackage: the list of its variants."""
    digest = inputs_digest(*variants, templates_digest(("cuda/package.py.j2",)))
    return (
        environment()
        .get_template("cuda/package.py.j2")
        .render(
            stamp=stamp("#", "the registered declarations", digest), variants=variants
        )
    )


def render_runtime() -> str:
    """The CUDA subpackage's ``_runtime.py``."""
    digest = inputs_digest(templates_digest(("cuda/runtime.py.j2",)))
    return (
        environment()
        .get_template("cuda/runtime.py.j2")
        .render(stamp=stamp("#", "the CUDA runtime template", digest))
    )
