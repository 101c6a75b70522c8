"""The ``gatesmith`` command: list, generate and check the generated kernels."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__, pipeline, registry
from .declare import DeclarationError

__all__ = ["main"]


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
        params = ", ".join(_describe_shape(p) for p in spec.params)
        print(
            f"{spec.name:<{width}}  states: {states}; params: {params}; {spec.citation}"
        )
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


def _report_timings(run: pipeline.Run, verbose: bool) -> None:
    if verbose:
        total = sum(run.timings.values())
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in run.timings.items())
        print(f"{stages}; total {total:.2f}s", file=sys.stderr)


def _cmd_generate(args) -> int:
    out = _out_dir(args)
    run = pipeline.Run()
    specs = pipeline.specs_for(args.variants or None, run)
    pipeline.generate(out, specs, run, prune=not args.variants)
    for path in run.written:
        print(f"wrote {path}")
    for path in run.removed:
        print(f"removed {path} (no declaration left)")
    _report_timings(run, args.verbose)
    return 0


def _cmd_check(args) -> int:
    out = _out_dir(args)
    run = pipeline.Run()
    pipeline.check(out, pipeline.specs_for(None, run), run)
    _report_timings(run, args.verbose)
    if run.diffs:
        sys.stdout.write("".join(run.diffs))
        print(
            f"gatesmith check: {len(run.diffs)} file(s) under {out} are stale; "
            "run `gatesmith generate`",
            file=sys.stderr,
        )
        return 1
    print(f"gatesmith check: {out} matches the declarations")
    return 0


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
    p.add_argument(
        "--out", metavar="DIR", help="output package folder (default: generated/)"
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="print the time of each stage"
    )
    p.set_defaults(run=_cmd_generate)

    p = sub.add_parser(
        "check", help="exit 1 with a diff when the generated files are stale"
    )
    p.add_argument(
        "--out", metavar="DIR", help="generated package folder (default: generated/)"
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="print the time of each stage"
    )
    p.set_defaults(run=_cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (registry.UnknownVariantError, DeclarationError) as error:
        print(f"gatesmith: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
