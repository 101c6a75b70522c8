"""``gatesmith bench``: the generated kernels against PyTorch, TorchScript and JAX, fairly.

Every contender runs one layer's forward and backward (the gradients of the input and of every
weight) on the same problem, in a process of its own: on two cores, the thread pool one library
leaves spinning slows the next, so no two contenders ever share a process. For each problem the
processes of the contenders strictly alternate, ``--rounds`` times; each process warms up, then
times ``--repeats`` calls and reports their median. The table gives, per contender, the minimum,
median and maximum of those per-process medians, and warns when they spread widely.

Contenders (:mod:`derive.contenders`): the generated module; ``torch.nn``'s fused cells for the
four cells PyTorch has; for ``lstm_peephole`` and ``mgu``, the cell written by hand as an eager
PyTorch loop and under TorchScript; and JAX ``lax.scan`` under ``jit``. Each is first checked to
give the generated kernels' gradients, in a process of its own.

The matrix-multiply rate of the BLAS the kernels call is measured too (in its own process), and
each kernel's rate is given as GFLOP/s and as a percent of it; the report names that BLAS and
the kernels it chose for this processor (through ``threadpoolctl``, where it is installed), and
warns when the environment pins OpenBLAS to other kernels (``OPENBLAS_CORETYPE``);
``--native-blas`` takes that pin out of every contender's environment alike. The FLOP count is
that of the weight products: ``2 T B (sum of the weights' sizes)`` forward, three times that
for forward and backward. Thread counts (BLAS, OpenMP, Numba, PyTorch, XLA) are fixed in every process.
PyTorch and JAX are optional (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

from . import contenders as _contenders

__all__ = ["SHAPES", "main", "run"]

#: (T, B, I, H) of the performance table
SHAPES = ((100, 1, 32, 32), (100, 32, 128, 128), (100, 64, 256, 256), (50, 64, 512, 512),
          (1000, 8, 64, 64))  # fmt: skip
QUICK_SHAPES = ((100, 1, 32, 32), (50, 16, 64, 64))
DEFAULT_VARIANTS = ("lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_peephole", "mgu")
#: the spread (max / min of the per-process medians) above which the table warns
SPREAD_WARNING = 1.25
#: variables that choose OpenBLAS's kernels and blocking instead of its detection of the CPU
BLAS_PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
#: the markers between which ``--report`` writes into an existing Markdown file
BEGIN, END = "<!-- gatesmith bench: begin -->", "<!-- gatesmith bench: end -->"
#: the markers of ``--inside``'s table
INSIDE_MARKERS = ("<!-- gatesmith bench --inside: begin -->",
                  "<!-- gatesmith bench --inside: end -->")  # fmt: skip


def _shape(text: str) -> tuple[int, int, int, int]:
    parts = [int(p) for p in text.replace("x", ",").split(",")]
    if len(parts) == 3:
        parts.append(parts[2])
    if len(parts) != 4 or min(parts) < 1:
        raise argparse.ArgumentTypeError(
            f"a shape is T,B,I,H (or T,B,H for I = H) of positive integers; got {text!r}"
        )
    return tuple(parts)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatesmith bench",
        description="Time generated kernels (forward + backward) against PyTorch, "
        "TorchScript and JAX, each contender in its own process.",
    )
    parser.add_argument(
        "variants", nargs="*", help=f"variants (default: {' '.join(DEFAULT_VARIANTS)})"
    )
    parser.add_argument(
        "--shape", type=_shape, action="append", metavar="T,B,I,H",
        help="a problem shape (repeatable; default: the five of the performance table)",
    )  # fmt: skip
    parser.add_argument(
        "--dtype", choices=("float32", "float64", "both"), default="both",
        help="default: both",
    )  # fmt: skip
    parser.add_argument(
        "--rounds", type=int, default=3,
        help="processes per contender and problem, alternated (default 3)",
    )  # fmt: skip
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed calls per process (default 5)"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="threads for everyone (2)"
    )
    parser.add_argument(
        "--out", type=Path, default=None,
        help="folder for bench.json and bench.png (default: benchmarks/results of the "
        "source checkout; outside a checkout, required)",
    )  # fmt: skip
    parser.add_argument(
        "--report", type=Path, metavar="FILE.md",
        help="write the machine and the table into FILE.md between gatesmith's markers "
        "(a new file, or one with the markers)",
    )  # fmt: skip
    parser.add_argument(
        "--native-blas", action="store_true",
        help=f"remove {' and '.join(BLAS_PINS)} from every contender's environment, so that "
        "OpenBLAS chooses its kernels for this processor",
    )  # fmt: skip
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--no-jax", action="store_true", help="leave JAX out")
    parser.add_argument(
        "--startup", action="store_true",
        help="also time import + first call, from a cold and from a warm Numba cache",
    )  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true", help="two small shapes, two rounds of three"
    )
    parser.add_argument(
        "--inside", action="store_true",
        help="instead: lstm and gru as users run them, inside PyTorch (training step, "
        "forward without gradients, one step, start-up; derive.inside)",
    )  # fmt: skip
    parser.add_argument(
        "--no-retain-memory", dest="retain_memory", action="store_false",
        help="leave glibc's defaults (see generated.retain_freed_memory)",
    )  # fmt: skip
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # one task, in a child
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments; run the benchmark, or (``--worker``) one timed task of it."""
    args = _parser().parse_args(argv)
    if args.threads < 1 or args.repeats < 1 or args.rounds < 1:
        raise SystemExit(
            "gatesmith bench: --threads, --repeats and --rounds must be at least 1"
        )
    if args.worker:
        print(json.dumps(_work(json.loads(args.worker))))
        return 0
    return run(args)


