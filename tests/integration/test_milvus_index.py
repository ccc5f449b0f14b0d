"""Milvus index: a collection per version, filtered max-over-interests search, alias moved only after a complete build.

Runs on Milvus Lite; set RECPLUGIN_TEST_MILVUS_URI (e.g. http://127.0.0.1:19530) to run it against a Milvus server,
which is where the alias tests run (Milvus Lite 2.5 has no aliases).
"""
import os

import numpy as np
import pytest

from recplugin.config import IndexConfig
from recplugin.index import milvus

pytestmark = pytest.mark.integration
CONFIG = IndexConfig(collection_prefix="items", alias="items_current")


@pytest.fixture
def client(tmp_path):
    uri = os.environ.get("RECPLUGIN_TEST_MILVUS_URI") or str(tmp_path / "milvus.db")
    client = milvus.connect(uri)
    for name in client.list_collections():
        if name.startswith(CONFIG.collection_prefix + "_"):
            client.drop_collection(name)
    yield client
    milvus.disconnect(client, uri)


@pytest.fixture
def alias_client(client):
    if not milvus.supports_aliases(client):
        pytest.skip("this Milvus has no aliases (Milvus Lite 2.5); set RECPLUGIN_TEST_MILVUS_URI to a Milvus server")
    for alias in client.list_aliases().get("aliases", []):
        if alias == CONFIG.alias:
            client.drop_alias(alias)
    return client


