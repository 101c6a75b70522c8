"""Compiling derivation documents with ``pdflatex``: safely, reproducibly, quietly.

``pdflatex`` runs with shell escape off, stops at the first error, may read no file outside the
output folder (``openin_any=p``) and write none outside it (``openout_any=p``), and stamps the
PDF with ``SOURCE_DATE_EPOCH`` (a fixed date unless the environment sets one), so the same
source gives the same PDF. Nothing else in gatesmith needs TeX.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RERUN", "PdfError", "PdfResult", "compile_pdf", "pdflatex"]

#: 2026-01-01T00:00:00Z, the date stamped into PDFs unless SOURCE_DATE_EPOCH is set.
DEFAULT_EPOCH = "1767225600"


class PdfError(RuntimeError):
    """``pdflatex`` is missing, or it failed; the message says which and why."""


@dataclass(frozen=True)
class PdfResult:
    pdf: Path
    pages: int
    overfull: tuple[str, ...]  # the log's "Overfull \hbox" and "\vbox" lines
    seconds: float
    runs: int  # pdflatex passes until the references and table columns settled
    log: str = ""  # the last pass's log (its file is removed; a failed run keeps it)


def pdflatex() -> str:
    """The ``pdflatex`` executable, or a :class:`PdfError` that says how to install it."""
    found = shutil.which("pdflatex")
    if found is None:
        raise PdfError(
            "pdflatex was not found on PATH; --pdf needs it. On Debian or Ubuntu: "
            "apt-get install texlive-latex-base"
        )
    return found


#: what pdflatex and its packages (longtable, hyperref, the table of contents) write to the
#: log while another pass would change the document
RERUN = re.compile(
    r"Rerun to get|Rerun LaTeX|Label\(s\) may have changed|Table widths have changed"
)


def compile_pdf(tex: Path, max_runs: int = 5) -> PdfResult:
    """Compile ``tex`` into a PDF beside it, running ``pdflatex`` again while its log asks for
    another pass (references, a table of contents, longtable's column widths), at most
    ``max_runs`` times."""
    executable = pdflatex()
    folder = tex.parent.resolve()
    env = {
        **os.environ,
        "openin_any": "p",
        "openout_any": "p",
        "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH),
        "FORCE_SOURCE_DATE": "1",
    }
    command = [
        executable, "-no-shell-escape", "-halt-on-error", "-interaction=nonstopmode",
        "-file-line-error", tex.name,
    ]  # fmt: skip
    start = time.perf_counter()
    log_path = folder / tex.with_suffix(".log").name
    runs = 0
    while runs < max_runs:
        runs += 1
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                              errors="replace", check=False)  # fmt: skip
        if done.returncode != 0:
            errors = [
                line
                for line in done.stdout.splitlines()
                if line.startswith(("!", "./"))
            ]
            detail = "\n".join(errors[:10]) or done.stdout[-2000:]
            raise PdfError(f"pdflatex failed on {tex}:\n{detail}")
        log = log_path.read_text(errors="replace")
        if not RERUN.search(log):
            break
    for suffix in (".aux", ".toc", ".out", ".log"):
        (folder / tex.with_suffix(suffix).name).unlink(missing_ok=True)
    pages = re.search(r"Output written on .*?\((\d+) pages?", log.replace("\n", ""))
    overfull = tuple(line for line in log.splitlines() if line.startswith("Overfull"))
    return PdfResult(
        folder / tex.with_suffix(".pdf").name,
        int(pages.group(1)) if pages else 0,
        overfull,
        time.perf_counter() - start,
        runs,
        log,
    )
