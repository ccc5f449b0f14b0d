"""Every-position training: packed prediction points see exactly what a per-label forward sees, and nothing later."""
import numpy as np
import pytest
import torch

from recplugin.config import ConfigError, ModelConfig, from_dict, with_overrides
from recplugin.models.cut_attention import encode_at_cuts, encode_at_end, visibility
from recplugin.models.inputs import ScenarioEvents, build_batch
from recplugin.models.two_tower import TwoTower
from recplugin.training.dataset import LabelledSplit
from recplugin.training.packing import batch_of, pack_split, packed_batches
from recplugin.training.train import epoch_batches

MAX_LENGTH = 8
CAUSAL = ModelConfig(embedding_dim=16, user_dim=16, user_heads=2, user_layers=2, max_sequence_length=MAX_LENGTH,
                     interests_per_scenario=2, dropout=0.0, user_attention="causal")


def _timeline(seed: int, count: int) -> list[tuple[int, int, int, int]]:
    """(item, scenario, action, time) events, time-ordered, some sharing a timestamp."""
    rng = np.random.default_rng(seed)
    times = np.sort(rng.integers(0, 10, count)) * 3600 + 1_000_000
    return [(int(rng.integers(0, 30)), int(rng.integers(0, 3)), int(rng.integers(0, 2)), int(t)) for t in times]


def _split(timelines: dict[int, list]) -> LabelledSplit:
    """One label per event; its history is every earlier event (what the point-in-time snapshot holds)."""
    users, scenarios, queries, targets, user_ids = [], [], [], [], []
    for user, events in timelines.items():
        for position, (item, scenario, _, _) in enumerate(events):
            history = sorted(events[:position], key=lambda e: (e[3], e[1], e[0], e[2]))
            users.append([ScenarioEvents([e[0] for e in history if e[1] == s], [e[2] for e in history if e[1] == s],
                                         [e[3] for e in history if e[1] == s]) for s in range(3)])
            scenarios.append(scenario), targets.append(item), user_ids.append(user)
            queries.append(position % 3 if scenario == 0 else -1)
    inputs = build_batch(users, scenarios, queries, MAX_LENGTH, {i: i for i in range(30)})
    return LabelledSplit(inputs, np.asarray(targets), np.asarray(user_ids), [np.zeros(0, np.int64)] * len(targets))


def _model() -> TwoTower:
    torch.manual_seed(0)
    return TwoTower(CAUSAL, torch.randn(30, 12), num_scenarios=3, num_actions=2).eval()


