"""``gatesmith bench``: generated kernels against PyTorch and JAX, and against the matmul limit.

Every contender runs forward and backward (the gradients of the input and of every weight) on
the same problem; the contenders take turns within each repeat, so that a slow spell of a shared
machine hits them alike, and medians are compared. The matrix-multiply rate is measured in the
same run, and each kernel's rate is given as GFLOP/s and as a percent of it. The FLOP count is
that of the weight products: ``2 T B (sum of the weights' sizes)`` forward, three times that for
forward and backward (``2 T B G H (I + H)`` forward for a cell with ``G`` gate blocks).

The benchmark runs in a child process whose thread counts (BLAS, OpenMP, Numba, PyTorch, XLA)
are fixed before anything loads. PyTorch and JAX are optional (the ``bench`` extra); without
them the table has the generated kernels and the limit only.
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
from pathlib import Path

__all__ = ["SHAPES", "main", "run"]

#: (T, B, I, H) of the performance table
SHAPES = ((100, 1, 32, 32), (100, 32, 128, 128), (100, 64, 256, 256), (50, 64, 512, 512),
          (1000, 8, 64, 64))  # fmt: skip
QUICK_SHAPES = ((100, 1, 32, 32), (50, 16, 64, 64))
DEFAULT_VARIANTS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
TORCH_CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
_CHILD = "GATESMITH_BENCH_CHILD"


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
        description="Time generated kernels (forward + backward) against PyTorch and JAX.",
    )
    parser.add_argument(
        "variants", nargs="*", help=f"variants (default: {' '.join(DEFAULT_VARIANTS)})"
    )
    parser.add_argument(
        "--shape", type=_shape, action="append", metavar="T,B,I,H",
        help="a problem shape (repeatable; default: the five of the performance table)",
    )  # fmt: skip
    parser.add_argument(
        "--dtype",
        choices=("float32", "float64", "both"),
        default="both",
        help="default: both",
    )
    parser.add_argument(
        "--repeats", type=int, default=7, help="timed repeats (default 7)"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="threads for everyone (2)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results"),
        help="folder for bench.json and bench.png (default: benchmarks/results)",
    )  # fmt: skip
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--no-jax", action="store_true", help="leave JAX out")
    parser.add_argument(
        "--startup", action="store_true",
        help="also time import + first call, from a cold and from a warm Numba cache",
    )  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true", help="two small shapes, three repeats"
    )
    parser.add_argument(
        "--no-retain-memory", dest="retain_memory", action="store_false",
        help="leave glibc's defaults (see generated.retain_freed_memory)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, then run the benchmark in a child with the thread counts fixed."""
    args = _parser().parse_args(argv)
    if args.threads < 1 or args.repeats < 1:
        raise SystemExit("gatesmith bench: --threads and --repeats must be at least 1")
    if os.environ.get(_CHILD) == "1":
        return run(args)
    n = str(args.threads)
    env = dict(os.environ)
    env.update({
        _CHILD: "1", "OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n,
        "NUMBA_NUM_THREADS": n,
        "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={n}",
    })  # fmt: skip
    argv = sys.argv[1:] if argv is None else argv
    return subprocess.call([sys.executable, "-m", "derive.bench", *argv], env=env)


# -- the contenders ---------------------------------------------------------------------------


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
        out = by_name[cell.STATE_SIZES[cell.OUTPUT]]
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


def _gatesmith(problem):
    cell = problem.cell

    def step():
        ys, _, tape = cell.forward(problem.x, None, problem.params)
        cell.backward(problem.d_out, None, tape)

    return step


def _torch(problem, variant, threads):
    import torch

    torch.set_num_threads(threads)
    dtype = torch.float64 if problem.dtype.itemsize == 8 else torch.float32
    input_size, hidden = problem.x.shape[2], problem.d_out.shape[2]
    kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(variant)
    if kind is None:
        module = torch.nn.RNN(
            input_size, hidden, nonlinearity=variant.removeprefix("rnn_")
        )
    else:
        module = kind(input_size, hidden)
    module = module.to(dtype)
    module.load_state_dict(
        {f"{k}_l0": torch.tensor(v) for k, v in problem.params.items()}
    )
    x = torch.tensor(problem.x, requires_grad=True)
    d_out = torch.tensor(problem.d_out)

    def step():
        module.zero_grad(set_to_none=True)
        x.grad = None
        out, _ = module(x)
        out.backward(d_out)

    return step


