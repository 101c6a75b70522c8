"""The ``gatesmith`` command: list, generate, check and verify kernels; start a declaration."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

from . import __version__, pipeline, registry
from .emit.diagram import (
    UNROLLED,
    DiagramError,
    dot,
    dot_source,
    render,
    unrolled_source,
)
from .emit.latex import MEASURED_CELLS, MEASURED_PLOT
from .emit.pdf import PdfError, compile_pdf, pdflatex
from .emit.templates import FORMATS, render_new_cell
from .emit.write import WriteError
from .symbolic.declare import DeclarationError

__all__ = ["main"]


#: ``gatesmith list`` wraps each variant's description to lines of at most this many characters
LIST_WIDTH = 100


def _describe_shape(param) -> str:
    dims = []
    for mult, size in param.shape_formula():
        dims.append(size if mult == 1 else f"{mult}{size}")
    return f"{param.name} ({', '.join(dims)})"


def _cmd_list(args) -> int:
    specs = [registry.get(n) for n in registry.names()]
    width = max(len(s.name) for s in specs)
    for spec in specs:
        states = ", ".join(s.name for s in spec.states)
        if spec.output not in spec.state_names:  # an output the step does not carry
            states += f"; output: {spec.output} ({spec.output_size})"
        params = ", ".join(_describe_shape(p) for p in spec.params)
        hypers = "".join(
            f"; hyperparameters: {', '.join(f'{h.name}={h.default!r}' for h in spec.hypers)}"
            for _ in spec.hypers[:1]
        )
        text = f"states: {states}; params: {params}{hypers}; {spec.citation}"
        lines = textwrap.wrap(
            text, LIST_WIDTH - width - 2, break_long_words=False, break_on_hyphens=False
        )
        print(f"{spec.name:<{width}}  {lines[0]}")
        for line in lines[1:]:  # continuation lines, indented under the first
            print(f"{'':<{width}}  {line}")
    return 0


def _out_dir(args) -> Path:
    if args.out is not None:
        return Path(args.out)
    out = pipeline.default_out()
    if out is None:
        raise SystemExit(
            "gatesmith: no source checkout found to hold generated/; pass --out DIR"
        )
    return out


def _run(args) -> pipeline.Run:
    """A run that, with ``-v``, reports each variant as it is derived."""
    run = pipeline.Run()
    if getattr(args, "verbose", False):
        run.progress = lambda line: print(
            f"gatesmith: {line}", file=sys.stderr, flush=True
        )
    return run


def _report_timings(run: pipeline.Run, verbose: bool) -> None:
    if verbose:
        total = sum(run.timings.values())
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in run.timings.items())
        print(f"{stages}; total {total:.2f}s", file=sys.stderr)


def _names(args) -> list[str] | None:
    """The variants a command acts on: those named, else those of ``--spec`` files, else all."""
    if args.spec and args.out is None and getattr(args, "needs_out", True):
        raise SystemExit(
            "gatesmith: --spec needs --out DIR, so that the built-in generated/ is left alone"
        )
    from_files = [n for path in args.spec or () for n in registry.load_file(path)]
    return list(getattr(args, "variants", ())) or from_files or None


def _cmd_generate(args) -> int:
    names = _names(args)
    out = _out_dir(args)
    run = _run(args)
    specs = pipeline.specs_for(names, run)
    # only the checkout's own generated/ is pruned of modules no declaration makes: a folder
    # of one's own may hold kernels from other declaration files
    pipeline.generate(out, specs, run, prune=names is None and args.out is None)
    for path in run.written:
        print(f"wrote {path}")
    for path in run.removed:
        print(f"removed {path} (no declaration left)")
    if not run.written and not run.removed:
        print(f"gatesmith generate: {out} is up to date ({len(specs)} variant(s)); "
              "nothing written")  # fmt: skip
    _report_timings(run, args.verbose)
    return 0


def _cmd_check(args) -> int:
    out = _out_dir(args)
    run = _run(args)
    names = _names(args)
    # the checkout's own folders are complete catalogs; a folder of one's own holds only the
    # variants generated there, so nothing in it is called stale for want of a declaration
    own = args.out is None
    docs = pipeline.default_docs() if own else None
    pipeline.check(out, pipeline.specs_for(names, run), run, docs=docs, prune=own)
    _report_timings(run, args.verbose)
    if run.diffs:
        sys.stdout.write("".join(diff for _, diff in run.diffs))
        spec = "".join(f" --spec {path}" for path in args.spec or ())
        where = "" if own else f" --out {out}"
        commands = dict.fromkeys(command for command, _ in run.diffs)
        advice = " and ".join(f"`gatesmith {c}{spec}{where}`" for c in commands)
        print(
            f"gatesmith check: {len(run.diffs)} file(s) are stale; run {advice}",
            file=sys.stderr,
        )
        return 1
    where = f"{out} and {docs}" if docs else str(out)
    print(f"gatesmith check: {where} match the declarations")
    return 0


def _cmd_docs(args) -> int:
    if args.pdf and args.format != "latex":
        raise SystemExit(
            f"gatesmith: --pdf compiles LaTeX; it cannot go with --format {args.format}"
        )
    if args.pdf:
        pdflatex()  # a missing pdflatex is reported before anything is written
    names = _names(args)
    if args.out:
        out = Path(args.out)
    else:
        out = Path(".") if args.spec else pipeline.default_docs()
    if out is None:
        raise SystemExit(
            "gatesmith: no source checkout found to hold docs/; pass --out DIR"
        )
    run = _run(args)
    specs = pipeline.specs_for(names, run)
    files = pipeline.doc_files(specs, run, args.format, catalog=names is None)
    pipeline.write_docs(out, files, run, prune=names is None and args.out is None)
    for path in run.written:
        print(f"wrote {path}")
    for path in run.removed:
        print(f"removed {path} (no declaration left)")
    if args.pdf or args.format != "latex":  # the figure each document shows
        _diagrams(specs, out, "pdf" if args.pdf else "svg", catalog=names is None)
        _measured_plot(specs, out)
    if args.pdf:
        for name in files:
            result = compile_pdf(out / name)
            pages = f"{result.pages} page{'s' if result.pages != 1 else ''}"
            passes = f"{result.runs} pdflatex pass{'es' if result.runs != 1 else ''}"
            print(f"wrote {result.pdf} ({pages}, {passes}, {result.seconds:.1f}s)")
            for line in result.overfull:
                print(f"  warning: {line}", file=sys.stderr)
    _report_timings(run, args.verbose)
    return 0


def _measured_plot(specs, out: Path) -> None:
    """The demo's measured gradient-flow plot, which the documents of the cells it measures
    show, copied beside them from the checkout's docs (never over a file already there)."""
    plot = f"{MEASURED_PLOT}.png"
    home = pipeline.default_docs()
    if (home is None or not (home / plot).is_file() or (out / plot).exists()
            or not any(spec.name in MEASURED_CELLS for spec in specs)):  # fmt: skip
        return
    shutil.copyfile(home / plot, out / plot)
    print(f"wrote {out / plot}")


