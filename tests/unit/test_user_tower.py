"""User-tower switches on tiny sizes: mixing layouts, shared vs per-scenario queries, time side information, item ids."""
import dataclasses

import numpy as np
import torch

from recplugin.config import ModelConfig
from recplugin.models.inputs import ScenarioEvents, build_batch
from recplugin.models.losses import multi_positive_infonce
from recplugin.models.two_tower import TwoTower
from recplugin.models.user_tower import scenario_blocks

BASE = ModelConfig(embedding_dim=16, user_dim=16, user_heads=2, user_layers=1, max_sequence_length=8, interests_per_scenario=2, dropout=0.0)
DAY = 86_400


def _model(**changes):
    torch.manual_seed(0)
    return TwoTower(dataclasses.replace(BASE, **changes), torch.randn(20, 12), num_scenarios=3, num_actions=2).eval()


def _batch(targets, times=(DAY, 3 * DAY, 2 * DAY + 3600)):
    histories = [[ScenarioEvents([1, 2], [0, 1], [times[0], times[1]]), ScenarioEvents([3], [0], [times[2]]), ScenarioEvents([], [], [])]]
    return build_batch(histories * len(targets), targets, [-1] * len(targets), 8, {i: i for i in range(20)}).to_torch("cpu")


def test_scenario_blocks_group_events_by_scenario_then_time_and_keep_padding_first():
    mask = torch.tensor([[False, True, True, True, True]])
    scenarios = torch.tensor([[0, 1, 0, 1, 0]])
    order = scenario_blocks(mask, scenarios)[0].tolist()
    assert order == [0, 2, 4, 1, 3]  # padding, scenario 0 in time order (2, 4), scenario 1 in time order (1, 3)


def test_the_two_mixing_layouts_read_the_history_differently():
    interleaved = _model(mixing="interleaved", user_attention="bidirectional").user_vectors(_batch([1]))
    blocks = _model(mixing="blocks", user_attention="bidirectional").user_vectors(_batch([1]))
    assert interleaved.shape == blocks.shape == (1, 2, 16)
    assert not torch.allclose(interleaved, blocks, atol=1e-4)


def test_shared_query_tokens_give_every_scenario_the_same_interests():
    per_scenario = _model().user_vectors(_batch([0, 1]))
    shared = _model(scenario_queries=False).user_vectors(_batch([0, 1]))
    assert not torch.allclose(per_scenario[0], per_scenario[1], atol=1e-3)
    assert torch.allclose(shared[0], shared[1], atol=1e-6)


def test_time_side_information_is_used_only_when_switched_on():
    later = (DAY + 7 * 3600, 9 * DAY + 600, 2 * DAY + 3600)  # same order, other gaps and hours
    with_time = _model()
    assert not torch.allclose(with_time.user_vectors(_batch([1])), with_time.user_vectors(_batch([1], later)), atol=1e-4)
    without = _model(use_time_gap=False, use_hour=False)
    assert torch.allclose(without.user_vectors(_batch([1])), without.user_vectors(_batch([1], later)), atol=1e-6)


def test_item_vectors_from_ids_only_and_text_plus_ids():
    rows = torch.tensor([1, 2, 3])
    for changes in ({"use_text": False, "use_item_ids": True}, {"use_item_ids": True}):
        model = _model(**changes)
        vectors = model.item_vectors(rows)
        assert torch.allclose(vectors.norm(dim=-1), torch.ones(3), atol=1e-5)
        assert model.all_item_vectors().shape == (20, 16)
    assert not torch.allclose(_model(use_item_ids=True).item_vectors(rows), _model().item_vectors(rows), atol=1e-4)


def test_every_variant_learns_on_a_tiny_batch():
    for changes in ({}, {"user_attention": "bidirectional"}, {"mixing": "blocks", "user_attention": "bidirectional"}, {"scenario_queries": False, "interests_per_scenario": 1},
                    {"use_text": False, "use_item_ids": True}):
        model = _model(**changes).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        histories = [[ScenarioEvents([1 + u, 12 + u], [0, 1], [DAY, 2 * DAY]), ScenarioEvents([16 + u], [0], [3 * DAY]),
                      ScenarioEvents([], [], [])] for u in range(4)]  # each user its own history
        batch = build_batch(histories, [0, 1, 2, 0], [-1] * 4, 8, {i: i for i in range(20)}).to_torch("cpu")
        targets = torch.tensor([[4, 5], [6, 7], [8, 9], [10, 11]])
        losses = []
        for _ in range(30):
            vectors = model.item_vectors(targets)
            loss = multi_positive_infonce(model.user_vectors(batch), vectors, targets, vectors[0, :0], targets[0, :0], torch.tensor(10.0))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert np.mean(losses[-3:]) < 0.5 * losses[0], changes


def test_a_decoder_llm_can_be_the_user_tower_sequence_model(tmp_path):
    from tests.conftest import tiny_qwen_folder

    model = _model(user_llm=tiny_qwen_folder(tmp_path / "qwen"))
    assert model.user_tower.encoder is None and model.user_tower.queries.shape[-1] == 32  # the LLM's width
    users = model.user_vectors(_batch([0, 1]))
    assert users.shape == (2, 2, 16) and torch.allclose(users.norm(dim=-1), torch.ones(2, 2), atol=1e-5)
    assert not torch.allclose(users[0], users[1], atol=1e-4)  # per-scenario queries still differ
    users.sum().backward()
    assert model.user_tower.llm.layers[0].self_attn.q_proj.weight.grad is not None  # the LLM trains with the tower


def test_the_causal_towers_serving_path_equals_its_training_path():
    """Eval mode reads the end of the history through encode_at_end; training mode through encode_at_cuts."""
    model = _model(user_layers=2)
    inputs = _batch([0, 1, 2])
    inputs["query_rows"] = torch.tensor([0, -1, 1])  # a search query on the first and last rows
    query_text_vectors = torch.randn(2, 12)
    with torch.no_grad():
        served = model.eval().user_vectors(inputs, query_text_vectors)
        trained = model.train().user_vectors(inputs, query_text_vectors)
    assert served.shape == (3, 2, 16)
    assert torch.allclose(served, trained, atol=1e-5)
