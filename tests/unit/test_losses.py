"""The multi-positive InfoNCE: clustering, cluster-to-interest matching, masks, logQ and the learnable temperature."""
import itertools

import pytest
import torch
from torch.nn.functional import cross_entropy, normalize

from recplugin.models.losses import LearnableTemperature, kmeans, match_clusters, multi_positive_infonce


def _unit(*rows):
    return normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_kmeans_separates_two_groups_and_ignores_padding():
    points = _unit([1, 0.1, 0], [0.1, 1, 0], [1, 0, 0.1], [0, 1, 0.1], [0, 0, 1])[None]
    mask = torch.tensor([[True, True, True, True, False]])
    assignment = kmeans(points, mask, 2)[0].tolist()
    assert assignment[0] == assignment[2] != assignment[1] == assignment[3]
    assert assignment[4] == -1


def test_matching_maximises_total_similarity_like_the_hungarian_algorithm():
    torch.manual_seed(0)
    points = normalize(torch.randn(8, 6, 5), dim=-1)
    assignment = torch.randint(0, 3, (8, 6))
    interests = normalize(torch.randn(8, 3, 5), dim=-1)
    matched = match_clusters(points, assignment, interests)
    for row in range(8):
        centroids = [points[row][assignment[row] == c].sum(0) for c in range(3)]
        best = max(itertools.permutations(range(3)), key=lambda p: sum(float(centroids[c] @ interests[row, p[c]]) for c in range(3)))
        assert tuple(matched[row].tolist()) == best


def test_each_cluster_is_scored_by_its_matched_interest():
    interests = _unit([1, 0, 0], [0, 1, 0])[None]  # interest 0 likes x, interest 1 likes y
    targets = _unit([0, 1, 0.05], [1, 0, 0.05])[None]  # first target is y-like, second x-like
    rows = torch.tensor([[3, 4]])
    negatives, negative_rows = _unit([0.6, 0.6, 0.5], [0, 0, 1], [-1, 0.2, 0]), torch.tensor([7, 8, 9])
    scale = torch.tensor(5.0)
    straight = multi_positive_infonce(interests, targets, rows, negatives, negative_rows, scale)
    swapped = multi_positive_infonce(interests.flip(1), targets, rows, negatives, negative_rows, scale)

    def loss_with(anchors):  # by hand: each target against the negatives (the user's other target is masked)
        logits = torch.stack([torch.cat([(a @ t)[None], a @ negatives.T]) for a, t in zip(anchors, targets[0])]) * scale
        return cross_entropy(logits, torch.zeros(2, dtype=torch.long))

    matched, mismatched = loss_with(interests[0].flip(0)), loss_with(interests[0])
    assert float(straight) > 0.05 and float(mismatched) > float(matched) + 1.0  # the check can tell them apart
    assert torch.allclose(straight, matched, atol=1e-5) and torch.allclose(swapped, matched, atol=1e-5)


