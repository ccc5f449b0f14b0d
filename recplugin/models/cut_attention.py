"""Causal user sequences read out at several cut points in one forward, without attention a point may not use."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from recplugin.models.dropout import dropout as fast_dropout


def event_order(mask: torch.Tensor) -> torch.Tensor:
    """[B, L] index of each valid event among its row's valid events (right-aligned rows); -1 for padding."""
    return torch.where(mask, mask.long().cumsum(1) - 1, torch.full_like(mask, -1, dtype=torch.long))


def visibility(mask: torch.Tensor, cut_lengths: torch.Tensor, group_valid: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Who may attend to whom: events [B, L, L] (an event sees itself and earlier events), readout tokens to events
    [B, G, T, L] (a valid token of group g sees the first `cut_lengths[:, g]` events) and to their own group
    [B, G, T, T] (valid tokens see each other). Every token sees itself, so no row of a softmax is empty."""
    length = mask.shape[1]
    group_size = group_valid.shape[2]
    order = event_order(mask)
    eye = torch.eye(length, dtype=torch.bool, device=mask.device)
    events = (mask[:, None, :] & mask[:, :, None] & (order[:, None, :] <= order[:, :, None])) | eye
    seen = mask[:, None, :] & (order[:, None, :] < cut_lengths[:, :, None])  # [B, G, L]
    to_events = seen[:, :, None, :] & group_valid[..., None]
    own = group_valid[..., :, None] & group_valid[..., None, :]
    own = own | torch.eye(group_size, dtype=torch.bool, device=mask.device)
    return events, to_events, own


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[..., N, W] -> [..., heads, N, W / heads]."""
    return x.unflatten(-1, (heads, -1)).transpose(-3, -2)


def _readout_attention(attention: nn.MultiheadAttention, events: torch.Tensor, tokens: torch.Tensor,
                       masks: tuple[torch.Tensor, ...], events_needed: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
    """One self-attention block: events [B, L, W] attend causally among themselves; readout tokens [B, G, T, W] attend
    to the events their point sees and to their own group only. Without `events_needed` (the last layer) the events
    give only their keys and values, and their own update is None."""
    heads, width = attention.num_heads, events.shape[-1]
    if events_needed:
        q_e, k_e, v_e = (_heads(x, heads) for x in F.linear(events, attention.in_proj_weight, attention.in_proj_bias).chunk(3, -1))
    else:  # no query projection for events whose output nobody reads
        k_e, v_e = (_heads(x, heads) for x in F.linear(events, attention.in_proj_weight[width:],
                                                        attention.in_proj_bias[width:]).chunk(2, -1))
    q_t, k_t, v_t = (_heads(x, heads) for x in F.linear(tokens, attention.in_proj_weight, attention.in_proj_bias).chunk(3, -1))
    # q_e [B, h, L, d]; q_t [B, G, h, T, d]
    dropout = attention.dropout if attention.training else 0.0
    scale = q_t.shape[-1] ** -0.5
    if not events_needed:
        event_out = None
    elif dropout and events.device.type == "cpu":  # SDPA's CPU dropout draws its mask slowly (models/dropout.py)
        event_scores = (q_e @ k_e.transpose(-1, -2) * scale).masked_fill(~masks[0][:, None], float("-inf"))
        event_out = fast_dropout(event_scores.softmax(dim=-1), dropout, True) @ v_e
    else:
        event_out = F.scaled_dot_product_attention(q_e, k_e, v_e, attn_mask=masks[0][:, None], dropout_p=dropout)
    to_events = torch.einsum("bghtd,bhld->bghtl", q_t, k_e) * scale
    to_group = (q_t @ k_t.transpose(-1, -2)) * scale  # [B, G, h, T, T]
    scores = torch.cat([to_events.masked_fill(~masks[1][:, :, None], float("-inf")),
                        to_group.masked_fill(~masks[2][:, :, None], float("-inf"))], dim=-1)
    weights = fast_dropout(scores.softmax(dim=-1), dropout, attention.training)
    length = k_e.shape[2]
    token_out = torch.einsum("bghtl,bhld->bghtd", weights[..., :length], v_e) + weights[..., length:] @ v_t
    merge = lambda x: x.transpose(-3, -2).flatten(-2)  # noqa: E731  [..., h, N, d] -> [..., N, W]
    return None if event_out is None else attention.out_proj(merge(event_out)), attention.out_proj(merge(token_out))


def encode_at_cuts(encoder: nn.TransformerEncoder, events: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor,
                   cut_lengths: torch.Tensor, group_valid: torch.Tensor) -> torch.Tensor:
    """The pre-norm encoder's layers over events [B, L, W] and G readout groups [B, G, T, W]; returns the groups' last
    hidden states. Equal to running the encoder over events + all groups with a mask that blocks everything but what
    `visibility` allows, at O(L^2 + G*T*(L+T)) attention instead of O((L+G*T)^2)."""
    masks = visibility(mask, cut_lengths, group_valid)
    for depth, layer in enumerate(encoder.layers):
        if not layer.norm_first:
            raise ValueError("encode_at_cuts implements pre-norm (norm_first) encoder layers only")
        last = depth == len(encoder.layers) - 1  # the events' own output is never read: skip their update (-40% work)
        event_update, token_update = _readout_attention(layer.self_attn, layer.norm1(events), layer.norm1(tokens), masks,
                                                        events_needed=not last)
        feed_forward = lambda x: layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm2(x))))))  # noqa: E731
        tokens = tokens + layer.dropout1(token_update)
        tokens = tokens + feed_forward(tokens)
        if not last:
            events = events + layer.dropout1(event_update)
            events = events + feed_forward(events)
    return tokens if encoder.norm is None else encoder.norm(tokens)


