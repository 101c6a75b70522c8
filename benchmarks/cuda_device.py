"""The CUDA backend on a GPU, in one run: every variant against autograd, then times.

    python3 benchmarks/cuda_device.py [--variants lstm,gru] [--out table.md]

Run from the checkout on a machine with an NVIDIA GPU, numba-cuda and a CUDA build of PyTorch
(``pip install -e ".[cuda,torch]"`` where they are missing). It checks every variant's CUDA
module against autograd in float64 and float32 (the kernels on the device, the reference
PyTorch's), then times one forward and backward, float32, of ``lstm`` and ``gru`` against
cuDNN's ``nn.LSTM`` and ``nn.GRU``, and of the custom cells ``lstm_peephole`` and ``mgu``
against the same cells written in PyTorch (``derive.by_hand``), eager and under
``torch.compile``: the median of the repetitions, each contender's time and the ratio. Exits
1 when a variant fails its check.

``--simulate`` runs the same under Numba's CUDA simulator on the CPU, at a small size, PyTorch
on the CPU and ``torch.compile`` left out: the suite runs it so, and its times are no times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: (T, B, I = H) timed on a GPU, and the one size of a simulated run
SHAPES = ((100, 64, 256), (100, 64, 512), (50, 128, 1024))
SIMULATED = ((2, 2, 3),)
CUDNN = {"lstm": "LSTM", "gru": "GRU"}
BY_HAND = {"lstm_peephole": "peephole", "mgu": "mgu"}


def check(names) -> int:
    """Every variant of ``names`` against autograd; the number that failed."""
    import generated.cuda
    from derive import registry
    from derive.verify import verify

    failed = 0
    for name in names:
        for report in verify(registry.get(name), generated.cuda.load(name)):
            worst, error = report.worst
            failed += not report.ok
            verdict = "ok" if report.ok else "FAILED"
            print(f"{name:<20}{report.dtype:<9}{error:>10.2e}  {verdict}  {worst}")
    return failed


def _median(run, repeats, synchronize) -> float:
    """The median wall time of ``run`` in milliseconds, after one untimed call."""
    run()
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        synchronize()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def _ours(cell, x, params, device):
    """A forward and backward through the kernels on device arrays (PyTorch's tensors, read
    in place through ``__cuda_array_interface__`` on a GPU)."""
    import numpy as np
    import torch
    from numba import cuda

    steps, batch, _ = x.shape
    flat = x.reshape(steps * batch, -1)

    def on_device(tensor):
        if device == "cuda":
            return cuda.as_cuda_array(tensor.detach())
        return cuda.to_device(tensor.detach().numpy())

    hidden = params["weight_hh"].shape[1]
    states = [torch.zeros(batch, hidden, device=device) for _ in cell.STATES]
    arrays = {
        "seq_x": on_device(flat),
        "lengths": cuda.to_device(np.full(batch, steps)),
    }
    arrays.update((name, on_device(params[name])) for name in cell.PARAMS)
    initial = [on_device(s) for s in states]
    d_seq_y = on_device(torch.ones(steps * batch, hidden, device=device))
    finals = [on_device(s) for s in states]

    def run():
        weights = [arrays[name] for name in cell.PARAMS]
        saved = cell.forward_kernel(
            arrays["seq_x"], arrays["lengths"], *initial, *weights
        )
        tape = {**arrays, **dict(zip(cell._FORWARD_RETURNS, saved, strict=True))}
        cell.backward_kernel(
            d_seq_y, *finals, *(tape[n] for n in cell._BACKWARD_TAPE), True
        )

    return run


def _theirs(cell, kind, x, params, device):
    """A forward and backward through PyTorch: cuDNN's module, or the cell by hand (eager, or
    under ``torch.compile``)."""
    import torch

    from derive import by_hand

    variant = cell.VARIANT
    if kind == "cudnn":
        module = getattr(torch.nn, CUDNN[variant])(x.shape[2], x.shape[2]).to(device)

        def run():
            out, _ = module(x)
            out.sum().backward()

        return run
    loop = getattr(by_hand, BY_HAND[variant])
    if kind == "compile":
        loop = torch.compile(loop)
    leaves = {name: p.detach().requires_grad_() for name, p in params.items()}
    hidden = leaves["weight_hh"].shape[1]
    states = [x.new_zeros(x.shape[1], hidden) for _ in cell.STATES]

    def run():
        loop(x, *states, *leaves.values()).sum().backward()

    return run


def timings(simulate: bool, repeats: int) -> list[tuple]:
    """``(variant, shape, ours, contender, theirs)`` rows, milliseconds."""
    import torch
    from numba import cuda

    import generated.cuda

    device = "cpu" if simulate else "cuda"
    synchronize = cuda.synchronize if simulate else torch.cuda.synchronize
    rows = []
    for steps, batch, size in SIMULATED if simulate else SHAPES:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(steps, batch, size, generator=generator).to(device)
        for variant in (*CUDNN, *BY_HAND):
            cell = generated.cuda.load(variant)
            shapes = cell.param_shapes(size, size)
            params = {name: (0.1 * torch.randn(shape, generator=generator)).to(device)
                      for name, shape in shapes.items()}  # fmt: skip
            ours = _median(_ours(cell, x, params, device), repeats, synchronize)
            kinds = ["cudnn"] if variant in CUDNN else ["eager", "compile"]
            for kind in kinds[:1] if simulate else kinds:
                theirs = _median(_theirs(cell, kind, x, params, device), repeats,
                                 synchronize)  # fmt: skip
                label = f"nn.{CUDNN[variant]}" if kind == "cudnn" else kind
                rows.append((variant, (steps, batch, size, size), ours, label, theirs))
    return rows


def table(rows, device: str) -> str:
    lines = [f"Forward and backward, float32, on {device}; milliseconds, median.", "",
             "| variant | (T, B, I, H) | gatesmith | contender | contender's | ratio |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for variant, shape, ours, kind, theirs in rows:
        lines.append(f"| {variant} | {shape} | {ours:.3f} | {kind} | {theirs:.3f} | "
                     f"{ours / theirs:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", help="comma-separated variants to check (all)")
    parser.add_argument("--simulate", action="store_true",
                        help="run under Numba's CUDA simulator, on the CPU")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, help="write the table of times here too")
    args = parser.parse_args(argv)
    if args.simulate:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before Numba is imported
    sys.path.insert(0, str(ROOT))
    import generated.cuda

    names = args.variants.split(",") if args.variants else generated.cuda.VARIANTS
    failed = check(names)
    if not args.simulate:
        import torch

        if not torch.cuda.is_available():
            print("no CUDA device: checked, not timed", file=sys.stderr)
            return int(bool(failed))
    device = "Numba's CUDA simulator (no times)" if args.simulate else _device_name()
    text = table(timings(args.simulate, 1 if args.simulate else args.repeats), device)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return int(bool(failed))


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name()


if __name__ == "__main__":
    sys.exit(main())
