"""Faults injected into real parts: the online store failing, Milvus failing, model and index disagreeing."""
import asyncio
import importlib

import numpy as np
import pytest
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from recplugin import pipeline
from recplugin.index import collections, milvus
from recplugin.registry.models import ModelRegistry
from recplugin.serving.recommender import NotReady, Recommender

pytestmark = pytest.mark.integration


@pytest.fixture
def recommender(built_pipeline):
    engine = Recommender(built_pipeline.config)
    yield engine
    engine.close()


def test_the_query_text_model_is_loaded_before_the_service_is_ready(recommender):
    assert recommender.model.encoder._model is not None  # the first search query does not load it inside a batch


def test_online_store_failure_degrades_to_flagged_popular_items(recommender, monkeypatch):
    def broken(user_ids):
        raise ConnectionError("online store is down")

    monkeypatch.setattr(recommender.online, "user_states", broken)
    answer = recommender.recommend(0, "feed", 5)
    assert answer.cold_start and len(answer.items) == 5
    assert "feature store unavailable" in answer.degraded
    assert [i["item_id"] for i in answer.items] == [int(i) for i, _ in recommender.model.popular["feed"][:5]]


def test_milvus_failure_is_a_503_with_the_reason(built_pipeline, monkeypatch):
    monkeypatch.setenv("RECPLUGIN_CONFIG", str(pipeline.workdir_config_path(built_pipeline.config)))
    service_module = importlib.reload(importlib.import_module("recplugin.serving.service"))
    service = service_module.RecPlugin.inner()
    service._batch_process.close()  # the worker answers: its Milvus client is the one that fails
    try:
        def broken(*args, **kwargs):
            raise MilvusException(message="connection refused")

        monkeypatch.setattr(service._recommender.milvus, "search", broken)
        response = asyncio.run(service.recommend(user_id=0, scenario="feed", k=5))
        assert response.status_code == 503 and b"Milvus item index did not answer" in response.body
    finally:
        service._recommender.close()


def test_a_collection_that_does_not_match_the_model_is_refused(built_pipeline):
    config = built_pipeline.config
    registry = ModelRegistry(config.registry_sqlalchemy_url)
    real = registry.get(built_pipeline.version)
    registry.register("v_mismatch", real.config, {}, real.artifact_uri)
    client = milvus.connect(config.milvus_uri)
    try:
        ids = np.array([1, 2, 3])
        name = collections.build_collection(client, config.index, "v_mismatch", ids, np.eye(3, config.model.embedding_dim, dtype=np.float32),
                                       ["c"] * 3, [config.scenarios] * 3, progress=False,
                                       scenario_names=config.scenarios)
        registry.mark_indexed("v_mismatch", name)
        pipeline.serve_collection(client, registry, config, "v_mismatch", name)
        milvus.disconnect(client, config.milvus_uri)
        with pytest.raises(NotReady, match="artifact holds model .* but the registry says v_mismatch"):
            Recommender(config)
    finally:
        client = milvus.connect(config.milvus_uri)
        pipeline.serve_collection(client, registry, config, built_pipeline.version, built_pipeline.collection)
        milvus.disconnect(client, config.milvus_uri)


def test_a_failed_index_build_leaves_the_previous_version_serving(built_pipeline, monkeypatch):
    config = built_pipeline.config
    registry = ModelRegistry(config.registry_sqlalchemy_url)
    real = registry.get(built_pipeline.version)
    registry.register("v_partial", real.config, {}, real.artifact_uri)
    real_insert = MilvusClient.insert
    monkeypatch.setattr(MilvusClient, "insert", lambda self, name, rows: real_insert(self, name, rows[: len(rows) // 2]))
    with pytest.raises(collections.IndexIncomplete, match="holds .* of .* items"):
        pipeline.index(config, "v_partial", progress=False)
    monkeypatch.undo()
    assert registry.latest(status="serving").version == built_pipeline.version
    recommender = Recommender(config)
    try:
        assert recommender.served.collection == built_pipeline.collection
    finally:
        recommender.close()


def test_a_registry_row_pointing_outside_the_artifact_root_is_never_loaded(built_pipeline, tmp_path):
    """A tampered registry row (artifact_uri elsewhere, e.g. a crafted model.pt) makes the service not ready, loads nothing."""
    import shutil

    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from recplugin.registry.models import ModelVersionRow

    config = built_pipeline.config
    registry = ModelRegistry(config.registry_sqlalchemy_url)
    real = registry.get(built_pipeline.version)
    outside = tmp_path / "elsewhere"
    shutil.copytree(real.artifact_uri, outside)

    def point_to(uri: str) -> None:
        with Session(registry.engine) as session, session.begin():
            session.execute(update(ModelVersionRow).where(ModelVersionRow.version == real.version).values(artifact_uri=uri))

    point_to(str(outside))
    try:
        with pytest.raises(NotReady, match="not under the artifact root"):
            Recommender(config)
        with pytest.raises(ValueError, match="not under the artifact root"):
            pipeline.index(config, real.version, progress=False)
    finally:
        point_to(real.artifact_uri)


def test_register_copies_an_artifact_from_elsewhere_under_the_root(built_pipeline, tmp_path):
    import shutil

    config = built_pipeline.config
    source = tmp_path / "trained-on-a-gpu-box"
    shutil.copytree(config.models_dir / built_pipeline.version, source)
    other = pipeline.from_dict({**pipeline.to_dict(config), "registry_url": f"sqlite:///{tmp_path / 'registry.db'}",
                                "artifact_root": str(tmp_path / "store")})
    version = pipeline.register_artifact(other, source)
    stored = ModelRegistry(other.registry_sqlalchemy_url).get(version).artifact_uri
    assert stored == str((tmp_path / "store" / version).resolve()) and (tmp_path / "store" / version / "model.pt").exists()


def test_requests_waiting_behind_a_hung_online_call_degrade_within_the_bound(recommender):
    """One worker's Feast client is taken by a hung call: the requests queued behind it get flagged popular items after
    twice the online timeout instead of waiting for the hung call."""
    import time

    wait = 2 * recommender.config.feast.online_timeout_s
    with recommender.feast_lock:  # the hung call
        start = time.monotonic()
        answer = recommender.recommend(0, "feed", 5)
        took = time.monotonic() - start
    assert answer.cold_start and "feature store unavailable (TimeoutError)" in answer.degraded
    assert wait - 0.1 <= took < wait + 2.0
    assert not recommender.recommend(0, "feed", 5).cold_start  # the turn is free again
