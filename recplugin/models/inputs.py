"""User-tower inputs: per-scenario histories merged into one time-ordered, mixed-scenario sequence."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

NO_QUERY = -1


@dataclass
class SequenceBatch:
    """Padded user-tower inputs; the most recent behaviour sits in the last column."""

    item_rows: np.ndarray
    scenarios: np.ndarray
    actions: np.ndarray
    timestamps: np.ndarray
    mask: np.ndarray
    target_scenario: np.ndarray
    query_rows: np.ndarray

    def __len__(self) -> int:
        return len(self.target_scenario)

    def take(self, index: np.ndarray) -> "SequenceBatch":
        """A sub-batch by row index, without the leading columns that are padding in every row."""
        batch = SequenceBatch(*(getattr(self, f)[index] for f in self.__dataclass_fields__))
        used = batch.mask.any(axis=0)
        first = int(np.argmax(used)) if used.any() else batch.mask.shape[1] - 1
        return batch.trimmed(first)

    def trimmed(self, first_column: int) -> "SequenceBatch":
        """The batch from `first_column` on (sequences are right-aligned)."""
        cut = slice(first_column, None)
        return SequenceBatch(self.item_rows[:, cut], self.scenarios[:, cut], self.actions[:, cut], self.timestamps[:, cut],
                             self.mask[:, cut], self.target_scenario, self.query_rows)

    def to_torch(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Tensors on the device, keyed by field name; compact integer types (a loaded snapshot's) widened to int64."""
        return {f: _widened(torch.as_tensor(getattr(self, f), device=device)) for f in self.__dataclass_fields__}


def _widened(tensor: torch.Tensor) -> torch.Tensor:
    """int64 for any integer tensor (embedding lookups and time arithmetic), other types unchanged."""
    return tensor if tensor.dtype in (torch.bool, torch.int64) or tensor.is_floating_point() else tensor.long()


@dataclass
class CutBatch:
    """Prediction points inside packed sequences, [B, G] each: how many events each sees, its scenario and query."""

    lengths: np.ndarray
    valid: np.ndarray
    scenarios: np.ndarray
    query_rows: np.ndarray

    def to_torch(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Tensors on the device, keyed by field name."""
        return {f: torch.as_tensor(getattr(self, f), device=device) for f in self.__dataclass_fields__}


@dataclass
class ScenarioEvents:
    """One scenario's history as parallel sequences (any of them may be empty)."""

    item_ids: Sequence[int]
    actions: Sequence[int]
    timestamps: Sequence[int]


def merge_scenarios(histories: list[ScenarioEvents], max_length: int, id_to_row: dict[int, int]) -> tuple[list, list, list, list]:
    """The last `max_length` known items over all scenarios, ordered by time: (rows, scenario indexes, actions, times)."""
    merged = []
    for scenario_index, history in enumerate(histories):
        for item_id, action, timestamp in zip(history.item_ids, history.actions, history.timestamps):
            row = id_to_row.get(int(item_id))
            if row is not None:
                merged.append((int(timestamp), scenario_index, row, int(action)))
    merged.sort()
    merged = merged[-max_length:]
    return [m[2] for m in merged], [m[1] for m in merged], [m[3] for m in merged], [m[0] for m in merged]


def build_batch(users: list[list[ScenarioEvents]], target_scenarios: Sequence[int], query_rows: Sequence[int],
                max_length: int, id_to_row: dict[int, int]) -> SequenceBatch:
    """Right-aligned padded arrays for a list of users (each a list of ScenarioEvents, one per scenario)."""
    size = len(users)
    rows = np.zeros((size, max_length), dtype=np.int64)
    scenarios = np.zeros((size, max_length), dtype=np.int64)
    actions = np.zeros((size, max_length), dtype=np.int64)
    times = np.zeros((size, max_length), dtype=np.int64)
    mask = np.zeros((size, max_length), dtype=bool)
    for index, histories in enumerate(users):
        item_rows, scenario_ids, action_ids, timestamps = merge_scenarios(histories, max_length, id_to_row)
        count = len(item_rows)
        if count:
            rows[index, -count:] = item_rows
            scenarios[index, -count:] = scenario_ids
            actions[index, -count:] = action_ids
            times[index, -count:] = timestamps
            mask[index, -count:] = True
    return SequenceBatch(rows, scenarios, actions, times, mask, np.asarray(target_scenarios, dtype=np.int64),
                         np.asarray(query_rows, dtype=np.int64))
