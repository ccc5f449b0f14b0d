"""Warm start: a new model begins from a trained artifact's towers (a refresh starts from the serving version)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from recplugin.models.artifact import ITEM_IDS, WEIGHTS
from recplugin.models.two_tower import TwoTower


@torch.no_grad()
def warm_start(model: TwoTower, artifact_dir: Path, item_ids: np.ndarray) -> dict[str, int]:
    """Copy the artifact's user tower and projection head (by name, where shapes agree) and its item id embeddings (by
    item id: items new to this catalogue keep their fresh start); what was copied."""
    state = torch.load(Path(artifact_dir) / WEIGHTS, map_location="cpu", weights_only=True)
    own = model.state_dict()
    tensors = 0
    for name, value in state.items():
        if name.startswith(("user_tower.", "item_tower.")) and name in own and own[name].shape == value.shape:
            own[name].copy_(value)
            tensors += 1
    items = 0
    if model.item_ids is not None and "item_ids.weight" in state:
        trained = {int(item_id): row for row, item_id in enumerate(np.load(Path(artifact_dir) / ITEM_IDS))}
        pairs = [(new, trained[int(item_id)]) for new, item_id in enumerate(item_ids) if int(item_id) in trained]
        if pairs:
            new_rows, old_rows = (torch.as_tensor(rows) for rows in zip(*pairs))
            weight = model.item_ids.weight
            weight[new_rows.to(weight.device)] = state["item_ids.weight"][old_rows].to(weight.device, weight.dtype)
            items = len(pairs)
    return {"tensors": tensors, "item_embeddings": items}
