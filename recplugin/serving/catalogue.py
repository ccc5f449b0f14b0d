"""New items while serving, without a retrain or a restart: the served model's item tower gives their vectors (text
only: the cold-item rule), the served Milvus collection gets them, Feast's online item views and the live item log too,
and every worker adds them to its item table when the shared set of new items changes (read once per batch)."""
from __future__ import annotations

import logging
import threading
from contextlib import AbstractContextManager
from typing import Callable

from pymilvus import MilvusClient

from recplugin.config import RecConfig
from recplugin.data.live_items import LIVE_ITEMS, NewItem, append_items
from recplugin.features.online import OnlineFeatures
from recplugin.index.collections import upsert_items
from recplugin.models.artifact import RetrievalModel

logger = logging.getLogger("recplugin.serving")


class Catalogue:
    """Adds items for the whole deployment, and keeps this worker's served model in step with the items others added."""

    def __init__(self, config: RecConfig, online: OnlineFeatures, online_store: Callable[[], AbstractContextManager],
                 milvus: MilvusClient):
        self.config, self.online, self.online_store, self.milvus = config, online, online_store, milvus
        self.log_path = config.data_dir / LIVE_ITEMS
        self.keys: dict[int, str] = {}  # the team's own ids of added items (source.string_ids)
        self._lock = threading.Lock()
        self._synced: dict[int, tuple[RetrievalModel, object]] = {}  # per model followed: the shared set it has

    def add(self, model: RetrievalModel, collection: str, items: list[NewItem]) -> dict:
        """Make items recommendable everywhere; items the served model already holds are left as they are (`known`).

        Order: the live log (durable), Milvus, Feast, then the shared set (which tells the other workers): a failure
        part-way leaves nothing announced, and the same call again finishes the job.
        """
        fresh = list({item.item_id: item for item in items if item.item_id not in model.id_to_row}.values())
        if fresh:
            vectors = model.cold_item_vectors([item.text for item in fresh])  # an ids-only model refuses here: nothing logged
            append_items(self.log_path, fresh)
            self._upsert(collection, fresh, vectors)
            with self.online_store():
                self.online.write_items(fresh, vectors, model.version)
                self.online.new_items.add(fresh)
            with self._lock:
                model.add_items([item.item_id for item in fresh], vectors)
                self.keys.update({item.item_id: item.key for item in fresh if item.key is not None})
        return {"added": len(fresh), "known": len(items) - len(fresh), "model_version": model.version}

    def sync(self, model: RetrievalModel, collection: str) -> None:
        """Bring this worker's model (and its collection) in step with the items any worker added: vectors from this
        model's item tower, upserted (idempotent: a collection built meanwhile may lack them), then the item table."""
        shared = self.online.new_items.current()
        if self._in_step(model, shared):
            return
        with self._lock:
            if self._in_step(model, shared):
                return
            missing = [item for item_id, item in shared.items() if item_id not in model.id_to_row]
            if missing:
                vectors = model.cold_item_vectors([item.text for item in missing])
                self._upsert(collection, missing, vectors)
                model.add_items([item.item_id for item in missing], vectors)
                logger.info("model %s: %d item(s) added while serving are now in its table", model.version, len(missing))
            self.keys.update({item.item_id: item.key for item in shared.values() if item.key is not None})
            recent = list(self._synced.items())[-3:]  # the serving version, a rollout's candidate, the ones they replaced
            self._synced = {**dict(recent), id(model): (model, shared)}

    def _upsert(self, collection: str, items: list[NewItem], vectors) -> None:
        """Items and their vectors into a collection (idempotent)."""
        upsert_items(self.milvus, collection, [i.item_id for i in items], vectors, [i.category for i in items],
                     [i.scenarios for i in items], self.config.scenarios, timeout=self.config.index.rpc_timeout_s)

    def _in_step(self, model: RetrievalModel, shared: object) -> bool:
        known = self._synced.get(id(model))
        return known is not None and known[0] is model and known[1] is shared
