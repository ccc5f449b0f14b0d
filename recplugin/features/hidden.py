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


class SqliteVersioned:
    """A SQLite file shared by the workers of one machine: one table (`TABLE`, made by `SCHEMA`) and its change counter
    (`VERSION_TABLE`), cached per worker by the counter."""

    TABLE, SCHEMA, VERSION_TABLE, EMPTY = "", "", "", None

    def __init__(self, path: Path, timeout_s: float):
        self.path, self.timeout_s = Path(path), timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(f"CREATE TABLE IF NOT EXISTS {self.TABLE} ({self.SCHEMA})")
            connection.execute(f"CREATE TABLE IF NOT EXISTS {self.VERSION_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 0), version INTEGER)")
            connection.execute(f"INSERT OR IGNORE INTO {self.VERSION_TABLE} VALUES (0, 0)")
        self._cache = VersionedCache(self.EMPTY)
        self._local = threading.local()

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=self.timeout_s)

    def _changed(self, connection: sqlite3.Connection) -> None:
        connection.execute(f"UPDATE {self.VERSION_TABLE} SET version = version + 1")

    def _version(self) -> int:
        """The change counter, read on this thread's open connection (read once per batch: opening the file each time
        took ~9% of a batch on the embedded stack)."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connect()
        return int(connection.execute(f"SELECT version FROM {self.VERSION_TABLE}").fetchone()[0])

    def _rows(self, query: str) -> list[tuple]:
        with self._connect() as connection:
            return list(connection.execute(query))


class SqliteHiddenItems(SqliteVersioned):
    """The hidden set in a SQLite file."""

    TABLE, SCHEMA, VERSION_TABLE, EMPTY = "hidden_items", "item_id INTEGER PRIMARY KEY, since REAL", "hidden_version", frozenset()

    def change(self, item_ids: list[int], hide: bool) -> None:
        if item_ids:
            with self._connect() as connection:
                if hide:
                    connection.executemany("INSERT OR IGNORE INTO hidden_items VALUES (?, ?)",
                                           [(int(i), time.time()) for i in item_ids])
                else:
                    connection.executemany("DELETE FROM hidden_items WHERE item_id = ?", [(int(i),) for i in item_ids])
                self._changed(connection)

    def current(self) -> frozenset[int]:
        return self._cache.current(self._version, lambda: frozenset(int(row[0]) for row in self._rows("SELECT item_id FROM hidden_items")))