def _diagrams(specs, out: Path, suffix: str, catalog: bool = False) -> None:
    """Each variant's data-flow diagram beside its document, and the catalog's unrolled
    chain; without Graphviz, a warning (the documents stand without their figures)."""
    try:
        dot()
    except DiagramError as error:
        print(f"gatesmith: no diagrams: {error}", file=sys.stderr)
        return
    sources = {f"{spec.name}-diagram": dot_source(spec) for spec in specs}
    if catalog:
        sources[UNROLLED] = unrolled_source()
    for name, source in sources.items():
        figure = render(source, out / f"{name}.{suffix}")
        print(f"wrote {figure}")


def _cmd_verify(args) -> int:
    from . import verify

    try:
        import torch  # noqa: F401  (the reference; a test dependency, not a runtime one)
    except ImportError:
        raise SystemExit(
            "gatesmith: verify compares with PyTorch autograd; pip install torch==2.13.0 "
            "(or install gatesmith with its test extra)"
        ) from None
    names = _names(args)
    run = _run(args)
    specs = pipeline.specs_for(names, run)
    failed = 0
    width = max([16, *(len(spec.name) + 2 for spec in specs)])
    print(
        f"{'variant':<{width}}{'dtype':<9}{'max relative error':>20}  {'tolerance':>9}  "
        "verdict  worst"
    )
    with tempfile.TemporaryDirectory(prefix="gatesmith-verify-") as folder:
        for spec in specs:
            files = pipeline.kernel_files([spec], run, package=False)
            kernel = verify.import_kernel(Path(folder), files, spec.name)
            for report in verify.verify(spec, kernel, seed=args.seed):
                worst, error = report.worst
                failed += not report.ok
                verdict = "ok" if report.ok else "FAILED"
                print(f"{spec.name:<{width}}{report.dtype:<9}{error:>20.2e}  "
                      f"{report.tolerance:>9.0e}  {verdict:<7}  {worst}")  # fmt: skip
                if args.verbose:
                    for name, value in report.errors.items():
                        print(
                            f"{'':<{width + 9}}{value:>20.2e}  {'':>9}  {'':<7}  {name}"
                        )
    if failed:
        print(
            f"gatesmith verify: {failed} comparison(s) over tolerance", file=sys.stderr
        )
        return 1
    return 0


