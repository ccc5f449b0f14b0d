"""The retrieval model: item tower and user tower over one item table, max-over-interests scoring."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from recplugin.config import ModelConfig
from recplugin.models.dropout import use_fast_dropout
from recplugin.models.item_tower import ProjectionHead
from recplugin.models.text_model import ItemTextModel
from recplugin.models.user_tower import UserTower


class TwoTower(nn.Module):
    """Both towers over one item table: frozen cached text vectors, or a text model fine-tuned on the items' tokens."""

    def __init__(self, config: ModelConfig, text_vectors: torch.Tensor | None, num_scenarios: int, num_actions: int,
                 text_model: ItemTextModel | None = None, item_tokens: tuple[np.ndarray, np.ndarray] | None = None):
        super().__init__()
        self.use_text = config.use_text
        self.text_model = text_model
        if text_model is None:
            self.register_buffer("text_vectors", text_vectors.float(), persistent=False)
            self.num_items, self.text_dim = text_vectors.shape
        else:  # fine-tuning: every lookup runs the text model on the items' tokens
            self.register_buffer("token_ids", torch.as_tensor(item_tokens[0]), persistent=False)
            self.register_buffer("token_mask", torch.as_tensor(item_tokens[1]), persistent=False)
            self.num_items, self.text_dim = len(item_tokens[0]), text_model.dim
        self.item_tower = ProjectionHead(self.text_dim, config.embedding_dim, config.dropout)
        self.item_ids = nn.Embedding(self.num_items, config.embedding_dim) if config.use_item_ids else None
        if self.item_ids is not None:
            nn.init.normal_(self.item_ids.weight, std=config.item_id_init_std)
        self.user_tower = UserTower(config, num_scenarios, num_actions)
        for tower in (self.item_tower, self.user_tower):
            use_fast_dropout(tower)

    def _text(self, rows: torch.Tensor) -> torch.Tensor:
        """Text vectors of item rows: the cache, or the text model run on their tokens."""
        if self.text_model is None:
            return self.text_vectors[rows]
        mask = self.token_mask[rows]
        width = int(mask.sum(1).max())  # left/right padding: keep only the columns some row uses
        columns = slice(mask.shape[1] - width, None) if self.text_model.is_decoder else slice(0, width)
        return self.text_model(self.token_ids[rows][:, columns], mask[:, columns]).float()

    def _rows_to_vectors(self, rows: torch.Tensor) -> torch.Tensor:
        """Text projection (model.use_text), plus a learnable id embedding (model.use_item_ids), normalised."""
        if not self.use_text:
            return nn.functional.normalize(self.item_ids(rows), dim=-1)
        vectors = self.item_tower(self._text(rows))
        if self.item_ids is not None:
            vectors = nn.functional.normalize(vectors + self.item_ids(rows), dim=-1)
        return vectors

    def item_vectors(self, rows: torch.Tensor) -> torch.Tensor:
        """Item-tower vectors for item rows of any shape."""
        unique, inverse = torch.unique(rows, return_inverse=True)
        return self._rows_to_vectors(unique)[inverse]

    def all_item_vectors(self, batch_size: int = 65536) -> torch.Tensor:
        """Every item's vector, [N, E]."""
        if self.text_model is not None:
            batch_size = min(batch_size, 512)
        rows = torch.arange(self.num_items, device=self.item_tower.inp.weight.device)
        return torch.cat([self._rows_to_vectors(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)])

    def forward(self, inputs: dict[str, torch.Tensor], item_rows: torch.Tensor, query_text_vectors: torch.Tensor | None = None,
                cuts: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The training step's forward: interest vectors ([B, K, E]; with `cuts`, [valid cuts, K, E]) and the vectors of
        `item_rows` (targets, negatives)."""
        history = inputs["item_rows"]
        vectors = self.item_vectors(torch.cat([history.reshape(-1), item_rows]))  # one text-model pass for both
        history_vectors = vectors[:history.numel()].view(*history.shape, -1)
        if cuts is None:
            return self.user_vectors(inputs, query_text_vectors, history_vectors), vectors[history.numel():]
        users = self.user_vectors_at_cuts(inputs, cuts, query_text_vectors, history_vectors)
        return users[cuts["valid"]], vectors[history.numel():]

    def user_vectors_at_cuts(self, inputs: dict[str, torch.Tensor], cuts: dict[str, torch.Tensor],
                             query_text_vectors: torch.Tensor | None = None,
                             history_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """[B, G, K, E] interest vectors at each packed sequence's prediction points (a causal user tower)."""
        if history_vectors is None:
            history_vectors = self.item_vectors(inputs["item_rows"])
        query_vectors = query_mask = None
        if query_text_vectors is not None and len(query_text_vectors):
            query_mask = cuts["query_rows"] >= 0
            query_vectors = self.item_tower(query_text_vectors[cuts["query_rows"].clamp(min=0)])
        return self.user_tower.at_cuts(history_vectors, inputs["scenarios"], inputs["actions"], inputs["mask"],
                                       inputs["timestamps"], cuts["lengths"], cuts["valid"], cuts["scenarios"],
                                       query_vectors, query_mask)

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
