"""Milvus index on both backends (Milvus Lite and a real Milvus standalone server): a new collection per build,
filtered max-over-interests search that is never short, aliases moved only after a complete build, retirement."""
import uuid
from dataclasses import dataclass

import numpy as np
import pytest

from recplugin.config import IndexConfig
from recplugin.index import collections, lite_guard, milvus

pytestmark = pytest.mark.integration


def _connected(uri: str):
    """(client, config) with a collection prefix of the test's own; its collections are dropped afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    config = IndexConfig(uri=uri, collection_prefix=prefix, alias=f"{prefix}_current", drop_grace_s=0)
    client = milvus.connect(uri, timeout=30)
    yield client, config
    for name in client.list_collections():
        if name.startswith(prefix):
            collections.drop_collection(client, name)
    milvus.disconnect(client, uri)


@pytest.fixture(params=["lite", "server"])
def backend(request, tmp_path):
    """On a Milvus Lite file, then on the session's Milvus server."""
    uri = str(tmp_path / "milvus.db") if request.param == "lite" else request.getfixturevalue("milvus_server_uri")
    yield from _connected(uri)


@pytest.fixture
def server(milvus_server_uri):
    """On the Milvus server only: aliases (Milvus Lite 2.5 has none; the registry row names the served collection there)."""
    yield from _connected(milvus_server_uri)


