"""Items added while serving, shared by every worker: a Redis hash (or a SQLite file beside the SQLite online store) of
item id -> the item as JSON, with a change counter read once per batch; the items are read again only when it moved.
An item leaves the set once every version that may still serve was trained with it."""
from __future__ import annotations

from types import MappingProxyType

import numpy as np

from recplugin.data.live_items import NewItem
from recplugin.features.hidden import SqliteVersioned, VersionedCache

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

    def remove(self, item_ids: list[int]) -> None:
        if item_ids:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hdel(self.key, *map(str, item_ids))
                pipe.incr(f"{self.key}:version")
                pipe.execute()

    def current(self) -> MappingProxyType:
        """Every added item by id (the same object until something changes)."""
        return self._cache.current(lambda: int(self.client.get(f"{self.key}:version") or 0),
                                   lambda: _frozen({int(k): NewItem.from_json(v) for k, v in self.client.hgetall(self.key).items()}))


class SqliteNewItems(SqliteVersioned):
    """The added items in a SQLite file."""

    TABLE, SCHEMA, VERSION_TABLE, EMPTY = "new_items", "item_id INTEGER PRIMARY KEY, item TEXT", "new_items_version", NO_ITEMS

    def add(self, items: list[NewItem]) -> None:
        if items:
            with self._connect() as connection:
                connection.executemany("INSERT OR REPLACE INTO new_items VALUES (?, ?)",
                                       [(int(item.item_id), item.to_json()) for item in items])
                self._changed(connection)

    def remove(self, item_ids: list[int]) -> None:
        if item_ids:
            with self._connect() as connection:
                connection.executemany("DELETE FROM new_items WHERE item_id = ?", [(int(i),) for i in item_ids])
                self._changed(connection)

    def current(self) -> MappingProxyType:
        return self._cache.current(self._version, lambda: _frozen(
            {int(i): NewItem.from_json(j) for i, j in self._rows("SELECT item_id, item FROM new_items")}))


def forget_trained(store: RedisNewItems | SqliteNewItems, servable: list[np.ndarray]) -> list[int]:
    """Forget the added items that the item table of every version still servable holds (trained with them, they are
    ordinary items there; an older version kept for a rollback still needs them from the set); their ids."""
    added = np.fromiter(store.current().keys(), dtype=np.int64)
    if not servable or not len(added):
        return []
    trained = added[np.logical_and.reduce([np.isin(added, item_ids) for item_ids in servable])].tolist()
    store.remove(trained)
    return trained
