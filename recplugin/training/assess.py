"""A trained model on the snapshot's held-out rows: full ranking (and in-scenario, sampled, merge comparisons) against
the popularity baseline, in fp32 with ties counted against the target."""
from __future__ import annotations

import numpy as np
import torch

from recplugin.config import RecConfig
from recplugin.models.two_tower import TwoTower, max_interest_scores
from recplugin.training import evaluate as ev
from recplugin.training.dataset import Catalog, LabelledSplit, Snapshot
from recplugin.training.merging import merge_comparison


def model_ranks(model: TwoTower, split: LabelledSplit, query_vectors: torch.Tensor, device: torch.device,
                allowed_fn=None) -> np.ndarray:
    """Full-ranking ranks of the split's targets under the model (among `allowed_fn`'s items, when given)."""
    model.eval()
    with torch.no_grad():  # evaluation in fp32 always: bf16 creates ties (and they would count for the target)
        items = model.all_item_vectors().float()

        def score(index: np.ndarray) -> torch.Tensor:
            users = model.user_vectors(split.inputs.take(index).to_torch(device), query_vectors).float()
            return max_interest_scores(users, items)

        return ev.ranks_for(score, split.target_rows, split.seen, allowed_fn=allowed_fn)


def popularity_ranks(popularity: torch.Tensor, split: LabelledSplit, allowed_fn=None) -> np.ndarray:
    """Full-ranking ranks under per-scenario popularity."""
    return ev.ranks_for(lambda index: popularity[split.inputs.target_scenario[index]], split.target_rows, split.seen,
                        allowed_fn=allowed_fn)


def evaluate_model(model: TwoTower, snapshot: Snapshot, query_vectors: torch.Tensor, config: RecConfig,
                   device: torch.device, catalog: Catalog) -> tuple[dict, torch.Tensor]:
    """Test-split metrics for the model and the popularity baseline (per scenario and overall), and the popularity table.

    With `training.sampled_negatives` > 0, also the sampled protocol: each target against that many random unseen
    items of its own scenario (domain), as in papers that report it.
    """
    train_split, test = snapshot.splits["train"], snapshot.splits["test"]
    num_items = model.num_items
    popularity = ev.popularity_scores(train_split.target_rows, train_split.inputs.target_scenario, num_items, len(config.scenarios))
    scenario_ids = test.inputs.target_scenario
    results = {
        "two-tower": ev.per_scenario(model_ranks(model, test, query_vectors, device), scenario_ids, config.scenarios),
        "popularity": ev.per_scenario(popularity_ranks(popularity, test), scenario_ids, config.scenarios),
    }
    if config.training.scenario_ranking:  # candidates: the target scenario's (domain's) items, as serving filters them
        eligible = torch.zeros(len(config.scenarios), num_items, dtype=torch.bool)
        for index, name in enumerate(config.scenarios):
            eligible[index, torch.as_tensor(catalog.rows_in(name), dtype=torch.long)] = True
        allowed = lambda index: eligible[torch.as_tensor(scenario_ids[index], dtype=torch.long)]  # noqa: E731
        results["two-tower (in-scenario)"] = ev.per_scenario(model_ranks(model, test, query_vectors, device, allowed),
                                                             scenario_ids, config.scenarios)
        results["popularity (in-scenario)"] = ev.per_scenario(popularity_ranks(popularity, test, allowed), scenario_ids,
                                                              config.scenarios)
    if config.model.interests_per_scenario > 1 and catalog.categories is not None:  # max score vs interleave, coverage
        with torch.no_grad():
            items = model.all_item_vectors().float()
            per_interest = lambda index: torch.einsum("bke,ne->bkn", model.user_vectors(  # noqa: E731
                test.inputs.take(index).to_torch(device), query_vectors).float(), items)
            results.update(merge_comparison(per_interest, test.target_rows, test.seen, scenario_ids, config.scenarios,
                                            catalog.categories))
    negatives = config.training.sampled_negatives
    if negatives:
        pools = {index: catalog.rows_in(name) for index, name in enumerate(config.scenarios)}
        row_pools = [pools[int(s)] for s in scenario_ids]
        model.eval()
        with torch.no_grad():  # fp32, as in model_ranks
            items = model.all_item_vectors().float()
            model_scores = lambda index: max_interest_scores(  # noqa: E731
                model.user_vectors(test.inputs.take(index).to_torch(device), query_vectors).float(), items)
            sampled = ev.sampled_ranks(model_scores, test.target_rows, test.seen, row_pools, test.user_ids, negatives)
        popular_sampled = ev.sampled_ranks(lambda index: popularity[scenario_ids[index]], test.target_rows, test.seen, row_pools,
                                           test.user_ids, negatives)
        results[f"two-tower ({negatives} sampled)"] = ev.per_scenario(sampled, scenario_ids, config.scenarios, ev.SAMPLED_KS)
        results[f"popularity ({negatives} sampled)"] = ev.per_scenario(popular_sampled, scenario_ids, config.scenarios, ev.SAMPLED_KS)
    return results, popularity
