"""No acknowledged event lost or double-counted: two workers, ~100 concurrent events for one user, on the SQLite and on
the Redis online store; then `materialize`, which must not roll the live state back."""
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import requests

from recplugin import pipeline
from recplugin.data.live_events import read_events
from recplugin.features.store import OnlineFeatures, open_store
from tests.conftest import served_copy

pytestmark = pytest.mark.integration
EVENTS = 96


@pytest.fixture(params=["sqlite", "redis"])
def two_workers(request, built_pipeline, milvus_server_uri, tmp_path):
    config = served_copy(built_pipeline, tmp_path / "work", milvus_server_uri, production=request.param == "redis",
                         serving={"workers": 2})
    port = pipeline.free_port()
    log = tmp_path / "service.log"
    process = pipeline.start_service(config, port, log_path=log)
    try:
        pipeline.wait_ready(f"http://127.0.0.1:{port}", process)
        yield config, f"http://127.0.0.1:{port}"
    finally:
        pipeline.stop_service(process)
        if request.param == "redis":  # remove this test's project from the shared Redis and PostgreSQL registry
            store = open_store(config)
            store._get_provider().teardown_infra(config.feast.project, store.list_feature_views(), store.list_entities())
            store.delete_project(config.feast.project)


def _total(config, user: int) -> tuple[int, list[int]]:
    state = OnlineFeatures(config).user_states([user])[0]
    return sum(h.count for h in state.histories.values()), [int(i) for h in state.histories.values() for i in h.item_ids]


def test_concurrent_events_for_one_user_on_two_workers_are_all_kept_through_materialize(two_workers):
    config, base = two_workers
    events = pd.read_parquet(config.events_path)
    user = int(events["user_id"].iloc[0])
    items = sorted(events["item_id"].unique().tolist())
    before, _ = _total(config, user)
    bodies = [{"user_id": user, "item_id": int(items[i % len(items)]), "scenario": config.scenarios[i % len(config.scenarios)],
               "action": config.actions[i % len(config.actions)]} for i in range(EVENTS)]
    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda body: requests.post(f"{base}/events", json=body, timeout=60), bodies))
    assert [a.status_code for a in answers] == [200] * EVENTS, [a.text for a in answers if a.status_code != 200][:3]
    after, _ = _total(config, user)
    assert after == before + EVENTS, f"{before + EVENTS - after} acknowledged events lost in the online store"
    for scenario in config.scenarios:  # each event saw its own count: no two read the same state and overwrote each other
        counts = [a.json()["counts"][scenario] for a, b in zip(answers, bodies) if b["scenario"] == scenario]
        assert len(set(counts)) == len(counts), scenario
    logged = read_events(config.live_events_path)
    assert len(logged[logged.user_id == user]) == EVENTS
    pipeline.materialize(config)  # rows as of the last apply, older than every live event: they must not win
    assert _total(config, user)[0] == before + EVENTS, "materialize rolled back acknowledged events"
    pipeline.apply(config, progress=False)  # the live log folded into the offline source, then materialised: same state
    pipeline.materialize(config)
    assert _total(config, user)[0] == before + EVENTS
