"""Leave-last-out evaluation: full ranking over all items, seen items excluded, per scenario and overall.

Scores are fp32 and ties count against the target: an item scoring exactly as much as the target ranks above it
(the pessimistic rank), so a model that gives many items the same score gains nothing from it."""
from __future__ import annotations

import zlib
from typing import Callable

import numpy as np
import torch

DEFAULT_KS = (10, 50, 100, 200)
SAMPLED_KS = (1, 5, 10)
ScoreFn = Callable[[np.ndarray], torch.Tensor]


def target_ranks(scores: torch.Tensor, targets: np.ndarray, seen: list[np.ndarray],
                 allowed: torch.Tensor | None = None) -> np.ndarray:
    """0-based rank of each target among all items (or the row's `allowed` ones: its target scenario's), after removing
    the row's seen items (never the target); every other item scoring at least as much as the target ranks above it."""
    scores = scores.float().clone()
    if allowed is not None:
        scores = scores.masked_fill(~allowed.to(scores.device), -torch.inf)
    target_index = torch.as_tensor(targets, device=scores.device)
    rows = torch.arange(len(targets), device=scores.device)
    target_scores = scores[rows, target_index].clone()  # an out-of-scenario target would rank last: it never is one
    for row, items in enumerate(seen):
        if len(items):
            scores[row, torch.as_tensor(items, device=scores.device)] = -torch.inf
    scores[rows, target_index] = -torch.inf
    return (scores >= target_scores[:, None]).sum(dim=1).cpu().numpy()


def ranks_for(score_fn: ScoreFn, targets: np.ndarray, seen: list[np.ndarray], chunk: int = 512,
              allowed_fn: Callable[[np.ndarray], torch.Tensor] | None = None) -> np.ndarray:
    """Ranks for every row, scoring `chunk` rows at a time; `allowed_fn(index)` restricts each row's candidates."""
    out = np.empty(len(targets), dtype=np.int64)
    for start in range(0, len(targets), chunk):
        index = np.arange(start, min(start + chunk, len(targets)))
        allowed = allowed_fn(index) if allowed_fn is not None else None
        out[index] = target_ranks(score_fn(index), targets[index], [seen[i] for i in index], allowed)
    return out


def sampled_ranks(score_fn: ScoreFn, targets: np.ndarray, seen: list[np.ndarray], pools: list[np.ndarray],
                  users: np.ndarray, negatives: int = 999, seed: int = 0, chunk: int = 512) -> np.ndarray:
    """0-based rank of each target among `negatives` random items of its pool (its domain), never seen ones. Each row's
    draw depends only on (seed, its user, its target), so every model ranks a user's target against the same items."""
    out = np.empty(len(targets), dtype=np.int64)
    for start in range(0, len(targets), chunk):
        index = np.arange(start, min(start + chunk, len(targets)))
        scores = score_fn(index).float()
        for offset, row in enumerate(index):
            pool = np.setdiff1d(pools[row], np.append(seen[row], targets[row]), assume_unique=False)
            rng = np.random.default_rng([seed, zlib.crc32(str(users[row]).encode()), int(targets[row])])
            drawn = rng.choice(pool, size=min(negatives, len(pool)), replace=False)
            row_scores = scores[offset]
            out[row] = int((row_scores[torch.as_tensor(drawn, device=row_scores.device)] >= row_scores[int(targets[row])]).sum())
    return out


def metrics_from_ranks(ranks: np.ndarray, ks=DEFAULT_KS) -> dict[str, float]:
    """Recall@k (= hit rate, one target per user), NDCG@k and MRR, plus the number of users."""
    result: dict[str, float] = {"users": float(len(ranks))}
    for k in ks:
        hit = ranks < k
        result[f"Recall@{k}"] = float(hit.mean()) if len(ranks) else 0.0
        result[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean()) if len(ranks) else 0.0
    result["MRR"] = float((1.0 / (ranks + 1.0)).mean()) if len(ranks) else 0.0
    return result


def per_scenario(ranks: np.ndarray, scenario_ids: np.ndarray, scenarios: list[str], ks=DEFAULT_KS,
                 extra: dict[str, np.ndarray] | None = None) -> dict[str, dict[str, float]]:
    """Metrics for every scenario (one without rows: {"users": 0}, never dropped), and overall; `extra` per-row figures
    are averaged alongside."""
    def cell(rows: np.ndarray) -> dict[str, float]:
        return {**metrics_from_ranks(ranks[rows], ks), **{name: float(values[rows].mean()) for name, values in (extra or {}).items()}}

    table = {name: cell(scenario_ids == index) if (scenario_ids == index).any() else {"users": 0.0}
             for index, name in enumerate(scenarios)}
    table["overall"] = cell(np.ones(len(ranks), dtype=bool))
    return table


def popularity_scores(train_targets: np.ndarray, train_scenarios: np.ndarray, num_items: int, num_scenarios: int) -> torch.Tensor:
    """[S, N] popularity per scenario (ties broken by overall popularity)."""
    overall = np.bincount(train_targets, minlength=num_items).astype(np.float64)
    table = np.stack([np.bincount(train_targets[train_scenarios == s], minlength=num_items) for s in range(num_scenarios)])
    return torch.as_tensor(table + overall[None] / (overall.max() + 1.0), dtype=torch.float32)


def markdown_table(results: dict[str, dict[str, dict[str, float]]], ks=DEFAULT_KS, mrr: bool = True) -> str:
    """One row per (model, scenario); columns Recall@k, NDCG@k (and MRR)."""
    metrics = [f"Recall@{k}" for k in ks] + [f"NDCG@{k}" for k in ks] + (["MRR"] if mrr else [])
    metrics += sorted({name for table in results.values() for values in table.values() for name in values}
                      - set(metrics) - {"users", "MRR"} - {f"{m}@{k}" for m in ("Recall", "NDCG") for k in DEFAULT_KS + SAMPLED_KS})
    lines = ["| model | scenario | users | " + " | ".join(metrics) + " |", "|---|---|---|" + "---|" * len(metrics)]
    for model, table in results.items():
        for scenario, values in table.items():
            cells = " | ".join(f"{values[m]:.4f}" if m in values else "-" for m in metrics)
            name = scenario if values["users"] else f"{scenario} (no test labels)"
            lines.append(f"| {model} | {name} | {int(values['users'])} | {cells} |")
    return "\n".join(lines)
