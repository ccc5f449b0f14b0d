"""All-gathered in-batch negatives: each rank sees the other ranks' targets, and their gradients go back to the owners."""
from __future__ import annotations

import os
import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from recplugin.training.distributed import Context, gather_other_ranks


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    vectors = torch.full((2, 1, 3), float(rank + 1), requires_grad=True)  # [B, W, E]
    rows = torch.tensor([[10 * rank], [-1]])  # the second target is window padding
    others, other_rows = gather_other_ranks(vectors, rows, Context(rank, 2, torch.device("cpu")))
    (others.sum() * (rank + 1)).backward()  # rank r weighs what it received by r + 1
    results[rank] = (others.detach().numpy().tolist(), other_rows.tolist(), vectors.grad.numpy().tolist())
    dist.destroy_process_group()


def test_each_rank_gets_the_others_valid_targets_and_gradients_flow_back():
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(_free_port(), results), nprocs=2, join=True)
    others0, rows0, grad0 = results[0]
    others1, rows1, grad1 = results[1]
    assert others0 == [[2.0, 2.0, 2.0]] and rows0 == [10]  # rank 1's valid target only
    assert others1 == [[1.0, 1.0, 1.0]] and rows1 == [0]
    # rank 0's first target was used by rank 1 with weight 2; its padded second target by nobody
    assert np.allclose(grad0, [[[2.0] * 3], [[0.0] * 3]]) and np.allclose(grad1, [[[1.0] * 3], [[0.0] * 3]])


def test_a_single_process_gathers_nothing_and_shards_are_equal():
    vectors, rows = torch.ones(2, 1, 3), torch.tensor([[1], [2]])
    others, other_rows = gather_other_ranks(vectors, rows, Context(0, 1, torch.device("cpu")))
    assert others.shape == (0, 3) and other_rows.numel() == 0
    index = np.arange(7)
    shards = [Context(rank, 2, torch.device("cpu")).shard(index) for rank in range(2)]
    assert [len(s) for s in shards] == [3, 3] and not set(shards[0]) & set(shards[1])
