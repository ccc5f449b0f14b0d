"""Nothing a user has interacted with is served again (serving.exclude_seen: all), however long the user's log: a user
of 520 events over 300 items on the embedded stack and on the production one (Redis, PostgreSQL, a Milvus server)."""
import pandas as pd
import pytest

from recplugin.config import with_overrides
from recplugin.features.store import open_store
from recplugin.serving.recommender import Recommender
from tests.conftest import served_copy

pytestmark = pytest.mark.integration
HEAVY_USER = 10**6


def heavy_user_events(built) -> pd.DataFrame:
    """520 events of one user over 300 distinct catalogue items in every scenario, far more than the history window."""
    items = pd.read_parquet(built.config.catalog_path)["item_id"].to_numpy()[:300]
    scenarios = built.config.scenarios
    times = pd.date_range("2026-01-01", periods=520, freq="min", tz="UTC")
    return pd.DataFrame({"user_id": HEAVY_USER, "item_id": [int(items[i % 300]) for i in range(520)],
                         "scenario": [scenarios[i % len(scenarios)] for i in range(520)], "action": built.config.actions[0],
                         "query": [None] * 520, "event_timestamp": times})


def answers(config, k: int = 60) -> dict[str, set[int]]:
    """The heavy user's answer in every scenario."""
    recommender = Recommender(config)
    try:
        return {s: {item["item_id"] for item in recommender.recommend(HEAVY_USER, s, k, "x" if s == "search" else None)
                    .as_dict()["items"]} for s in config.scenarios}
    finally:
        recommender.close()


@pytest.mark.parametrize("production", [False, True], ids=["embedded", "production"])
def test_no_answer_holds_an_item_the_user_has_seen(built_pipeline, milvus_server_uri, tmp_path, production):
    extra = heavy_user_events(built_pipeline)
    seen = set(extra["item_id"])
    uri = milvus_server_uri if production else "milvus.db"
    config = served_copy(built_pipeline, tmp_path / "work", uri, production=production, extra_events=extra)
    try:
        served = answers(config)
        assert all(served.values()), served  # every scenario still has unseen items to answer with
        assert all(not (items & seen) for items in served.values()), {s: sorted(i & seen)[:5] for s, i in served.items()}
        window = answers(with_overrides(config, serving={"exclude_seen": "window"}))  # the history alone: seen items return
        assert any(items & seen for items in window.values())

        recommender = Recommender(config)
        try:
            fresh = next(int(i) for i in pd.read_parquet(config.catalog_path)["item_id"] if int(i) not in seen)
            recommender.record_event(HEAVY_USER, fresh, config.scenarios[0], config.actions[0])
            state = recommender.user_state(HEAVY_USER)
            assert state.seen >= seen | {fresh}  # /events keeps the complete seen set online
        finally:
            recommender.close()
        assert all(fresh not in items for items in answers(config).values())
    finally:
        if production:  # this test's project leaves the shared Redis and PostgreSQL registry
            store = open_store(config)
            store._get_provider().teardown_infra(config.feast.project, store.list_feature_views(), store.list_entities())
            store.delete_project(config.feast.project)
