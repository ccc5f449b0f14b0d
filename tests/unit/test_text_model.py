"""The item LLM: HLLM's item token for decoders, mean pooling for encoders, frozen / full / LoRA fine-tuning."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recplugin.models.item_tower import TextEncoder, resolve_encoder_path
from recplugin.models.text_model import ITEM_TOKEN_FILE, ItemTextModel
from tests.conftest import tiny_qwen_folder

TEXTS = ["title: spicy noodle recipe tags: food", "title: beach hotel", "beach"]


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory) -> str:
    return tiny_qwen_folder(tmp_path_factory.mktemp("qwen"))


def _encode(model: ItemTextModel, texts: list[str]) -> torch.Tensor:
    ids, mask = model.tokenize(texts)
    return model(torch.as_tensor(ids), torch.as_tensor(mask))


def test_decoder_gets_a_learnable_item_token_and_padding_does_not_change_vectors(tiny_qwen):
    model = ItemTextModel(tiny_qwen, max_tokens=8).eval()
    assert model.is_decoder and model.dim == 32 and model.item_token.shape == (32,)
    ids, mask = model.tokenize(TEXTS)
    assert mask[:, -1].all() and not mask[2, 0]  # left padding: every text ends in the last column
    together = _encode(model, TEXTS)
    alone = _encode(model, [TEXTS[2]])
    assert torch.allclose(together[2], alone[0], atol=1e-4)
    with torch.no_grad():
        model.item_token.add_(1.0)
    assert not torch.allclose(_encode(model, [TEXTS[2]]), alone, atol=1e-3)  # the item token's state is what is read


def test_frozen_mode_trains_only_the_item_token(tiny_qwen):
    model = ItemTextModel(tiny_qwen, max_tokens=8, finetune="frozen")
    _encode(model, TEXTS).sum().backward()
    assert model.item_token.grad is not None and model.item_token.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.backbone.parameters())


def test_full_fine_tuning_updates_the_backbone(tiny_qwen):
    model = ItemTextModel(tiny_qwen, max_tokens=8, finetune="full")
    _encode(model, TEXTS).pow(2).sum().backward()
    assert all(p.grad is not None for p in model.backbone.layers[0].parameters())


def test_activation_checkpointing_gives_the_same_gradients(tiny_qwen):
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = ItemTextModel(tiny_qwen, max_tokens=8, finetune="full", checkpointing=checkpointing).train()
        assert any(getattr(m, "gradient_checkpointing", False) for m in model.backbone.modules()) == checkpointing
        _encode(model, TEXTS).pow(2).sum().backward()
        grads.append(model.backbone.layers[0].mlp.up_proj.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_lora_trains_adapters_only_and_saves_a_merged_model_that_reloads(tiny_qwen, tmp_path):
    pytest.importorskip("peft")
    torch.manual_seed(1)
    model = ItemTextModel(tiny_qwen, max_tokens=8, finetune="lora", lora_rank=4)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name or name == "item_token" for name in trainable)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    before = _encode(model, TEXTS).detach()
    for _ in range(3):
        optimizer.zero_grad()
        _encode(model, TEXTS).pow(2).sum().backward()
        optimizer.step()
    model.eval()
    tuned = _encode(model, TEXTS).detach()
    assert not torch.allclose(before, tuned, atol=1e-4)
    saved = model.save(tmp_path / "tuned")
    assert (saved / ITEM_TOKEN_FILE).exists()
    reloaded = TextEncoder(str(saved), max_tokens=8).encode(TEXTS)
    assert np.allclose(reloaded, tuned.numpy(), atol=1e-4)


def test_encoders_are_mean_pooled_without_an_item_token():
    model = ItemTextModel(resolve_encoder_path("default"), max_tokens=16).eval()
    assert not model.is_decoder and model.item_token is None
    ids, mask = model.tokenize(TEXTS)
    assert mask[:, 0].all()  # right padding for encoders
    with torch.no_grad():
        hidden = model.backbone(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask)).last_hidden_state
        expected = (hidden * torch.as_tensor(mask)[..., None]).sum(1) / torch.as_tensor(mask).sum(1, keepdim=True)
        assert torch.allclose(_encode(model, TEXTS), expected, atol=1e-5)


def test_bad_fine_tune_mode_is_refused(tiny_qwen):
    with pytest.raises(ValueError, match="frozen"):
        ItemTextModel(tiny_qwen, max_tokens=8, finetune="half")