def _items(count=60, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(1000, 1000 + count)
    scenarios = [["feed", "discovery"] if i % 2 else ["feed"] for i in range(count)]
    return ids, vectors, [f"c{i % 3}" for i in range(count)], scenarios


def _build(client, config, version, vectors=None, **items):
    ids, base, categories, scenarios = _items(**items)
    return collections.build_collection(client, config, version, ids, base if vectors is None else vectors, categories,
                                        scenarios, progress=False)


def test_build_counts_every_row_then_search(backend):
    client, config = backend
    name = _build(client, config, "v1")
    assert collections.row_count(client, name) == 60  # a server's stats count flushed segments only; this counts all
    assert collections.collection_version(client, name) == "v1"
    hits = milvus.search_interests(client, name, _items()[1][:1], 5, "feed", [], config)
    assert hits[0].item_id == 1000 and hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_a_rebuild_of_the_same_version_gets_a_new_collection(backend):
    client, config = backend
    first, second = _build(client, config, "v1"), _build(client, config, "v1")
    assert first != second and {first, second} <= set(client.list_collections())


def test_search_is_exact_filtered_and_max_over_interests(backend):
    client, config = backend
    ids, vectors, _, _ = _items()
    name = _build(client, config, "v1")
    interests = vectors[[3, 10]]
    hits = milvus.search_interests(client, name, interests, 10, "discovery", [1003], config)
    returned = [h.item_id for h in hits]
    eligible = np.array([i % 2 == 1 and i != 3 for i in range(len(ids))])
    exact = np.where(eligible, (vectors @ interests.T).max(axis=1), -np.inf)
    assert returned == [int(ids[i]) for i in np.argsort(-exact)[:10]]
    assert [h.score for h in hits] == pytest.approx(sorted(exact[np.argsort(-exact)[:10]], reverse=True), abs=1e-4)


def test_one_call_for_many_users_matches_exact_search(backend, monkeypatch):
    client, config = backend
    ids, vectors, _, _ = _items()
    name = _build(client, config, "v1")
    rng = np.random.default_rng(3)
    interests = vectors[rng.integers(0, len(ids), size=(4, 2))]
    top_of_user_0 = np.argsort(-(vectors @ interests[0].T).max(axis=1))
    seen = [{int(ids[i]) for i in top_of_user_0[:25]}, {1001, 1003}, set(int(i) for i in ids[1::2][:20]), {1005}]
    filters, real_search = [], client.search
    monkeypatch.setattr(client, "search", lambda *args, **kwargs: filters.append(kwargs["filter"]) or real_search(*args, **kwargs))
    answers = milvus.search_many(client, name, interests, 7, "discovery", seen, config, overfetch=7)
    assert len(filters) == 2 and "not in" in filters[1]  # user 0's seen items fill its first page: searched again
    assert milvus.search_many(client, name, interests, 7, "discovery", seen, config) == answers
    assert len(filters) == 3  # by default each interest asks for k + the most seen items of a user: one call
    for user, hits in enumerate(answers):
        allowed = np.array([i % 2 == 1 and int(ids[i]) not in seen[user] for i in range(len(ids))])
        exact = np.where(allowed, (vectors @ interests[user].T).max(axis=1), -np.inf)
        assert [h.item_id for h in hits] == [int(ids[i]) for i in np.argsort(-exact)[:7]]


def test_interleaved_answers_take_turns_between_interests_as_offline_evaluation_does(backend):
    """serving.merge: interleave on Milvus equals recplugin.models.merge.interleaved over the exact per-interest lists
    (what offline evaluation uses), seen items excluded, also when seen items force the search-again path."""
    from recplugin.models.merge import interleaved

    client, config = backend
    ids, vectors, _, _ = _items()
    name = _build(client, config, "v1")
    interests = vectors[[3, 10, 25]]
    for seen in ({1003, 1011}, {int(ids[i]) for i in np.argsort(-(vectors @ interests[0]))[:30]}):
        hits = milvus.search_interests(client, name, interests, 9, "discovery", sorted(seen), config, merge="interleave")
        allowed = np.array([i % 2 == 1 and int(ids[i]) not in seen for i in range(len(ids))])
        lists = [[int(ids[i]) for i in np.argsort(-(vectors @ vector)) if allowed[i]] for vector in interests]
        assert [h.item_id for h in hits] == [item for item, _ in interleaved(lists, 9)]
        sources = {source for _, source in interleaved(lists, 9)}
        assert sources == {0, 1, 2}  # every interest shows in the answer


@dataclass
class ShortPage:
    """A page of hits cut short, read as pymilvus' pages are: through their id and distance columns."""

    ids: list
    distances: list

    def __len__(self) -> int:
        return len(self.ids)


def test_a_short_filtered_result_never_shortens_the_answer(backend, monkeypatch):
    client, config = backend
    ids, vectors, _, _ = _items()
    name = _build(client, config, "v1")
    real_search, calls = client.search, []

    def short_first_pages(*args, **kwargs):  # what filtered HNSW does on a server: fewer hits than asked for
        calls.append(kwargs["limit"])
        hits = real_search(*args, **kwargs)
        return [ShortPage(page.ids[:3], page.distances[:3]) for page in hits] if len(calls) <= 2 else hits

    monkeypatch.setattr(client, "search", short_first_pages)
    hits = milvus.search_interests(client, name, vectors[:2], 10, "feed", [1000], config, index_type="HNSW")
    assert len(hits) == 10 and 1000 not in {h.item_id for h in hits} and len({h.item_id for h in hits}) == 10
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_ivf_and_hnsw_keep_recall_with_the_filter(server):
    client, config = server
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(40, 16)).astype(np.float32)
    vectors = centers[rng.integers(0, 40, 4000)] + 0.4 * rng.normal(size=(4000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(4000)
    eligible = [["feed"] if i % 3 else ["search"] for i in range(4000)]
    for index_type in ("IVF_FLAT", "HNSW"):
        typed = IndexConfig(**{**config.__dict__, "index_type": index_type, "hnsw_ef": 8})  # ef below k: raised to k
        name = collections.build_collection(client, typed, index_type, ids, vectors, ["c"] * 4000, eligible, progress=False)
        assert collections.collection_index(client, name) == index_type
        recalls = []
        for query in vectors[:20]:
            found = {h.item_id for h in milvus.search_interests(client, name, query[None], 50, "feed", [], typed, index_type)}
            exact = np.where([i % 3 != 0 for i in range(4000)], vectors @ query, -np.inf)
            recalls.append(len(found & set(np.argsort(-exact)[:50].tolist())) / 50)
        assert np.mean(recalls) >= 0.95, index_type


def test_auto_index_is_flat_on_lite_and_by_size_on_a_server():
    config = IndexConfig(flat_index_below=1000)
    assert collections.choose_index(config, 10**6, server=False).index_type == "FLAT"
    assert collections.choose_index(config, 999, server=True).index_type == "FLAT"
    assert collections.choose_index(config, 1000, server=True) == collections.IndexChoice("IVF_FLAT", {"nlist": 128})
    hnsw = IndexConfig(index_type="HNSW")
    assert collections.choose_index(hnsw, 10, server=True) == collections.IndexChoice("HNSW", {"M": 16, "efConstruction": 200})


def test_build_then_point_alias_and_move_it(server):
    client, config = server
    ids, vectors, _, _ = _items()
    first = _build(client, config, "v1")
    assert collections.alias_target(client, config.alias) is None
    collections.point_alias(client, config.alias, first)
    assert collections.alias_target(client, config.alias) == first
    second = _build(client, config, "v2", vectors=-vectors)
    collections.point_alias(client, config.alias, second)
    assert collections.alias_target(client, config.alias) == second
    assert milvus.search_interests(client, config.alias, -vectors[:1], 1, "feed", [], config)[0].item_id == 1000


def test_a_failed_build_is_dropped_and_leaves_the_alias_serving(backend, monkeypatch):
    client, config = backend
    aliases = collections.supports_aliases(client)
    first = _build(client, config, "v1")
    if aliases:
        collections.point_alias(client, config.alias, first)
    real_insert = client.insert
    monkeypatch.setattr(client, "insert", lambda name, rows: real_insert(name, rows[: len(rows) // 2]))
    with pytest.raises(collections.IndexIncomplete, match="holds 30 of 60 items"):
        _build(client, config, "v2")
    assert [n for n in client.list_collections() if n.startswith(config.collection_prefix)] == [first]
    if aliases:
        assert collections.alias_target(client, config.alias) == first
        assert len(milvus.search_interests(client, config.alias, _items()[1][:1], 5, "feed", [], config)) == 5


def test_retiring_keeps_the_served_and_kept_collections_and_drops_their_aliases(backend):
    client, config = backend
    old, kept, served = _build(client, config, "v1"), _build(client, config, "v2"), _build(client, config, "v3")
    if collections.supports_aliases(client):
        client.create_alias(old, config.alias + "_old")
    dropped = collections.retire_collections(client, config, served, keep={kept}, grace_s=0)
    assert dropped == [old]
    assert {n for n in client.list_collections() if n.startswith(config.collection_prefix)} == {kept, served}
    if collections.supports_aliases(client):  # a server keeps the alias of a dropped collection unless it is dropped first
        client.create_alias(served, config.alias + "_old")


def test_filter_is_built_from_validated_values_only():
    assert milvus.eligibility_filter("feed") == "in_feed == true"
    with pytest.raises(ValueError):
        milvus.eligibility_filter('feed") or ("1')


def test_a_milvus_lite_server_that_dies_while_starting_is_started_again(tmp_path, caplog):
    """Milvus Lite's server process sometimes exits before its socket appears; connect() starts it once more."""
    from unittest import mock

    from pymilvus import MilvusClient, MilvusException

    from recplugin.index import milvus as milvus_module

    uri, real, calls = str(tmp_path / "flaky.db"), MilvusClient, []

    def first_start_fails(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise MilvusException(message="unix:/tmp/x_flaky.db.sock: connect failed: No such file or directory")
        return real(*args, **kwargs)

    with mock.patch.object(milvus_module, "MilvusClient", first_start_fails):
        client = milvus_module.connect(uri, timeout=30)
    try:
        assert len(calls) == 2 and client.list_collections() == []
        assert "did not start" in caplog.text
    finally:
        milvus_module.disconnect(client, uri)


def test_a_milvus_lite_file_another_process_serves_is_used_through_its_server_never_opened_twice(tmp_path):
    """milvus-lite deletes its own lock file when a second process fails to open the file, so a retry opened a second
    server on it and the two diverged. Now a second process uses the holder's server (a CLI command while the service
    runs: what it writes, the holder reads), or is refused naming the holder (a service, which must not depend on
    another process's life); the file opens again once the holder is gone."""
    import subprocess
    import sys

    uri = str(tmp_path / "held.db")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys\nfrom recplugin.index import milvus\n"
        f"client = milvus.connect({uri!r}, timeout=30)\n"
        "client.create_collection('t', dimension=4)\n"
        "print('ready', flush=True)\nsys.stdin.readline()\n"
        "print(len(client.query('t', filter='id >= 0', output_fields=['id'])), flush=True)\n"
        f"milvus.disconnect(client, {uri!r})\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        for _ in range(2):  # a retry is refused as the first attempt was
            with pytest.raises(lite_guard.HeldElsewhere, match=f"open in another process \\(pid {holder.pid}\\)"):
                milvus.connect(uri, timeout=30, borrow=False)
        with pytest.raises(lite_guard.HeldElsewhere):
            milvus.shared_uri(uri)
        borrowed = milvus.connect(uri, timeout=30)
        borrowed.insert("t", [{"id": i, "vector": [1.0, 0.0, 0.0, float(i)]} for i in range(3)])
        milvus.disconnect(borrowed, uri)  # the holder's server keeps running
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "3"
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    client = milvus.connect(uri, timeout=30, borrow=False)  # the holder is gone: the file opens here
    try:
        assert client.list_collections() == ["t"] and not lite_guard.guard_path(uri).read_text().startswith(str(holder.pid))
    finally:
        milvus.disconnect(client, uri)
