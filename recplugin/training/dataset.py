"""Read the point-in-time snapshot (parquet, via pyarrow) and the catalogue into model-ready arrays."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recplugin.models.exclusion import excluded_items
from recplugin.models.inputs import NO_QUERY, SequenceBatch

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

    def sample(self, count: int, seed: int) -> "LabelledSplit":
        """At most `count` rows (a seeded sample, in their order); all of them when `count` is 0 or not fewer."""
        if not count or len(self) <= count:
            return self
        rows = np.sort(np.random.default_rng(seed).choice(len(self), size=count, replace=False))
        return LabelledSplit(self.inputs.take(rows), self.target_rows[rows], self.user_ids[rows], [self.seen[i] for i in rows])

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


NO_SEEN = np.zeros(0, dtype=np.int64)
CHUNK_ROWS = 50_000  # snapshot rows turned into arrays at a time (bounds the loader's extra memory)


class RowLookup:
    """Item id -> catalogue row for whole arrays at once (-1: not in the catalogue)."""

    def __init__(self, id_to_row: dict[int, int]) -> None:
        ids = np.fromiter(id_to_row.keys(), dtype=np.int64, count=len(id_to_row))
        rows = np.fromiter(id_to_row.values(), dtype=np.int64, count=len(id_to_row))
        order = np.argsort(ids)
        self.ids, self.rows = ids[order], rows[order]

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        if not len(self.ids):
            return np.full(len(ids), -1, dtype=np.int64)
        at = np.searchsorted(self.ids, ids).clip(max=len(self.ids) - 1)
        return np.where(self.ids[at] == ids, self.rows[at], -1)


def _flat(table: pa.Table, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(row, value) of every element of a list column."""
    values = table.column(column).combine_chunks()
    return pc.list_parent_indices(values).to_numpy(), pc.list_flatten(values).to_numpy(zero_copy_only=False).astype(np.int64)


def _events(table: pa.Table, scenarios: list[str], lookup: RowLookup) -> tuple[np.ndarray, ...]:
    """Every known event of every row over all scenarios, sorted by (row, time, scenario, item row, action)."""
    parts = []
    for index, name in enumerate(scenarios):
        row, item_ids = _flat(table, f"{name}_item_ids")
        actions, times = _flat(table, f"{name}_actions")[1], _flat(table, f"{name}_timestamps")[1]
        if not len(item_ids) == len(actions) == len(times):
            raise ValueError(f"snapshot column {name}_item_ids, _actions and _timestamps differ in length")
        items = lookup(item_ids)
        known = items >= 0
        parts.append((row[known], times[known], np.full(int(known.sum()), index), items[known], actions[known]))
    row, times, scenario, items, actions = (np.concatenate(values) for values in zip(*parts))
    order = np.lexsort((actions, items, scenario, times, row))
    return row[order], times[order], scenario[order], items[order], actions[order]


def _fill(inputs: SequenceBatch, offset: int, events: tuple[np.ndarray, ...], count: int) -> None:
    """Right-align each row's last `length` events into `inputs` rows offset.. (the most recent in the last column)."""
    row, times, scenario, items, actions = events
    length = inputs.mask.shape[1]
    from_end = np.cumsum(np.bincount(row, minlength=count))[row] - 1 - np.arange(len(row))
    keep = from_end < length
    at, column = row[keep] + offset, length - 1 - from_end[keep]
    inputs.item_rows[at, column], inputs.scenarios[at, column] = items[keep], scenario[keep]
    inputs.actions[at, column], inputs.timestamps[at, column], inputs.mask[at, column] = actions[keep], times[keep], True


def _empty_inputs(count: int, length: int, target_scenario: np.ndarray, query_rows: np.ndarray) -> SequenceBatch:
    """Padding-only inputs in compact types (item rows int32, scenarios/actions int8; to_torch widens them)."""
    return SequenceBatch(np.zeros((count, length), np.int32), np.zeros((count, length), np.int8), np.zeros((count, length), np.int8),
                         np.zeros((count, length), np.int64), np.zeros((count, length), bool), target_scenario, query_rows)


