"""Full-ranking metrics: seen items are removed, the target never is, and the numbers match hand calculation."""
import numpy as np
import pytest
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


def test_per_scenario_table_has_overall_and_every_scenario_one_without_labels_said_so():
    table = per_scenario(np.array([0, 5, 100]), np.array([0, 0, 2]), ["search", "feed", "discovery"], ks=(10,))
    assert set(table) == {"search", "feed", "discovery", "overall"} and table["feed"] == {"users": 0.0}
    assert table["search"]["Recall@10"] == 1.0 and table["discovery"]["Recall@10"] == 0.0
    rendered = markdown_table({"m": table}, ks=(10,))
    assert "| m | search | 2 |" in rendered and "| m | feed (no test labels) | 0 | - |" in rendered


def test_mrr_is_the_mean_reciprocal_rank():
    assert metrics_from_ranks(np.array([0, 1, 3]), ks=(10,))["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 4) / 3)


def test_sampled_protocol_ranks_against_negatives_from_the_pool_only():
    from recplugin.training.evaluate import sampled_ranks

    scores = torch.tensor([[0.0, 9.0, 5.0, 1.0, 8.0, 7.0]])  # item 2 is the target
    pools = [np.array([0, 1, 2, 3])]  # its domain: items 4 and 5 (scored higher) are another domain's
    assert sampled_ranks(lambda index: scores[index], np.array([2]), [np.array([], dtype=np.int64)], pools, np.array(["u"]), negatives=3).tolist() == [1]
    assert sampled_ranks(lambda index: scores[index], np.array([2]), [np.array([1])], pools, np.array(["u"]), negatives=3).tolist() == [0]


def test_sampled_negatives_of_a_user_do_not_depend_on_the_other_users_in_the_split():
    """An isolated model's test split holds one scenario's users; it must rank each user against the same negatives."""
    from recplugin.training.evaluate import sampled_ranks

    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(6, 200, generator=generator)
    targets, users = np.arange(6), np.array([f"user{i}" for i in range(6)])
    seen = [np.array([], dtype=np.int64)] * 6
    pools = [np.arange(200)] * 6
    everyone = sampled_ranks(lambda index: scores[index], targets, seen, pools, users, negatives=20)
    odd = np.arange(1, 6, 2)  # the same users alone, in another split
    alone = sampled_ranks(lambda index: scores[odd[index]], targets[odd], [seen[i] for i in odd], [pools[i] for i in odd],
                          users[odd], negatives=20)
    assert alone.tolist() == everyone[odd].tolist()
    assert len(set(everyone.tolist())) > 1  # the ranks are not all alike (the draws are random, not one fixed set)


def test_ties_count_against_the_target():
    scores = torch.tensor([[0.5, 0.5, 0.5, 0.9, 0.1]])  # items 0 and 1 tie with the target (2); item 3 beats it
    assert target_ranks(scores, np.array([2]), [np.array([], dtype=np.int64)]).tolist() == [3]
    assert target_ranks(scores, np.array([2]), [np.array([0])]).tolist() == [2]  # a seen tie no longer counts
    constant = torch.zeros(1, 100)  # a model that scores everything alike ranks every target last, not first
    assert target_ranks(constant, np.array([7]), [np.array([], dtype=np.int64)]).tolist() == [99]


def test_sampled_ties_count_against_the_target():
    from recplugin.training.evaluate import sampled_ranks

    scores = torch.tensor([[0.5, 0.5, 0.5, 0.1]])
    assert sampled_ranks(lambda index: scores[index], np.array([2]), [np.array([], dtype=np.int64)],
                         [np.array([0, 1, 2, 3])], np.array(["u"]), negatives=3).tolist() == [2]


def test_in_scenario_ranking_counts_only_allowed_items_and_never_ranks_worse():
    """Restricting candidates to the target's scenario: an out-of-scenario item above the target no longer counts."""
    import torch

    from recplugin.training.evaluate import ranks_for

    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(40, 30, generator=generator)
    allowed = torch.rand(40, 30, generator=generator) > 0.5
    targets = np.arange(40) % 30
    allowed[np.arange(40), targets] = True
    seen = [np.array([(t + 1) % 30]) for t in targets]
    full = ranks_for(lambda index: scores[index], targets, seen, chunk=7)
    restricted = ranks_for(lambda index: scores[index], targets, seen, chunk=7, allowed_fn=lambda index: allowed[index])
    for row, target in enumerate(targets):
        above = (scores[row] >= scores[row, target]) & allowed[row]
        above[target] = False
        above[seen[row]] = False
        assert restricted[row] == int(above.sum())
    assert (restricted <= full).all() and (restricted < full).any()


def test_serving_and_evaluation_leave_out_the_same_items_by_one_rule():
    from recplugin.models.exclusion import excluded_items

    window, earlier = np.array([5, 3, 5]), np.array([9, 1, 3])
    assert excluded_items(window, earlier, "all").tolist() == [1, 3, 5, 9]
    assert excluded_items(window, earlier, "window").tolist() == [3, 5]
    assert excluded_items(window, earlier, "none").tolist() == []
    with pytest.raises(ValueError, match="serving.exclude_seen must be one of"):
        excluded_items(window, earlier, "some")
