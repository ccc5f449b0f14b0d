"""Items taken off the shelf (out of stock, a takedown): every worker leaves them out of its answers from the next
request on, whatever the Milvus collection still holds. The set lives where the user locks do (a Redis set, or a
SQLite file beside the SQLite online store) with a change counter, read once per batch; the set is reloaded only
when the counter moved."""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path


class VersionedCache:
    """The last value read and the change counter it was read at (shared by the threads of one worker): the value is
    read again only when the counter moved, so every worker pays one small read per batch."""

    def __init__(self, empty) -> None:
        self.version: int | None = None
        self.value = empty
        self.lock = threading.Lock()

    def current(self, read_version, read_value):
        version = read_version()
        with self.lock:
            if version != self.version:
                self.value, self.version = read_value(), version
            return self.value


class RedisHiddenItems:
    """`{namespace}:hidden` (a set of item ids) and `{namespace}:hidden:version` (bumped on every change)."""

    def __init__(self, client, namespace: str):
        self.client, self.key = client, f"{namespace}:hidden"
        self._cache = VersionedCache(frozenset())

    def change(self, item_ids: list[int], hide: bool) -> None:
        if item_ids:
            with self.client.pipeline(transaction=True) as pipe:
                (pipe.sadd if hide else pipe.srem)(self.key, *map(int, item_ids))
                pipe.incr(f"{self.key}:version")
                pipe.execute()

    def current(self) -> frozenset[int]:
        return self._cache.current(lambda: int(self.client.get(f"{self.key}:version") or 0),
                                   lambda: frozenset(int(i) for i in self.client.smembers(self.key)))


class SqliteHiddenItems:
    """Two tables in a SQLite file shared by the workers of one machine."""

    def __init__(self, path: Path, timeout_s: float):
        self.path, self.timeout_s = Path(path), timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("CREATE TABLE IF NOT EXISTS hidden_items (item_id INTEGER PRIMARY KEY, since REAL)")
            connection.execute("CREATE TABLE IF NOT EXISTS hidden_version (id INTEGER PRIMARY KEY CHECK (id = 0), version INTEGER)")
            connection.execute("INSERT OR IGNORE INTO hidden_version VALUES (0, 0)")
        self._cache = VersionedCache(frozenset())

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=self.timeout_s)

    def change(self, item_ids: list[int], hide: bool) -> None:
        if item_ids:
            with self._connect() as connection:
                if hide:
                    connection.executemany("INSERT OR IGNORE INTO hidden_items VALUES (?, ?)",
                                           [(int(i), time.time()) for i in item_ids])
                else:
                    connection.executemany("DELETE FROM hidden_items WHERE item_id = ?", [(int(i),) for i in item_ids])
                connection.execute("UPDATE hidden_version SET version = version + 1")

    def current(self) -> frozenset[int]:
        def version() -> int:
            with self._connect() as connection:
                return int(connection.execute("SELECT version FROM hidden_version").fetchone()[0])

        def items() -> frozenset[int]:
            with self._connect() as connection:
                return frozenset(int(row[0]) for row in connection.execute("SELECT item_id FROM hidden_items"))

        return self._cache.current(version, items)
