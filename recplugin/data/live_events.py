"""The service's append-only log of live behaviours (JSON Lines); `recplugin apply` folds it into the offline source."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from recplugin.data.schema import EVENT_SCHEMA


def append_event(path: Path, user_id: int, item_id: int, scenario: str, action: str, timestamp: pd.Timestamp) -> None:
    """One line, one O_APPEND write: safe across threads and worker processes, nothing rewritten, O(1) per event."""
    line = json.dumps({"user_id": int(user_id), "item_id": int(item_id), "scenario": scenario, "action": action,
                       "event_timestamp": timestamp.isoformat()}) + "\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)


def read_events(path: Path) -> pd.DataFrame:
    """The logged events with the event schema's columns (empty when there is no log yet)."""
    columns = EVENT_SCHEMA.names
    if not path.exists() or path.stat().st_size == 0:
        return EVENT_SCHEMA.empty_table().to_pandas()[columns]
    frame = pd.read_json(path, lines=True, dtype={"user_id": "int64", "item_id": "int64"})
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True, format="ISO8601")
    frame["query"] = None
    return frame[columns]