def encode_at_end(encoder: nn.TransformerEncoder, events: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor,
                  valid: torch.Tensor) -> torch.Tensor:
    """Inference at one prediction point after the whole history: events [B, L, W] and one readout group [B, T, W]
    (`valid` [B, T]) as one sequence under one mask, the group alone through the last layer. Equal to encode_at_cuts
    with every cut at the end, in about a third of the operations (no dropout: eval mode only)."""
    length, count = events.shape[1], tokens.shape[1]
    order = event_order(mask)
    events_see_events = mask[:, None, :] & mask[:, :, None] & (order[:, None, :] <= order[:, :, None])  # [B, L, L]
    tokens_see_events = mask[:, None, :] & valid[:, :, None]  # [B, T, L]
    see_tokens = torch.cat([torch.zeros_like(tokens_see_events.transpose(1, 2)), valid[:, :, None] & valid[:, None, :]], dim=1)
    allowed = torch.cat([torch.cat([events_see_events, tokens_see_events], dim=1), see_tokens], dim=2)
    allowed = (allowed | torch.eye(length + count, dtype=torch.bool, device=mask.device))[:, None]  # [B, 1, L+T, L+T]
    hidden = torch.cat([events, tokens], dim=1)
    for depth, layer in enumerate(encoder.layers):
        if not layer.norm_first:
            raise ValueError("encode_at_end implements pre-norm (norm_first) encoder layers only")
        attention, width = layer.self_attn, hidden.shape[-1]
        weight, bias, heads = attention.in_proj_weight, attention.in_proj_bias, attention.num_heads
        normed = layer.norm1(hidden)
        if depth < len(encoder.layers) - 1:
            query, key, value = (_heads(x, heads) for x in F.linear(normed, weight, bias).chunk(3, -1))
            visible = allowed
        else:  # the last layer: only the readout tokens ask; every position still gives its key and value
            query = _heads(F.linear(normed[:, length:], weight[:width], bias[:width]), heads)
            key, value = (_heads(x, heads) for x in F.linear(normed, weight[width:], bias[width:]).chunk(2, -1))
            hidden, visible = hidden[:, length:], allowed[:, :, length:]
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=visible)
        hidden = hidden + attention.out_proj(attended.transpose(1, 2).flatten(-2))
        hidden = hidden + layer.linear2(layer.activation(layer.linear1(layer.norm2(hidden))))
    hidden = hidden if len(encoder.layers) else hidden[:, length:]
    return hidden if encoder.norm is None else encoder.norm(hidden)
