"""A short demo: train a generated LSTM kernel to continue "hello", with plain NumPy around it.

The generated module does the recurrent part (forward and BPTT); a softmax readout and an Adam
step are written here. Run: python examples/quickstart.py [--variant lstm] [--steps 300]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import generated

TEXT = "hello"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variant", default="lstm", help="a generated variant (default: lstm)"
    )
    parser.add_argument("--steps", type=int, default=300, help="training iterations")
    parser.add_argument("--hidden", type=int, default=16, help="hidden size")
    args = parser.parse_args(argv)

    cell = generated.load(args.variant)
    chars = sorted(set(TEXT))
    index = {c: i for i, c in enumerate(chars)}
    V, H = len(chars), args.hidden
    rng = np.random.default_rng(0)
    # inputs "hell", targets "ello", one-hot, shape (T, B=1, V)
    x = np.eye(V)[[index[c] for c in TEXT[:-1]]][:, None, :]
    targets = np.array([index[c] for c in TEXT[1:]])

    params = cell.init_params(V, H, dtype=np.float64, seed=0)
    params["readout"] = rng.normal(0, 0.1, (V, H))
    params["readout_bias"] = np.zeros(V)
    moments = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in params.items()}

    def loss_and_grads(params):
        kernel_params = {k: params[k] for k in cell.PARAMS}
        ys, _, tape = cell.forward(x, None, kernel_params)
        h = ys[:, 0, :]
        logits = h @ params["readout"].T + params["readout_bias"]
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.log(p[np.arange(len(targets)), targets]).mean()
        dlogits = p.copy()
        dlogits[np.arange(len(targets)), targets] -= 1
        dlogits /= len(targets)
        dys = (dlogits @ params["readout"])[:, None, :]
        _, _, grads = cell.backward(dys, None, tape)
        grads["readout"] = dlogits.T @ h
        grads["readout_bias"] = dlogits.sum(axis=0)
        return loss, grads

    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        loss, grads = loss_and_grads(params)
        for k, g in grads.items():  # Adam
            m, v = moments[k]
            m[:] = 0.9 * m + 0.1 * g
            v[:] = 0.999 * v + 0.001 * g * g
            params[k] -= (
                0.05 * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
            )
        if step == 1 or step % 100 == 0:
            print(f"step {step:4d}  loss {loss:.4f}")
    elapsed = time.perf_counter() - start

    # greedy continuation from "h"
    out, state = "h", None
    for _ in range(len(TEXT) - 1):
        step_x = np.eye(V)[[index[out[-1]]]][:, None, :]
        ys, state, _ = cell.forward(step_x, state, {k: params[k] for k in cell.PARAMS})
        out += chars[
            int(np.argmax(params["readout"] @ ys[0, 0] + params["readout_bias"]))
        ]
    print(
        f"{args.variant}: trained {args.steps} steps in {elapsed:.1f} s (compile included)"
    )
    print(f"sample from 'h': {out!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
