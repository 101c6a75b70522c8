"""The classic word-level language model, with gatesmith's LSTM in place of torch's.

An embedding, a two-layer LSTM and a decoder tied to the embedding, trained by plain SGD with
``clip_grad_norm_`` and truncated backpropagation through time (the state carried from one
chunk to the next, detached), as PyTorch's word-language-model example trains it. The only
line that differs between the two backends is the import of ``LSTM``::

    python examples/word_language_model.py                     # derive.torch.LSTM
    python examples/word_language_model.py --backend torch     # torch.nn.LSTM

It then saves the whole model with ``torch.save``, loads it back with ``torch.load``'s default
weights-only loading, generates text one word at a time under ``torch.no_grad``, and exports
the model to ONNX (where ``onnx`` is installed; ``onnxruntime``, where installed, checks the
exported model against the model). The corpus is the short story shipped in
``examples/data``; ``--quick`` is a run of seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "data" / "lighthouse.txt"


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backend", choices=("gatesmith", "torch"), default="gatesmith"
    )
    parser.add_argument("--emsize", type=int, default=64, help="embedding size")
    parser.add_argument("--nhid", type=int, default=64, help="hidden units per layer")
    parser.add_argument("--nlayers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=20.0)
    parser.add_argument("--clip", type=float, default=0.25)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--bptt", type=int, default=12, help="steps per truncated chunk"
    )
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1111)
    parser.add_argument("--words", type=int, default=30, help="words to generate")
    parser.add_argument("--out", type=Path, default=Path("demo_output/word_lm"))
    parser.add_argument("--quick", action="store_true", help="two short epochs")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.words = 2, 8
    return args


class Corpus:
    """Words of the story (lines end in ``<eos>``), nine tenths for training."""

    def __init__(self, path=CORPUS):
        words = []
        for line in path.read_text(encoding="utf-8").splitlines():
            words += line.split() + ["<eos>"]
        self.vocabulary = sorted(set(words))
        index = {w: n for n, w in enumerate(self.vocabulary)}
        ids = torch.tensor([index[w] for w in words], dtype=torch.int64)
        cut = len(ids) * 9 // 10
        self.train, self.valid = ids[:cut], ids[cut:]


def batchify(ids, batch):
    """``(T, batch)``: the sequence cut into ``batch`` columns."""
    steps = len(ids) // batch
    return ids[: steps * batch].view(batch, steps).t().contiguous()


class RNNModel(nn.Module):
    """Embedding, a stack of LSTM layers, and a decoder whose weight is the embedding's."""

    def __init__(self, lstm, ntoken, ninp, nhid, nlayers, dropout):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = lstm(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if nhid != ninp:
            raise ValueError("a tied decoder needs nhid == emsize")
        self.decoder.weight = self.encoder.weight
        self.nlayers, self.nhid = nlayers, nhid
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, tokens, hidden):
        emb = self.drop(self.encoder(tokens))
        output, hidden = self.rnn(emb, hidden)
        return self.decoder(self.drop(output)), hidden

    def init_hidden(self, batch):
        weight = next(self.parameters())
        shape = (self.nlayers, batch, self.nhid)
        return weight.new_zeros(shape), weight.new_zeros(shape)


def detach(hidden):
    """The state carried into the next chunk, cut from the graph of this one."""
    return tuple(h.detach() for h in hidden)


def evaluate(model, data, bptt):
    model.eval()
    total, hidden = 0.0, model.init_hidden(data.shape[1])
    with torch.no_grad():
        for i in range(0, data.shape[0] - 1, bptt):
            tokens, targets = data[i : i + bptt], data[i + 1 : i + 1 + bptt]
            tokens = tokens[: len(targets)]
            output, hidden = model(tokens, hidden)
            loss = nn.functional.cross_entropy(output.flatten(0, 1), targets.flatten())
            total += len(tokens) * float(loss)
    return total / (data.shape[0] - 1)


