"""The retrieval model: item tower and user tower over one item table, max-over-interests scoring."""
from __future__ import annotations

import torch
from torch import nn

from recplugin.config import ModelConfig
from recplugin.models.item_tower import ProjectionHead
from recplugin.models.user_tower import UserTower


class TwoTower(nn.Module):
    """Holds the frozen text vectors of every item (and query) and both trainable towers."""

    def __init__(self, config: ModelConfig, text_vectors: torch.Tensor, num_scenarios: int, num_actions: int):
        super().__init__()
        self.use_text = config.use_text
        self.register_buffer("text_vectors", text_vectors.float(), persistent=False)
        self.item_tower = ProjectionHead(text_vectors.shape[1], config.embedding_dim, config.dropout)
        self.item_ids = nn.Embedding(len(text_vectors), config.embedding_dim) if config.use_item_ids else None
        if self.item_ids is not None:
            nn.init.normal_(self.item_ids.weight, std=0.02 if config.use_text else 1.0)
        self.user_tower = UserTower(config, num_scenarios, num_actions)

    def _rows_to_vectors(self, rows: torch.Tensor) -> torch.Tensor:
        """Text projection (model.use_text), plus a learnable id embedding (model.use_item_ids), normalised."""
        if not self.use_text:
            return nn.functional.normalize(self.item_ids(rows), dim=-1)
        vectors = self.item_tower(self.text_vectors[rows])
        if self.item_ids is not None:
            vectors = nn.functional.normalize(vectors + self.item_ids(rows), dim=-1)
        return vectors

    def item_vectors(self, rows: torch.Tensor) -> torch.Tensor:
        """Item-tower vectors for item rows of any shape."""
        unique, inverse = torch.unique(rows, return_inverse=True)
        return self._rows_to_vectors(unique)[inverse]

    def all_item_vectors(self, batch_size: int = 65536) -> torch.Tensor:
        """Every item's vector, [N, E]."""
        rows = torch.arange(len(self.text_vectors), device=self.text_vectors.device)
        return torch.cat([self._rows_to_vectors(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)])

    def user_vectors(self, inputs: dict[str, torch.Tensor], query_text_vectors: torch.Tensor | None = None,
                     history_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """[B, K, E] interest vectors; query rows index `query_text_vectors`, -1 meaning no query."""
        if history_vectors is None:
            history_vectors = self.item_vectors(inputs["item_rows"])
        query_vectors = query_mask = None
        if query_text_vectors is not None and len(query_text_vectors):
            rows = inputs["query_rows"]
            query_mask = rows >= 0
            query_vectors = self.item_tower(query_text_vectors[rows.clamp(min=0)])
        return self.user_tower(history_vectors, inputs["scenarios"], inputs["actions"], inputs["mask"],
                               inputs["target_scenario"], inputs["timestamps"], query_vectors, query_mask)


def max_interest_scores(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """[B, K, E] x [N, E] -> [B, N]: an item's score is its best match over the user's interests."""
    return torch.einsum("bke,ne->bkn", users, items).amax(dim=1)
