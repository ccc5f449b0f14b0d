"""Attention masks for causal user sequences read out at several cut points in one forward."""
from __future__ import annotations

import torch


def event_order(mask: torch.Tensor) -> torch.Tensor:
    """[B, L] index of each valid event among its row's valid events (right-aligned rows); -1 for padding."""
    return torch.where(mask, mask.long().cumsum(1) - 1, torch.full_like(mask, -1, dtype=torch.long))


def cut_attention_mask(mask: torch.Tensor, cut_lengths: torch.Tensor, group_valid: torch.Tensor) -> torch.Tensor:
    """[B, S, S] True where attention is blocked, S = L + G * T.

    Layout: L event columns (right-aligned, `mask` [B, L]), then G groups of T readout tokens (a search query and the
    interest queries of one prediction point). An event sees itself and earlier events; a group's valid tokens
    (`group_valid` [B, G, T]) see the first `cut_lengths` [B, G] events and each other; every token sees itself.
    """
    batch, length = mask.shape
    groups, group_size = group_valid.shape[1:]
    order = event_order(mask)
    events_to_events = mask[:, None, :] & mask[:, :, None] & (order[:, None, :] <= order[:, :, None])
    visible = mask[:, None, :] & (order[:, None, :] < cut_lengths[:, :, None])  # [B, G, L]
    tokens_to_events = (visible[:, :, None, :] & group_valid[..., None]).reshape(batch, groups * group_size, length)
    same_group = torch.eye(groups, dtype=torch.bool, device=mask.device)[None, :, None, :, None]
    tokens_to_tokens = (same_group & group_valid[:, :, :, None, None] & group_valid[:, None, None, :, :])
    tokens_to_tokens = tokens_to_tokens.reshape(batch, groups * group_size, groups * group_size)
    allowed = torch.cat([torch.cat([events_to_events, mask.new_zeros(batch, length, groups * group_size)], dim=2),
                         torch.cat([tokens_to_events, tokens_to_tokens], dim=2)], dim=1)
    allowed |= torch.eye(length + groups * group_size, dtype=torch.bool, device=mask.device)[None]
    return ~allowed
