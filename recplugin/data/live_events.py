"""The service's append-only log of live behaviours (JSON Lines); `recplugin apply` folds it into the offline source."""
from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

import pandas as pd

from recplugin.data.schema import EVENT_SCHEMA

logger = logging.getLogger("recplugin.data")


def log_to_append(live_events_path: Path, per_host: bool) -> Path:
    """The log this process appends to: the shared one, or this host's own beside it (`serving.event_log_per_host`)."""
    if not per_host:
        return live_events_path
    folder = live_events_path.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{socket.gethostname()}.jsonl"


def read_all_events(live_events_path: Path) -> pd.DataFrame:
    """Every logged event: the shared log and every host's own log."""
    logs = [live_events_path, *sorted(live_events_path.with_suffix("").glob("*.jsonl"))]
    frames = [frame for frame in map(read_events, logs) if len(frame)]
    return pd.concat(frames, ignore_index=True) if frames else read_events(live_events_path)


def append_event(path: Path, user_id: int, item_id: int, scenario: str, action: str, timestamp: pd.Timestamp) -> None:
    """One line, one O_APPEND write: safe across threads and worker processes, nothing rewritten, O(1) per event."""
    line = json.dumps({"user_id": int(user_id), "item_id": int(item_id), "scenario": scenario, "action": action,
                       "event_timestamp": timestamp.isoformat()}) + "\n"
    data = line.encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(descriptor, data)
        if written != len(data):  # a full disk: the line is torn; the reader skips it and the event is not acknowledged
            raise OSError(f"wrote {written} of {len(data)} bytes of an event to {path}")
    finally:
        os.close(descriptor)


def read_events(path: Path) -> pd.DataFrame:
    """The logged events with the event schema's columns (empty when there is no log yet)."""
    columns = EVENT_SCHEMA.names
    if not path.exists() or path.stat().st_size == 0:
        return EVENT_SCHEMA.empty_table().to_pandas()[columns]
    rows = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                row = json.loads(line)
                rows.append({key: row[key] for key in ("user_id", "item_id", "scenario", "action", "event_timestamp")})
            except (ValueError, KeyError, TypeError):  # a torn or corrupt line (a crash or a full disk mid-write)
                logger.warning("%s line %d is not a complete event; skipped: %r", path, number, line[:200])
    if not rows:
        return EVENT_SCHEMA.empty_table().to_pandas()[columns]
    frame = pd.DataFrame(rows).astype({"user_id": "int64", "item_id": "int64"})
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True, format="ISO8601")
    frame["query"] = None
    return frame[columns]
