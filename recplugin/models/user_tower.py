"""User tower: a small transformer over the mixed-scenario history, read out by learnable per-scenario query tokens."""
from __future__ import annotations

import torch
from torch import nn

from recplugin.config import ModelConfig


class UserTower(nn.Module):
    """Scenario-aware querying: K query tokens of the target scenario attend over the history and give K interests."""

    def __init__(self, config: ModelConfig, num_scenarios: int, num_actions: int):
        super().__init__()
        width = config.user_dim
        self.num_scenarios = num_scenarios
        self.item_in = nn.Linear(config.embedding_dim, width)
        self.scenario = nn.Embedding(num_scenarios + 1, width)
        self.action = nn.Embedding(num_actions, width)
        self.position = nn.Embedding(config.max_sequence_length, width)
        self.queries = nn.Parameter(torch.randn(num_scenarios, config.interests_per_scenario, width) * 0.02)
        for table in (self.scenario, self.action, self.position):
            nn.init.normal_(table.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(width, config.user_heads, 4 * width, config.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.user_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, config.embedding_dim)

    def forward(self, item_vectors: torch.Tensor, scenarios: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor,
                target_scenario: torch.Tensor, query_vectors: torch.Tensor | None = None,
                query_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L, E] history item vectors -> [B, K, E] normalised interest vectors for each row's target scenario."""
        batch, length = mask.shape
        recency = torch.arange(length - 1, -1, -1, device=mask.device).clamp(max=self.position.num_embeddings - 1)
        tokens = self.item_in(item_vectors) + self.scenario(scenarios) + self.action(actions) + self.position(recency)[None]
        parts, masks = [tokens], [mask]
        if query_vectors is not None:
            query_type = self.scenario.weight[self.num_scenarios]
            parts.append((self.item_in(query_vectors) + query_type)[:, None, :])
            masks.append(query_mask[:, None])
        interest_queries = self.queries[target_scenario]
        parts.append(interest_queries)
        masks.append(torch.ones(interest_queries.shape[:2], dtype=torch.bool, device=mask.device))
        hidden = self.encoder(torch.cat(parts, dim=1), src_key_padding_mask=~torch.cat(masks, dim=1))
        interests = hidden[:, -interest_queries.shape[1]:]
        return nn.functional.normalize(self.out(self.norm(interests)), dim=-1)