def test_single_target_loss_is_softmax_with_duplicates_masked():
    torch.manual_seed(1)
    users = normalize(torch.randn(3, 1, 4), dim=-1)
    targets = normalize(torch.randn(3, 1, 4), dim=-1)
    rows = torch.tensor([[5], [5], [7]])
    negatives = normalize(torch.randn(2, 4), dim=-1)
    loss = multi_positive_infonce(users, targets, rows, negatives, torch.tensor([5, 9]), torch.tensor(10.0), false_negative_cosine=2.0)
    logits = users[:, 0] @ torch.cat([targets[:, 0], negatives]).T * 10
    keep = torch.tensor([[1, 0, 1, 0, 1], [0, 1, 1, 0, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    expected = torch.stack([cross_entropy(logits[i][keep[i]][None], torch.tensor([int(keep[i][:i].sum())])) for i in range(3)]).mean()
    assert torch.allclose(loss, expected, atol=1e-5)


def test_rows_of_one_owner_are_not_each_others_negatives():
    """Packed training: the prediction points of one user (owner) exclude each other's targets from their softmax."""
    torch.manual_seed(3)
    users = normalize(torch.randn(3, 1, 4), dim=-1)
    targets = normalize(torch.randn(3, 1, 4), dim=-1)
    rows = torch.tensor([[1], [2], [3]])
    negatives = normalize(torch.randn(2, 4), dim=-1)
    loss = multi_positive_infonce(users, targets, rows, negatives, torch.tensor([8, 9]), torch.tensor(10.0),
                                  false_negative_cosine=2.0, owners=torch.tensor([0, 0, 1]))
    logits = users[:, 0] @ torch.cat([targets[:, 0], negatives]).T * 10
    keep = torch.tensor([[1, 0, 1, 1, 1], [0, 1, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    expected = torch.stack([cross_entropy(logits[i][keep[i]][None], torch.tensor([int(keep[i][:i].sum())])) for i in range(3)]).mean()
    assert torch.allclose(loss, expected, atol=1e-5)
    separate = multi_positive_infonce(users, targets, rows, negatives, torch.tensor([8, 9]), torch.tensor(10.0),
                                      false_negative_cosine=2.0)
    assert not torch.allclose(loss, separate, atol=1e-4)


def test_full_softmax_is_cross_entropy_over_the_catalogue_without_the_owners_other_targets():
    """in_batch=False over every item: each target against the whole catalogue, its owner's other targets left out."""
    torch.manual_seed(4)
    users = normalize(torch.randn(3, 1, 4), dim=-1)
    catalogue = normalize(torch.randn(6, 4), dim=-1)
    rows = torch.tensor([[1], [4], [2]])
    loss = multi_positive_infonce(users, catalogue[rows], rows, catalogue, torch.arange(6), torch.tensor(10.0),
                                  false_negative_cosine=2.0, owners=torch.tensor([0, 0, 1]), in_batch=False)
    logits = users[:, 0] @ catalogue.T * 10
    keep = torch.ones(3, 6, dtype=torch.bool)
    keep[0, 4] = keep[1, 1] = False  # points 0 and 1 are one user's: neither target is the other's negative
    expected = torch.stack([cross_entropy(logits[i][keep[i]][None], torch.tensor([int(keep[i][:rows[i, 0]].sum())]))
                            for i in range(3)]).mean()
    assert torch.allclose(loss, expected, atol=1e-5)
    everything = multi_positive_infonce(users, catalogue[rows], rows, catalogue, torch.arange(6), torch.tensor(10.0),
                                        false_negative_cosine=2.0, in_batch=False)
    assert torch.allclose(everything, cross_entropy(logits, rows[:, 0]), atol=1e-5)


def test_a_random_negative_that_is_the_owners_other_target_is_left_out():
    """The shared random pool may draw an item the same user is trained to predict elsewhere: not a negative."""
    torch.manual_seed(5)
    users = normalize(torch.randn(2, 1, 4), dim=-1)
    targets = normalize(torch.randn(2, 1, 4), dim=-1)
    rows = torch.tensor([[1], [2]])
    negatives = normalize(torch.randn(2, 4), dim=-1)
    loss = multi_positive_infonce(users, targets, rows, negatives, torch.tensor([2, 9]), torch.tensor(10.0),
                                  false_negative_cosine=2.0, owners=torch.tensor([0, 0]))
    logits = users[:, 0] @ torch.cat([targets[:, 0], negatives]).T * 10
    expected = torch.stack([cross_entropy(logits[0][[0, 3]][None], torch.tensor([0])),
                            cross_entropy(logits[1][[1, 3]][None], torch.tensor([0]))]).mean()
    assert torch.allclose(loss, expected, atol=1e-5)


def test_near_duplicates_are_not_negatives():
    torch.manual_seed(2)
    users = normalize(torch.randn(1, 2, 6), dim=-1)
    targets = normalize(torch.randn(1, 1, 6), dim=-1)
    rows = torch.tensor([[1]])
    others = normalize(torch.randn(2, 6), dim=-1)
    base = multi_positive_infonce(users, targets, rows, others, torch.tensor([7, 8]), torch.tensor(10.0))
    near_copy = normalize(targets[0] + 0.001, dim=-1)
    with_copy = multi_positive_infonce(users, targets, rows, torch.cat([others, near_copy]), torch.tensor([7, 8, 9]), torch.tensor(10.0))
    assert torch.allclose(base, with_copy, atol=1e-6)
    assert bool(((targets[0] @ users[0].T).abs() < 0.98).all())
    with_interest_like = multi_positive_infonce(users, targets, rows, torch.cat([others, users[0]]), torch.tensor([7, 8, 9, 10]),
                                                torch.tensor(10.0))
    assert float(with_interest_like) > float(base) + 0.1  # an ordinary hard negative does count


def test_a_users_other_window_targets_never_compete():
    torch.manual_seed(4)
    users = normalize(torch.randn(1, 2, 6), dim=-1)
    targets = normalize(torch.randn(1, 3, 6), dim=-1)
    loss = multi_positive_infonce(users, targets, torch.tensor([[1, 2, 3]]), targets[0, :0], torch.tensor([], dtype=torch.long),
                                  torch.tensor(10.0))
    assert float(loss) == pytest.approx(0.0, abs=1e-6)  # every other candidate is the same user's, so masked


def test_per_row_weights_make_a_long_window_weigh_as_much_as_a_single_target():
    torch.manual_seed(6)
    catalogue = normalize(torch.randn(8, 5), dim=-1)
    users = normalize(torch.randn(2, 1, 5), dim=-1)
    rows = torch.tensor([[1, 2, 3], [4, -1, -1]])  # three targets in the first window, one in the second
    targets = catalogue[rows.clamp(min=0)] * (rows >= 0)[..., None]
    loss = lambda index, **kw: multi_positive_infonce(users[index], targets[index], rows[index], catalogue,  # noqa: E731
                                                      torch.arange(8), torch.tensor(10.0), in_batch=False, **kw)
    first, second = float(loss([0])), float(loss([1]))  # candidates are the catalogue: each row's losses stand alone
    assert abs(first - second) > 0.1
    assert float(loss([0, 1])) == pytest.approx((3 * first + second) / 4, rel=1e-5)  # every target weighs the same
    assert float(loss([0, 1], per_row=True)) == pytest.approx((first + second) / 2, rel=1e-5)  # every row does


def test_logq_correction_only_matters_when_it_is_not_uniform():
    torch.manual_seed(3)
    users = normalize(torch.randn(4, 2, 5), dim=-1)
    targets = normalize(torch.randn(4, 1, 5), dim=-1)
    rows = torch.arange(4)[:, None]
    negatives = normalize(torch.randn(3, 5), dim=-1)
    args = (users, targets, rows, negatives, torch.tensor([10, 11, 12]), torch.tensor(10.0))
    plain = multi_positive_infonce(*args)
    assert torch.allclose(plain, multi_positive_infonce(*args, log_q=torch.full((7,), -2.0)), atol=1e-6)
    assert not torch.allclose(plain, multi_positive_infonce(*args, log_q=torch.linspace(-4, 0, 7)))


def test_logq_subtracts_the_log_sampling_probability_from_each_candidate():
    users, targets = _unit([1, 0])[None], _unit([1, 0])[None]  # one user with one interest, one target
    negatives = _unit([0.8, 0.6])
    log_q = torch.tensor([0.0, 2.0])  # the negative is e^2 times more likely to be sampled: its logit must go down
    loss = multi_positive_infonce(users, targets, torch.tensor([[1]]), negatives, torch.tensor([2]), torch.tensor(1.0),
                                  log_q=log_q)
    expected = cross_entropy(torch.tensor([[1.0 - 0.0, 0.8 - 2.0]]), torch.tensor([0]))
    assert torch.allclose(loss, expected, atol=1e-6)  # a sign flip (adding log q) gives a different, larger loss
    flipped = cross_entropy(torch.tensor([[1.0 + 0.0, 0.8 + 2.0]]), torch.tensor([0]))
    assert float(flipped) > float(expected) + 1.0


def test_temperature_starts_at_its_initial_value_learns_and_is_capped():
    temperature = LearnableTemperature(0.07, max_scale=100.0)
    assert float(temperature().detach()) == pytest.approx(1 / 0.07, rel=1e-5)
    temperature().backward()
    assert temperature.log_scale.grad is not None and float(temperature.log_scale.grad) > 0
    with torch.no_grad():
        temperature.log_scale.fill_(10.0)
    assert float(temperature().detach()) == 100.0
    assert not LearnableTemperature(0.07, learnable=False).log_scale.requires_grad


def test_target_windows_follow_the_same_user_in_time_order():
    import numpy as np

    from recplugin.training.dataset import LabelledSplit, target_windows

    split = LabelledSplit(_requests([0] * 5, [-1] * 5), np.array([10, 11, 12, 20, 21]), np.array([1, 1, 1, 2, 2]), [])
    assert target_windows(split, 3).tolist() == [[10, 11, 12], [11, 12, -1], [12, -1, -1], [20, 21, -1], [21, -1, -1]]


def test_target_windows_hold_only_answers_to_the_same_scenario_and_query():
    import numpy as np

    from recplugin.training.dataset import LabelledSplit, target_windows

    # one user in time order: feed, search "a", feed, search "b", search "a", feed; then another user's feed row
    split = LabelledSplit(_requests([1, 0, 1, 0, 0, 1, 1], [-1, 0, -1, 1, 0, -1, -1]), np.arange(30, 37),
                          np.array([5, 5, 5, 5, 5, 5, 6]), [])
    assert target_windows(split, 3).tolist() == [[30, 32, 35], [31, 34, -1], [32, 35, -1], [33, -1, -1], [34, -1, -1],
                                                 [35, -1, -1], [36, -1, -1]]


def _requests(scenarios: list[int], queries: list[int]):
    """User-tower inputs that carry only each row's target scenario and query (all the windows read)."""
    import numpy as np

    from recplugin.models.inputs import SequenceBatch

    empty = np.zeros((len(scenarios), 1), dtype=np.int64)
    return SequenceBatch(empty, empty, empty, empty, empty.astype(bool), np.array(scenarios), np.array(queries))


def test_an_isolated_split_keeps_one_scenarios_rows_and_events_right_aligned():
    import numpy as np

    from recplugin.models.inputs import ScenarioEvents, build_batch
    from recplugin.training.dataset import LabelledSplit

    users = [[ScenarioEvents([1, 2], [0, 0], [10, 30]), ScenarioEvents([3], [1], [20])],
             [ScenarioEvents([], [], []), ScenarioEvents([4], [0], [5])]]
    inputs = build_batch(users, [0, 1], [-1, -1], 4, {1: 0, 2: 1, 3: 2, 4: 3})
    split = LabelledSplit(inputs, np.array([5, 6]), np.array([7, 8]), [np.array([0]), np.array([3])])
    only = split.only_scenario(0)
    assert len(only) == 1 and only.user_ids.tolist() == [7] and only.target_rows.tolist() == [5]
    assert only.inputs.item_rows[0].tolist() == [0, 1] and only.inputs.mask[0].tolist() == [True, True]  # event 3 (scenario 1) gone


def test_scenario_groups_keep_only_candidates_that_share_the_targets_scenario():
    torch.manual_seed(3)
    users = normalize(torch.randn(2, 1, 4), dim=-1)
    targets = normalize(torch.randn(2, 1, 4), dim=-1)
    rows = torch.tensor([[0], [1]])  # item 0 in scenario A (bit 1), item 1 in B (bit 2)
    negatives = normalize(torch.randn(3, 4), dim=-1)
    negatives[0], negatives[1] = users[1, 0], users[0, 0]  # each user's strongest competitor is in the other scenario
    negative_rows = torch.tensor([2, 3, 4])  # 2 in A, 3 in B, 4 in both
    groups = torch.tensor([1, 2, 1, 2, 3])
    loss = multi_positive_infonce(users, targets, rows, negatives, negative_rows, torch.tensor(10.0),
                                  false_negative_cosine=2.0, item_groups=groups)
    logits = users[:, 0] @ torch.cat([targets[:, 0], negatives]).T * 10
    keep = torch.tensor([[1, 0, 1, 0, 1], [0, 1, 0, 1, 1]], dtype=torch.bool)  # own target, same-scenario and shared items
    expected = torch.stack([cross_entropy(logits[i][keep[i]][None], torch.tensor([int(keep[i][:i].sum())])) for i in range(2)]).mean()
    assert torch.allclose(loss, expected, atol=1e-5)
    everything = multi_positive_infonce(users, targets, rows, negatives, negative_rows, torch.tensor(10.0), false_negative_cosine=2.0)
    assert float(everything) > float(loss) + 1.0  # the other scenario's strong competitors weigh only without the groups
