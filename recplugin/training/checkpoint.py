"""Per-epoch training checkpoints: everything needed to resume a run exactly where it stopped."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from recplugin.config import RecConfig, to_dict

RESUME_INSENSITIVE = ("epochs", "resume", "patience")  # changing these does not make a checkpoint unusable


def run_key(config: RecConfig, snapshot_path: Path) -> str:
    """A checkpoint folder name: the config (bar the resume-insensitive fields) and the snapshot it trains on."""
    raw = to_dict(config)
    for name in RESUME_INSENSITIVE:
        raw["training"].pop(name, None)
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode())
    stat = snapshot_path.stat()
    digest.update(f"{snapshot_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def checkpoint_path(config: RecConfig, snapshot_path: Path) -> Path:
    """Where this run's latest checkpoint lives."""
    return config.path(config.training.checkpoint_dir) / run_key(config, snapshot_path) / "last.pt"


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path) -> dict | None:
    """The saved state, or None when this run has no checkpoint yet."""
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only: no code runs