def load_snapshot(path: Path, scenarios: list[str], id_to_row: dict[int, int], max_length: int,
                  exclude_seen: str = "all") -> Snapshot:
    """Build every split's arrays with pyarrow + numpy, CHUNK_ROWS rows at a time. A held-out row's seen items are what
    serving would leave out (`excluded_items` under `serving.exclude_seen`): its history's items, and with `all` also
    the user's earlier targets and every item the user rated before it; training rows carry none (nothing ranks them)."""
    table = pq.read_table(path)
    lookup = RowLookup(id_to_row)
    order = np.lexsort((table.column("label_timestamp").cast(pa.int64()).to_numpy(), table.column("user_id").to_numpy()))
    users = table.column("user_id").to_numpy()[order]
    targets = lookup(table.column("target_item_id").to_numpy()[order])
    split_names = table.column("split").to_numpy(zero_copy_only=False)[order]
    scenario_codes = pc.index_in(table.column("scenario"), value_set=pa.array(scenarios))
    if scenario_codes.null_count:
        unknown = pc.filter(table.column("scenario"), pc.is_null(scenario_codes)).unique().to_pylist()
        raise ValueError(f"snapshot scenario {unknown[:3]} is not one of config.scenarios {scenarios}")
    scenario_codes = scenario_codes.to_numpy(zero_copy_only=False)[order].astype(np.int64)
    query_index: dict[str, int] = {}
    queries = np.full(len(order), NO_QUERY, dtype=np.int64)
    for position, query in enumerate(table.column("query").to_numpy(zero_copy_only=False)[order]):
        if query and targets[position] >= 0:
            queries[position] = query_index.setdefault(query, len(query_index))
    user_start = np.searchsorted(users, users, side="left")
    splits = {}
    for name in SPLITS:
        positions = np.flatnonzero((split_names == name) & (targets >= 0))
        inputs = _empty_inputs(len(positions), max_length, scenario_codes[positions], queries[positions])
        seen: list[np.ndarray] = [NO_SEEN] * len(positions)
        for start in range(0, len(positions), CHUNK_ROWS):
            part = positions[start:start + CHUNK_ROWS]
            chunk = table.take(order[part])
            events = _events(chunk, scenarios, lookup)
            _fill(inputs, start, events, len(part))
            if name != "train":
                seen[start:start + len(part)] = _seen(chunk, part, events[0], events[3], targets, user_start, lookup,
                                                      exclude_seen)
        splits[name] = LabelledSplit(inputs, targets[positions], users[positions].astype(np.int64), seen)
    return Snapshot(splits, list(query_index))


def _seen(chunk: pa.Table, part: np.ndarray, event_row: np.ndarray, event_item: np.ndarray, targets: np.ndarray,
          user_start: np.ndarray, lookup: RowLookup, exclude_seen: str) -> list[np.ndarray]:
    """Per held-out row, what serving leaves out: its history's items (the window) and the user's earlier targets and
    (rated_item_ids) every item rated before."""
    rated = [lookup(np.asarray(r or [], dtype=np.int64)) for r in chunk.column("rated_item_ids").to_pylist()] \
        if "rated_item_ids" in chunk.column_names else [NO_SEEN] * len(part)
    bounds = np.searchsorted(event_row, np.arange(len(part) + 1))
    out = []
    for index, position in enumerate(part):
        earlier = targets[user_start[position]:position]
        before = np.concatenate([earlier[earlier >= 0], rated[index][rated[index] >= 0]])
        out.append(excluded_items(event_item[bounds[index]:bounds[index + 1]], before, exclude_seen))
    return out


def target_windows(split: LabelledSplit, width: int) -> np.ndarray:
    """[rows, width] item rows: each row's own target, then the same user's next targets in time that answer the same
    request (the same target scenario and search query); -1 past the last. A feed label's window never holds the
    user's later search clicks, nor a search label's the answers to other queries."""
    count = len(split)
    request = (split.user_ids, split.inputs.target_scenario, split.inputs.query_rows)
    order = np.lexsort((np.arange(count), *request[::-1]))  # rows by (user, scenario, query), time order kept
    keys = [column[order] for column in request]
    windows = np.full((count, width), -1, dtype=np.int64)
    for offset in range(width):
        later = np.arange(count - offset)
        same = np.logical_and.reduce([key[later + offset] == key[later] for key in keys])
        windows[order[later[same]], offset] = split.target_rows[order[later[same] + offset]]
    return windows
