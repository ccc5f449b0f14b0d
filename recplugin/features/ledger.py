"""Which events each user's online state already holds, by event id: a retried /events call is applied once.

An entry is written `pending` (with the event's time) before the state is pushed and `done` after the event is logged,
always under the user's lock. A retry finds `done` and changes nothing; it finds `pending` after a failure part-way and
finishes the steps that are missing, keeping the first attempt's time, so the history never holds the event twice.
The ledger lives where the locks do: Redis for the Redis online store, a SQLite file beside the SQLite one.
"""
from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LedgerEntry:
    """An event id's state: its time (microseconds since the epoch) and whether every step is done."""

    micros: int
    done: bool


def derived_event_id(user_id: int, item_id: int, scenario: str, action: str, timestamp_s: float) -> str:
    """The id of an event the client named by its content and time (the same retried call gets the same id)."""
    key = f"{int(user_id)}|{int(item_id)}|{scenario}|{action}|{timestamp_s!r}"
    return "d-" + hashlib.sha256(key.encode()).hexdigest()[:32]


class RedisEventLedger:
    """`{namespace}:event:{user}:{id}` -> "pending|done:<micros>", expiring after the retention."""

    def __init__(self, client, namespace: str, retention_s: float):
        self.client, self.namespace, self.retention_ms = client, namespace, int(retention_s * 1000)

    def _key(self, user_id: int, event_id: str) -> str:
        return f"{self.namespace}:event:{int(user_id)}:{event_id}"

    def get(self, user_id: int, event_id: str) -> LedgerEntry | None:
        value = self.client.get(self._key(user_id, event_id))
        if value is None:
            return None
        status, micros = value.decode().split(":")
        return LedgerEntry(int(micros), status == "done")

    def put(self, user_id: int, event_id: str, entry: LedgerEntry) -> None:
        status = "done" if entry.done else "pending"
        self.client.set(self._key(user_id, event_id), f"{status}:{entry.micros}", px=self.retention_ms)


class SqliteEventLedger:
    """One table in a SQLite file shared by the workers of one machine; entries past the retention are dropped."""

    def __init__(self, path: Path, retention_s: float, timeout_s: float):
        self.path, self.retention_s, self.timeout_s = Path(path), retention_s, timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("CREATE TABLE IF NOT EXISTS events (user_id INTEGER, event_id TEXT, micros INTEGER, "
                               "done INTEGER, written REAL, PRIMARY KEY (user_id, event_id))")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=self.timeout_s)

    def get(self, user_id: int, event_id: str) -> LedgerEntry | None:
        with self._connect() as connection:
            row = connection.execute("SELECT micros, done FROM events WHERE user_id = ? AND event_id = ? AND written > ?",
                                     (int(user_id), event_id, time.time() - self.retention_s)).fetchone()
        return None if row is None else LedgerEntry(int(row[0]), bool(row[1]))

    def put(self, user_id: int, event_id: str, entry: LedgerEntry) -> None:
        now = time.time()
        with self._connect() as connection:
            connection.execute("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?)",
                               (int(user_id), event_id, entry.micros, int(entry.done), now))
            if int(now) % 100 == 0:  # now and then, forget what is past the retention
                connection.execute("DELETE FROM events WHERE written < ?", (now - self.retention_s,))
