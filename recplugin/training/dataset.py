"""Read the point-in-time snapshot (parquet, via pyarrow) and the catalogue into model-ready arrays."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from recplugin.models.inputs import NO_QUERY, ScenarioEvents, SequenceBatch, build_batch

SPLITS = ("train", "validation", "test")


@dataclass
class Catalog:
    """Item ids (row order of every item table) and their texts."""

    item_ids: np.ndarray
    texts: list[str]
    scenarios: list[list[str]]
    categories: np.ndarray | None = None

    def rows_in(self, scenario: str) -> np.ndarray:
        """Item rows eligible for a scenario (its domain)."""
        return np.asarray([row for row, names in enumerate(self.scenarios) if scenario in names], dtype=np.int64)

    @property
    def id_to_row(self) -> dict[int, int]:
        return {int(item_id): row for row, item_id in enumerate(self.item_ids)}


@dataclass
class LabelledSplit:
    """One split of the snapshot: user-tower inputs, the target item rows, and the items each row has already seen."""

    inputs: SequenceBatch
    target_rows: np.ndarray
    user_ids: np.ndarray
    seen: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.target_rows)

    def only_scenario(self, scenario: int) -> "LabelledSplit":
        """Rows whose target is in `scenario`, with histories cut to that scenario's events (an isolated model's view)."""
        rows = np.flatnonzero(self.inputs.target_scenario == scenario)
        inputs = self.inputs.take(rows)
        keep = inputs.mask & (inputs.scenarios == scenario)
        order = np.argsort(keep, axis=1, kind="stable")  # kept events move right, in their order: right-aligned again
        pack = lambda values: np.take_along_axis(values, order, axis=1)  # noqa: E731
        packed = SequenceBatch(pack(inputs.item_rows), pack(inputs.scenarios), pack(inputs.actions), pack(inputs.timestamps),
                               pack(keep), inputs.target_scenario, inputs.query_rows)
        return LabelledSplit(packed.take(np.arange(len(rows))), self.target_rows[rows], self.user_ids[rows],
                             [self.seen[i] for i in rows])


@dataclass
class Snapshot:
    """All splits and the distinct search queries they reference."""

    splits: dict[str, LabelledSplit]
    queries: list[str]

    def only_scenario(self, scenario: int) -> "Snapshot":
        """Every split restricted to one scenario's rows and events."""
        return Snapshot({name: split.only_scenario(scenario) for name, split in self.splits.items()}, self.queries)


def load_catalog(path: Path) -> Catalog:
    """The item catalogue, sorted by item id."""
    table = pq.read_table(path, columns=["item_id", "text", "scenarios", "category"]).sort_by("item_id")
    return Catalog(table.column("item_id").to_numpy(), [str(t) for t in table.column("text").to_pylist()],
                   [list(s or []) for s in table.column("scenarios").to_pylist()],
                   np.asarray([str(c) for c in table.column("category").to_pylist()], dtype=object))


def load_snapshot(path: Path, scenarios: list[str], id_to_row: dict[int, int], max_length: int) -> Snapshot:
    """Build every split's arrays; a row's seen items are its history, the user's earlier targets and (held-out rows)
    every item the user rated before it."""
    table = pq.read_table(path).sort_by([("user_id", "ascending"), ("label_timestamp", "ascending")])
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    scenario_index = {name: index for index, name in enumerate(scenarios)}
    query_index: dict[str, int] = {}
    per_split: dict[str, dict[str, list]] = {s: {"users": [], "scen": [], "query": [], "target": [], "uid": [], "seen": []} for s in SPLITS}
    earlier: list[int] = []
    previous_user = None
    rated = columns.get("rated_item_ids", [None] * table.num_rows)  # held-out rows: every item the user rated before
    for position in range(table.num_rows):
        user_id = columns["user_id"][position]
        if user_id != previous_user:
            earlier, previous_user = [], user_id
        target = id_to_row.get(int(columns["target_item_id"][position]))
        histories = [ScenarioEvents(columns[f"{s}_item_ids"][position] or [], columns[f"{s}_actions"][position] or [],
                                    columns[f"{s}_timestamps"][position] or []) for s in scenarios]
        query = columns["query"][position]
        if target is not None:
            bucket = per_split[columns["split"][position]]
            bucket["users"].append(histories)
            bucket["scen"].append(scenario_index[columns["scenario"][position]])
            bucket["query"].append(query_index.setdefault(query, len(query_index)) if query else NO_QUERY)
            bucket["target"].append(target)
            bucket["uid"].append(user_id)
            history_rows = [id_to_row[int(i)] for h in histories for i in h.item_ids if int(i) in id_to_row]
            rated_rows = [id_to_row[int(i)] for i in (rated[position] or []) if int(i) in id_to_row]
            bucket["seen"].append(np.unique(np.asarray(earlier + history_rows + rated_rows, dtype=np.int64)))
            earlier.append(target)
    splits = {}
    for name, bucket in per_split.items():
        inputs = build_batch(bucket["users"], bucket["scen"], bucket["query"], max_length, id_to_row)
        splits[name] = LabelledSplit(inputs, np.asarray(bucket["target"], dtype=np.int64),
                                     np.asarray(bucket["uid"], dtype=np.int64), bucket["seen"])
    return Snapshot(splits, list(query_index))


def target_windows(split: LabelledSplit, width: int) -> np.ndarray:
    """[rows, width] item rows: each row's own target, then the same user's next targets in time; -1 past the last."""
    count = len(split)
    windows = np.full((count, width), -1, dtype=np.int64)
    for offset in range(width):
        later = np.arange(count) + offset
        inside = later < count
        same_user = np.zeros(count, dtype=bool)
        same_user[inside] = split.user_ids[later[inside]] == split.user_ids[inside]
        windows[same_user, offset] = split.target_rows[later[same_user]]
    return windows