def train_epoch(model, data, args, lr, losses):
    model.train()
    hidden = model.init_hidden(args.batch_size)
    for i in range(0, data.shape[0] - 1, args.bptt):
        tokens, targets = data[i : i + args.bptt], data[i + 1 : i + 1 + args.bptt]
        tokens = tokens[: len(targets)]
        hidden = detach(hidden)
        model.zero_grad()
        output, hidden = model(tokens, hidden)
        loss = nn.functional.cross_entropy(output.flatten(0, 1), targets.flatten())
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(p.grad, alpha=-lr)
        losses.append(float(loss))


def generate(model, corpus, count, seed):
    """``count`` words, one step at a time, each sampled from the last step's output."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    token = torch.randint(len(corpus.vocabulary), (1, 1), generator=generator)
    hidden, words = model.init_hidden(1), []
    with torch.no_grad():
        for _ in range(count):
            output, hidden = model(token, hidden)
            weights = output[-1, 0].softmax(-1)
            token = torch.multinomial(weights, 1, generator=generator)[None]
            words.append(corpus.vocabulary[int(token)])
    return " ".join(words).replace("<eos>", "\n")


def checkpoint(model):
    """The whole model through ``torch.save`` and back through ``torch.load`` (weights-only,
    torch's default): this script's own classes and torch's layers are named as safe;
    ``derive.torch``'s modules need no naming (they register themselves)."""
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    # torch.nn.LSTM is not on torch's weights-only list either: named for the torch backend
    own = [RNNModel, nn.Dropout, nn.Embedding, nn.Linear, nn.LSTM]
    with torch.serialization.safe_globals(own):
        return torch.load(buffer), buffer.getbuffer().nbytes


def export_onnx(model, path):
    """The model as ONNX (torch's LSTM operator for either backend); returns the largest
    difference onnxruntime finds against the model, or None without onnxruntime."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        return "skipped (pip install onnx onnxscript)"
    model.eval()
    tokens = torch.zeros(5, 2, dtype=torch.int64)
    hidden = model.init_hidden(2)
    torch.onnx.export(model, (tokens, hidden), path, verbose=False)
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path))
    feeds = [tokens.numpy(), hidden[0].numpy(), hidden[1].numpy()]
    names = [i.name for i in session.get_inputs()]
    got = session.run(None, dict(zip(names, feeds, strict=True)))[0]
    with torch.no_grad():
        want = model(tokens, hidden)[0].numpy()
    return float(abs(got - want).max())


def main(argv=None):
    args = parse(argv)
    if args.backend == "gatesmith":
        from derive.torch import LSTM
    else:
        from torch.nn import LSTM
    torch.manual_seed(args.seed)
    corpus = Corpus()
    train = batchify(corpus.train, args.batch_size)
    valid = batchify(corpus.valid, 2)
    model = RNNModel(LSTM, len(corpus.vocabulary), args.emsize, args.nhid, args.nlayers,
                     args.dropout)  # fmt: skip
    losses, lr, best = [], args.lr, math.inf
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        train_epoch(model, train, args, lr, losses)
        loss = evaluate(model, valid, args.bptt)
        print(f"epoch {epoch}: valid loss {loss:.3f}, perplexity {math.exp(loss):.1f}")
        if loss < best:
            best = loss
        else:
            lr /= 4.0
    seconds = time.perf_counter() - start
    loaded, size = checkpoint(model)
    same = evaluate(loaded, valid, args.bptt) == evaluate(model, valid, args.bptt)
    print(
        f"checkpoint: {size} bytes, reloaded with weights_only=True, same loss: {same}"
    )
    print("sample:", generate(loaded, corpus, args.words, args.seed))
    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / f"word_lm_{args.backend}.onnx"
    difference = export_onnx(model, onnx_path)
    print(f"ONNX: {onnx_path} (onnxruntime against the model: {difference})")
    record = {"backend": args.backend, "losses": losses, "best_valid_loss": best,
              "seconds": seconds, "checkpoint_same": same, "onnx_difference": difference}  # fmt: skip
    (args.out / f"word_lm_{args.backend}.json").write_text(json.dumps(record, indent=1))
    return record


if __name__ == "__main__":
    main()
