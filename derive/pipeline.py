"""The driver: ``declare → derive → lower → render → write``, timing each stage."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import registry
from .cache import RUNTIME_MODULE
from .emit.cuda import render as cuda_render
from .emit.latex import document
from .emit.numba.render import (
    render_interface,
    render_kernel,
    render_package,
    render_runtime,
    runtime_digest,
)
from .emit.templates import FORMATS, render_catalog, render_derivation
from .emit.write import diff_tree, is_generated, locked, prepare_folder, write_tree
from .lower import lower
from .symbolic.adjoint import derive_adjoint
from .symbolic.declare import CellSpec

__all__ = [
    "CATALOG",
    "Run",
    "check",
    "check_docs",
    "default_docs",
    "default_out",
    "doc_files",
    "generate",
    "kernel_files",
    "specs_for",
    "write_docs",
]

#: The file name of the combined document (one section per variant).
#: the combined document of every variant: gatesmith.tex, gatesmith.md
CATALOG = "gatesmith"
#: The module of a generated package that holds the interface its kernel modules share.
INTERFACE = "_interface.py"
#: The module of a generated package that holds the runtime its kernels call.
RUNTIME = f"{RUNTIME_MODULE}.py"
#: The subpackage of a generated package that holds the CUDA backend's modules, and its runtime.
CUDA = cuda_render.FOLDER
CUDA_RUNTIME = f"{CUDA}/{RUNTIME}"
#: The modules every generated package holds beside its variants.
SHARED = (INTERFACE, RUNTIME)

#: The generated modules a pruning write removes where no declaration makes them.
_STALE = "**/*.py"

STAGES = ("declare", "derive", "lower", "render", "write")


@dataclass
class Run:
    """What a run did and how long each stage took (seconds)."""

    timings: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(STAGES, 0.0)
    )
    written: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    #: (the command that brings a file up to date, its diff)
    diffs: list[tuple[str, str]] = field(default_factory=list)
    #: called with a line of progress as each variant is derived and lowered (``-v``)
    progress: Callable[[str], None] | None = None

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] += time.perf_counter() - start


def _checkout() -> Path | None:
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "generated").is_dir():
        return root
    return None


def default_out() -> Path | None:
    """``generated/`` of the source checkout this package runs from, if it runs from one."""
    root = _checkout()
    return root / "generated" if root else None


def default_docs() -> Path | None:
    """``docs/derivations/`` of the source checkout, if this package runs from one."""
    root = _checkout()
    return root / "docs" / "derivations" if root else None


def specs_for(names: Iterable[str] | None, run: Run) -> list[CellSpec]:
    """The declarations of ``names`` (all registered variants when None)."""
    with run.stage("declare"):
        return [registry.get(n) for n in (names or registry.names())]


def _plans(specs: list[CellSpec], run: Run):
    """Derive and lower each spec in turn, timing both stages."""
    for number, spec in enumerate(specs, 1):
        start = time.perf_counter()
        with run.stage("derive"):
            adjoint = derive_adjoint(spec)
        with run.stage("lower"):
            plan = lower(adjoint)
        if run.progress is not None:
            run.progress(
                f"{spec.name} ({number}/{len(specs)}): {len(spec.equations)} equations "
                f"derived and lowered in {time.perf_counter() - start:.2f}s"
            )
        yield plan  # outside the timer: the caller's rendering is not lowering


def kernel_files(
    specs: list[CellSpec], run: Run, package: bool = True
) -> dict[str, str]:
    """Derive, lower and render every spec: relative path -> file text. The package's shared
    interface and runtime are always among them, and each spec's CUDA module with the CUDA
    runtime (in the subpackage ``cuda/``); ``package`` adds the two ``__init__.py``."""
    with run.stage("render"):
        files = {RUNTIME: render_runtime(), CUDA_RUNTIME: cuda_render.render_runtime()}
        runtime = runtime_digest(files[RUNTIME])
        cuda_runtime = runtime_digest(files[CUDA_RUNTIME])
    for plan in _plans(specs, run):
        with run.stage("render"):
            name = plan.spec.name
            files[f"{name}.py"] = render_kernel(plan, runtime)
            files[f"{CUDA}/{name}.py"] = cuda_render.render_kernel(plan, cuda_runtime)
    with run.stage("render"):
        files[INTERFACE] = render_interface()
        if package:
            files.update(_index_files(tuple(s.name for s in specs)))
    return files


def doc_files(
    specs: list[CellSpec], run: Run, fmt: str = "latex", catalog: bool = True
) -> dict[str, str]:
    """Derive, lower and document every spec: relative path -> file text. ``catalog`` adds the
    combined document."""
    docs = []
    for plan in _plans(specs, run):
        with run.stage("render"):
            docs.append(document(plan))
    with run.stage("render"):
        suffix = FORMATS[fmt][0]
        files = {f"{d.spec.name}{suffix}": render_derivation(d, fmt) for d in docs}
        if catalog:
            files[CATALOG + suffix] = render_catalog(docs, fmt)
    return files


def write_docs(out: Path, files: dict[str, str], run: Run, prune: bool) -> Run:
    """Write derivation documents under ``out`` (pruning stale stamped ones when ``prune``)."""
    (suffix,) = {Path(name).suffix for name in files}  # one format at a time
    with run.stage("write"):
        prepare_folder(out)
        with locked(out):
            run.written, run.removed = write_tree(
                files, out, f"*{suffix}" if prune else None
            )
    return run


def package_index(out: Path, written: Iterable[str]) -> tuple[str, ...]:
    """The variants a package under ``out`` holds once ``written`` are written: those, and
    every stamped variant module already there (registered ones in the registry's order)."""
    modules = {p.stem for p in out.glob("*.py") if is_generated(p)}
    held = set(written) | modules - {
        "__init__",
        *(s.removesuffix(".py") for s in SHARED),
    }
    registered = [n for n in registry.names() if n in held]
    return (*registered, *sorted(held - set(registered)))


def _index_files(variants: tuple[str, ...]) -> dict[str, str]:
    """The ``__init__.py`` of the package and of its CUDA subpackage, listing ``variants``."""
    return {
        "__init__.py": render_package(variants),
        f"{CUDA}/__init__.py": cuda_render.render_package(variants),
    }


def _index(out: Path, specs: list[CellSpec], complete: bool) -> dict[str, str]:
    """The packages' ``__init__.py``: ``specs`` alone when they are the whole package."""
    names = [s.name for s in specs]
    return _index_files(tuple(names) if complete else package_index(out, names))


def generate(out: Path, specs: list[CellSpec], run: Run, prune: bool = True) -> Run:
    """Render every spec, then write what changed under ``out``. Without ``prune`` (some
    variants only), the package's index keeps the variants already generated there."""
    files = kernel_files(specs, run, package=False)
    with run.stage("write"):
        prepare_folder(out)
        with locked(out):
            files.update(_index(out, specs, prune))
            run.written, run.removed = write_tree(files, out, _STALE if prune else None)
    return run


def check(
    out: Path,
    specs: list[CellSpec],
    run: Run,
    docs: Path | None = None,
    prune: bool = True,
) -> Run:
    """Render every spec and compare with ``out`` (and the LaTeX documents with ``docs``);
    ``run.diffs`` is empty when everything is current. With ``prune``, a stamped module with
    no declaration counts as stale."""
    files = kernel_files(specs, run, package=False)
    with run.stage("write"):
        files.update(_index(out, specs, prune))
        run.diffs = [
            ("generate", d) for d in diff_tree(files, out, _STALE if prune else None)
        ]
    if docs is not None:
        check_docs(docs, specs, run)
    return run


def check_docs(docs: Path, specs: list[CellSpec], run: Run) -> Run:
    """Compare the LaTeX documents of ``specs`` with ``docs``; adds to ``run.diffs``."""
    texts = doc_files(specs, run)
    with run.stage("write"):
        run.diffs += [("docs", d) for d in diff_tree(texts, docs, "*.tex")]
    return run
