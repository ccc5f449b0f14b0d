"""Which items an answer must never contain: the one rule that serving applies and offline evaluation measures."""
from __future__ import annotations

import numpy as np

EXCLUDE_SEEN = ("all", "window", "none")


def excluded_items(window_items: np.ndarray, earlier_items: np.ndarray, mode: str) -> np.ndarray:
    """Sorted unique item ids to leave out: every item the user interacted with before (`all`: the history window and
    everything earlier), only the history window's items (`window`), or nothing (`none`)."""
    if mode not in EXCLUDE_SEEN:
        raise ValueError(f"serving.exclude_seen must be one of {list(EXCLUDE_SEEN)}, got {mode!r}")
    if mode == "none":
        return np.zeros(0, dtype=np.int64)
    parts = [np.asarray(window_items, dtype=np.int64)] + ([np.asarray(earlier_items, dtype=np.int64)] if mode == "all" else [])
    return np.unique(np.concatenate(parts))
