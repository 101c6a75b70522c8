"""A character model in PyTorch with any generated cell: derive.torch.Recurrent in place of nn.LSTM.

Trains an embedding, a recurrent layer of the cell named on the command line and a linear
readout to predict the next character of a short story shipped beside this file, prints a
sample, saves the loss curve (PNG with matplotlib, JSON always) and measures one training step
against the same cell written as a step-by-step PyTorch loop (the declaration's twin, what a
user writing the cell by hand would run).

    python examples/char_model.py mgu --iterations 400
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import generated
from derive import registry
from derive.torch import Recurrent
from derive.verify.twin import twin_forward

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo import Progress  # noqa: E402

TEXT = Path(__file__).resolve().parent / "data" / "lighthouse.txt"


class CharModel(torch.nn.Module):
    """Embedding, ``layers`` recurrent layers of ``variant``, and a readout to characters."""

    def __init__(self, variant, vocabulary, hidden, layers):
        super().__init__()
        cell = generated.load(variant)
        # a cell that adds its input to its state pointwise (I == H) reads H-wide embeddings
        width = hidden if cell.SIZE_CONSTRAINTS else 32
        sizes = {arg: hidden // 2 for arg in list(cell.SIZES.values())[2:]}
        self.embed = torch.nn.Embedding(vocabulary, width)
        self.rnn = Recurrent(
            variant, width, hidden, num_layers=layers, batch_first=True, **sizes
        )
        self.readout = torch.nn.Linear(self.rnn.output_size, vocabulary)

    def forward(self, codes, hx=None):
        out, hx = self.rnn(self.embed(codes), hx)
        return self.readout(out), hx


class EagerRecurrent(torch.nn.Module):
    """The same layers as ``rnn`` (sharing its parameters), run as a PyTorch loop over time
    steps with autograd: the declaration's twin, unidirectional, from zero states."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn
        self.spec = registry.get(rnn.variant)

    def forward(self, x, hx=None):
        seq = x.transpose(0, 1)
        for layer in range(self.rnn.num_layers):
            params = self.rnn.layer_params(layer)
            zeros = tuple(
                seq.new_zeros(seq.shape[1], params["weight_hh"].shape[1])
                for _ in self.spec.state_names
            )
            seq, _ = twin_forward(self.spec, seq, zeros, params)
        return seq.transpose(0, 1), None


def batches(codes, length, batch, generator):
    """Random windows of ``length + 1`` characters: inputs and next-character targets."""
    starts = torch.randint(0, len(codes) - length - 1, (batch,), generator=generator)
    windows = torch.stack([codes[s : s + length + 1] for s in starts.tolist()])
    return windows[:, :-1], windows[:, 1:]


def train_step(model, optimiser, x, y):
    optimiser.zero_grad()
    logits, _ = model(x)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimiser.step()
    return loss.item()


def sample(model, chars, start, count, generator):
    index = {c: i for i, c in enumerate(chars)}
    model.eval()
    with torch.no_grad():
        codes = torch.tensor([[index[c] for c in start]])
        logits, hx = model(codes)
        text = start
        for _ in range(count):
            probs = torch.softmax(logits[0, -1] / 0.7, dim=0)
            code = int(torch.multinomial(probs, 1, generator=generator))
            text += chars[code]
            logits, hx = model(torch.tensor([[code]]), hx)
    model.train()
    return text


def step_times(model, codes, length, batch, repeats):
    """Median seconds of one training step with the generated kernels and with the eager
    loop, on copies of the model, strictly alternated."""
    fast = copy.deepcopy(model)
    eager = copy.deepcopy(model)
    eager.rnn = EagerRecurrent(eager.rnn)
    contenders = {"gatesmith": fast, "eager PyTorch": eager}
    optimisers = {
        k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in contenders.items()
    }
    times = {k: [] for k in contenders}
    generator = torch.Generator().manual_seed(1)
    for n in range(repeats + 1):
        x, y = batches(codes, length, batch, generator)
        for name, m in contenders.items():
            started = time.perf_counter()
            train_step(m, optimisers[name], x, y)
            if n:  # the first round warms both up
                times[name].append(time.perf_counter() - started)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "variant", nargs="?", default="lstm", help="see `gatesmith list`"
    )
    parser.add_argument("--iterations", type=int, default=400, help="Adam steps (400)")
    parser.add_argument("--hidden", type=int, default=128, help="hidden size (128)")
    parser.add_argument("--layers", type=int, default=1, help="recurrent layers (1)")
    parser.add_argument(
        "--length", type=int, default=64, help="characters per window (64)"
    )
    parser.add_argument("--batch", type=int, default=32, help="windows per step (32)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps each (5)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("demo_output") / "char_model",
        help="output folder",
    )
    args = parser.parse_args(argv)
    if args.variant not in generated.VARIANTS:
        parser.error(
            f"unknown variant {args.variant!r}; known: {', '.join(generated.VARIANTS)}"
        )
    for name in ("iterations", "hidden", "layers", "length", "batch", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    torch.manual_seed(0)
    text = TEXT.read_text(encoding="utf-8")
    chars = sorted(set(text))
    codes = torch.tensor([chars.index(c) for c in text])
    if args.length + 2 > len(codes):
        parser.error(f"--length must be below {len(codes) - 1}, the text's length")
    model = CharModel(args.variant, len(chars), args.hidden, args.layers)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    print(f"{args.variant}: {len(text)} characters, {len(chars)} distinct; {model.rnn}")
    progress = Progress(args.variant, args.iterations)
    losses = []
    for done in range(1, args.iterations + 1):
        x, y = batches(codes, args.length, args.batch, generator)
        losses.append(train_step(model, optimiser, x, y))
        progress.update(done, losses[-1])
    progress.close(losses[-1])
    print("sample:", sample(model, chars, "The ", 160, generator))

    times = step_times(model, codes, args.length, args.batch, args.repeats)
    ratio = times["eager PyTorch"] / times["gatesmith"]
    print(
        f"one training step (batch {args.batch} x {args.length} characters, median of "
        f"{args.repeats}): gatesmith {1e3 * times['gatesmith']:.1f} ms, eager PyTorch loop "
        f"{1e3 * times['eager PyTorch']:.1f} ms: {ratio:.1f}x faster"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    record = args.out / f"{args.variant}.json"
    record.write_text(json.dumps({"variant": args.variant, "loss": losses,
                                  "step_seconds": times}, indent=1) + "\n")  # fmt: skip
    print(f"wrote {record}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return 0
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.plot(range(1, len(losses) + 1), losses, lw=1)
    axes.set(xlabel="Adam step", ylabel="cross-entropy (nats per character)",
             title=f"{args.variant}: next-character loss while training")  # fmt: skip
    axes.grid(alpha=0.3)
    figure.tight_layout()
    image = args.out / f"{args.variant}_loss.png"
    figure.savefig(image, dpi=120)
    print(f"wrote {image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
