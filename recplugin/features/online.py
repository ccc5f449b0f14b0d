"""The serving side of Feast: user states read from the online store, new behaviour and items pushed to it, and the
per-host stores beside it (event ids, user locks, hidden and new items) on SQLite files or on the online store's Redis."""
from __future__ import annotations

import numpy as np
import pandas as pd
from feast import FeatureStore
from feast.data_source import PushMode
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from recplugin.config import RecConfig
from recplugin.features import definitions as defs
from recplugin.features.hidden import RedisHiddenItems, SqliteHiddenItems
from recplugin.features.history import UserState
from recplugin.features.ledger import RedisEventLedger, SqliteEventLedger
from recplugin.features.locks import FileUserLocks, RedisUserLocks
from recplugin.features.new_items import RedisNewItems, SqliteNewItems, forget_trained
from recplugin.features.store import open_store


def without_retries(store: FeatureStore) -> None:
    """Feast's Redis client retries a timed-out call 3 times with backoff (redis-py's default, not settable from the
    connection string): with Redis hung one read took ~10 s instead of `feast.online_timeout_s`. One try, one timeout."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    online_store = store._get_provider().online_store
    online_store._get_client(store.config.online_store).set_retry(Retry(NoBackoff(), 0))


def python_value(value: ValueProto) -> object:
    """One online value as Python: a list for list types, None when unset (the user-state features are ints and int
    lists; Feast's to_dict does the same through its type map at several times the cost per value)."""
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    field = getattr(value, kind)
    return list(field.val) if kind.endswith("_list_val") else field


class OnlineFeatures:
    """Reads user state from the online store and pushes new behaviour through the push source."""

    def __init__(self, config: RecConfig, store: FeatureStore | None = None):
        self.config = config
        self.store = store or open_store(config)
        self.service = self.store.get_feature_service(defs.names(config).user_serving)
        # the service's views, resolved once: each read goes to the online store's own read, not get_online_features,
        # whose request and response building cost as much as the read itself (batch of 16 users: 4.2 -> 2.0 ms)
        self._views = [(self.store.get_feature_view(projection.name), tuple(field.name for field in projection.features))
                       for projection in self.service.feature_view_projections]
        timeout, retention = config.feast.online_timeout_s, config.serving.event_id_retention_h * 3600
        if self.store.config.online_store.type == "redis":
            self.locks = RedisUserLocks(config.feast.redis, f"recplugin:{config.feast.project}", timeout)
            self.ledger = RedisEventLedger(self.locks.client, f"recplugin:{config.feast.project}", retention)
            self.hidden = RedisHiddenItems(self.locks.client, f"recplugin:{config.feast.project}")
            self.new_items = RedisNewItems(self.locks.client, f"recplugin:{config.feast.project}")
            without_retries(self.store)
        else:
            self.locks = FileUserLocks(config.data_dir / "user_locks", timeout)
            self.ledger = SqliteEventLedger(config.data_dir / "user_locks" / "event_ids.db", retention, timeout)
            self.hidden = SqliteHiddenItems(config.data_dir / "user_locks" / "hidden_items.db", timeout)
            self.new_items = SqliteNewItems(config.data_dir / "user_locks" / "new_items.db", timeout)

    def user_states(self, user_ids: list[int]) -> list[UserState | None]:
        """Each user's state, or None when the online store has nothing for that user."""
        if not user_ids:
            return []
        columns = self._read(user_ids)
        states: list[UserState | None] = []
        for index in range(len(user_ids)):
            values = {name: column[index] for name, column in columns.items()}
            known = any(values.get(f"{s}_count") is not None for s in self.config.scenarios)
            states.append(UserState.from_online(self.config.scenarios, self.config.feast.history_length, values) if known else None)
        return states

    def push_state(self, user_id: int, state: UserState, timestamp: pd.Timestamp) -> None:
        """Write the user's new state to the online store (every view on the push source).

        The offline side is the live event log, folded into the user-state source by the next `recplugin apply`:
        Feast's offline write rewrites the whole parquet source per call and grew the service by ~55 MB per event.
        """
        names = defs.names(self.config)
        self.store.push(names.user_state_push, pd.DataFrame([state.row(user_id, timestamp)]), to=PushMode.ONLINE)
        self.store.push(names.user_seen_push, pd.DataFrame([state.seen_row(user_id, timestamp)]), to=PushMode.ONLINE)

    def write_items(self, items: list, vectors: np.ndarray, model_version: str) -> None:
        """New items' text and vectors into the online item views (the offline side is the live item log)."""
        names, now = defs.names(self.config), pd.Timestamp.now(tz="UTC")
        ids = [item.item_id for item in items]
        self.store.write_to_online_store(names.item_features, pd.DataFrame({
            "item_id": ids, "title": [i.title for i in items], "text": [i.text for i in items],
            "category": [i.category for i in items], "created_timestamp": now}))
        self.store.write_to_online_store(names.item_embedding, pd.DataFrame({
            "item_id": ids, "embedding": [list(map(float, v)) for v in vectors], "model_version": model_version,
            "event_timestamp": now}))

    def _read(self, user_ids: list[int]) -> dict[str, list]:
        """Each feature of the user-serving service for each user, as Python values (None where the store has none)."""
        keys = [EntityKeyProto(join_keys=["user_id"], entity_values=[ValueProto(int64_val=int(u))]) for u in user_ids]
        provider, columns = self.store._get_provider(), {}
        for view, names in self._views:
            # a new list each call: Feast's Redis store appends its timestamp key to the list it is given
            rows = provider.online_read(config=self.store.config, table=view, entity_keys=keys, requested_features=list(names))
            for name in names:
                columns[name] = [python_value(data[name]) if data and name in data else None for _, data in rows]
        return columns

    def ping(self) -> bool:
        """True when the online store answers a read."""
        self.user_states([0])
        return True


def forget_trained_new_items(config: RecConfig, servable: list) -> list[int]:
    """Take the items added while serving that every servable version's item table holds out of the set the workers
    follow (it would otherwise grow with every item ever added, and each worker reads it whole on every change)."""
    return forget_trained(OnlineFeatures(config).new_items, servable)
