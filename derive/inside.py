"""``gatesmith bench --inside``: the kernels measured as users run them, inside PyTorch.

The main benchmark times each library alone; this one times the generated ``lstm`` and ``gru``
through :mod:`derive.torch` with torch in the same process, as a model uses them: a training
step (forward, a loss, backward), a forward with no gradient wanted (``torch.no_grad``), one
step at a time under ``no_grad`` (generation), and the same kernels called directly beside
torch (``kernels``: what the binding adds). Each contender of a case runs in processes of its
own, strictly alternated with the others' ``rounds`` times; a process warms up, then reports
the median of ``repeats`` calls. Start-up is import + build + first call from a warm Numba
cache, each in a fresh process.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

__all__ = ["CASES", "STEP_SHAPES", "run"]

#: (kind, T, B, I, H) of each case; kind "train" (forward, loss, backward), "forward" (no
#: gradient wanted) or "step" (one step of generation, T = 1, under no_grad)
CASES = (("train", 35, 20, 128, 128), ("train", 100, 32, 256, 256),
         ("train", 100, 32, 128, 128), ("forward", 100, 32, 128, 128),
         ("forward", 50, 64, 512, 512)) + tuple(
    ("step", 1, b, h, h) for b in (1, 16) for h in (256, 1024)
)  # fmt: skip
#: the one-step cases
STEP_SHAPES = tuple(case for case in CASES if case[0] == "step")
#: the contenders of every case: the drop-in, torch's own module, and the kernels called
#: directly in a process with torch
CONTENDERS = ("gatesmith", "torch", "kernels")


def _model(name, variant, size, hidden):
    import torch

    from . import torch as binding

    torch.manual_seed(0)
    classes = {"lstm": "LSTM", "gru": "GRU"}
    module = getattr(binding if name == "gatesmith" else torch.nn, classes[variant])
    return module(size, hidden)


def _kernel_step(variant, kind, x, model):
    """The generated kernels called directly on ``model``'s weights (NumPy views)."""
    import numpy as np

    import generated

    cell = generated.load(variant)
    params = {n: getattr(model, n + "_l0").detach().numpy() for n in cell.PARAMS}
    xs = x.numpy()
    if kind == "step":
        states = tuple(np.zeros((xs.shape[1], model.hidden_size), xs.dtype)
                       for _ in cell.STATES)  # fmt: skip
        return lambda: cell.step(xs[0], states, params)
    if kind == "forward":
        return lambda: cell.forward(xs, None, params, tape=False)

    def train():  # the drop-in's work: x is data, and needs no gradient
        ys, finals, tape = cell.forward(xs, None, params)
        cell.backward(np.ones_like(ys), None, tape, input_grad=False)

    return train


def _call(kind, model, x):
    import torch

    if kind == "train":

        def train():
            out, _ = model(x)
            out.sum().backward()

        return train

    def infer():
        with torch.no_grad():
            model(x)

    return infer


def work(task: dict) -> list[float]:
    """One contender of one case in this process: the times of its timed calls."""
    import torch

    kind, steps, batch, size, hidden = task["case"]
    x = torch.randn(steps, batch, size)
    torch.ones(512, 512) @ torch.ones(512, 512)  # torch's pools started, as in a model
    name = task["name"]
    model = _model(
        "torch" if name == "kernels" else name, task["variant"], size, hidden
    )
    if name == "kernels":
        call = _kernel_step(task["variant"], kind, x, model)
    else:
        call = _call(kind, model, x)
    start, calls = time.perf_counter(), 0
    while calls < 5 or (calls < 200 and time.perf_counter() - start < 1.0):
        call()
        calls += 1
    number = max(1, int(0.02 / max((time.perf_counter() - start) / calls, 1e-7)))
    times = []
    for _ in range(task["repeats"]):
        begin = time.perf_counter()
        for _ in range(number):
            call()
        times.append((time.perf_counter() - begin) / number)
    return times


def _startup(name: str, variant: str, environment) -> float:
    """Seconds to import torch, build ``variant``'s module and run a first forward and
    backward, in a fresh process (the Numba cache warm from the runs before)."""
    code = (
        "import time; t = time.perf_counter(); import torch; "
        f"from derive.inside import _model; m = _model({name!r}, {variant!r}, 8, 8); "
        "m(torch.ones(3, 2, 8))[0].sum().backward(); print(time.perf_counter() - t)"
    )
    done = subprocess.run([sys.executable, "-c", code], env=environment,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return float(done.stdout.split()[-1])


def run(variants, rounds, repeats, child, environment, retain=True) -> dict:
    """Every case of every variant, each contender in ``rounds`` processes alternated with
    the others' (``child(task)``: a task's answer from a fresh process), with freed memory
    retained in each (``generated.retain_freed_memory``) where ``retain``; start-up last."""
    rows = []
    for variant in variants:
        for case in CASES:
            medians = {name: [] for name in CONTENDERS}
            for _ in range(rounds):
                for name in CONTENDERS:
                    task = {"kind": "inside", "name": name, "variant": variant,
                            "case": list(case), "repeats": repeats,
                            "retain": retain}  # fmt: skip
                    medians[name].append(statistics.median(child(task)))
            row = {"variant": variant, "case": list(case),
                   "ms": {n: [1e3 * t for t in sorted(m)] for n, m in medians.items()}}  # fmt: skip
            rows.append(row)
            print(format_row(row), flush=True)
    startup = {}
    for variant in variants:
        for name in ("gatesmith", "torch"):
            _startup(name, variant, environment)  # warms the cache
            times = [_startup(name, variant, environment) for _ in range(rounds)]
            startup[f"{variant} {name}"] = statistics.median(times)
    print(json.dumps({"startup_seconds": startup}))
    return {"rows": rows, "startup_seconds": startup, "freed_memory_retained": retain}


def _median(values):
    return statistics.median(values)


def format_row(row) -> str:
    """One case as a line: each contender's median (min-max) in ms, and the ratios."""
    kind, steps, batch, size, hidden = row["case"]
    ms = row["ms"]
    ours, theirs, kernels = (_median(ms[n]) for n in CONTENDERS)
    spread = " ".join(f"{n} {min(v):.3g}-{max(v):.3g}" for n, v in ms.items())
    return (
        f"{row['variant']:5} {kind:7} ({steps}, {batch}, {size}, {hidden}): "
        f"gatesmith {ours:.3g} ms, torch {theirs:.3g} ms, ratio {ours / theirs:.2f}; "
        f"binding over kernels {ours / kernels:.2f} [{spread}]"
    )


def markdown(report) -> str:
    """The cases as a Markdown table."""
    lines = [
        "| variant | case | (T, B, I, H) | gatesmith ms | PyTorch ms | ratio | kernels "
        "alone ms | binding / kernels |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        kind, *shape = row["case"]
        ms = row["ms"]
        ours, theirs, kernels = (_median(ms[n]) for n in CONTENDERS)
        lines.append(
            f"| {row['variant']} | {kind} | {tuple(shape)} | {ours:.3g} | {theirs:.3g} | "
            f"{ours / theirs:.2f} | {kernels:.3g} | {ours / kernels:.2f} |"
        )
    start = report["startup_seconds"]
    kept = "retained" if report.get("freed_memory_retained", True) else "returned"
    lines.append("")
    lines.append(
        f"Freed memory {kept} in every contender's process. Import torch + build + first "
        "forward and backward, warm Numba cache (seconds): "
        + ", ".join(f"{k} {v:.2f}" for k, v in start.items())
    )
    return "\n".join(lines)
