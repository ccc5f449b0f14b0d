"""Turn behaviour events into per-user state rows: last-N items, actions and timestamps per scenario, plus counts."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recplugin.progress import progress as progress_bar


def state_schema(scenarios: list[str]) -> pa.Schema:
    """The arrow schema of the user-state table (the batch source behind the user feature views)."""
    fields = [("user_id", pa.int64()), ("event_timestamp", pa.timestamp("us", tz="UTC")), ("state_time", pa.int64())]
    for name in scenarios:
        fields += [
            (f"{name}_item_ids", pa.list_(pa.int64())),
            (f"{name}_actions", pa.list_(pa.int64())),
            (f"{name}_timestamps", pa.list_(pa.int64())),
            (f"{name}_count", pa.int64()),
        ]
    return pa.schema(fields)


@dataclass
class ScenarioHistory:
    """A bounded, time-ordered history of one user in one scenario."""

    limit: int
    item_ids: deque = field(default_factory=deque)
    actions: deque = field(default_factory=deque)
    timestamps: deque = field(default_factory=deque)
    count: int = 0

    def __post_init__(self) -> None:
        self.item_ids, self.actions, self.timestamps = (deque(maxlen=self.limit) for _ in range(3))

    def append(self, item_id: int, action: int, timestamp: int) -> None:
        """Record one behaviour (action as its index in the configured action list)."""
        self.item_ids.append(int(item_id))
        self.actions.append(int(action))
        self.timestamps.append(int(timestamp))
        self.count += 1

    @classmethod
    def from_features(cls, limit: int, item_ids, actions, timestamps, count) -> "ScenarioHistory":
        """Rebuild a history from feature values (None means empty)."""
        history = cls(limit)
        length = min(len(item_ids or ()), len(actions or ()), len(timestamps or ()))
        for column, values in ((history.item_ids, item_ids), (history.actions, actions), (history.timestamps, timestamps)):
            column.extend(int(value) for value in (values or ())[:length])  # the deque keeps the last `limit`
        history.count = max(int(count or 0), len(history.item_ids))
        return history


class UserState:
    """All scenario histories of one user."""

    def __init__(self, scenarios: list[str], limit: int):
        self.histories = {name: ScenarioHistory(limit) for name in scenarios}
        self.seen: set[int] = set()  # every item the user has interacted with, beyond the histories' windows

    def row(self, user_id: int, timestamp: pd.Timestamp) -> dict:
        """The feature row describing this state as of `timestamp`."""
        row: dict = {"user_id": int(user_id), "event_timestamp": timestamp, "state_time": epoch_micros(timestamp)}
        for name, history in self.histories.items():
            row[f"{name}_item_ids"] = list(history.item_ids)
            row[f"{name}_actions"] = list(history.actions)
            row[f"{name}_timestamps"] = list(history.timestamps)
            row[f"{name}_count"] = history.count
        return row

    def seen_row(self, user_id: int, timestamp: pd.Timestamp) -> dict:
        """The user-seen feature row: every item of the histories and of `seen`."""
        window = {int(i) for history in self.histories.values() for i in history.item_ids}
        return {"user_id": int(user_id), "seen_item_ids": sorted(self.seen | window), "event_timestamp": timestamp}

    @classmethod
    def from_online(cls, scenarios: list[str], limit: int, features: dict) -> "UserState":
        """Rebuild a state from one user's online feature values."""
        state = cls(scenarios, limit)
        for name in scenarios:
            state.histories[name] = ScenarioHistory.from_features(
                limit, features.get(f"{name}_item_ids"), features.get(f"{name}_actions"),
                features.get(f"{name}_timestamps"), features.get(f"{name}_count"))
        state.seen = {int(i) for i in features.get("seen_item_ids") or []}
        return state


def epoch_micros(timestamp: pd.Timestamp) -> int:
    """Microseconds since the epoch: the state row's key next to the user id (`state_time`)."""
    return int(pd.Timestamp(timestamp).value // 1000)


def epoch_seconds(timestamps: pd.Series) -> np.ndarray:
    """Whole seconds since the epoch, whatever the series' time unit."""
    return ((timestamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)


def build_user_state(events_path: Path, out_path: Path, scenarios: list[str], actions: list[str], limit: int,
                     progress: bool = True, live_events: pd.DataFrame | None = None) -> int:
    """Write one state row per (user, distinct event time), holding everything up to and including that time."""
    events = pd.read_parquet(events_path, columns=["user_id", "item_id", "scenario", "action", "event_timestamp"])
    if live_events is not None and len(live_events):
        events = pd.concat([events, live_events[events.columns].astype(events.dtypes.to_dict())], ignore_index=True)
    events = events.sort_values(["user_id", "event_timestamp"], kind="stable").reset_index(drop=True)
    seconds = epoch_seconds(events["event_timestamp"])
    items, scenario_names = events["item_id"].to_numpy(), events["scenario"].to_numpy()
    action_codes = events["action"].map({name: code for code, name in enumerate(actions)}).to_numpy()
    times = events["event_timestamp"].tolist()
    users = events["user_id"].to_numpy()
    boundaries = np.flatnonzero(np.diff(users)) + 1
    starts = np.concatenate([[0], boundaries]) if len(users) else np.array([], dtype=int)
    ends = np.concatenate([boundaries, [len(users)]]) if len(users) else np.array([], dtype=int)
    schema = state_schema(scenarios)
    rows_written = 0
    with pq.ParquetWriter(out_path, schema) as writer:
        buffer: list[dict] = []
        for start, end in progress_bar(zip(starts, ends), total=len(starts), desc="user state", unit="user", disable=not progress):
            state = UserState(scenarios, limit)
            for position in range(start, end):
                state.histories[scenario_names[position]].append(items[position], action_codes[position], seconds[position])
                last_at_this_time = position + 1 == end or times[position + 1] != times[position]
                if last_at_this_time:
                    buffer.append(state.row(users[position], times[position]))
            if len(buffer) >= 50_000:
                writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
                rows_written += len(buffer)
                buffer = []
        if buffer:
            writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
            rows_written += len(buffer)
    return rows_written
