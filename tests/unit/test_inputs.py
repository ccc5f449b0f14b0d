"""Merging per-scenario histories into one time-ordered sequence, and batching."""
import numpy as np

from recplugin.models.inputs import ScenarioEvents, build_batch, merge_scenarios

ROWS = {100: 0, 101: 1, 102: 2, 103: 3, 104: 4}


def test_merge_orders_by_time_across_scenarios_and_keeps_the_latest():
    search = ScenarioEvents([100, 102], [0, 1], [10, 30])
    feed = ScenarioEvents([101, 103, 104], [2, 0, 0], [20, 40, 50])
    rows, scenarios, actions, _ = merge_scenarios([search, feed], max_length=4, id_to_row=ROWS)
    assert rows == [1, 2, 3, 4]
    assert scenarios == [1, 0, 1, 1]
    assert actions == [2, 1, 0, 0]


def test_unknown_items_are_dropped():
    rows, _, _, _ = merge_scenarios([ScenarioEvents([100, 999], [0, 0], [1, 2])], 10, ROWS)
    assert rows == [0]


def test_batch_is_right_aligned_and_take_trims_padding():
    users = [[ScenarioEvents([100], [0], [1])], [ScenarioEvents([100, 101, 102], [0, 0, 0], [1, 2, 3])], [ScenarioEvents([], [], [])]]
    batch = build_batch(users, [0, 0, 0], [-1, 4, -1], max_length=6, id_to_row=ROWS)
    assert batch.mask.sum(1).tolist() == [1, 3, 0]
    assert batch.item_rows[1, -3:].tolist() == [0, 1, 2] and batch.mask[0, -1]
    sub = batch.take(np.array([0, 2]))
    assert sub.mask.shape == (2, 1) and sub.mask.sum() == 1
    assert batch.take(np.array([1])).item_rows.tolist() == [[0, 1, 2]]
    assert batch.take(np.array([2])).mask.shape == (1, 1)
