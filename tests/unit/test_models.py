"""Towers and loss on tiny sizes: shapes, normalisation, per-scenario queries, masking, decoder-LLM text path."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from recplugin.config import ModelConfig
from recplugin.models.inputs import ScenarioEvents, build_batch
from recplugin.models.item_tower import TextEncoder
from recplugin.models.losses import multi_positive_infonce
from recplugin.models.two_tower import TwoTower, max_interest_scores

CONFIG = ModelConfig(embedding_dim=16, user_dim=16, user_heads=2, user_layers=1, max_sequence_length=8, interests_per_scenario=3, dropout=0.0)


def _model(num_items=20, text_dim=12):
    torch.manual_seed(0)
    return TwoTower(CONFIG, torch.randn(num_items, text_dim), num_scenarios=3, num_actions=2).eval()


def _batch(target_scenarios, queries=None):
    histories = [[ScenarioEvents([1, 2], [0, 1], [1, 3]), ScenarioEvents([3], [0], [2]), ScenarioEvents([], [], [])]] * len(target_scenarios)
    return build_batch(histories, target_scenarios, queries or [-1] * len(target_scenarios), 8, {i: i for i in range(20)})


def test_user_tower_gives_k_normalised_interests_per_row():
    users = _model().user_vectors(_batch([0, 1]).to_torch("cpu"))
    assert users.shape == (2, 3, 16)
    assert torch.allclose(users.norm(dim=-1), torch.ones(2, 3), atol=1e-5)


def test_each_scenario_has_its_own_query_tokens():
    users = _model().user_vectors(_batch([0, 1, 2, 0]).to_torch("cpu"))
    assert torch.allclose(users[0], users[3], atol=1e-6)
    assert not torch.allclose(users[0], users[1], atol=1e-3)
    assert not torch.allclose(users[1], users[2], atol=1e-3)


def test_query_text_changes_the_search_vectors_only_when_given():
    model = _model()
    queries = torch.randn(2, 12)
    without = model.user_vectors(_batch([0, 0]).to_torch("cpu"), queries)
    with_query = model.user_vectors(_batch([0, 0], [0, -1]).to_torch("cpu"), queries)
    assert not torch.allclose(without[0], with_query[0], atol=1e-4)
    assert torch.allclose(without[1], with_query[1], atol=1e-5)


def test_empty_history_is_finite():
    empty = build_batch([[ScenarioEvents([], [], [])] * 3], [1], [-1], 8, {})
    assert torch.isfinite(_model().user_vectors(empty.to_torch("cpu"))).all()


def test_max_over_interests_scoring():
    users = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert max_interest_scores(users, items).tolist() == [[1.0, 1.0, 0.0]]


def test_item_ids_start_at_the_configured_scale_and_give_unit_vectors():
    torch.manual_seed(0)
    config = replace(CONFIG, use_text=False, use_item_ids=True, item_id_init_std=0.5)
    model = TwoTower(config, torch.zeros(500, 4), num_scenarios=1, num_actions=1)
    assert abs(model.item_ids.weight.std().item() - 0.5) < 0.02
    vectors = model.all_item_vectors()
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(500), atol=1e-5)


def test_loss_falls_when_training_a_tiny_model():
    model = _model().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = _batch([0, 1, 2, 0]).to_torch("cpu")
    targets = torch.tensor([4, 5, 6, 7])
    losses = []
    for _ in range(30):
        items = model.item_vectors(targets)
        loss = multi_positive_infonce(model.user_vectors(batch), items[:, None], targets[:, None], items[:0], targets[:0],
                                      torch.tensor(10.0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_default_encoder_is_the_packaged_minilm():
    encoder = TextEncoder()
    vectors = encoder.encode(["spicy noodle recipe", "spicy ramen recipe", "passport visa airport"])
    cosine = vectors @ vectors.T / np.outer(np.linalg.norm(vectors, axis=1), np.linalg.norm(vectors, axis=1))
    assert encoder.dim == 384 and cosine[0, 1] > cosine[0, 2]


def test_missing_local_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a local model folder"):
        TextEncoder(str(tmp_path / "nope"))
