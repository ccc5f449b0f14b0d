"""How K interest vectors become one answer: by max score (an item's best match over the interests) or interleaved
(each interest in turn adds its best item not yet taken: a per-interest quota of ~k/K), and what each gives: the
target's rank within the merged list, how many answers draw on more than one interest, and category coverage."""
from __future__ import annotations

import numpy as np
import torch

from recplugin.models.merge import MERGES, interleaved


def merged_top(per_interest: torch.Tensor, depth: int, merge: str) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, K, N] scores (seen items at -inf) -> ([B, depth] item rows, [B, depth] the interest that put each there)."""
    if merge == "max":
        best, source = per_interest.max(dim=1)
        items = best.topk(depth, dim=1).indices
        return items, source.gather(1, items)
    if merge != "interleave":
        raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
    rows, interests, _ = per_interest.shape
    ranked = per_interest.topk(min(depth, per_interest.shape[2]), dim=2)  # each interest's own list
    items = torch.full((rows, depth), -1, dtype=torch.long)
    sources = torch.zeros((rows, depth), dtype=torch.long)
    indices, values = ranked.indices.tolist(), ranked.values.tolist()
    for row in range(rows):
        lists = [[item for item, score in zip(indices[row][j], values[row][j]) if score > -np.inf] for j in range(interests)]
        chosen = interleaved(lists, depth)
        if chosen:
            items[row, :len(chosen)] = torch.as_tensor([item for item, _ in chosen], dtype=torch.long)
            sources[row, :len(chosen)] = torch.as_tensor([source for _, source in chosen], dtype=torch.long)
    return items, sources


def merge_report(per_interest: torch.Tensor, targets: np.ndarray, categories: np.ndarray, merge: str,
                 depth: int = 200, k: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: the target's 0-based rank in the merged list (`depth` when it is not in it), whether the top k draws on
    more than one interest, and the number of distinct categories in the top k."""
    depth = min(depth, per_interest.shape[2])  # a catalogue smaller than the list
    items, sources = merged_top(per_interest.float().cpu(), depth, merge)
    found = items == torch.as_tensor(targets)[:, None]
    ranks = torch.where(found.any(dim=1), found.float().argmax(dim=1), torch.full((len(targets),), depth)).numpy()
    top_sources = sources[:, :k]
    several = (top_sources != top_sources[:, :1]).any(dim=1).numpy()
    top_items = items[:, :k].numpy()
    distinct = np.array([len(set(categories[row[row >= 0]])) for row in top_items])
    return ranks, several, distinct


def merge_comparison(per_interest_fn, targets: np.ndarray, seen: list[np.ndarray], scenario_ids: np.ndarray,
                     scenarios: list[str], categories: np.ndarray, chunk: int = 128) -> dict[str, dict[str, dict]]:
    """Both merges side by side at equal k over a split: Recall/NDCG of the target in the merged list, the share of
    answers whose top 10 draws on more than one interest, and the distinct categories in the top 10. Ties go to topk's
    order here (the main full-ranking figures count them against the target)."""
    from recplugin.training.evaluate import per_scenario

    results = {}
    for merge in MERGES:
        ranks, several, distinct = [], [], []
        for start in range(0, len(targets), chunk):
            index = np.arange(start, min(start + chunk, len(targets)))
            scores = per_interest_fn(index).float().cpu().clone()
            for offset, row in enumerate(index):
                hidden = seen[row][seen[row] != targets[row]]
                scores[offset][:, torch.as_tensor(hidden, dtype=torch.long)] = -torch.inf
            row_ranks, row_several, row_distinct = merge_report(scores, targets[index], categories, merge)
            ranks.append(row_ranks), several.append(row_several), distinct.append(row_distinct)
        extra = {"multi_interest@10": np.concatenate(several).astype(float), "categories@10": np.concatenate(distinct)}
        results[f"two-tower ({merge} merge)"] = per_scenario(np.concatenate(ranks), scenario_ids, scenarios, extra=extra)
    return results
