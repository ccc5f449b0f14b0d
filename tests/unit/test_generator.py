"""The generated dataset: deterministic, schema-true, streamed in chunks, and carrying cross-scenario structure."""
import numpy as np
import pandas as pd

from recplugin.config import GeneratorConfig
from recplugin.data.generator import generate
from recplugin.data.schema import EVENT_SCHEMA, ITEM_SCHEMA

SMALL = GeneratorConfig(num_users=60, num_items=200, events_per_user=20, seed=11)


def _read(directory):
    return pd.read_parquet(directory / "items.parquet"), pd.read_parquet(directory / "events.parquet")


def test_same_seed_same_data_whatever_the_chunk_size(tmp_path):
    generate(SMALL, tmp_path / "a", chunk_users=7, progress=False)
    generate(SMALL, tmp_path / "b", chunk_users=1000, progress=False)
    for left, right in zip(_read(tmp_path / "a"), _read(tmp_path / "b")):
        pd.testing.assert_frame_equal(left, right)


def test_schema_and_per_user_order(tmp_path):
    generate(SMALL, tmp_path, progress=False)
    items, events = _read(tmp_path)
    assert list(items.columns) == ITEM_SCHEMA.names and list(events.columns) == EVENT_SCHEMA.names
    assert set(events["scenario"]) == {"search", "feed", "discovery"}
    assert events.groupby("user_id")["event_timestamp"].apply(lambda t: t.is_monotonic_increasing and t.is_unique).all()
    assert not events.duplicated(["user_id", "item_id"]).any()
    assert events.loc[events.scenario == "search", "query"].notna().all()
    assert events.loc[events.scenario != "search", "query"].isna().all()
    eligible = items.set_index("item_id")["scenarios"]
    assert all("discovery" in eligible[i] for i in events.loc[events.scenario == "discovery", "item_id"])


def test_scenarios_share_interests(tmp_path):
    """A user's feed categories predict their discovery categories far better than chance."""
    generate(GeneratorConfig(num_users=150, num_items=600, events_per_user=40, seed=5), tmp_path, progress=False)
    items, events = _read(tmp_path)
    events = events.merge(items[["item_id", "category"]], on="item_id")
    hits = []
    for _, user in events.groupby("user_id"):
        feed = set(user.loc[user.scenario == "feed", "category"])
        discovery = user.loc[user.scenario == "discovery", "category"]
        hits.extend(discovery.isin(feed))
    chance = 1 / items["category"].nunique()
    assert np.mean(hits) > 5 * chance