def test_short_users_pack_into_one_exact_sequence_and_long_ones_keep_half_a_window():
    split = _split({1: _timeline(1, 6), 2: _timeline(2, 20)})
    packed = pack_split(split, min_context=MAX_LENGTH // 2)
    short = packed.cut_row[split.user_ids[packed.label] == 1]
    assert len(set(short.tolist())) == 1 and packed.exact[split.user_ids[packed.label] == 1].all()
    assert sorted(packed.label.tolist()) == list(range(len(split)))  # every label exactly once
    long_points = split.user_ids[packed.label] == 2
    inexact = long_points & ~packed.exact
    assert inexact.any() and (packed.cut_length[inexact] >= MAX_LENGTH // 2).all()
    assert len(set(packed.cut_row[long_points].tolist())) < long_points.sum() / 2  # far fewer forwards than labels


def test_without_a_minimum_context_a_long_user_fills_whole_windows():
    events = [(item % 30, item % 3, item % 2, 1_000_000 + 3600 * item) for item in range(20)]  # no shared timestamps
    split = _split({1: events})
    half, any_prefix = pack_split(split, min_context=MAX_LENGTH // 2), pack_split(split, min_context=0)
    assert sorted(any_prefix.label.tolist()) == list(range(len(split)))
    assert np.bincount(any_prefix.cut_row).tolist() == [MAX_LENGTH, MAX_LENGTH, 4]  # labels 19..12, 11..4, 3..0
    assert np.bincount(half.cut_row).tolist() == [5, 5, 5, 5]  # each sees at least half a window
    assert any_prefix.cut_length[~any_prefix.exact].min() == 1


@pytest.mark.parametrize("min_context", [MAX_LENGTH // 2, 0])
@torch.no_grad()
def test_each_packed_point_equals_the_per_label_forward_of_what_it_sees(min_context):
    split = _split({1: _timeline(1, 6), 2: _timeline(2, 20), 3: _timeline(3, 3)})
    packed = pack_split(split, min_context=min_context)
    model, query_text = _model(), torch.randn(3, 12)
    rows = np.arange(len(packed.events))
    events, cuts, labels = batch_of(packed, rows)
    at_points = model.user_vectors_at_cuts(events.to_torch("cpu"), cuts.to_torch("cpu"), query_text)[torch.as_tensor(cuts.valid)]
    assert at_points.shape == (len(split), 2, 16)
    exact = packed.exact[np.argsort(packed.label)][labels]
    per_label = model.user_vectors(split.inputs.take(labels).to_torch("cpu"), query_text)
    assert torch.allclose(at_points[exact], per_label[exact], atol=1e-5)
    # a left-truncated point equals a per-label forward over the events it sees: its sequence's first `cut` events
    order = {label: point for point, label in enumerate(packed.label.tolist())}
    for position in np.flatnonzero(~exact):
        point = order[int(labels[position])]
        source = packed.events.take(np.asarray([packed.cut_row[point]]))
        keep = np.cumsum(source.mask, axis=1) <= packed.cut_length[point]
        source.mask = source.mask & keep
        source.target_scenario = split.inputs.target_scenario[labels[position:position + 1]]
        source.query_rows = split.inputs.query_rows[labels[position:position + 1]]
        alone = model.user_vectors(source.to_torch("cpu"), query_text)[0]
        assert torch.allclose(at_points[position], alone, atol=1e-5)


@torch.no_grad()
def test_a_point_never_sees_events_after_its_cut():
    split = _split({1: _timeline(4, 7)})
    packed = pack_split(split, min_context=MAX_LENGTH // 2)
    model = _model()
    events, cuts, labels = batch_of(packed, np.arange(len(packed.events)))
    before = model.user_vectors_at_cuts(events.to_torch("cpu"), cuts.to_torch("cpu"))
    changed = events.take(np.arange(len(events)))
    first = int(np.argmax(changed.mask[0]))
    changed.item_rows[0, first + 3:] = (changed.item_rows[0, first + 3:] + 7) % 30  # every event from the 4th on
    changed.timestamps[0, first + 3:] += 3600 * 5
    after = model.user_vectors_at_cuts(changed.to_torch("cpu"), cuts.to_torch("cpu"))
    sees_three = torch.as_tensor(cuts.valid & (cuts.lengths <= 3))
    assert sees_three.sum() == 4  # the points after 0, 1, 2 and 3 events
    assert torch.allclose(before[sees_three], after[sees_three], atol=1e-6)
    assert not torch.allclose(before[~sees_three & torch.as_tensor(cuts.valid)], after[~sees_three & torch.as_tensor(cuts.valid)])


def test_visibility_lets_every_token_see_itself_and_groups_not_see_each_other():
    mask = torch.tensor([[False, True, True, True]])
    events, to_events, own = visibility(mask, torch.tensor([[1, 3]]), torch.tensor([[[True, True], [False, True]]]))
    assert events[0].diagonal().all() and events[0, 0].tolist() == [True, False, False, False]  # padding: itself only
    assert not events[0, 1, 2] and events[0, 3, 1]  # events: earlier only
    assert to_events[0, 0].tolist() == [[False, True, False, False]] * 2  # group 0 sees the first event
    assert not to_events[0, 1, 0].any() and to_events[0, 1, 1].tolist() == [False, True, True, True]  # invalid slot: none
    assert own[0, 0].all() and own[0, 1].tolist() == [[True, False], [False, True]]  # an invalid slot: itself only


def dense_reference(encoder, tokens, queries, mask, cut_lengths, valid):
    """The encoder over events + every group at once, with a [B, S, S] mask that allows what `visibility` allows."""
    batch, groups, size, width = queries.shape
    events, to_events, own = visibility(mask, cut_lengths, valid)
    same = torch.eye(groups, dtype=torch.bool)[None, :, None, :, None] & own[:, :, :, None, :]
    allowed = torch.cat([torch.cat([events, mask.new_zeros(batch, mask.shape[1], groups * size)], dim=2),
                         torch.cat([to_events.reshape(batch, groups * size, -1), same.reshape(batch, groups * size, -1)], dim=2)], 1)
    hidden = encoder(torch.cat([tokens, queries.reshape(batch, groups * size, width)], dim=1),
                     mask=(~allowed).repeat_interleave(encoder.layers[0].self_attn.num_heads, dim=0))
    return hidden[:, mask.shape[1]:].reshape(batch, groups, size, width)


def test_grouped_readout_equals_the_dense_masked_encoder():
    """Same weights, same inputs: the grouped attention gives what the full (L + G*T)^2 masked encoder gives."""
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(16, 4, 32, 0.0, activation="gelu", batch_first=True, norm_first=True)
    encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    mask = torch.tensor([[False, False, True, True, True, True], [True] * 6])
    tokens, queries = torch.randn(2, 6, 16), torch.randn(2, 3, 2, 16)
    cut_lengths = torch.tensor([[0, 2, 4], [6, 1, 3]])
    valid = torch.tensor([[[True, True], [False, True], [True, True]], [[True, True], [True, True], [False, False]]])
    grouped = encode_at_cuts(encoder, tokens, queries, mask, cut_lengths, valid)
    dense = dense_reference(encoder, tokens, queries, mask, cut_lengths, valid)
    assert torch.allclose(grouped[valid], dense[valid], atol=1e-5)
    assert torch.isfinite(grouped).all()


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_inference_at_the_end_equals_the_grouped_readout_with_every_cut_at_the_end(layers):
    """Serving's path (one sequence, one mask, tokens alone in the last layer) against encode_at_cuts: left padding, an
    empty history, an invalid token, several layers."""
    torch.manual_seed(layers)
    layer = torch.nn.TransformerEncoderLayer(16, 4, 32, 0.0, activation="gelu", batch_first=True, norm_first=True)
    encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False, norm=torch.nn.LayerNorm(16)).eval()
    mask = torch.tensor([[False, False, True, True, True, True], [True] * 6, [False] * 6])
    tokens, queries = torch.randn(3, 6, 16), torch.randn(3, 3, 16)
    valid = torch.tensor([[False, True, True], [True, True, True], [True, True, False]])
    at_end = encode_at_end(encoder, tokens, queries, mask, valid)
    grouped = encode_at_cuts(encoder, tokens, queries[:, None], mask, mask.sum(1, keepdim=True), valid[:, None])[:, 0]
    assert at_end.shape == (3, 3, 16)
    assert torch.allclose(at_end[valid], grouped[valid], atol=1e-5)


def test_batches_hold_about_the_asked_number_of_points_and_cover_every_row():
    split = _split({user: _timeline(user, 5 + user) for user in range(10)})
    packed = pack_split(split, min_context=MAX_LENGTH // 2)
    batches = packed_batches(packed, 12, np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(packed.events)))
    points = sorted(int(np.isin(packed.cut_row, batch).sum()) for batch in batches)
    assert all(count >= 12 for count in points[1:])  # only the last batch filled may be short


def test_batches_group_rows_of_similar_length_in_a_shuffled_order():
    """Short and long users mixed: grouped batches pad far less than random ones, and their order still varies."""
    split = _split({user: _timeline(user, 2 if user % 2 else MAX_LENGTH) for user in range(64)})
    packed = pack_split(split, min_context=MAX_LENGTH // 2)
    lengths = packed.events.mask.sum(axis=1)

    def padded(batches):
        return sum(len(batch) * lengths[batch].max() for batch in batches)

    grouped = packed_batches(packed, 8, np.random.default_rng(0))
    ungrouped = packed_batches(packed, 8, np.random.default_rng(0), pool_batches=0)
    assert sorted(np.concatenate(grouped).tolist()) == list(range(len(lengths)))
    assert padded(grouped) < 0.7 * padded(ungrouped)
    again = packed_batches(packed, 8, np.random.default_rng(1))
    assert [b.tolist() for b in again] != [b.tolist() for b in grouped]


def test_all_positions_needs_a_causal_interleaved_tower():
    defaults = from_dict({})
    assert (defaults.training.positions, defaults.model.user_attention, defaults.model.mixing) == ("all", "causal", "interleaved")
    with pytest.raises(ConfigError, match="positions: all needs model.user_attention: causal"):
        from_dict({"model": {"user_attention": "bidirectional"}})
    from_dict({"training": {"positions": "last"}, "model": {"user_attention": "bidirectional"}})
    with pytest.raises(ConfigError, match="blocks needs model.user_attention: bidirectional"):
        from_dict({"model": {"mixing": "blocks"}})
    with pytest.raises(ConfigError, match="interleaved"):
        from_dict({"model": {"user_attention": "bidirectional", "mixing": "blocks"}})
    from_dict({"training": {"positions": "last"}, "model": {"user_attention": "bidirectional", "mixing": "blocks"}})
    with pytest.raises(ConfigError, match="set training.positions: last"):
        from_dict({"model": {"user_llm": "/models/qwen"}})
    from_dict({"training": {"positions": "last"}, "model": {"user_llm": "/models/qwen"}})  # a decoder is causal by itself
    for outside in (-0.1, 1.5):
        with pytest.raises(ConfigError, match=r"training.min_context must be a fraction of the window in 0..1"):
            from_dict({"training": {"min_context": outside}})


@pytest.mark.parametrize("negatives, softmax", [("global", "sampled"), ("scenario", "sampled"), ("scenario", "full")])
def test_packed_loss_equals_the_loss_of_the_same_labels_as_separate_rows(negatives, softmax):
    """Same labels, same negatives: one forward per user with its points gives the per-label rows' loss."""
    from recplugin.training import distributed as dist_
    from recplugin.training.objective import batch_loss, loss_inputs

    split = _split({user: _timeline(user, 3 + user % 4) for user in range(6)})  # every history fits: all points exact
    packed = pack_split(split, min_context=MAX_LENGTH // 2)
    assert packed.exact.all()
    config = from_dict({"scenarios": ["a", "b", "c"], "actions": ["click", "like"],
                        "model": {**{k: getattr(CAUSAL, k) for k in ("embedding_dim", "user_dim", "user_heads", "user_layers",
                                                                    "max_sequence_length", "dropout", "user_attention",
                                                                    "interests_per_scenario")}},
                        "training": {"positions": "all", "random_negatives": 6, "target_window": 2, "negatives": negatives,
                                     "softmax": softmax}})
    model, context = _model(), dist_.setup("cpu")
    extra = loss_inputs(split, config, 30, torch.device("cpu"), [[("a", "b", "c")[item % 3]] for item in range(30)])
    queries = torch.randn(3, 12)
    rows = np.arange(len(packed.events))
    labels = batch_of(packed, rows)[2]
    as_packed = batch_loss(model, split, rows, extra, queries, config, context, np.random.default_rng(4), 30, packed)
    as_rows = batch_loss(model, split, labels, extra, queries, config, context, np.random.default_rng(4), 30)
    assert float(as_rows) > 0.1
    assert torch.allclose(as_packed, as_rows, atol=1e-5)
    shuffled = batch_loss(model, split, labels[::-1].copy(), extra, queries, config, context, np.random.default_rng(4), 30)
    assert torch.allclose(shuffled, as_rows, atol=1e-5)  # the order of the rows does not matter
    by_target = with_overrides(config, training={"window_weights": "target"})  # windows of 1 and 2 targets: weights matter
    weighted_by_target_packed = batch_loss(model, split, rows, extra, queries, by_target, context, np.random.default_rng(4), 30, packed)
    weighted_by_target = batch_loss(model, split, labels, extra, queries, by_target, context, np.random.default_rng(4), 30)
    assert torch.allclose(weighted_by_target_packed, weighted_by_target, atol=1e-5)
    assert not torch.allclose(weighted_by_target, as_rows, atol=1e-4)  # the default (row) weighs the two windows apart


@pytest.mark.parametrize("positions", ["all", "last"])
def test_balanced_sampling_gives_each_scenario_an_equal_share_of_the_labels(positions):
    """Scenario 0 holds 84% of the labels, in users shorter than scenario 1's: balanced epochs still hold each
    scenario's labels about equally often; natural epochs keep the mix."""
    rng = np.random.default_rng(0)
    timelines = {user: [(int(rng.integers(0, 30)), 0 if user < 90 else 1, 0, 1_000_000 + 60 * step)
                        for step in range(3 if user < 90 else 3 + user % 5)] for user in range(100)}
    split = _split(timelines)
    packed = pack_split(split, min_context=MAX_LENGTH // 2) if positions == "all" else None

    def share_of_scenario_one(sampling: str) -> float:
        settings = from_dict({"training": {"sampling": sampling, "batch_size": 16, "positions": positions},
                              "model": {"user_attention": "causal"}}).training
        generator = np.random.default_rng(1)
        labels = np.concatenate([batch_of(packed, batch)[2] if packed is not None else batch
                                 for _ in range(20) for batch in epoch_batches(split, packed, settings, generator)])
        return float(np.mean(split.inputs.target_scenario[labels] == 1))

    natural_share = float(np.mean(split.inputs.target_scenario == 1))
    assert natural_share < 0.2
    assert share_of_scenario_one("natural") == pytest.approx(natural_share)
    assert 0.45 < share_of_scenario_one("balanced") < 0.55
