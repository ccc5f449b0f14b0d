"""Full-ranking metrics: seen items are removed, the target never is, and the numbers match hand calculation."""
import numpy as np
import torch

from recplugin.training.evaluate import markdown_table, metrics_from_ranks, per_scenario, target_ranks


def test_seen_items_are_excluded_but_not_the_target():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.1], [0.9, 0.8, 0.7, 0.1]])
    ranks = target_ranks(scores, np.array([2, 2]), [np.array([0]), np.array([0, 1, 2])])
    assert ranks.tolist() == [1, 0]


def test_metrics_by_hand():
    result = metrics_from_ranks(np.array([0, 1, 20, 200]), ks=(10, 50))
    assert result["Recall@10"] == 0.5 and result["Recall@50"] == 0.75
    assert np.isclose(result["NDCG@10"], (1 + 1 / np.log2(3)) / 4)
    assert np.isclose(result["NDCG@50"], (1 + 1 / np.log2(3) + 1 / np.log2(22)) / 4)


def test_per_scenario_table_has_overall_and_only_present_scenarios():
    table = per_scenario(np.array([0, 5, 100]), np.array([0, 0, 2]), ["search", "feed", "discovery"], ks=(10,))
    assert set(table) == {"search", "discovery", "overall"}
    assert table["search"]["Recall@10"] == 1.0 and table["discovery"]["Recall@10"] == 0.0
    assert "| m | search | 2 |" in markdown_table({"m": table}, ks=(10,))
