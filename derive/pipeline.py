"""The driver: ``declare → derive → lower → render → write``, timing each stage."""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import registry
from .adjoint import derive_adjoint
from .declare import CellSpec
from .lower import lower
from .render import render_kernel, render_package
from .write import diff_tree, write_tree

__all__ = ["Run", "check", "default_out", "generate", "kernel_files", "specs_for"]

STAGES = ("declare", "derive", "lower", "render", "write")


@dataclass
class Run:
    """What a run did and how long each stage took (seconds)."""

    timings: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(STAGES, 0.0)
    )
    written: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    diffs: list[str] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] += time.perf_counter() - start


def default_out() -> Path | None:
    """``generated/`` of the source checkout this package runs from, if it runs from one."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "generated").is_dir():
        return root / "generated"
    return None


def specs_for(names: Iterable[str] | None, run: Run) -> list[CellSpec]:
    """The declarations of ``names`` (all registered variants when None)."""
    with run.stage("declare"):
        return [registry.get(n) for n in (names or registry.names())]


def kernel_files(
    specs: list[CellSpec], run: Run, package: bool = True
) -> dict[str, str]:
    """Derive, lower and render every spec: relative path -> file text."""
    files = {}
    for spec in specs:
        with run.stage("derive"):
            adjoint = derive_adjoint(spec)
        with run.stage("lower"):
            plan = lower(adjoint)
        with run.stage("render"):
            files[f"{spec.name}.py"] = render_kernel(plan)
    if package:
        with run.stage("render"):
            files["__init__.py"] = render_package(
                tuple(s.name for s in specs), tuple(s.fingerprint() for s in specs)
            )
    return files


def generate(out: Path, specs: list[CellSpec], run: Run, prune: bool = True) -> Run:
    """Render every spec, then write what changed under ``out``."""
    files = kernel_files(specs, run)
    with run.stage("write"):
        run.written, run.removed = write_tree(files, out, "*.py" if prune else None)
    return run


def check(out: Path, specs: list[CellSpec], run: Run) -> Run:
    """Render every spec and compare with ``out``; ``run.diffs`` is empty when current."""
    files = kernel_files(specs, run)
    with run.stage("write"):
        run.diffs = diff_tree(files, out, "*.py")
    return run
