"""A team's own tables (other column names and values, string ids) loaded, then through real `feast apply` and the
point-in-time snapshot: the same events as recplugin's own schema would give."""
import pandas as pd
import pytest

from recplugin import pipeline
from recplugin.data.tables import stable_id
from tests.conftest import tiny_config

pytestmark = pytest.mark.integration
SURFACES = {"search": "search_page", "feed": "home", "discovery": "explore"}


def test_a_team_table_goes_through_feast_like_our_own(tmp_path):
    ours = tiny_config(tmp_path / "ours", generator={"num_users": 60, "num_items": 120, "events_per_user": 12, "seed": 4})
    pipeline.generate(ours, progress=False)
    events, items = pd.read_parquet(ours.events_path), pd.read_parquet(ours.catalog_path)
    team_events = pd.DataFrame({"uid": "u" + events["user_id"].astype(str), "iid": "sku-" + events["item_id"].astype(str),
                                "ts": events["event_timestamp"].dt.tz_convert("America/New_York").dt.strftime("%d/%m/%Y %H:%M:%S.%f"),
                                "surface": events["scenario"].map(SURFACES), "event_type": events["action"],
                                "search_text": events["query"]})
    team_events.to_csv(tmp_path / "events.csv", index=False)
    team_items = pd.DataFrame({"sku": "sku-" + items["item_id"].astype(str), "name": items["title"], "body": items["text"],
                               "dept": items["category"], "where": [",".join(s) for s in items["scenarios"]]})
    team_items.to_parquet(tmp_path / "items.parquet", index=False)
    team = tiny_config(tmp_path / "team", generator=ours.generator.__dict__, source={
        "string_ids": True,
        "events": {"user": "uid", "item": "iid", "timestamp": "ts", "scenario": "surface", "action": "event_type",
                   "query": "search_text", "timestamp_format": "%d/%m/%Y %H:%M:%S.%f", "timezone": "America/New_York",
                   "scenario_values": {v: k for k, v in SURFACES.items()}},
        "items": {"item": "sku", "title": "name", "text": "body", "category": "dept", "scenarios": "where"}})
    pipeline.load_events(team, str(tmp_path / "events.csv"), str(tmp_path / "items.parquet"))
    loaded = pd.read_parquet(team.events_path)
    expected = events.assign(user_id=("u" + events["user_id"].astype(str)).map(stable_id),
                             item_id=("sku-" + events["item_id"].astype(str)).map(stable_id))
    key = ["user_id", "event_timestamp", "item_id"]
    pd.testing.assert_frame_equal(loaded.sort_values(key).reset_index(drop=True), expected.sort_values(key).reset_index(drop=True),
                                  check_dtype=False)
    pipeline.apply(team, progress=False)
    snapshot = pd.read_parquet(pipeline.build_training_set(team))
    assert len(snapshot) > 0 and set(snapshot["user_id"]) <= set(loaded["user_id"])
