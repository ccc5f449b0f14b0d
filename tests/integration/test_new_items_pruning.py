"""The set of items added while serving keeps only what some servable version lacks: an item leaves it once every
version that may still serve (the serving one, a rollout's candidate, those kept for a rollback) was trained with it.
On a real Redis and on the SQLite file; then through `index`, on the embedded stack."""
import json
import shutil
import uuid

import numpy as np
import pytest
import redis

from recplugin import pipeline
from recplugin.data.live_items import NewItem
from recplugin.features.new_items import RedisNewItems, SqliteNewItems, forget_trained
from recplugin.features.online import OnlineFeatures
from recplugin.models.artifact import ITEM_IDS, ITEM_VECTORS, META
from recplugin.registry.models import ModelRegistry
from tests.conftest import served_copy

pytestmark = pytest.mark.integration


@pytest.fixture(params=["redis", "sqlite"])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield SqliteNewItems(tmp_path / "new_items.db", 5.0)
        return
    namespace = f"test-new-items-{uuid.uuid4().hex[:8]}"
    client = redis.Redis(host="127.0.0.1", port=6379)
    yield RedisNewItems(client, namespace)
    client.delete(f"{namespace}:new_items", f"{namespace}:new_items:version")


def _items(*item_ids: int) -> list[NewItem]:
    return [NewItem(item_id, f"item {item_id}", f"text {item_id}") for item_id in item_ids]


def test_an_item_leaves_the_set_only_once_every_servable_version_holds_it(store):
    store.add(_items(101, 102, 103))
    before = store.current()
    serving, kept = np.array([1, 2, 101, 102]), np.array([1, 2, 101])  # a rollback target trained before 102 came
    assert forget_trained(store, [serving, kept]) == [101]
    assert sorted(store.current()) == [102, 103] and store.current() is not before  # workers see the change
    assert forget_trained(store, []) == [] and sorted(store.current()) == [102, 103]  # no servable version: keep all
    assert forget_trained(store, [serving]) == [102] and sorted(store.current()) == [103]


def test_index_takes_out_the_added_items_every_servable_version_was_trained_with(built_pipeline, tmp_path):
    """A version whose item table holds an added item becomes serving; the item stays in the set while the version it
    replaced is kept for a rollback, and leaves it when that one is dropped."""
    config = served_copy(built_pipeline, tmp_path / "work", "milvus.db", index={"keep_versions": 2})
    registry, online = ModelRegistry(config.registry_sqlalchemy_url), OnlineFeatures(config)
    first = registry.latest(status="serving")
    added = int(np.load(first.artifact_uri + "/" + ITEM_IDS).max()) + 1
    online.new_items.add(_items(added, added + 1))

    def retrained(name: str) -> str:  # the first version's artifact with `added` in its item table, as a retrain gives
        folder = tmp_path / name
        shutil.copytree(first.artifact_uri, folder)
        ids, vectors = np.load(folder / ITEM_IDS), np.load(folder / ITEM_VECTORS)
        np.save(folder / ITEM_IDS, np.append(ids, added))
        np.save(folder / ITEM_VECTORS, np.vstack([vectors, vectors[:1]]))
        (folder / META).write_text(json.dumps({**json.loads((folder / META).read_text()), "version": name}))
        return pipeline.register_artifact(config, folder)

    pipeline.index(config, retrained("v_second"), progress=False)
    assert sorted(online.new_items.current()) == [added, added + 1]  # the first version, kept, lacks it
    pipeline.index(config, retrained("v_third"), progress=False)  # keep_versions 2: the first is dropped
    assert sorted(online.new_items.current()) == [added + 1]