# -- the children -----------------------------------------------------------------------------


def _environment(threads: int, native_blas: bool = False) -> dict[str, str]:
    """The children's environment: thread counts fixed; with ``native_blas``, no pin of
    OpenBLAS's kernels."""
    n = str(threads)
    env = {k: v for k, v in os.environ.items() if not (native_blas and k in BLAS_PINS)}
    env.update({
        "OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n,
        "NUMBA_NUM_THREADS": n,
        "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={n}",
    })  # fmt: skip
    return env


def _child(task: dict, threads: int, native_blas: bool = False):
    """Run ``task`` in a fresh process with the thread counts fixed; its JSON answer."""
    command = [sys.executable, "-m", "derive.bench", "--worker", json.dumps(task),
               "--threads", str(threads)]  # fmt: skip
    done = subprocess.run(
        command, env=_environment(threads, native_blas), capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(
            f"gatesmith bench: a child process failed on {task}:\n{done.stderr[-2000:]}"
        )
    return json.loads(done.stdout.splitlines()[-1])


def _work(task: dict):
    """One task in this process: ``time`` a contender, ``check`` gradients, the ``matmul`` or
    ``fma`` rate, or name the ``blas``."""
    import numpy as np

    import generated

    if task["kind"] == "matmul":
        return _matmul_rate(np.dtype(task["dtype"]), task["repeats"])
    if task["kind"] == "fma":
        from .peak import fma_rate

        return fma_rate(np.dtype(task["dtype"]), task["threads"], task["repeats"])
    if task["kind"] == "blas":
        return _blas()
    if task.get("retain"):  # every contender's process alike, torch's own included
        generated.retain_freed_memory()
    if task["kind"] == "inside":
        from .inside import work

        return work(task)
    cell = generated.load(task["variant"])
    if task["kind"] == "check":
        small = lambda dtype: Problem(cell, (6, 3, 4, 5), dtype)  # noqa: E731
        return _contenders.check(small, task["names"])
    problem = Problem(cell, tuple(task["shape"]), np.dtype(task["dtype"]))
    step = _contenders.build(task["name"], problem, task["threads"])
    # warm: compiled (TorchScript profiles its first calls, then optimises), every pool awake
    start, calls = time.perf_counter(), 0
    while calls < 3 or (calls < 20 and time.perf_counter() - start < 1.0):
        step()
        calls += 1
    times = []
    for _ in range(task["repeats"]):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


class Problem:
    """Random input, zero initial states, parameters and an output gradient."""

    def __init__(self, cell, shape, dtype):
        import numpy as np

        from .verify import sizes_for

        steps, batch, input_size, hidden = shape
        # a cell's own sizes (proj_size) are half of H; I = H where the cell needs it
        sizes = sizes_for(cell, input_size, hidden, extra=max(1, hidden // 2))
        self.cell, self.shape, self.dtype = cell, shape, np.dtype(dtype)
        rng = np.random.default_rng(0)
        self.params = cell.init_params(dtype=dtype, seed=0, **sizes)
        self.x = rng.standard_normal((steps, batch, sizes["input_size"])).astype(dtype)
        by_name = {name: sizes[argument] for name, argument in cell.SIZES.items()}
        out = by_name[cell.OUTPUT_SIZE]
        self.d_out = rng.standard_normal((steps, batch, out)).astype(dtype)

    def flops(self) -> float:
        """Forward plus backward: three times the forward's weight products."""
        steps, batch = self.x.shape[:2]
        weights = sum(
            v.size
            for k, v in self.params.items()
            if self.cell.PARAM_BLOCKS[k][0] == "weight"
        )
        return 3 * 2 * steps * batch * weights


def _matmul_rate(dtype, repeats) -> float:
    """GFLOP/s of a large matrix product through the BLAS that Numba calls (SciPy's)."""
    import numpy as np
    from scipy.linalg import blas

    n = 1536
    rng = np.random.default_rng(0)
    a, b = (np.asfortranarray(rng.standard_normal((n, n)), dtype) for _ in range(2))
    gemm = blas.get_blas_funcs("gemm", (a, b))
    gemm(1.0, a, b)
    times = []
    for _ in range(max(3, repeats)):
        start = time.perf_counter()
        gemm(1.0, a, b)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def _blas() -> list[dict[str, str]] | None:
    """The BLAS libraries loaded once NumPy and the BLAS that Numba calls (SciPy's) are: the
    package that ships each, its name, version, the kernels chosen and the threads; None
    without ``threadpoolctl``."""
    import numpy  # noqa: F401
    import scipy.linalg.cython_blas  # noqa: F401

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    keys = ("internal_api", "version", "architecture", "num_threads")
    found = [{"package": _shipped_by(info.get("filepath", "")),
              **{k: str(info.get(k)) for k in keys}}
             for info in threadpool_info() if info.get("user_api") == "blas"]  # fmt: skip
    return [dict(t) for t in dict.fromkeys(tuple(sorted(f.items())) for f in found)]


def _shipped_by(filepath: str) -> str:
    """The package whose folder holds a shared library (``numpy.libs``, ``scipy.libs``, a
    folder of site-packages), else ``system``."""
    parts = Path(filepath).parts
    for before, part in pairwise(parts[:-1]):
        if part.endswith(".libs"):
            return part.removesuffix(".libs")
        if before == "site-packages":
            return part
    return "system"


def _describe_blas(blas) -> str:
    if blas is None:
        return "BLAS kernels not known (install threadpoolctl)"
    if not blas:
        return "no BLAS library found"
    return ", ".join(
        f"{b['package']}: {b['internal_api']} {b['version']} ({b['architecture']} kernels, "
        f"{b['num_threads']} threads)"
        for b in blas
    )


def _pins(native_blas: bool) -> dict[str, str]:
    """The variables of ``BLAS_PINS`` the children see."""
    return (
        {} if native_blas else {k: os.environ[k] for k in BLAS_PINS if k in os.environ}
    )


def _available(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _startup(variant: str) -> dict[str, float]:
    """Seconds for ``import`` plus a first forward and backward, in fresh processes: with an
    empty Numba cache (a cold compile), then again (from the warm cache)."""
    import tempfile

    code = (
        "import time; t = time.perf_counter(); import numpy as np; "
        f"import generated.{variant} as c; "
        "p = c.init_params(**{a: 4 for a in c.SIZES.values()}); "
        "x = np.ones((3, 2, 4), np.float32); y, f, tp = c.forward(x, None, p); "
        "c.backward(y, None, tp); print(time.perf_counter() - t)"
    )
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold", "warm"):
            result = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True,
                check=True,
            )  # fmt: skip
            out[label] = float(result.stdout.split()[-1])
    return out


def _out(args) -> Path:
    if args.out is not None:
        return args.out
    from .pipeline import default_out

    generated = default_out()
    if generated is None:
        raise SystemExit("gatesmith bench: no source checkout found; pass --out DIR")
    return generated.parent / "benchmarks" / "results"


def _machine_and_rates(args, dtypes, repeats) -> tuple[dict, dict[str, float]]:
    """The machine with the BLAS its children see and its multiply-add peak per dtype (on
    every thread), and that BLAS's matmul rate per dtype."""

    def rate(kind, dt):
        task = {"kind": kind, "dtype": dt, "repeats": repeats, "threads": args.threads}
        return _child(task, args.threads, args.native_blas)

    rates = {dt: rate("matmul", dt) for dt in dtypes}
    machine = _machine(args.threads)
    machine["fma_gflops"] = {dt: rate("fma", dt) for dt in dtypes}
    machine["blas"] = _child({"kind": "blas"}, args.threads, args.native_blas)
    machine["blas_pins"] = _pins(args.native_blas)
    return machine, rates


def _machine(threads: int) -> dict:
    """The processor by name and its vector extensions, for the report."""
    name, flags, fields = platform.processor() or platform.machine(), set(), {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    name = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                elif key in ("cpu family", "model"):
                    fields.setdefault(key, value.strip())
    except OSError:
        pass
    if len(fields) == 2:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    extensions = [f for f in ("avx2", "fma", "avx512f") if f in flags]
    return {"processor": name, "extensions": extensions, "cpus": os.cpu_count(),
            "threads": threads, "python": platform.python_version()}  # fmt: skip


def run(args) -> int:
    """The benchmark: the checks, then every problem, each contender in its own processes."""
    import numpy as np

    import generated

    variants = args.variants or list(DEFAULT_VARIANTS)
    unknown = [v for v in variants if v not in generated.VARIANTS]
    if unknown:
        print(f"gatesmith bench: unknown variants {unknown}", file=sys.stderr)
        return 2
    out = _out(args)
    if args.inside:
        return _run_inside(args, variants, out)
    shapes = args.shape or (QUICK_SHAPES if args.quick else SHAPES)
    rounds, repeats = (2, 3) if args.quick else (args.rounds, args.repeats)
    dtypes = ("float32", "float64") if args.dtype == "both" else (args.dtype,)
    use_torch = not args.no_torch and _available("torch")
    use_jax = not args.no_jax and _available("jax")
    names = {v: _contenders.contenders_for(v, use_torch, use_jax) for v in variants}
    checks = {}
    for variant in variants:
        if len(names[variant]) > 1:
            checks[variant] = _child(
                {"kind": "check", "variant": variant, "names": names[variant]}, 1,
                args.native_blas,
            )  # fmt: skip
            worst = max(checks[variant].values())
            print(
                f"{variant}: every contender's gradients agree (relative {worst:.1g})"
            )
    machine, rates = _machine_and_rates(args, dtypes, repeats)
    print(_preamble(machine, rates, rounds, repeats, args.retain_memory))
    warning = _pin_warning(machine)
    if warning:
        print(warning)
    rows = []
    for variant in variants:
        cell = generated.load(variant)
        for dt in dtypes:
            for shape in shapes:
                problem = Problem(cell, shape, np.dtype(dt))
                task = {"kind": "time", "variant": variant, "dtype": dt,
                        "shape": list(shape), "repeats": repeats, "threads": args.threads,
                        "retain": args.retain_memory}  # fmt: skip
                limits = (rates[dt], machine["fma_gflops"][dt])
                rows.append(_measure(problem, names[variant], task, limits, rounds,
                                     args.native_blas))  # fmt: skip
                print(_format_row(rows[-1]), flush=True)
    print(LEGEND)
    spread = [r for r in rows if max(r["spread"].values()) > SPREAD_WARNING]
    if spread:
        print(
            f"warning: in {len(spread)} of {len(rows)} rows a contender's process medians "
            f"spread by more than {SPREAD_WARNING}x (marked !); the machine was busy or "
            "noisy: rerun with more --rounds, or on a quieter machine"
        )
    report = {
        "rounds": rounds, "repeats": repeats, "matmul_gflops": rates,
        "freed_memory_retained": args.retain_memory, "machine": machine,
        "versions": _versions(use_torch, use_jax), "checks": checks, "results": rows,
    }  # fmt: skip
    if args.startup:
        report["startup"] = {variant: _report_startup(variant) for variant in variants}
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path}")
    image = out / "bench.png"
    if _plot(rows, image):
        print(f"wrote {image}")
    if args.report:
        _write_report(args.report, report)
        print(f"wrote {args.report}")
    return 0


def _run_inside(args, variants, out) -> int:
    """``--inside``: :mod:`derive.inside`'s cases, written to ``inside.json`` (and the
    ``--report`` file)."""
    from . import inside

    if not _available("torch"):
        print(
            "gatesmith bench --inside: needs PyTorch (the bench extra)", file=sys.stderr
        )
        return 2
    variants = [v for v in variants if v in ("lstm", "gru")] or ["lstm", "gru"]
    rounds, repeats = (2, 3) if args.quick else (args.rounds, args.repeats)
    machine = _machine(args.threads)
    print(f"processor: {machine['processor']}; {args.threads} threads")

    def child(task):
        return _child(task, args.threads, args.native_blas)

    environment = _environment(args.threads, args.native_blas)
    report = inside.run(
        variants, rounds, repeats, child, environment, args.retain_memory
    )
    report.update(machine=machine, rounds=rounds, repeats=repeats,
                  versions=_versions(True, False))  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    path = out / "inside.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(inside.markdown(report))
    print(f"wrote {path}")
    if args.report:
        text = f"Processor: {machine['processor']}, {args.threads} threads.\n\n"
        _write_between(
            args.report, lambda: text + inside.markdown(report), *INSIDE_MARKERS
        )
        print(f"wrote {args.report}")
    return 0


LEGEND = """\
columns: each contender's time in ms, min / median / max over its processes (the median of
  each process's timed calls); "gatesmith / best other": gatesmith's median over the fastest
  other contender's (below 1, gatesmith is faster; 0.5: twice as fast); GFLOP/s, "of mm" and
  "of peak": gatesmith's rate on the weight products, and that rate over the measured
  matrix-multiply rate and over the measured multiply-add peak of every thread; limit: the
  weight products' FLOPs at the BLAS's matrix-multiply rate (the per-step products, which
  run by register tiles, can beat that rate; nothing beats the peak); "!": a spread
  (max / min) over 1.25"""


def _preamble(machine, rates, rounds, repeats, retained) -> str:
    extensions = ", ".join(machine["extensions"]) or "no AVX2"
    pins = machine.get("blas_pins") or {}
    pinned = (
        "; pinned by " + ", ".join(f"{k}={v}" for k, v in pins.items()) if pins else ""
    )
    blas = _describe_blas(machine["blas"]) if "blas" in machine else None
    return (
        f"{machine['processor']} ({extensions}), {machine['cpus']} CPUs, "
        f"{machine['threads']} threads per process; "
        + (f"BLAS: {blas}{pinned}; " if blas else "")
        + "matmul rate "
        + ", ".join(f"{dt} {r:.0f} GFLOP/s" for dt, r in rates.items())
        + "; multiply-add peak "
        + ", ".join(f"{dt} {r:.0f}" for dt, r in machine["fma_gflops"].items())
        + " GFLOP/s"
        + f"; {rounds} alternated processes per contender, median of {repeats} calls each; "
        f"freed memory {'retained' if retained else 'returned'} in every process"
    )


def _pin_warning(machine) -> str | None:
    """A warning when the environment chose OpenBLAS's kernels instead of its CPU detection."""
    pins = machine.get("blas_pins") or {}
    if not pins:
        return None
    return (
        "warning: " + " and ".join(pins) + " pin OpenBLAS's kernels, so the generated "
        "kernels' products (and NumPy's) may run slower than this processor allows, while "
        "PyTorch's oneDNN and JAX's XLA choose their own; --native-blas removes the pin "
        "for every contender"
    )


def _measure(problem, names, task, limits, rounds, native_blas) -> dict:
    """Time one problem: ``rounds`` processes per contender, strictly alternated, the order
    rotating each round. The row of the report; ``limits`` are the matmul rate and the
    multiply-add peak, in GFLOP/s."""
    times = {name: [] for name in names}
    for round_ in range(rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            times[name].append(
                _child({**task, "name": name}, task["threads"], native_blas)
            )
    medians = {k: [statistics.median(t) for t in v] for k, v in times.items()}
    stats = {k: {"min": min(v), "median": statistics.median(v), "max": max(v)}
             for k, v in medians.items()}  # fmt: skip
    ours = stats["gatesmith"]["median"]
    flops = problem.flops()
    row = {
        "variant": problem.cell.VARIANT, "dtype": problem.dtype.name,
        "shape": list(problem.shape), "flops": flops, "times": times, "stats": stats,
        "spread": {k: v["max"] / v["min"] for k, v in stats.items()},
        "ratio": {k: ours / v["median"] for k, v in stats.items() if k != "gatesmith"},
        "gflops": flops / ours / 1e9, "limit": flops / (limits[0] * 1e9),
    }  # fmt: skip
    row["percent_of_matmul"] = 100 * row["gflops"] / limits[0]
    row["percent_of_peak"] = 100 * row["gflops"] / limits[1]
    return row


def _report_startup(variant) -> dict:
    seconds = _startup(variant)
    print(
        f"start-up of {variant}: cold compile {seconds['cold']:.2f} s, "
        f"warm cache {seconds['warm']:.2f} s (import + first forward and backward)"
    )
    return seconds


def _ms(seconds) -> str:
    return f"{seconds * 1e3:.3g}"


def _cells(row) -> list[str]:
    """The report's cells of one row: each contender's min / median / max, then the ratios."""
    out = []
    for name, v in row["stats"].items():
        mark = "!" if row["spread"][name] > SPREAD_WARNING else ""
        out.append(
            f"{name} {_ms(v['min'])} / {_ms(v['median'])} / {_ms(v['max'])}{mark}"
        )
    best = max(row["ratio"].values(), default=None)
    out.append("-" if best is None else f"{best:.2f}x")
    out += [
        f"{row['gflops']:.0f}",
        f"{row['percent_of_matmul']:.0f}%",
        f"{row['percent_of_peak']:.0f}%",
        _ms(row["limit"]),
    ]
    return out


def _format_row(row) -> str:
    cells = _cells(row)
    return (
        f"{row['variant']:<14}{row['dtype']:<8}{','.join(map(str, row['shape'])):<16}"
        + "  ".join(cells[:-5])
        + f"  | gatesmith / best other {cells[-5]}, {cells[-4]} GFLOP/s ({cells[-3]} of mm, "
        f"{cells[-2]} of peak), limit {cells[-1]} ms"
    )


def _markdown(report) -> str:
    """The machine and the table, in Markdown."""
    machine, rates = report["machine"], report["matmul_gflops"]
    lines = [
        "Measured by `gatesmith bench` on " + _preamble(
            machine, rates, report["rounds"], report["repeats"],
            report["freed_memory_retained"],
        ) + ". " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".",
        "",
        "Times in ms, forward plus backward of one layer: min / median / max over the "
        "processes of each contender. *gatesmith / best other*: gatesmith's median over the "
        "fastest other contender's (below 1, gatesmith is faster). *Limit*: the "
        "weight products' FLOPs at the measured matrix-multiply rate. *% of FMA peak*: "
        "gatesmith's rate over the multiply-add peak, measured with every thread running "
        "independent chains of fused multiply-adds on the widest vectors (what no kernel "
        "beats, whatever its BLAS).",
        "",
        "| variant | dtype | T, B, I, H | gatesmith | others | gatesmith / best other "
        "| GFLOP/s | % of matmul | % of FMA peak | limit (ms) |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for row in report["results"]:
        cells = _cells(row)
        shape = ", ".join(map(str, row["shape"]))
        lines.append(
            f"| {row['variant']} | {row['dtype']} | {shape} | "
            f"{cells[0].removeprefix('gatesmith ')} | {'; '.join(cells[1:-5]) or '-'} | "
            + " | ".join(cells[-5:])
            + " |"
        )
    return "\n".join(lines) + "\n"


def _write_report(path: Path, report) -> None:
    """Write the table between the markers of ``path``."""
    _write_between(path, lambda: _markdown(report))


def _write_between(path: Path, render, begin=BEGIN, end=END) -> None:
    """Write the text ``render()`` gives between the markers ``begin`` and ``end`` of
    ``path`` (a new file holds only them and it); a file without both markers is not this
    command's to change (and nothing is rendered for it)."""
    text = path.read_text(encoding="utf-8") if path.exists() else f"{begin}{end}\n"
    if (
        text.count(begin) != 1
        or text.count(end) != 1
        or text.index(begin) > text.index(end)
    ):
        raise SystemExit(
            f"gatesmith bench: {path} exists without one pair of the markers {begin} ... "
            f"{end}; add them where the table goes, or pass a new file to --report"
        )
    block = f"{begin}\n{render().rstrip()}\n{end}"
    head, rest = text.split(begin)
    path.write_text(head + block + rest.split(end, 1)[1], encoding="utf-8")


def _versions(use_torch, use_jax) -> dict[str, str]:
    import numba
    import numpy

    out = {"numpy": numpy.__version__, "numba": numba.__version__}
    if use_torch:
        import torch

        out["torch"] = torch.__version__
    if use_jax:
        import jax

        out["jax"] = jax.__version__
    return out


def _plot(rows, path) -> bool:
    """Each other contender's median over gatesmith's, per problem, log scale; False without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels = [
        f"{r['variant']} {r['dtype'][-2:]}\n{','.join(map(str, r['shape']))}"
        for r in rows
    ]
    others = sorted({k for r in rows for k in r["ratio"]})
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(rows)), 4.5))
    width = 0.8 / max(1, len(others))
    for n, name in enumerate(others):
        values = [r["ratio"].get(name, float("nan")) for r in rows]
        positions = [p - 0.4 + (n + 0.5) * width for p in range(len(rows))]
        ax.bar(positions, values, width=width, label=name)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("gatesmith's time / other's (below 1: gatesmith faster)")
    ax.set_title("Forward + backward of one layer, each contender in its own processes")
    ax.set_xticks(list(range(len(rows))), labels, rotation=90, fontsize=7)
    if others:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
    return True


if __name__ == "__main__":
    sys.exit(main())
