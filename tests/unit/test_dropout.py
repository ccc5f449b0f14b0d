"""The fast CPU dropout: torch's Bernoulli dropout in distribution, and the causal readout's training path."""
import pytest
import torch

from recplugin.config import ModelConfig
from recplugin.models.cut_attention import encode_at_cuts
from recplugin.models.dropout import LEVELS, Dropout, dropout, use_fast_dropout
from recplugin.models.two_tower import TwoTower
from tests.unit.test_packing import dense_reference


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_each_element_is_kept_with_probability_one_minus_p_and_scaled_to_keep_the_mean(p):
    torch.manual_seed(0)
    x = torch.full((4, 250, 1000), 2.0)
    y = dropout(x, p, True)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=3e-3)
    assert torch.allclose(y[kept], torch.full_like(y[kept], 2.0 * LEVELS / (LEVELS - round(p * LEVELS))))
    assert y.mean().item() == pytest.approx(2.0, rel=1e-2)
    rows = kept.reshape(-1, 4)  # each 64-bit draw feeds four neighbours: each of the four is unbiased on its own
    assert torch.allclose(rows.float().mean(0), torch.full((4,), 1 - p), atol=3e-3)


def test_no_dropout_when_evaluating_or_p_is_zero_and_all_dropped_at_one():
    x = torch.randn(3, 5)
    assert dropout(x, 0.3, False) is x and dropout(x, 0.0, True) is x
    assert not dropout(x, 1.0, True).any()


def test_masks_follow_torch_seed_and_differ_between_calls():
    x = torch.ones(10_000)
    torch.manual_seed(3)
    first, second = dropout(x, 0.2, True), dropout(x, 0.2, True)
    torch.manual_seed(3)
    assert torch.equal(first, dropout(x, 0.2, True))
    assert not torch.equal(first, second)


def test_the_gradient_passes_only_through_kept_elements_with_the_same_scale():
    x = torch.randn(1000, requires_grad=True)
    y = dropout(x, 0.25, True)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.allclose(x.grad, kept.float() * (LEVELS / (LEVELS - round(0.25 * LEVELS))))


def test_models_use_it_everywhere_and_keep_their_state_dict():
    config = ModelConfig(use_text=True, use_item_ids=True, user_dim=16, user_heads=2, embedding_dim=8, dropout=0.3)
    model = TwoTower(config, torch.randn(20, 12), 1, 2)
    dropouts = [module for module in model.modules() if isinstance(module, torch.nn.Dropout)]
    assert dropouts and all(type(module) is Dropout and module.p == 0.3 for module in dropouts)
    plain = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1))
    assert list(use_fast_dropout(plain).state_dict()) == ["0.weight", "0.bias"] and type(plain[1]) is Dropout


def _readout_inputs():
    mask = torch.tensor([[False, False, True, True, True, True], [True] * 6])
    cut_lengths = torch.tensor([[0, 2, 4], [6, 1, 3]])
    valid = torch.tensor([[[True, True], [False, True], [True, True]], [[True, True], [True, True], [False, False]]])
    return torch.randn(2, 6, 16), torch.randn(2, 3, 2, 16), mask, cut_lengths, valid


def _encoder(p: float) -> torch.nn.TransformerEncoder:
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(16, 4, 32, p, activation="gelu", batch_first=True, norm_first=True)
    return use_fast_dropout(torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False))


def test_training_path_attention_equals_the_dense_masked_encoder_when_nothing_is_dropped():
    """On CPU with dropout, events attend through scores + softmax + the fast mask rather than SDPA: a rate that
    rounds to zero drops nothing, so it must give what the dense masked encoder gives."""
    encoder = _encoder(1e-6)
    tokens, queries, mask, cut_lengths, valid = _readout_inputs()
    grouped = encode_at_cuts(encoder.train(), tokens, queries, mask, cut_lengths, valid)
    dense = dense_reference(encoder.eval(), tokens, queries, mask, cut_lengths, valid)
    assert torch.allclose(grouped[valid], dense[valid], atol=1e-5)


def test_with_dropout_a_point_still_never_sees_events_after_its_cut():
    encoder = _encoder(0.5).train()
    tokens, queries, mask, cut_lengths, valid = _readout_inputs()
    torch.manual_seed(1)
    before = encode_at_cuts(encoder, tokens, queries, mask, cut_lengths, valid)
    changed = tokens.clone()
    changed[1, 3:] = torch.randn(3, 16)  # row 1's events 3-5: seen by its first point (cut 6) only
    torch.manual_seed(1)
    after = encode_at_cuts(encoder, changed, queries, mask, cut_lengths, valid)
    assert torch.equal(before[1, 1:], after[1, 1:]) and torch.equal(before[0], after[0])
    assert not torch.allclose(before[1, 0], after[1, 0])
