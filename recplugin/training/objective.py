"""The training objective for one batch: target windows, negatives (global or from the target's scenario), logQ."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from recplugin.config import RecConfig
from recplugin.models.losses import LearnableTemperature, multi_positive_infonce
from recplugin.training import distributed as dist_
from recplugin.training.dataset import LabelledSplit, target_windows
from recplugin.training.packing import PackedSplit, batch_of


def autocast(device: torch.device):
    """bf16 autocast on CUDA, a no-op elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)


@dataclass
class ScenarioPools:
    """Which scenarios each item belongs to (a bit per scenario) and each scenario's item rows, for in-scenario negatives."""

    bits: np.ndarray  # [num_items] int64 bitmask; an item listed in no scenario belongs to all
    rows: list[np.ndarray]
    groups: torch.Tensor  # `bits` on the training device

    @classmethod
    def of(cls, item_scenarios: list[list[str]], scenarios: list[str], device: torch.device) -> ScenarioPools:
        """Pools from each item's scenario names (the catalogue's `scenarios` column)."""
        everything = (1 << len(scenarios)) - 1
        bits = np.asarray([sum(1 << scenarios.index(name) for name in set(names) if name in scenarios) or everything
                           for names in item_scenarios], dtype=np.int64)
        rows = [np.flatnonzero(bits & (1 << index)) for index in range(len(scenarios))]
        return cls(bits, rows, torch.as_tensor(bits, device=device))

    def draw(self, count: int, generator: np.random.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """`count` uniform negatives split evenly over the scenarios, each from its own items; and each drawn item's
        log expected count in the pool (for logQ): the sum over the item's scenarios of per-scenario draws / pool size."""
        share = count // len(self.rows)
        drawn = np.concatenate([pool[generator.integers(0, len(pool), share)] for pool in self.rows if len(pool)])
        rate = sum((share / len(pool)) * ((self.bits[drawn] >> index) & 1)
                   for index, pool in enumerate(self.rows) if len(pool))
        return torch.as_tensor(drawn, device=device), torch.as_tensor(np.log(rate), dtype=torch.float32, device=device)


@dataclass
class LossInputs:
    """What the loss needs besides the batch: target windows, item popularity for logQ, the temperature, and the
    scenario pools when negatives come from the target's scenario."""

    windows: np.ndarray
    log_popularity: torch.Tensor
    temperature: LearnableTemperature
    pools: ScenarioPools | None = None


def loss_inputs(split: LabelledSplit, config: RecConfig, num_items: int, device: torch.device,
                item_scenarios: list[list[str]] | None = None) -> LossInputs:
    """Target windows of the training rows, log item popularity among training targets, a fresh temperature; with
    `training.negatives: scenario`, the pools built from `item_scenarios` (one list of scenario names per item row)."""
    settings = config.training
    counts = np.bincount(split.target_rows, minlength=num_items) + 1.0
    pools = None
    if settings.negatives == "scenario" and len(config.scenarios) > 1:  # with one scenario, the same as global
        pools = ScenarioPools.of(item_scenarios or [[] for _ in range(num_items)], list(config.scenarios), device)
    return LossInputs(target_windows(split, settings.target_window),
                      torch.as_tensor(np.log(counts / counts.sum()), dtype=torch.float32, device=device),
                      LearnableTemperature(settings.temperature, settings.max_logit_scale, settings.learn_temperature).to(device),
                      pools)


def batch_loss(model: torch.nn.Module, split: LabelledSplit, index: np.ndarray, extra: LossInputs, query_vectors: torch.Tensor,
               config: RecConfig, context: dist_.Context, generator: np.random.Generator, num_items: int,
               packed: PackedSplit | None = None) -> torch.Tensor:
    """Multi-positive InfoNCE for one batch: window targets, in-batch (all ranks) + shared random negatives, masks, logQ;
    a user's labels in the batch (its rows, or its prediction points) are not each other's negatives. With scenario
    pools, a target's candidates are only items sharing a scenario with it, and the random pool is drawn per scenario.

    `index` holds label rows, or with `packed` packed rows whose prediction points are the labels.
    """
    settings = config.training
    device = context.device
    cuts = None
    if packed is None:
        inputs, labels = split.inputs.take(index), index
    else:
        inputs, cut_batch, labels = batch_of(packed, index)
        cuts = cut_batch.to_torch(device)
    owners = torch.as_tensor(np.unique(split.user_ids[labels], return_inverse=True)[1].reshape(-1), device=device)
    rows = torch.as_tensor(extra.windows[labels], device=device)
    groups = None if extra.pools is None else extra.pools.groups
    per_row = settings.window_weights == "row"
    if settings.softmax == "full":  # every item once: an exact softmax, no logQ, no in-batch or other ranks' candidates
        negatives = torch.arange(num_items, device=device)
        users, targets, negative_vectors = _encode(model, inputs.to_torch(device), rows, negatives, query_vectors, cuts)
        return multi_positive_infonce(users, targets, rows, negative_vectors, negatives, extra.temperature(), None,
                                      settings.false_negative_cosine, owners, groups, in_batch=False, per_row=per_row)
    if extra.pools is None:
        negatives = torch.as_tensor(generator.integers(0, num_items, settings.random_negatives), device=device)
        negative_log_q = torch.full((len(negatives),), math.log(len(negatives) / num_items), device=device)
    else:
        negatives, negative_log_q = extra.pools.draw(settings.random_negatives, generator, device)
    users, targets, negative_vectors = _encode(model, inputs.to_torch(device), rows, negatives, query_vectors, cuts)
    valid = rows >= 0
    other_vectors, other_rows = dist_.gather_other_ranks(targets, torch.where(valid, rows, -1), context)
    log_q = None
    if settings.logq_correction:  # in-batch targets are drawn by popularity, the shared pool uniformly (per scenario)
        in_batch = math.log(int(valid.sum()) * context.world)
        log_q = torch.cat([in_batch + extra.log_popularity[rows[valid]], in_batch + extra.log_popularity[other_rows],
                           negative_log_q])
    return multi_positive_infonce(users, targets, rows, torch.cat([other_vectors, negative_vectors]),
                                  torch.cat([other_rows, negatives]), extra.temperature(), log_q, settings.false_negative_cosine,
                                  owners, groups, per_row=per_row)


def _encode(model: torch.nn.Module, inputs: dict[str, torch.Tensor], rows: torch.Tensor, negatives: torch.Tensor,
            query_vectors: torch.Tensor, cuts: dict[str, torch.Tensor] | None) -> tuple[torch.Tensor, ...]:
    """One forward (bf16 on CUDA, scored in fp32): interests, the window targets' vectors [B, W, E] (zeros at padding)
    and the negatives' vectors."""
    valid = rows >= 0
    with autocast(rows.device):
        users, vectors = model(inputs, torch.cat([rows[valid], negatives]), query_vectors, cuts)
    users, vectors = users.float(), vectors.float()
    count = int(valid.sum())
    targets = vectors.new_zeros(*rows.shape, vectors.shape[1]).masked_scatter(valid[..., None], vectors[:count])
    return users, targets, vectors[count:]
