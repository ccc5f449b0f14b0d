"""In-scenario negatives: the pools per scenario, their draw and its logQ, and the config switch."""
import numpy as np
import pytest
import torch

from recplugin.config import ConfigError, RecConfig, with_overrides
from recplugin.training.objective import ScenarioPools


def _pools() -> ScenarioPools:
    item_scenarios = [["food"]] * 6 + [["kitchen"]] * 3 + [["food", "kitchen"]] + [[]]
    return ScenarioPools.of(item_scenarios, ["food", "kitchen"], torch.device("cpu"))


def test_pools_hold_each_scenarios_items_and_unlisted_items_belong_to_all():
    pools = _pools()
    assert pools.rows[0].tolist() == [0, 1, 2, 3, 4, 5, 9, 10]
    assert pools.rows[1].tolist() == [6, 7, 8, 9, 10]
    assert pools.groups.tolist() == [1] * 6 + [2] * 3 + [3, 3]


def test_the_draw_splits_the_pool_evenly_and_its_logq_is_the_expected_count_of_each_item():
    pools = _pools()
    drawn, log_q = pools.draw(4000, np.random.default_rng(0), torch.device("cpu"))
    assert len(drawn) == 4000
    assert set(drawn[:2000].tolist()) == set(pools.rows[0].tolist()) and set(drawn[2000:].tolist()) == set(pools.rows[1].tolist())
    expected = {0: 2000 / 8, 6: 2000 / 5, 9: 2000 / 8 + 2000 / 5}
    for item, count in expected.items():
        assert torch.allclose(log_q[drawn == item], torch.tensor(np.log(count), dtype=torch.float32))
    observed = np.bincount(drawn.numpy(), minlength=11)
    assert abs(observed[9] - expected[9]) < 0.25 * expected[9]  # the formula matches what the draw does


def test_negatives_setting_is_validated():
    with_overrides(RecConfig(), training={"negatives": "scenario"}).validate()
    with pytest.raises(ConfigError, match=r"training.negatives must be one of \['scenario', 'global'\]"):
        with_overrides(RecConfig(), training={"negatives": "domain"}).validate()
