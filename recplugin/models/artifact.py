"""The model artifact on disk, and the retrieval wrapper the service loads from it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from recplugin.config import RecConfig, load_config, save_config
from recplugin.models.inputs import SequenceBatch
from recplugin.models.item_tower import ProjectionHead, TextEncoder
from recplugin.models.two_tower import TwoTower
from recplugin.models.user_tower import UserTower

WEIGHTS = "model.pt"
CONFIG = "config.yaml"
ITEM_IDS = "item_ids.npy"
ITEM_VECTORS = "item_vectors.npy"
POPULAR = "popular.json"
METRICS = "metrics.json"
META = "meta.json"
TEXT_ENCODER = "text_encoder"


def save_artifact(directory: Path, model: TwoTower, config: RecConfig, item_ids: np.ndarray, text_dim: int,
                  popular: dict[str, list[list[float]]], metrics: dict, version: str) -> Path:
    """Write weights, config, item vectors, cold-start lists and metrics into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    with torch.no_grad():
        vectors = model.all_item_vectors().float().cpu().numpy()
    torch.save({k: v.cpu() for k, v in model.state_dict().items() if not k.startswith("text_model.")}, directory / WEIGHTS)
    if model.text_model is not None:  # fine-tuned: the service encodes search queries with this text model
        model.text_model.save(directory / TEXT_ENCODER)
    save_config(config, directory / CONFIG)
    np.save(directory / ITEM_IDS, item_ids.astype(np.int64))
    np.save(directory / ITEM_VECTORS, vectors.astype(np.float32))
    (directory / POPULAR).write_text(json.dumps(popular))
    (directory / METRICS).write_text(json.dumps(metrics, indent=2))
    (directory / META).write_text(json.dumps({"version": version, "text_dim": text_dim, "num_items": len(item_ids)}))
    return directory


class NoTextTower(ValueError):
    """An ids-only model (model.use_text false) has no vector for an item it was not trained on."""


class RetrievalModel:
    """User tower + item vectors for serving: histories (and an optional query text) in, interest vectors out."""

    def __init__(self, directory: Path, device: str = "cpu"):
        self.directory = Path(directory)
        meta = json.loads((self.directory / META).read_text())
        self.version: str = meta["version"]
        self.config: RecConfig = load_config(self.directory / CONFIG)
        self.device = torch.device(device)
        model_config = self.config.model
        state = torch.load(self.directory / WEIGHTS, map_location=self.device, weights_only=True)
        self.user_tower = UserTower(model_config, len(self.config.scenarios), len(self.config.actions)).to(self.device)
        self.user_tower.load_state_dict({k[len("user_tower."):]: v for k, v in state.items() if k.startswith("user_tower.")})
        self.projection = ProjectionHead(meta["text_dim"], model_config.embedding_dim, model_config.dropout).to(self.device)
        self.projection.load_state_dict({k[len("item_tower."):]: v for k, v in state.items() if k.startswith("item_tower.")})
        self.user_tower.eval()
        self.projection.eval()
        self.item_ids = np.load(self.directory / ITEM_IDS)
        self.item_vectors = np.load(self.directory / ITEM_VECTORS)
        self.item_table = torch.as_tensor(self.item_vectors, device=self.device)
        self.id_to_row = {int(item_id): row for row, item_id in enumerate(self.item_ids)}  # trained items, then added ones
        self.popular: dict[str, list[list[float]]] = json.loads((self.directory / POPULAR).read_text())
        fine_tuned = self.directory / TEXT_ENCODER
        encoder_name = str(fine_tuned) if fine_tuned.is_dir() else model_config.text_encoder
        self.encoder = TextEncoder(encoder_name, model_config.max_text_tokens)

    def warm_up(self) -> None:
        """Load the query text model now: the first search query after start must not wait ~30 s for it."""
        self.encoder.encode(["warm up"])

    def is_trained_on(self, item_id: int) -> bool:
        """Whether the item was in the catalogue this model was trained on (not added while serving)."""
        row = self.id_to_row.get(int(item_id))
        return row is not None and row < len(self.item_ids)

    @torch.no_grad()
    def cold_item_vectors(self, texts: list[str]) -> np.ndarray:
        """Vectors for items this model was not trained on, from their text alone: the projection of the text encoding.
        For a text + ids model this is the cold-item rule: an unseen item's id embedding is zero."""
        if not self.config.model.use_text:
            raise NoTextTower(f"model {self.version} reads item ids only (model.use_text false): it has no vector for a new "
                              "item; new items are served once a model trained with them is indexed")
        if not texts:
            return np.zeros((0, self.item_vectors.shape[1]), dtype=np.float32)
        encoded = torch.as_tensor(self.encoder.encode(texts), device=self.device)
        return self.projection(encoded).float().cpu().numpy()

    def add_items(self, item_ids: list[int], vectors: np.ndarray) -> None:
        """Append items the table does not hold yet. The table grows before the id map, so a row any reader took from
        the old map is valid in the new table (no lock on the request path)."""
        fresh = [row for row, item_id in enumerate(item_ids) if int(item_id) not in self.id_to_row]
        if not fresh:
            return
        start = len(self.item_table)
        self.item_table = torch.cat([self.item_table, torch.as_tensor(vectors[fresh], device=self.device)])
        self.id_to_row = {**self.id_to_row, **{int(item_ids[row]): start + n for n, row in enumerate(fresh)}}

    @torch.no_grad()
    def user_vectors(self, batch: SequenceBatch, query_texts: list[str | None]) -> np.ndarray:
        """[B, K, E] interest vectors."""
        inputs = batch.to_torch(self.device)
        history = self.item_table[inputs["item_rows"]]
        query_vectors = query_mask = None
        if any(query_texts):
            texts = [q or "" for q in query_texts]
            encoded = torch.as_tensor(self.encoder.encode(texts), device=self.device)
            query_vectors = self.projection(encoded)
            query_mask = torch.as_tensor([bool(q) for q in query_texts], device=self.device)
        users = self.user_tower(history, inputs["scenarios"], inputs["actions"], inputs["mask"], inputs["target_scenario"],
                                inputs["timestamps"], query_vectors, query_mask)
        return users.float().cpu().numpy()