def _items(count=60, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(1000, 1000 + count)
    scenarios = [["feed", "discovery"] if i % 2 else ["feed"] for i in range(count)]
    return ids, vectors, [f"c{i % 3}" for i in range(count)], scenarios


def test_build_then_search(client):
    ids, vectors, categories, scenarios = _items()
    name = milvus.build_collection(client, CONFIG, "v1", ids, vectors, categories, scenarios, progress=False)
    assert client.get_collection_stats(name)["row_count"] == len(ids)
    hits = milvus.search_interests(client, name, vectors[:1], 5, "feed", [])
    assert hits[0].item_id == 1000 and hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_ivf_index_above_the_flat_threshold_keeps_recall(client):
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(40, 16)).astype(np.float32)
    vectors = centers[rng.integers(0, 40, 4000)] + 0.4 * rng.normal(size=(4000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(4000)
    config = IndexConfig(collection_prefix="items", flat_index_below=1000, ivf_nprobe=32)
    name = milvus.build_collection(client, config, "ivf", ids, vectors, ["c"] * 4000, [["feed"]] * 4000, progress=False)
    assert client.describe_index(name, client.list_indexes(name)[0])["index_type"] == "IVF_FLAT"
    recalls = []
    for query in vectors[:20]:
        found = {h.item_id for h in milvus.search_interests(client, name, query[None], 50, "feed", [], config.ivf_nprobe)}
        recalls.append(len(found & set(np.argsort(-(vectors @ query))[:50].tolist())) / 50)
    assert np.mean(recalls) >= 0.95


def test_build_then_point_alias(alias_client):
    client = alias_client
    ids, vectors, categories, scenarios = _items()
    name = milvus.build_collection(client, CONFIG, "v1", ids, vectors, categories, scenarios, progress=False)
    assert milvus.alias_target(client, CONFIG.alias) is None
    milvus.point_alias(client, CONFIG.alias, name)
    assert milvus.alias_target(client, CONFIG.alias) == name
    hits = milvus.search_interests(client, CONFIG.alias, vectors[:1], 5, "feed", [])
    assert hits[0].item_id == 1000 and hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_search_is_exact_filtered_and_max_over_interests(client):
    ids, vectors, categories, scenarios = _items()
    name = milvus.build_collection(client, CONFIG, "v1", ids, vectors, categories, scenarios, progress=False)
    interests = vectors[[3, 10]]
    hits = milvus.search_interests(client, name, interests, 10, "discovery", exclude=[1003])
    returned = [h.item_id for h in hits]
    assert 1003 not in returned and all((i - 1000) % 2 == 1 for i in returned)
    eligible = np.array([i % 2 == 1 and i != 3 for i in range(len(ids))])
    exact = np.where(eligible, (vectors @ interests.T).max(axis=1), -np.inf)
    expected = [int(ids[i]) for i in np.argsort(-exact)[:10]]
    assert returned == expected
    assert [h.score for h in hits] == pytest.approx(sorted(exact[np.argsort(-exact)[:10]], reverse=True), abs=1e-4)


def test_failed_build_leaves_the_previous_alias_serving(alias_client, monkeypatch):
    client = alias_client
    ids, vectors, categories, scenarios = _items()
    first = milvus.build_collection(client, CONFIG, "v1", ids, vectors, categories, scenarios, progress=False)
    milvus.point_alias(client, CONFIG.alias, first)
    real_insert = client.insert
    monkeypatch.setattr(client, "insert", lambda name, rows: real_insert(name, rows[: len(rows) // 2]))
    with pytest.raises(milvus.IndexIncomplete, match="holds 30 of 60 items"):
        milvus.build_collection(client, CONFIG, "v2", ids, vectors, categories, scenarios, progress=False)
    assert milvus.alias_target(client, CONFIG.alias) == first
    assert len(milvus.search_interests(client, CONFIG.alias, vectors[:1], 5, "feed", [])) == 5


def test_failed_build_raises(client, monkeypatch):
    ids, vectors, categories, scenarios = _items()
    real_insert = client.insert
    monkeypatch.setattr(client, "insert", lambda name, rows: real_insert(name, rows[: len(rows) // 2]))
    with pytest.raises(milvus.IndexIncomplete, match="holds 30 of 60 items"):
        milvus.build_collection(client, CONFIG, "v2", ids, vectors, categories, scenarios, progress=False)


def test_alias_moves_between_complete_versions(alias_client):
    client = alias_client
    ids, vectors, categories, scenarios = _items()
    first = milvus.build_collection(client, CONFIG, "v1", ids, vectors, categories, scenarios, progress=False)
    milvus.point_alias(client, CONFIG.alias, first)
    second = milvus.build_collection(client, CONFIG, "v2", ids, -vectors, categories, scenarios, progress=False)
    milvus.point_alias(client, CONFIG.alias, second)
    assert milvus.alias_target(client, CONFIG.alias) == second
    assert milvus.search_interests(client, CONFIG.alias, -vectors[:1], 1, "feed", [])[0].item_id == 1000


def test_filter_is_built_from_validated_values_only():
    assert milvus.eligibility_filter("feed") == "in_feed == true"
    with pytest.raises(ValueError):
        milvus.eligibility_filter('feed") or ("1')


def test_one_call_for_many_users_matches_exact_search(client, monkeypatch):
    ids, vectors, categories, scenarios = _items()
    name = milvus.build_collection(client, CONFIG, "v1", ids, vectors, categories, scenarios, progress=False)
    rng = np.random.default_rng(3)
    interests = vectors[rng.integers(0, len(ids), size=(4, 2))]
    top_of_user_0 = np.argsort(-(vectors @ interests[0].T).max(axis=1))
    seen = [{int(ids[i]) for i in top_of_user_0[:25]}, {1001, 1003}, set(int(i) for i in ids[1::2][:20]), {1005}]
    filters, real_search = [], client.search
    monkeypatch.setattr(client, "search", lambda *args, **kwargs: filters.append(kwargs["filter"]) or real_search(*args, **kwargs))
    answers = milvus.search_many(client, name, interests, 7, "discovery", seen)
    assert len(filters) == 2 and "not in" in filters[1]  # user 0's seen items fill its first page: searched again
    for user, hits in enumerate(answers):
        allowed = np.array([i % 2 == 1 and int(ids[i]) not in seen[user] for i in range(len(ids))])
        exact = np.where(allowed, (vectors @ interests[user].T).max(axis=1), -np.inf)
        assert [h.item_id for h in hits] == [int(ids[i]) for i in np.argsort(-exact)[:7]]
