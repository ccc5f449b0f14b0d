"""The item tower's language model: any local transformers model, pooled to one vector per item text.

Encoders (BERT, MiniLM) are mean-pooled. Decoder LLMs (Qwen2, Llama, ...) get HLLM's item token: one extra input
position whose embedding is a learnable vector, appended after the text; its last hidden state is the item's vector.
The LLM is frozen (embeddings cached), fully fine-tuned, or fine-tuned through LoRA adapters (peft).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

FINETUNE_MODES = ("frozen", "full", "lora")
ITEM_TOKEN_FILE = "item_token.pt"


def is_decoder_llm(model_config) -> bool:
    """Decoder LLMs (Qwen2, Llama, ...) have no masked-LM head; BERT-style encoders do."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return bool(getattr(model_config, "is_decoder", False)) or model_config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def add_lora(backbone: nn.Module, rank: int) -> nn.Module:
    """Wrap the backbone with LoRA adapters on every linear layer (peft); only the adapters train."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise ImportError("model.item_finetune: lora needs peft: pip install 'recplugin[llm]'") from error
    return get_peft_model(backbone, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear"))


class ItemTextModel(nn.Module):
    """Token ids in, one pooled vector per text out ([ITEM]-token state for decoders, mean for encoders)."""

    def __init__(self, path: str, max_tokens: int, finetune: str = "frozen", lora_rank: int = 8,
                 dtype: torch.dtype | None = None, checkpointing: bool = False):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a local folder loads in well under a second: no bar per load
        if finetune not in FINETUNE_MODES:
            raise ValueError(f"item fine-tuning {finetune!r} is not one of {FINETUNE_MODES}")
        self.max_tokens = max_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        backbone = AutoModel.from_pretrained(path, dtype=dtype) if dtype else AutoModel.from_pretrained(path)
        self.is_decoder = is_decoder_llm(backbone.config)
        self.dim = int(backbone.config.hidden_size)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.tokenizer.padding_side = "left" if self.is_decoder else "right"
        self.item_token = nn.Parameter(self._initial_item_token(backbone, Path(path))) if self.is_decoder else None
        backbone.requires_grad_(finetune == "full")
        if checkpointing and finetune != "frozen":  # recompute activations in backward: far less memory per item
            backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.backbone = add_lora(backbone, lora_rank) if finetune == "lora" else backbone
        self.finetune = finetune

    def _initial_item_token(self, backbone: nn.Module, path: Path) -> torch.Tensor:
        """A saved item token (a fine-tuned artifact), else the end-of-text token's embedding (else the mean embedding)."""
        saved = path / ITEM_TOKEN_FILE
        if saved.exists():
            return torch.load(saved, map_location="cpu", weights_only=True).float()
        table = backbone.get_input_embeddings().weight.detach()
        token_id = self.tokenizer.eos_token_id
        if token_id is None or token_id >= len(table):
            return table.float().mean(0)
        return table[token_id].clone().float()

    def tokenize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """[N, T] token ids and attention mask, T <= max_tokens (left-padded for decoders)."""
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="np")
        return tokens["input_ids"].astype(np.int64), tokens["attention_mask"].astype(np.int64)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, T] tokens -> [B, H] pooled vectors."""
        if not self.is_decoder:
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        embeddings = self.backbone.get_input_embeddings()(input_ids)
        item = self.item_token.to(embeddings.dtype).expand(len(input_ids), 1, -1)
        mask = torch.cat([attention_mask, attention_mask.new_ones(len(input_ids), 1)], dim=1)
        positions = (mask.cumsum(1) - 1).clamp(min=0)  # left padding: real tokens and the item token count from 0
        hidden = self.backbone(inputs_embeds=torch.cat([embeddings, item], dim=1), attention_mask=mask,
                               position_ids=positions).last_hidden_state
        return hidden[:, -1]

    def save(self, directory: Path) -> Path:
        """Write the (LoRA-merged) backbone, its tokenizer and the item token: a local model folder for serving."""
        backbone = self.backbone.merge_and_unload() if self.finetune == "lora" else self.backbone
        backbone.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        if self.item_token is not None:
            torch.save(self.item_token.detach().cpu(), directory / ITEM_TOKEN_FILE)
        return directory
