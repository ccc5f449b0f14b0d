"""Data-parallel training under torchrun: process group, batch shards, and all-gathered in-batch negatives."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class Context:
    """This process's place in the job: rank, world size and device (world 1 = plain single-process training)."""

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, index: np.ndarray) -> np.ndarray:
        """This rank's equal share of a global batch (the remainder is dropped so every rank gets the same count)."""
        usable = len(index) // self.world * self.world
        return index[:usable][self.rank::self.world]


def setup(device_name: str) -> Context:
    """Join the torchrun job when WORLD_SIZE > 1 (NCCL on CUDA, gloo on CPU); else a single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    if world == 1:
        return Context(0, 1, torch.device(device_name))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}") if device_name.startswith("cuda") else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(rank, world, device)


def teardown(context: Context) -> None:
    """Leave the process group."""
    if context.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, context: Context) -> torch.nn.Module:
    """DistributedDataParallel around the model when there are several ranks."""
    if context.world == 1:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)


def gather_other_ranks(vectors: torch.Tensor, rows: torch.Tensor, context: Context) -> tuple[torch.Tensor, torch.Tensor]:
    """Every other rank's [B, W, E] target vectors (gradients flow back to their owners) and [B, W] rows, flattened.
    B may differ between ranks (every-position batches hold a varying number of labels): shorter ones are padded."""
    if context.world == 1:
        return vectors.new_zeros(0, vectors.shape[-1]), rows.new_zeros(0)
    from torch.distributed.nn.functional import all_gather

    missing = int(max_over_ranks(float(len(rows)), context)) - len(rows)
    if missing:
        vectors = torch.cat([vectors, vectors.new_zeros(missing, *vectors.shape[1:])])
        rows = torch.cat([rows, rows.new_full((missing, *rows.shape[1:]), -1)])

    all_vectors = all_gather(vectors.contiguous())
    all_rows = [torch.empty_like(rows) for _ in range(context.world)]
    dist.all_gather(all_rows, rows.contiguous())
    others = [r for r in range(context.world) if r != context.rank]
    gathered_rows = torch.cat([all_rows[r].reshape(-1) for r in others])
    gathered = torch.cat([all_vectors[r].reshape(-1, vectors.shape[-1]) for r in others])
    valid = gathered_rows >= 0
    return gathered[valid], gathered_rows[valid]


def max_over_ranks(value: float, context: Context) -> float:
    """The largest of every rank's value (a single process: the value itself)."""
    if context.world == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())
