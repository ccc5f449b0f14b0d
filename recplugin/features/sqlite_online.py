"""Feast's SQLite online store, with the rule Feast's Redis store already has: an older row never replaces a newer one.

Feast's SQLite upsert ignores event timestamps, so `materialize` (rows as of the last `apply`) rolled back the states that
`/events` had pushed since. Here each write batch runs in one `BEGIN IMMEDIATE` transaction: read the stored event times
of its entities, drop the rows older than them, write the rest. Writers also wait up to `busy_timeout_ms` for the lock.
Select it with `online_store: {type: recplugin.features.sqlite_online.NewestWinsSqliteOnlineStore, path: ...}`.
"""
from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from typing import Any, Callable, Literal, Optional

from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig, _quote_id, _table_id
from feast.utils import to_naive_utc

TYPE = "recplugin.features.sqlite_online.NewestWinsSqliteOnlineStore"


class NewestWinsSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    """Feast's SQLite online store options, plus how long a writer waits for the database lock."""

    type: Literal["recplugin.features.sqlite_online.NewestWinsSqliteOnlineStore"] = TYPE  # type: ignore[assignment]
    busy_timeout_ms: int = 5000


class NewestWinsSqliteOnlineStore(SqliteOnlineStore):
    """SQLite online store whose writes keep, per entity, whichever row has the newer event timestamp."""

    def _get_conn(self, config) -> sqlite3.Connection:
        fresh = self._conn is None
        conn = super()._get_conn(config)
        if fresh:
            conn.execute(f"PRAGMA busy_timeout = {int(config.online_store.busy_timeout_ms)}")
        return conn

    def online_write_batch(self, config, table, data: list, progress: Optional[Callable[[int], Any]]) -> None:
        conn = self._get_conn(config)
        name = _table_id(config.project, table, config.registry.enable_online_feature_view_versioning)
        keys = [serialize_entity_key(key, entity_key_serialization_version=config.entity_key_serialization_version)
                for key, _, _, _ in data]
        conn.execute("BEGIN IMMEDIATE")  # held until the parent's `with conn:` commits (or rolls back) the writes
        try:
            stored = _stored_event_times(conn, name, keys)
            newest = [row for key, row in zip(keys, data) if key not in stored or _epoch(row[2]) >= stored[key]]
            super().online_write_batch(config, table, newest, progress)
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        if conn.in_transaction:  # nothing was newer: the parent wrote nothing and left the transaction open
            conn.commit()


def _epoch(stamp: datetime) -> int:
    """Whole epoch seconds, as Feast's SQLite adapter stores event times."""
    return int(to_naive_utc(stamp).replace(tzinfo=timezone.utc).timestamp())


def _stored_event_times(conn: sqlite3.Connection, table: str, keys: list[bytes], chunk: int = 500) -> dict[bytes, float]:
    """The newest stored event time (epoch seconds) per entity key, for the keys that have rows."""
    found: dict[bytes, float] = {}
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), chunk):
        part = unique[start:start + chunk]
        try:
            rows = conn.execute(f"SELECT entity_key, MAX(event_ts) FROM {_quote_id(table)} WHERE entity_key IN "
                                f"({', '.join('?' * len(part))}) GROUP BY entity_key", part).fetchall()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return found
            raise
        for key, stamp in rows:
            found[key] = _epoch(stamp) if isinstance(stamp, datetime) else float(stamp)
    return found
