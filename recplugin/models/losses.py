"""Multi-positive InfoNCE: a window of next targets, clustered and matched to interest vectors, with masks and logQ."""
from __future__ import annotations

import itertools
import math

import torch
from torch import nn

MAX_MATCHED_INTERESTS = 6  # every permutation is scored at once: 6! = 720 per row


class LearnableTemperature(nn.Module):
    """The logit scale 1/temperature, learned in log space from `initial` and capped at `max_scale`."""

    def __init__(self, initial: float = 0.07, max_scale: float = 100.0, learnable: bool = True):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / initial)), requires_grad=learnable)
        self.max_scale = max_scale

    def forward(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=self.max_scale)


def kmeans(points: torch.Tensor, mask: torch.Tensor, clusters: int, iterations: int = 3) -> torch.Tensor:
    """Spherical k-means per row: [B, W, E] points (mask [B, W]) -> [B, W] cluster ids; padded points get -1."""
    rows = torch.arange(points.shape[0], device=points.device)
    chosen = [points[rows, mask.float().argmax(dim=1)]]  # farthest-point seeding among the valid points
    for _ in range(1, clusters):
        closeness = torch.stack([torch.einsum("bwe,be->bw", points, c) for c in chosen]).amax(dim=0)
        chosen.append(points[rows, closeness.masked_fill(~mask, float("inf")).argmin(dim=1)])
    centroids = torch.stack(chosen, dim=1) * mask.any(dim=1)[:, None, None]
    for step in range(iterations + 1):
        assignment = torch.einsum("bwe,bke->bwk", points, centroids).argmax(dim=-1)
        if step == iterations:
            break
        one_hot = nn.functional.one_hot(assignment, clusters).float() * mask[..., None]
        sums = torch.einsum("bwk,bwe->bke", one_hot, points)
        filled = one_hot.sum(dim=1) > 0
        centroids = torch.where(filled[..., None], nn.functional.normalize(sums, dim=-1), centroids)
    return assignment.masked_fill(~mask, -1)


def match_clusters(points: torch.Tensor, assignment: torch.Tensor, interests: torch.Tensor) -> torch.Tensor:
    """[B, C] interest index for each cluster: the assignment of clusters to interests with the largest total similarity.

    This is the optimum the Hungarian algorithm finds; with at most six interests every permutation is scored in one
    batched operation, which is exact and faster on a GPU than a per-row solver.
    """
    clusters = interests.shape[1]
    if clusters > MAX_MATCHED_INTERESTS:
        raise ValueError(f"cluster matching supports at most {MAX_MATCHED_INTERESTS} interests per scenario, got {clusters}")
    one_hot = nn.functional.one_hot(assignment.clamp(min=0), clusters).float() * (assignment >= 0)[..., None]
    centroids = torch.einsum("bwc,bwe->bce", one_hot, points)  # unnormalised: a big cluster weighs more
    similarity = torch.einsum("bce,bke->bck", centroids, interests)
    permutations = torch.tensor(list(itertools.permutations(range(clusters))), device=points.device)  # [P, C]
    scores = similarity[:, torch.arange(clusters, device=points.device)[None, :], permutations].sum(dim=-1)  # [B, P]
    return permutations[scores.argmax(dim=-1)]


def _owners_targets(owners: torch.Tensor, target_rows: torch.Tensor, candidate_rows: torch.Tensor) -> torch.Tensor:
    """[M, C]: whether candidate c's item is a target of target m's owner (its own target included)."""
    rows, local = torch.unique(torch.cat([target_rows, candidate_rows]), return_inverse=True)
    owner_ids, owner_of = torch.unique(owners, return_inverse=True)
    has = torch.zeros(len(owner_ids), len(rows), dtype=torch.bool, device=owners.device)
    has[owner_of, local[:len(target_rows)]] = True
    return has[owner_of][:, local[len(target_rows):]]


def multi_positive_infonce(interests: torch.Tensor, targets: torch.Tensor, target_rows: torch.Tensor,
                           negatives: torch.Tensor, negative_rows: torch.Tensor, scale: torch.Tensor,
                           log_q: torch.Tensor | None = None, false_negative_cosine: float = 0.98,
                           owners: torch.Tensor | None = None, item_groups: torch.Tensor | None = None,
                           in_batch: bool = True, per_row: bool = False) -> torch.Tensor:
    """InfoNCE for every valid target of a window, each scored by the interest its cluster was matched to; averaged
    over the targets, or with `per_row` within each row's window first (a row of 10 targets weighs as one of 1).

    interests [B, K, E]; targets [B, W, E] with rows [B, W] (-1 = padding); negatives [N, E] with rows [N].
    Candidates are the batch's targets and the shared negatives; with `in_batch` False the negatives only, which must
    hold every target's item (the whole catalogue: an exact softmax). Excluded from a target's softmax: its own item
    elsewhere, every target of its owner (the user's other window targets and, with `owners`, the targets of the
    user's other prediction points), and near-duplicates (cosine > `false_negative_cosine`).
    `log_q` [M + N] ([N] without in-batch candidates) is subtracted from the candidates' logits (sampling-bias
    correction), M = valid targets. `owners` [B] (default: every row its own) says which rows belong to one user.
    `item_groups` [num_items] scenario bitmask per item row: a candidate sharing no scenario with the target is excluded.
    """
    batch, width, _ = targets.shape
    valid = target_rows >= 0
    assignment = kmeans(targets, valid, interests.shape[1])
    matched = match_clusters(targets, assignment, interests)  # [B, C]
    interest_of_target = torch.gather(matched, 1, assignment.clamp(min=0))  # [B, W]
    anchors = interests[torch.arange(batch, device=targets.device)[:, None], interest_of_target][valid]  # [M, E]
    positives, rows = targets[valid], target_rows[valid]
    row_owner = torch.arange(batch, device=targets.device) if owners is None else owners
    owners = row_owner[:, None].expand(batch, width)[valid]
    candidates = torch.cat([positives, negatives]) if in_batch else negatives
    candidate_rows = torch.cat([rows, negative_rows]) if in_batch else negative_rows
    own = torch.arange(len(positives), device=targets.device)
    labels = own if in_batch else (candidate_rows[None, :] == rows[:, None]).int().argmax(dim=1)
    logits = anchors @ candidates.T * scale
    if log_q is not None:
        logits = logits - log_q[None, :]
    excluded = _owners_targets(owners, rows, candidate_rows)
    excluded |= (positives @ candidates.T).detach() > false_negative_cosine
    if item_groups is not None:
        excluded |= (item_groups[rows][:, None] & item_groups[candidate_rows][None, :]) == 0
    excluded[own, labels] = False
    logits = logits.masked_fill(excluded, torch.finfo(logits.dtype).min)
    losses = nn.functional.cross_entropy(logits, labels, reduction="none")
    weights = 1.0 / valid.sum(dim=1, keepdim=True).expand(batch, width)[valid] if per_row else torch.ones_like(losses)
    return (losses * weights).sum() / weights.sum()
