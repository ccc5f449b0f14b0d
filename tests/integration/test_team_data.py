"""A team's own tables (other column names and values, string ids) loaded, then through real `feast apply` and the
point-in-time snapshot: the same events as recplugin's own schema would give."""
import pandas as pd
import pytest

from recplugin import pipeline
from recplugin.data.tables import stable_id
from tests.conftest import tiny_config
from tests.support.team_tables import SOURCE, write_team_tables

pytestmark = pytest.mark.integration


def test_a_team_table_goes_through_feast_like_our_own(tmp_path):
    ours = tiny_config(tmp_path / "ours", generator={"num_users": 60, "num_items": 120, "events_per_user": 12, "seed": 4})
    pipeline.generate(ours, progress=False)
    events, items = pd.read_parquet(ours.events_path), pd.read_parquet(ours.catalog_path)
    events_csv, items_parquet = write_team_tables(events, items, tmp_path)
    team = tiny_config(tmp_path / "team", generator=ours.generator.__dict__, source=SOURCE)
    pipeline.load_events(team, str(events_csv), str(items_parquet))
    loaded = pd.read_parquet(team.events_path)
    expected = events.assign(user_id=("u" + events["user_id"].astype(str)).map(stable_id),
                             item_id=("sku-" + events["item_id"].astype(str)).map(stable_id))
    key = ["user_id", "event_timestamp", "item_id"]
    pd.testing.assert_frame_equal(loaded.sort_values(key).reset_index(drop=True), expected.sort_values(key).reset_index(drop=True),
                                  check_dtype=False)
    pipeline.apply(team, progress=False)
    snapshot = pd.read_parquet(pipeline.build_training_set(team))
    assert len(snapshot) > 0 and set(snapshot["user_id"]) <= set(loaded["user_id"])