def _jax(problem, variant):
    import jax
    import jax.numpy as jnp

    if problem.dtype.itemsize == 8:
        jax.config.update("jax_enable_x64", True)
    params = {k: jnp.asarray(v) for k, v in problem.params.items()}
    x, d_out = jnp.asarray(problem.x), jnp.asarray(problem.d_out)
    hidden = problem.d_out.shape[2]

    def cell_step(p, carry, xt):
        h = carry[0]
        gi = xt @ p["weight_ih"].T + p["bias_ih"]
        gh = h @ p["weight_hh"].T + p["bias_hh"]
        if variant == "lstm":
            i, f, g, o = jnp.split(gi + gh, 4, axis=-1)
            c = jax.nn.sigmoid(f) * carry[1] + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h
        if variant == "gru":
            ir, iz, in_ = jnp.split(gi, 3, axis=-1)
            hr, hz, hn = jnp.split(gh, 3, axis=-1)
            r, z = jax.nn.sigmoid(ir + hr), jax.nn.sigmoid(iz + hz)
            n = jnp.tanh(in_ + r * hn)
            h = (1 - z) * n + z * h
            return (h,), h
        act = jnp.tanh if variant == "rnn_tanh" else jax.nn.relu
        h = act(gi + gh)
        return (h,), h

    states = 2 if variant == "lstm" else 1

    def loss(p, x):
        zeros = tuple(jnp.zeros((x.shape[1], hidden), x.dtype) for _ in range(states))
        _, ys = jax.lax.scan(lambda c, xt: cell_step(p, c, xt), zeros, x)
        return jnp.sum(ys * d_out)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))

    def step():
        jax.block_until_ready(grad(params, x))

    return step


