"""The service's append-only log of live behaviours (JSON Lines); `recplugin apply` folds it into the offline source.

A retried event may be appended again (the log is written before the ledger says done); readers keep the first line
of each event id, so the offline source holds every acknowledged event exactly once."""
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
    frames = [frame for frame in map(_read_lines, logs) if len(frame)]
    return _once(pd.concat(frames, ignore_index=True) if frames else _read_lines(live_events_path))


def append_event(path: Path, user_id: int, item_id: int, scenario: str, action: str, timestamp: pd.Timestamp,
                 event_id: str | None = None) -> None:
    """One line, one O_APPEND write: safe across threads and worker processes, nothing rewritten, O(1) per event."""
    line = json.dumps({"user_id": int(user_id), "item_id": int(item_id), "scenario": scenario, "action": action,
                       "event_timestamp": timestamp.isoformat(), "event_id": event_id}) + "\n"
    data = line.encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(descriptor, data)
        if written != len(data):  # a full disk: the line is torn; the reader skips it and the event is not acknowledged
            raise OSError(f"wrote {written} of {len(data)} bytes of an event to {path}")
    finally:
        os.close(descriptor)


def read_events(path: Path) -> pd.DataFrame:
    """The events of one log, each event id once, with the event schema's columns (empty when there is no log yet)."""
    return _once(_read_lines(path))


def _once(frame: pd.DataFrame) -> pd.DataFrame:
    """The first line of every event id (lines without one, from before ids were logged, all kept), schema columns."""
    repeated = frame["event_id"].notna() & frame["event_id"].duplicated()
    return frame[~repeated][EVENT_SCHEMA.names].reset_index(drop=True)


def _read_lines(path: Path) -> pd.DataFrame:
    """Every complete line of one log: the schema's columns and `event_id` (None where the line has none)."""
    columns = [*EVENT_SCHEMA.names, "event_id"]
    if not path.exists() or path.stat().st_size == 0:
        return EVENT_SCHEMA.empty_table().to_pandas().assign(event_id=None)[columns]
    rows = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                row = json.loads(line)
                rows.append({**{key: row[key] for key in ("user_id", "item_id", "scenario", "action", "event_timestamp")},
                             "event_id": row.get("event_id")})
            except (ValueError, KeyError, TypeError):  # a torn or corrupt line (a crash or a full disk mid-write)
                logger.warning("%s line %d is not a complete event; skipped: %r", path, number, line[:200])
    if not rows:
        return EVENT_SCHEMA.empty_table().to_pandas().assign(event_id=None)[columns]
    frame = pd.DataFrame(rows).astype({"user_id": "int64", "item_id": "int64"})
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True, format="ISO8601")
    frame["query"] = None
    return frame[columns]
