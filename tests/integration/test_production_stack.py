"""Feast on the production path: Redis online store and SQL registry on PostgreSQL, for real."""
import uuid

import pandas as pd
import pytest

from recplugin import pipeline
from recplugin.features.online import OnlineFeatures
from recplugin.features.store import open_store
from tests.conftest import feast_states, state_tuple, tiny_config

pytestmark = pytest.mark.integration


@pytest.fixture
def production_config(tmp_path):
    project = f"recplugin_{uuid.uuid4().hex[:10]}"
    config = tiny_config(tmp_path, generator={"num_users": 30, "num_items": 80, "events_per_user": 10},
                         feast={"store_yaml": "feature_store.production.yaml", "project": project})
    yield config
    # FeatureStore.teardown() would delete every project in the shared registry: remove only this one.
    store = open_store(config)
    store._get_provider().teardown_infra(project, store.list_feature_views(), store.list_entities())
    store.delete_project(project)


def test_apply_materialize_read_and_push_on_redis_and_postgres(production_config):
    config = production_config
    pipeline.generate(config, progress=False)
    pipeline.apply(config, progress=False)
    store = open_store(config)
    assert store.config.online_store.type == "redis"
    assert store.config.registry.path.startswith("postgresql")
    assert {fv.name for fv in store.list_feature_views()} >= {"user_history", "user_counts", "item_features", "item_embedding"}
    pipeline.materialize(config)
    events = pd.read_parquet(config.events_path).sort_values("event_timestamp")
    user = int(events["user_id"].iloc[0])
    last = events[events.user_id == user].iloc[-1]
    online = OnlineFeatures(config)
    state = online.user_states([user])[0]
    assert list(state.histories[last.scenario].item_ids)[-1] == last.item_id
    assert sum(h.count for h in state.histories.values()) == int((events.user_id == user).sum())
    state.histories["feed"].append(79, 0, 2_000_000_000)
    online.push_state(user, state, pd.Timestamp.now(tz="UTC"))
    again = OnlineFeatures(config).user_states([user])[0]
    assert list(again.histories["feed"].item_ids)[-1] == 79
    assert online.user_states([10**9])[0] is None
    users = [int(u) for u in events["user_id"].drop_duplicates().iloc[:12]] + [10**9]
    assert [state_tuple(s) for s in online.user_states(users)] == [state_tuple(s) for s in feast_states(online, users)]