def _matmul_rate(dtype, repeats) -> float:
    """GFLOP/s of a large matrix product through NumPy's BLAS (the library Numba calls)."""
    import numpy as np

    n = 1536
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    np.dot(a, b)
    times = []
    for _ in range(max(3, repeats)):
        start = time.perf_counter()
        np.dot(a, b)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def _available(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _time(contenders: dict, repeats: int) -> dict[str, list[float]]:
    """Each repeat times one call of every contender in turn. A contender whose call is short
    first makes an untimed call in its turn, so that its thread pool is awake (an idle OpenMP
    pool sleeps while the others run, and waking it would be charged to the timed call)."""
    short = {}
    for name, step in contenders.items():  # compile and warm up
        step()
        start = time.perf_counter()
        step()
        short[name] = time.perf_counter() - start < 0.05
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, step in contenders.items():
            if short[name]:
                step()
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return times


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


def run(args) -> int:
    """The benchmark itself (in the child process)."""
    import numpy as np

    import generated

    variants = args.variants or list(DEFAULT_VARIANTS)
    unknown = [v for v in variants if v not in generated.VARIANTS]
    if unknown:
        print(f"gatesmith bench: unknown variants {unknown}", file=sys.stderr)
        return 2
    shapes = args.shape or (QUICK_SHAPES if args.quick else SHAPES)
    repeats = 3 if args.quick else args.repeats
    dtypes = ("float32", "float64") if args.dtype == "both" else (args.dtype,)
    use_torch = not args.no_torch and _available("torch")
    use_jax = not args.no_jax and _available("jax")
    if use_torch:
        import torch

        torch.set_num_threads(args.threads)
    retained = generated.retain_freed_memory() if args.retain_memory else False
    rates = {dt: _matmul_rate(np.dtype(dt), repeats) for dt in dtypes}
    print(
        f"threads {args.threads}; matmul rate "
        + ", ".join(f"{dt} {r:.0f} GFLOP/s" for dt, r in rates.items())
        + f"; torch {'yes' if use_torch else 'no'}, jax {'yes' if use_jax else 'no'}; "
        + f"freed memory {'retained' if retained else 'returned'} (all contenders); "
        f"median of {repeats}, forward + backward"
    )
    header = (
        f"{'variant':<14}{'dtype':<8}{'T,B,I,H':<17}{'gatesmith':>11}{'torch':>11}{'jax':>11}"
        f"{'vs torch':>9}{'vs jax':>8}{'GFLOP/s':>9}{'% mm':>6}{'limit':>10}"
    )
    print(header)
    rows = []
    for variant in variants:
        cell = generated.load(variant)
        for dt in dtypes:
            for shape in shapes:
                problem = Problem(cell, shape, np.dtype(dt))
                others = (
                    use_torch and variant in TORCH_CELLS,
                    use_jax and variant in TORCH_CELLS,
                )
                rows.append(
                    _measure(problem, variant, others, rates[dt], args, repeats)
                )
                print(_format_row(rows[-1]), flush=True)
    report = {
        "threads": args.threads, "repeats": repeats, "matmul_gflops": rates,
        "freed_memory_retained": retained,
        "machine": {"processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version()},
        "versions": _versions(use_torch, use_jax), "results": rows,
    }  # fmt: skip
    if args.startup:
        report["startup"] = {variant: _report_startup(variant) for variant in variants}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "bench.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path}")
    image = args.out / "bench.png"
    if _plot(rows, image):
        print(f"wrote {image}")
    return 0


def _measure(problem, variant, others, rate, args, repeats) -> dict:
    """Time one problem for every contender; the row of the report."""
    use_torch, use_jax = others
    contenders = {"gatesmith": _gatesmith(problem)}
    if use_torch:
        contenders["torch"] = _torch(problem, variant, args.threads)
    if use_jax:
        contenders["jax"] = _jax(problem, variant)
    times = _time(contenders, repeats)
    medians = {k: statistics.median(v) for k, v in times.items()}
    flops = problem.flops()
    row = {
        "variant": variant, "dtype": problem.dtype.name, "shape": list(problem.shape),
        "flops": flops, "times": times, "medians": medians,
        "gflops": flops / medians["gatesmith"] / 1e9, "limit": flops / (rate * 1e9),
    }  # fmt: skip
    row["percent_of_matmul"] = 100 * row["gflops"] / rate
    for other in ("torch", "jax"):
        if other in medians:
            row[f"ratio_{other}"] = medians["gatesmith"] / medians[other]
    return row


def _report_startup(variant) -> dict:
    seconds = _startup(variant)
    print(
        f"start-up of {variant}: cold compile {seconds['cold']:.2f} s, "
        f"warm cache {seconds['warm']:.2f} s (import + first forward and backward)"
    )
    return seconds


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.2f} ms"


def _format_row(row) -> str:
    m = row["medians"]
    ratio = {k: (f"{row[f'ratio_{k}']:.2f}x" if f"ratio_{k}" in row else "-")
             for k in ("torch", "jax")}  # fmt: skip
    return (
        f"{row['variant']:<14}{row['dtype']:<8}{','.join(map(str, row['shape'])):<17}"
        f"{_ms(m['gatesmith']):>11}{_ms(m.get('torch')):>11}{_ms(m.get('jax')):>11}"
        f"{ratio['torch']:>9}{ratio['jax']:>8}{row['gflops']:>9.1f}"
        f"{row['percent_of_matmul']:>5.0f}%{_ms(row['limit']):>10}"
    )


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
    """Time relative to PyTorch (and JAX) per problem, log scale; False without matplotlib."""
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
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(rows)), 4.5))
    positions = range(len(rows))
    for offset, key, name in (
        (-0.2, "ratio_torch", "vs PyTorch"),
        (0.2, "ratio_jax", "vs JAX"),
    ):
        values = [r.get(key, float("nan")) for r in rows]
        ax.bar([p + offset for p in positions], values, width=0.4, label=name)
    limits = [r["limit"] / r["medians"]["torch"] if "torch" in r["medians"] else float("nan")
              for r in rows]  # fmt: skip
    ax.scatter(
        positions,
        limits,
        marker="_",
        s=200,
        color="black",
        label="matmul limit vs PyTorch",
    )
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("gatesmith time / other's time (lower is faster)")
    ax.set_xticks(list(positions), labels, rotation=90, fontsize=7)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
    return True


if __name__ == "__main__":
    sys.exit(main())
