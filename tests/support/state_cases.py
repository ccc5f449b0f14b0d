"""Event tables for comparing the user-state engines: simultaneous events, live-log events at file timestamps, users in
one scenario only, more events than the history keeps, and generated data."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from recplugin.config import DEFAULT_ACTIONS, DEFAULT_SCENARIOS
from recplugin.data.generator import generate as generate_dataset
from recplugin.features.history import build_user_state
from tests.conftest import tiny_config

SCENARIOS, ACTIONS, LIMIT = list(DEFAULT_SCENARIOS), list(DEFAULT_ACTIONS), 3
T0 = pd.Timestamp("2026-03-01", tz="UTC")


def constructed_events() -> tuple[pd.DataFrame, pd.DataFrame]:
    """File events and live-log events with every tie the engines must order the same way."""
    rows = [(1, 10, "feed", "click", 100), (1, 11, "search", "like", 100), (1, 12, "feed", "share", 100),
            (1, 13, "feed", "click", 200), (1, 14, "feed", "click", 300), (1, 15, "feed", "like", 400),
            (1, 16, "discovery", "click", 400), (2, 20, "search", "click", 50), (2, 21, "search", "click", 50),
            (3, 30, "feed", "share", 700)] + [(4, 40 + i, "feed", "click", 1000 + i // 2) for i in range(9)]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "scenario", "action", "seconds"])
    events["event_timestamp"] = T0 + pd.to_timedelta(events.pop("seconds"), unit="s") + pd.Timedelta(microseconds=250)
    live = pd.DataFrame([(1, 17, "feed", "like", 400), (3, 31, "search", "click", 650), (5, 50, "discovery", "share", 10)],
                        columns=["user_id", "item_id", "scenario", "action", "seconds"])
    live["event_timestamp"] = T0 + pd.to_timedelta(live.pop("seconds"), unit="s") + pd.Timedelta(microseconds=250)
    events["query"] = live["query"] = None
    return events, live


def write_case(folder: Path, generated: bool) -> tuple[Path, pd.DataFrame | None]:
    """The events parquet (and live events) of one case."""
    folder.mkdir(parents=True, exist_ok=True)
    if generated:
        config = tiny_config(folder, generator={"num_users": 120, "num_items": 200, "events_per_user": 25, "seed": 9})
        _, events_path = generate_dataset(config.generator, folder, progress=False)
        return events_path, None
    events, live = constructed_events()
    events.astype({"event_timestamp": "datetime64[us, UTC]"}).to_parquet(folder / "events.parquet", index=False)
    return folder / "events.parquet", live


def reference_state(events_path: Path, live: pd.DataFrame | None, out: Path) -> pd.DataFrame:
    """The pure-Python builder's table, sorted."""
    build_user_state(events_path, out, SCENARIOS, ACTIONS, LIMIT, progress=False, live_events=live)
    return sorted_state(out)


def sorted_state(path: Path) -> pd.DataFrame:
    """A state table with plain-list cells, in (user, time) order."""
    frame = pd.read_parquet(path).sort_values(["user_id", "event_timestamp"]).reset_index(drop=True)
    for column in frame.columns:
        if column.endswith(("_item_ids", "_actions", "_timestamps")):
            frame[column] = frame[column].map(list)
    return frame
