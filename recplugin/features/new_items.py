"""Items added while serving, shared by every worker: a Redis hash (or a SQLite file beside the SQLite online store) of
item id -> the item as JSON, with a change counter read once per batch; the items are read again only when it moved."""
from __future__ import annotations

import sqlite3
from pathlib import Path
from types import MappingProxyType

from recplugin.data.live_items import NewItem
from recplugin.features.hidden import VersionedCache

NO_ITEMS: MappingProxyType = MappingProxyType({})


def _frozen(items: dict[int, NewItem]) -> MappingProxyType:
    return MappingProxyType(items)


class RedisNewItems:
    """`{namespace}:new_items` (item id -> JSON) and `{namespace}:new_items:version` (bumped on every change)."""

    def __init__(self, client, namespace: str):
        self.client, self.key = client, f"{namespace}:new_items"
        self._cache = VersionedCache(NO_ITEMS)

    def add(self, items: list[NewItem]) -> None:
        if items:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(self.key, mapping={str(item.item_id): item.to_json() for item in items})
                pipe.incr(f"{self.key}:version")
                pipe.execute()

    def current(self) -> MappingProxyType:
        """Every added item by id (the same object until something changes)."""
        return self._cache.current(lambda: int(self.client.get(f"{self.key}:version") or 0),
                                   lambda: _frozen({int(k): NewItem.from_json(v) for k, v in self.client.hgetall(self.key).items()}))


class SqliteNewItems:
    """Two tables in a SQLite file shared by the workers of one machine."""

    def __init__(self, path: Path, timeout_s: float):
        self.path, self.timeout_s = Path(path), timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("CREATE TABLE IF NOT EXISTS new_items (item_id INTEGER PRIMARY KEY, item TEXT)")
            connection.execute("CREATE TABLE IF NOT EXISTS new_items_version (id INTEGER PRIMARY KEY CHECK (id = 0), version INTEGER)")
            connection.execute("INSERT OR IGNORE INTO new_items_version VALUES (0, 0)")
        self._cache = VersionedCache(NO_ITEMS)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=self.timeout_s)

    def add(self, items: list[NewItem]) -> None:
        if items:
            with self._connect() as connection:
                connection.executemany("INSERT OR REPLACE INTO new_items VALUES (?, ?)",
                                       [(int(item.item_id), item.to_json()) for item in items])
                connection.execute("UPDATE new_items_version SET version = version + 1")

    def current(self) -> MappingProxyType:
        def version() -> int:
            with self._connect() as connection:
                return int(connection.execute("SELECT version FROM new_items_version").fetchone()[0])

        def items() -> MappingProxyType:
            with self._connect() as connection:
                return _frozen({int(i): NewItem.from_json(j) for i, j in connection.execute("SELECT item_id, item FROM new_items")})

        return self._cache.current(version, items)
