"""Merging K interests into one answer: max score vs interleave, on hand-made scores."""
import numpy as np
import pytest
import torch

from recplugin.training.merging import merge_report, merged_top


def _scores():
    """Interest 0 likes items 0-3 most (finance), interest 1 items 4-5 (fashion), a little less."""
    first = torch.tensor([0.9, 0.85, 0.8, 0.75, 0.1, 0.1, 0.0])
    second = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.7, 0.65, 0.6])
    return torch.stack([first, second])[None]  # [1, 2, 7]


def test_max_merge_lets_the_strongest_interest_take_every_slot():
    items, sources = merged_top(_scores(), 4, "max")
    assert items.tolist() == [[0, 1, 2, 3]] and sources.tolist() == [[0, 0, 0, 0]]


def test_interleave_gives_each_interest_its_turn_without_repeats():
    scores = _scores()
    scores[0, 1, 0] = 0.95  # interest 1's best is item 0, already taken by interest 0: it moves on
    items, sources = merged_top(scores, 5, "interleave")
    assert items.tolist() == [[0, 4, 1, 5, 2]] and sources.tolist() == [[0, 1, 0, 1, 0]]


def test_seen_items_at_minus_infinity_are_never_merged_and_short_lists_stop():
    scores = _scores()
    scores[..., 4:] = -torch.inf
    items, _ = merged_top(scores, 4, "interleave")
    assert set(items[0].tolist()) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="merge"):
        merged_top(scores, 2, "sum")


def test_the_report_gives_target_ranks_multi_interest_answers_and_category_coverage():
    categories = np.array(["finance"] * 4 + ["fashion"] * 3)
    ranks, several, distinct = merge_report(_scores(), np.array([4]), categories, "max", depth=6, k=3)
    assert ranks.tolist() == [4] and several.tolist() == [False] and distinct.tolist() == [1]
    ranks, several, distinct = merge_report(_scores(), np.array([4]), categories, "interleave", depth=6, k=3)
    assert ranks.tolist() == [1] and several.tolist() == [True] and distinct.tolist() == [2]
    ranks, _, _ = merge_report(_scores(), np.array([6]), categories, "max", depth=3, k=3)
    assert ranks.tolist() == [3]  # not in the merged list: ranked at its depth


def test_a_catalogue_smaller_than_the_list_depth_is_merged_whole():
    categories = np.array(["finance"] * 4 + ["fashion"] * 3)
    for merge in ("max", "interleave"):
        ranks, _, _ = merge_report(_scores(), np.array([6]), categories, merge, depth=200, k=3)
        assert ranks.tolist() == [6 if merge == "max" else 5]
