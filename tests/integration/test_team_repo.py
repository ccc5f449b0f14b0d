"""recplugin inside a team's own Feast repo (its own `user` entity, its own views, a relative registry path), fed from
the team's own CSV (other column names, string ids): its objects join with a prefix through real `feast apply`, every
stage and the service run against that repo, and the team's objects stay untouched and servable."""
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from feast import FeatureStore

from recplugin import pipeline
from recplugin.client import RecClient
from recplugin.config import save_config, with_overrides
from recplugin.data.tables import stable_id
from recplugin.features.store import FeastNameCollision
from tests.conftest import tiny_config
from tests.support.team_tables import SOURCE, write_team_tables

pytestmark = pytest.mark.integration
TEAM_STORE = """\
project: acme
provider: local
registry: data/registry.db
online_store:
  type: sqlite
  path: data/online.db
offline_store:
  type: duckdb
entity_key_serialization_version: 3
"""
TEAM_DEFINITIONS = """\
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float32, Int64

DATA = Path(__file__).parent / "data"
user = Entity(name="user", join_keys=["uid"], value_type=ValueType.INT64)
driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
user_profile = FeatureView(
    name="user_profile", entities=[user], ttl=timedelta(days=3650), schema=[Field(name="age", dtype=Int64)],
    source=FileSource(name="user_profile_source", path=str(DATA / "user_profile.parquet"), timestamp_field="ts"))
driver_stats = FeatureView(
    name="driver_stats", entities=[driver], ttl=timedelta(days=3650), schema=[Field(name="conv_rate", dtype=Float32)],
    source=FileSource(name="driver_stats_source", path=str(DATA / "driver_stats.parquet"), timestamp_field="ts"))
"""
ADOPTION = """
# recplugin's entities, sources, views and services, named with its feast.prefix (RECPLUGIN_CONFIG names its config)
from recplugin.features import feast_objects

globals().update(feast_objects())
"""


def feast_cli(repo: Path, config_path: Path, *args: str) -> None:
    """The Feast CLI in the team's repo, as the team runs it."""
    feast = Path(sys.executable).with_name("feast")
    run = subprocess.run([str(feast), *args], cwd=repo, env={**os.environ, "RECPLUGIN_CONFIG": str(config_path)},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def team_answers(repo: Path) -> dict:
    """What the team's own online reads return, and how its entity and views are defined."""
    store = FeatureStore(repo_path=str(repo))
    ages = store.get_online_features(["user_profile:age"], [{"uid": 3}, {"uid": 7}]).to_dict()["age"]
    rates = store.get_online_features(["driver_stats:conv_rate"], [{"driver_id": 11}]).to_dict()["conv_rate"]
    return {"age": ages, "conv_rate": [round(r, 5) for r in rates], "user_join_keys": store.get_entity("user").join_key,
            "views": sorted((v.name, tuple(f.name for f in v.features)) for v in store.list_feature_views()
                            if not v.name.startswith("rec_"))}


@pytest.fixture
def team_repo(tmp_path) -> Path:
    """A team repo that serves its own features already."""
    repo = tmp_path / "acme_repo"
    (repo / "data").mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(TEAM_STORE)
    (repo / "team_features.py").write_text(TEAM_DEFINITIONS)
    ts = pd.Timestamp("2024-01-01", tz="UTC")
    pd.DataFrame({"uid": range(1, 21), "age": range(21, 41), "ts": ts}).to_parquet(repo / "data" / "user_profile.parquet")
    pd.DataFrame({"driver_id": [10, 11], "conv_rate": [0.25, 0.75], "ts": ts}).to_parquet(repo / "data" / "driver_stats.parquet")
    return repo


def test_recplugin_runs_inside_a_team_repo_and_leaves_its_objects_alone(team_repo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repo: its relative registry path must still mean the repo's
    generated = tiny_config(tmp_path / "generated", generator={"num_users": 80, "num_items": 150, "events_per_user": 12,
                                                               "seed": 5})
    pipeline.generate(generated, progress=False)
    events_csv, items_parquet = write_team_tables(pd.read_parquet(generated.events_path),
                                                  pd.read_parquet(generated.catalog_path), tmp_path)
    outside = tiny_config(tmp_path / "work", training={"epochs": 1}, source=SOURCE,
                          feast={"repo_path": str(team_repo), "project": "acme"})
    feast_cli(team_repo, tmp_path / "none.yaml", "apply")
    team = FeatureStore(repo_path=str(team_repo))
    team.materialize(datetime(2023, 1, 1, tzinfo=timezone.utc), datetime.now(timezone.utc) + timedelta(days=1))
    before = team_answers(team_repo)
    assert before["age"] == [23, 27] and before["user_join_keys"] == "uid"

    pipeline.load_events(outside, str(events_csv), str(items_parquet))  # the team's CSV and a config file, nothing else
    with pytest.raises(FeastNameCollision, match="'user'.*feast.prefix"):  # unprefixed, it would replace the team's user
        pipeline.apply(outside, progress=False)
    unregistered = with_overrides(outside, feast={"prefix": "rec_", "register_objects": False})
    with pytest.raises(FeastNameCollision, match="rec_user_history"):
        pipeline.apply(unregistered, progress=False)

    config = with_overrides(outside, feast={"prefix": "rec_"})
    config_path = save_config(config, tmp_path / "recplugin.yaml")
    pipeline.apply(config, progress=False)
    with open(team_repo / "team_features.py", "a") as definitions:  # the team adopts recplugin in its own repo
        definitions.write(textwrap.dedent(ADOPTION))
    feast_cli(team_repo, config_path, "apply")  # the repo now declares recplugin's objects: nothing is deleted
    pipeline.apply(with_overrides(config, feast={"register_objects": False}), progress=False)
    pipeline.materialize(config)
    snapshot = pd.read_parquet(pipeline.build_training_set(config))
    assert len(snapshot) > 0
    result = pipeline.train(config, progress=False)
    pipeline.index(config, progress=False, force=True)  # one epoch on 80 users: not about quality

    port = pipeline.free_port()
    process = pipeline.start_service(config, port, log_path=tmp_path / "service.log")
    try:
        pipeline.wait_ready(f"http://127.0.0.1:{port}", process)
        user = "u" + str(int(pd.read_parquet(generated.events_path)["user_id"].iloc[0]))  # the team's own "u<N>"
        skus = set(pd.read_parquet(items_parquet)["sku"])
        with RecClient(f"http://127.0.0.1:{port}", timeout_s=30) as client:
            answer = client.recommend(user, "feed", k=5)  # the team's ids in, the team's ids out
            assert len(answer.items) == 5 and answer.model_version == result.version and not answer.cold_start
            assert all(item.item_id in skus for item in answer.items), answer.items
            assert client.recommend(stable_id(user), "feed", k=5).items == answer.items  # the hashed integer works too
            receipt = client.event(user, answer.items[0].item_id, "feed", "click")
            assert receipt.user_id == user and receipt.counts["feed"] >= 1
            assert answer.items[0].item_id not in {item.item_id for item in client.recommend(user, "feed", k=5).items}
            assert client.user_vectors(user, "feed").known_user
    finally:
        pipeline.stop_service(process)

    assert team_answers(team_repo) == before  # the team's entity, views and online values are as they were
    registered = FeatureStore(repo_path=str(team_repo))
    assert {"rec_user_history", "rec_user_counts", "rec_item_features", "rec_item_embedding"} <= {
        v.name for v in registered.list_feature_views()}
    assert registered.get_entity("rec_user").join_key == "user_id"
    assert not (tmp_path / "data").exists()  # no stray registry or online store under the working directory