def _cmd_new(args) -> int:
    if args.name in registry.names():
        raise SystemExit(
            f"gatesmith: {args.name!r} is a built-in variant, so a declaration of that name "
            "could never be registered; choose another name"
        )
    path = Path(args.out or ".") / f"{args.name}.py"
    if path.exists() and not args.force:
        raise SystemExit(f"gatesmith: {path} exists; pass --force to replace it")
    text = render_new_cell(args.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")
    return 0


#: docs writes no kernels: a user's documents go into the current folder by default
_DOCS_OUT = "folder (default: docs/derivations/; with --spec, the current folder)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatesmith",
        description="Recurrent cells declared in SymPy: derive BPTT, emit Numba kernels.",
    )
    parser.add_argument(
        "--version", action="version", version=f"gatesmith {__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="the declared variants, one line each")
    p.set_defaults(run=_cmd_list)

    p = sub.add_parser(
        "generate", help="regenerate the kernels (silent about unchanged files)"
    )
    p.add_argument("variants", nargs="*", help="variants to generate (default: all)")
    _spec_argument(p)
    p.add_argument(
        "--out", metavar="DIR", help="output package folder (default: generated/)"
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="print progress and stage times"
    )
    p.set_defaults(run=_cmd_generate)

    p = sub.add_parser(
        "docs",
        help="write the derivation documents (docs/derivations/), optionally PDFs",
    )
    p.add_argument("variants", nargs="*", help="variants to document (default: all)")
    _spec_argument(p)
    p.add_argument("--out", metavar="DIR", help=_DOCS_OUT)
    p.add_argument(
        "--format", choices=sorted(FORMATS), default="latex", help="default: latex"
    )
    p.add_argument("--pdf", action="store_true", help="also compile PDFs with pdflatex")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="print progress and stage times"
    )
    p.set_defaults(run=_cmd_docs, needs_out=False)

    p = sub.add_parser(
        "verify", help="compare freshly generated kernels with PyTorch autograd"
    )
    p.add_argument("variants", nargs="*", help="variants to verify (default: all)")
    _spec_argument(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the random problem")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="print every output's error"
    )
    p.set_defaults(run=_cmd_verify, out=None, needs_out=False)

    p = sub.add_parser("new", help="write NAME.py, a commented declaration to edit")
    p.add_argument("name", help="the variant's name (a Python identifier)")
    p.add_argument("--out", metavar="DIR", help="folder to write into (default: .)")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(run=_cmd_new)

    p = sub.add_parser(
        "check", help="exit 1 with a diff when the generated files are stale"
    )
    _spec_argument(p)
    p.add_argument(
        "--out", metavar="DIR", help="generated package folder (default: generated/)"
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="print progress and stage times"
    )
    p.set_defaults(run=_cmd_check)

    # parsed by derive.bench itself; listed here for --help
    sub.add_parser(
        "bench", add_help=False,
        help="time the kernels against PyTorch and JAX (gatesmith bench --help)",
    )  # fmt: skip
    return parser


def _spec_argument(parser) -> None:
    parser.add_argument(
        "--spec",
        metavar="FILE",
        action="append",
        help="a Python file declaring cells with @register (repeatable)",
    )


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        from . import bench

        return bench.main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (
        registry.UnknownVariantError,
        registry.SpecFileError,
        DeclarationError,
        DiagramError,
        PdfError,
        WriteError,
    ) as error:
        print(f"gatesmith: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (gatesmith list | head): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
