"""Data-parallel training of a generated cell with PyTorch's DistributedDataParallel (gloo).

Every process builds the same model (``derive.torch.Recurrent`` and a linear head), draws the
same batches, and trains on its own shard of each batch; DDP averages the gradients across
processes after each backward, so every process takes the same optimiser step. With shards of
equal size this is exactly the step one process takes on the whole batch.

One machine, two processes::

    torchrun --standalone --nproc_per_node 2 examples/ddp_train.py --variant mgu

Two machines, two processes each (run on both; HOST is the first machine's address)::

    torchrun --nnodes 2 --nproc_per_node 2 --rdzv_backend c10d \\
        --rdzv_endpoint HOST:29400 examples/ddp_train.py --variant mgu

Without torchrun it runs as a single process on the whole batch, with no process group: the
reference the distributed run must equal. ``--out FILE`` writes the trained parameters (from
rank 0) as a NumPy ``.npz`` file.
"""

from __future__ import annotations

import argparse
import gc
import os

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from derive.torch import Recurrent


class Model(torch.nn.Module):
    def __init__(self, variant, input_size, hidden_size, dtype):
        super().__init__()
        self.rnn = Recurrent(
            variant,
            input_size,
            hidden_size,
            num_layers=2,
            batch_first=True,
            dtype=dtype,
        )
        self.head = torch.nn.Linear(hidden_size, 1, dtype=dtype)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1, :]).squeeze(-1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="lstm")
    parser.add_argument("--steps", type=int, default=3, help="optimiser steps")
    parser.add_argument(
        "--batch", type=int, default=8, help="the whole batch, all shards"
    )
    parser.add_argument(
        "--length", type=int, default=12, help="time steps per sequence"
    )
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the trained parameters here (.npz)")
    args = parser.parse_args(argv)

    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    if args.batch % world:
        parser.error(f"--batch {args.batch} must split evenly over {world} processes")
    torch.set_num_threads(1 if distributed else torch.get_num_threads())
    dtype = getattr(torch, args.dtype)

    torch.manual_seed(args.seed)  # the same initial weights in every process
    model = Model(args.variant, 4, 16, dtype)
    net = DistributedDataParallel(model) if distributed else model
    optimiser = torch.optim.Adam(net.parameters(), lr=0.02)
    data = torch.Generator().manual_seed(args.seed + 1)  # the same batches everywhere
    shard = slice(rank * args.batch // world, (rank + 1) * args.batch // world)
    for step in range(args.steps):
        x = torch.randn(args.batch, args.length, 4, generator=data, dtype=dtype)
        target = x[:, :, 0].sum(1)  # the sum of the first input over time
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x[shard]), target[shard])
        loss.backward()
        optimiser.step()
        if rank == 0:
            print(f"step {step + 1}: loss on shard 0 {loss.item():.6f}")
    if args.out and rank == 0:
        state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        np.savez(args.out, **state)
    if distributed:
        # DistributedDataParallel holds the process group: release it first, so that gloo's
        # threads end inside destroy_process_group and not at interpreter exit, where one
        # can abort; and every rank reaches the teardown before any closes its connections
        del net, optimiser
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
