"""A model artifact judged as it would serve today: the newest catalogue (items it was not trained on added through its
item tower, as `POST /items` adds them) and the newest snapshot's test split, full ranking, fp32, ties against the target.
Two artifacts judged this way are compared on the same rows (the refresh gate)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from recplugin.models.artifact import RetrievalModel
from recplugin.models.two_tower import max_interest_scores
from recplugin.training import evaluate as ev
from recplugin.training.dataset import Catalog, LabelledSplit, load_snapshot


def serving_model(artifact_dir: Path, catalog: Catalog) -> RetrievalModel:
    """The artifact's model with every catalogue item it lacks added (text vectors; an ids-only model gives them a zero
    vector, so they rank below every item it scores positively: it cannot rank them)."""
    model = RetrievalModel(artifact_dir)
    missing = [row for row, item_id in enumerate(catalog.item_ids) if int(item_id) not in model.id_to_row]
    if missing:
        texts = [catalog.texts[row] for row in missing]
        vectors = model.cold_item_vectors(texts) if model.config.model.use_text else \
            np.zeros((len(missing), model.item_vectors.shape[1]), np.float32)
        model.add_items([int(catalog.item_ids[row]) for row in missing], vectors)
    return model


def split_ranks(model: RetrievalModel, split: LabelledSplit, rows: np.ndarray | None = None,
                allowed: torch.Tensor | None = None) -> np.ndarray:
    """Ranks of the rows' targets over the model's item table (only `allowed` items, a [1, N] mask, when given)."""
    rows = np.arange(len(split)) if rows is None else rows

    def score(index: np.ndarray) -> torch.Tensor:
        users = torch.as_tensor(model.user_vectors(split.inputs.take(rows[index]), [None] * len(index)))
        return max_interest_scores(users, model.item_table.float())

    return ev.ranks_for(score, split.target_rows[rows], [split.seen[r] for r in rows],
                        allowed_fn=None if allowed is None else (lambda index: allowed.expand(len(index), -1)))


def judged_metrics(artifact_dir: Path, catalog: Catalog, snapshot_path: Path, scenarios: list[str],
                 exclude_seen: str) -> dict[str, dict[str, float]]:
    """The artifact's test metrics per scenario and overall, among the catalogue's items."""
    model = serving_model(artifact_dir, catalog)
    snapshot = load_snapshot(snapshot_path, scenarios, model.id_to_row, model.config.model.max_sequence_length, exclude_seen)
    test = snapshot.splits["test"]
    allowed = torch.zeros(1, len(model.item_table), dtype=torch.bool)
    allowed[0, torch.as_tensor([model.id_to_row[int(i)] for i in catalog.item_ids])] = True
    return ev.per_scenario(split_ranks(model, test, allowed=allowed), test.inputs.target_scenario, scenarios)
