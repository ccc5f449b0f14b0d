"""User tower: a small transformer over the mixed-scenario history, read out by learnable per-scenario query tokens."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from recplugin.config import ModelConfig
from recplugin.models.cut_attention import encode_at_cuts, encode_at_end, event_order

GAP_BUCKETS = 24  # log2 minutes since the event, up to ~16 years
HOURS = 24


def load_user_llm(path: str) -> nn.Module:
    """A local decoder LLM (transformers AutoModel) to run over the behaviour sequence; trained with the tower."""
    from transformers import AutoModel

    if not Path(path).is_dir():
        raise FileNotFoundError(f"model.user_llm {path!r} is not a local model folder (no hub downloads are made)")
    return AutoModel.from_pretrained(path)


def scenario_blocks(mask: torch.Tensor, scenarios: torch.Tensor) -> torch.Tensor:
    """Column order that groups the events into scenario blocks (scenario order, then time), padding kept in front."""
    length = mask.shape[1]
    columns = torch.arange(length, device=mask.device)[None]
    key = torch.where(mask, 1 + scenarios * length + columns, torch.zeros_like(scenarios))
    return key.argsort(dim=1, stable=True)


class UserTower(nn.Module):
    """Scenario-aware querying: K query tokens of the target scenario attend over the history and give K interests.

    The history is one time-interleaved sequence with scenario embeddings ("dense mixing") or, with
    `model.mixing: blocks`, scenario blocks (RED-Rec's released layout). Side information per event: scenario,
    action, time since the event (log buckets) and hour of day (switches); then a position in the laid-out sequence.
    """

    def __init__(self, config: ModelConfig, num_scenarios: int, num_actions: int):
        super().__init__()
        self.llm = load_user_llm(config.user_llm) if config.user_llm else None
        width = int(self.llm.config.hidden_size) if self.llm is not None else config.user_dim
        self.config = config
        self.num_scenarios = num_scenarios
        self.causal = config.user_attention == "causal" and self.llm is None  # a decoder LLM is causal by itself
        self.item_in = nn.Linear(config.embedding_dim, width)
        self.scenario = nn.Embedding(num_scenarios + 1, width)
        self.action = nn.Embedding(num_actions, width)
        self.position = nn.Embedding(config.max_sequence_length, width)
        self.gap = nn.Embedding(GAP_BUCKETS, width) if config.use_time_gap else None
        self.hour = nn.Embedding(HOURS, width) if config.use_hour else None
        query_sets = num_scenarios if config.scenario_queries else 1
        self.queries = nn.Parameter(torch.randn(query_sets, config.interests_per_scenario, width) * 0.02)
        for table in (self.scenario, self.action, self.position, self.gap, self.hour):
            if table is not None:
                nn.init.normal_(table.weight, std=0.02)
        self.encoder = None
        if self.llm is None:
            layer = nn.TransformerEncoderLayer(width, config.user_heads, 4 * width, config.dropout, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, config.user_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, config.embedding_dim)

    def side_information(self, scenarios: torch.Tensor, actions: torch.Tensor, timestamps: torch.Tensor,
                         mask: torch.Tensor) -> torch.Tensor:
        """[B, L, W]: scenario + action (+ time since the event + hour of day) embeddings of each event."""
        side = self.scenario(scenarios) + self.action(actions)
        if self.gap is not None:
            if self.causal:  # the time since the previous event: what a prediction at any later point may know
                previous = torch.cat([timestamps[:, :1], timestamps[:, :-1]], dim=1)
                had_previous = torch.cat([mask[:, :1], mask[:, :-1]], dim=1) & mask
                before = torch.where(had_previous, previous, timestamps)
                minutes = ((timestamps - before).clamp(min=0) // 60).float()
            else:
                latest = torch.where(mask, timestamps, torch.zeros_like(timestamps)).amax(dim=1, keepdim=True)
                minutes = ((latest - timestamps).clamp(min=0) // 60).float()
            side = side + self.gap(torch.log2(minutes + 1).long().clamp(max=GAP_BUCKETS - 1))
        if self.hour is not None:
            side = side + self.hour(torch.div(timestamps, 3600, rounding_mode="floor").remainder(HOURS))
        return side

    def encode(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The sequence model: the small transformer encoder, or a decoder LLM fed `inputs_embeds` (causal, so the
        query tokens at the end read the whole history; padding is on the left)."""
        if self.llm is None:
            return self.encoder(tokens, src_key_padding_mask=~mask)
        positions = (mask.long().cumsum(1) - 1).clamp(min=0)
        return self.llm(inputs_embeds=tokens, attention_mask=mask.long(), position_ids=positions).last_hidden_state

    def forward(self, item_vectors: torch.Tensor, scenarios: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor,
                target_scenario: torch.Tensor, timestamps: torch.Tensor, query_vectors: torch.Tensor | None = None,
                query_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L, E] history item vectors -> [B, K, E] normalised interest vectors for each row's target scenario."""
        if self.causal:  # one prediction point after the whole history
            cut = mask.sum(dim=1, keepdim=True)
            point = (torch.ones_like(cut, dtype=torch.bool), target_scenario[:, None],
                     None if query_vectors is None else query_vectors[:, None], None if query_mask is None else query_mask[:, None])
            if self.training:
                return self.at_cuts(item_vectors, scenarios, actions, mask, timestamps, cut, *point)[:, 0]
            tokens, queries, valid = self._readout_inputs(item_vectors, scenarios, actions, mask, timestamps, *point)
            interests = encode_at_end(self.encoder, tokens, queries[:, 0], mask, valid[:, 0])[:, -self.queries.shape[1]:]
            return nn.functional.normalize(self.out(self.norm(interests)), dim=-1)
        tokens = self.item_in(item_vectors) + self.side_information(scenarios, actions, timestamps, mask)
        if self.config.mixing == "blocks":
            order = scenario_blocks(mask, scenarios)
            tokens = tokens.gather(1, order[..., None].expand_as(tokens))
            mask = mask.gather(1, order)
        length = mask.shape[1]  # positions count from the right end of the sequence as laid out
        recency = torch.arange(length - 1, -1, -1, device=mask.device).clamp(max=self.position.num_embeddings - 1)
        tokens = tokens + self.position(recency)[None]
        parts, masks = [tokens], [mask]
        if query_vectors is not None:
            query_type = self.scenario.weight[self.num_scenarios]
            parts.append((self.item_in(query_vectors) + query_type)[:, None, :])
            masks.append(query_mask[:, None])
        interest_queries = self.queries[target_scenario if self.config.scenario_queries else torch.zeros_like(target_scenario)]
        parts.append(interest_queries)
        masks.append(torch.ones(interest_queries.shape[:2], dtype=torch.bool, device=mask.device))
        hidden = self.encode(torch.cat(parts, dim=1), torch.cat(masks, dim=1))
        interests = hidden[:, -interest_queries.shape[1]:]
        return nn.functional.normalize(self.out(self.norm(interests)), dim=-1)

    def at_cuts(self, item_vectors: torch.Tensor, scenarios: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor,
                timestamps: torch.Tensor, cut_lengths: torch.Tensor, cut_valid: torch.Tensor, cut_scenarios: torch.Tensor,
                query_vectors: torch.Tensor | None = None, query_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Causal tower, G prediction points per sequence: [B, L, E] history -> [B, G, K, E] interests, where point g
        sees the first `cut_lengths[:, g]` events (plus its own search query) and nothing after them."""
        if not self.causal:
            raise ValueError("prediction at several cut points needs model.user_attention: causal")
        tokens, queries, valid = self._readout_inputs(item_vectors, scenarios, actions, mask, timestamps, cut_valid,
                                                      cut_scenarios, query_vectors, query_mask)
        interests = encode_at_cuts(self.encoder, tokens, queries, mask, cut_lengths, valid)[:, :, -self.queries.shape[1]:]
        return nn.functional.normalize(self.out(self.norm(interests)), dim=-1)

    def _readout_inputs(self, item_vectors: torch.Tensor, scenarios: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor,
                        timestamps: torch.Tensor, cut_valid: torch.Tensor, cut_scenarios: torch.Tensor,
                        query_vectors: torch.Tensor | None, query_mask: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """The causal tower's inputs: event tokens [B, L, W], each point's readout tokens [B, G, T, W] (its search query,
        then its scenario's K query tokens) and which of them are valid [B, G, T]."""
        positions = event_order(mask).clamp(min=0, max=self.position.num_embeddings - 1)
        tokens = self.item_in(item_vectors) + self.side_information(scenarios, actions, timestamps, mask) + self.position(positions)
        queries = self.queries[cut_scenarios if self.config.scenario_queries else torch.zeros_like(cut_scenarios)]  # [B, G, K, W]
        valid = cut_valid[..., None].expand(*queries.shape[:3])
        if query_vectors is not None:
            query_type = self.scenario.weight[self.num_scenarios]
            queries = torch.cat([(self.item_in(query_vectors) + query_type)[:, :, None], queries], dim=2)
            valid = torch.cat([(query_mask & cut_valid)[..., None], valid], dim=2)
        return tokens, queries, valid
