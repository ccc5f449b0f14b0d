"""Point-in-time correctness of the training snapshot, through real `feast apply` and `get_historical_features`."""
import numpy as np
import pandas as pd
import pytest

from recplugin import pipeline
from recplugin.data.schema import write_events, write_items
from tests.conftest import tiny_config

pytestmark = pytest.mark.integration
T0 = pd.Timestamp("2026-03-01", tz="UTC")


def _at(seconds):
    return T0 + pd.Timedelta(seconds=seconds)


ENGINES = {"duckdb": {"state_engine": "duckdb"}, "python": {"state_engine": "python"},
           "spark": {"state_engine": "spark", "store_yaml": "feature_store.spark.yaml"}}


@pytest.fixture(scope="module", params=list(ENGINES))
def snapshot(tmp_path_factory, request):
    """User 1 acts in three scenarios; two events share a timestamp; user 2 acts once in between. The user-state source
    is built by each engine (DuckDB SQL, the Python reference, Spark SQL in local mode); on Spark, Feast's Spark
    offline store also does the point-in-time join."""
    config = tiny_config(tmp_path_factory.mktemp("pit"), feast=ENGINES[request.param])
    config.data_dir.mkdir(parents=True)
    items = pd.DataFrame({"item_id": range(10, 20), "title": [f"t{i}" for i in range(10)], "text": [f"t{i}" for i in range(10)],
                          "category": "c", "scenarios": [["search", "feed", "discovery"]] * 10, "created_timestamp": T0})
    write_items(items, config.catalog_path)
    rows = [(1, 10, "feed", "click", None, 100), (1, 11, "search", "click", "q", 200), (2, 19, "feed", "like", None, 250),
            (1, 12, "feed", "like", None, 300), (1, 13, "feed", "share", None, 300), (1, 14, "discovery", "click", None, 400),
            (1, 15, "feed", "click", None, 500)]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "scenario", "action", "query", "event_timestamp"])
    events["event_timestamp"] = events["event_timestamp"].map(_at)
    write_events(events, config.events_path)
    pipeline.apply(config, progress=False)
    if request.param == "spark":  # the join below runs in Feast's Spark offline store, over SparkSources
        from recplugin.features.store import open_store

        store = open_store(config)
        assert store.config.offline_store.type == "spark"
        assert type(store.get_data_source("user_state_source")).__name__ == "SparkSource"
    frame = pd.read_parquet(pipeline.build_training_set(config))
    return frame.set_index(["user_id", "target_item_id"])


def test_a_label_never_sees_its_own_event(snapshot):
    row = snapshot.loc[(1, 11)]
    assert list(row.search_item_ids) == [] and row.search_count == 0
    assert list(row.feed_item_ids) == [10]


def test_events_at_the_label_time_are_excluded_even_when_simultaneous(snapshot):
    for target in (12, 13):
        row = snapshot.loc[(1, target)]
        assert list(row.feed_item_ids) == [10], f"label {target} leaked a same-time event"
        assert list(row.search_item_ids) == [11]
        assert row.feed_count == 1


def test_a_later_label_sees_everything_before_it_and_nothing_after(snapshot):
    row = snapshot.loc[(1, 15)]
    assert list(row.feed_item_ids) == [10, 12, 13] and list(row.feed_actions) == [0, 1, 2]
    assert list(row.discovery_item_ids) == [14] and list(row.search_item_ids) == [11]
    assert row.feed_count == 3 and row.discovery_count == 1
    assert list(row.feed_timestamps) == [int(_at(s).timestamp()) for s in (100, 300, 300)]


def test_users_do_not_share_histories_and_first_events_are_not_labels(snapshot):
    assert (1, 10) not in snapshot.index and (2, 19) not in snapshot.index
    assert snapshot.loc[(1, 14)].feed_item_ids.tolist() == [10, 12, 13]
    assert 19 not in np.concatenate([np.asarray(snapshot.loc[1][c].sum()) for c in ("feed_item_ids", "search_item_ids")])


def test_splits_are_leave_last_out_in_every_scenario(snapshot):
    splits = snapshot.loc[1]["split"]
    assert splits.loc[15] == "test" and splits.loc[13] == "validation" and splits.loc[12] == "train"  # feed
    assert splits.loc[11] == "test" and splits.loc[14] == "test"  # the only search and discovery labels


def test_no_history_timestamp_reaches_its_label_on_generated_data(built_pipeline):
    """On the whole generated snapshot: every history timestamp is strictly before its label."""
    frame = pd.read_parquet(built_pipeline.config.snapshot_path)
    label_seconds = (frame["label_timestamp"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    for scenario in built_pipeline.config.scenarios:
        latest = frame[f"{scenario}_timestamps"].map(lambda ts: max(ts) if len(ts) else -1)
        assert (latest < label_seconds).all()
        own = [t in set(items) for t, items in zip(frame["target_item_id"], frame[f"{scenario}_item_ids"])]
        assert not any(own)


def test_feasts_duckdb_join_runs_under_the_configured_memory_limit(snapshot, request):
    if request.node.callspec.params["snapshot"] == "spark":
        pytest.skip("Spark's join has its own memory settings (spark.driver.memory)")
    import duckdb
    import ibis

    configured = tiny_config(request.config.rootpath).feast.duckdb_memory_limit
    setting = "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
    expected = duckdb.connect(config={"memory_limit": configured}).execute(setting).fetchone()[0]
    default = duckdb.connect().execute(setting).fetchone()[0]
    actual, spill = ibis.get_backend().raw_sql(setting).fetchone()
    assert actual == expected != default
    assert spill.endswith("spill")


def test_the_two_step_join_equals_one_join_of_the_lists_on_generated_data(built_pipeline):
    """The snapshot (scalar point-in-time join, then the lists by (user_id, state_time)) equals Feast's single
    point-in-time join of user_history + user_counts for the same labels, row for row."""
    from recplugin.features.labels import label_events
    from recplugin.features.store import open_store

    config = built_pipeline.config
    snapshot = pd.read_parquet(config.snapshot_path)
    labels = label_events(pd.read_parquet(config.events_path), config.feast.max_labels_per_user)
    entity_df = labels.drop(columns=["rated_item_ids"]).assign(event_timestamp=labels["label_timestamp"] - pd.Timedelta(microseconds=1))
    store = open_store(config)
    refs = [f"{view.name}:{field.name}" for view in (store.get_feature_view("user_history"), store.get_feature_view("user_counts"))
            for field in view.features if field.name != "state_time"]
    single = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
    single = single.sort_values(["user_id", "label_timestamp", "target_item_id"], kind="stable").reset_index(drop=True)
    ours = snapshot.sort_values(["user_id", "label_timestamp", "target_item_id"], kind="stable").reset_index(drop=True)
    assert len(ours) == len(single) == len(labels) > 1000
    for name in config.scenarios:
        assert (ours[f"{name}_count"].to_numpy() == single[f"{name}_count"].fillna(0).to_numpy()).all()
        for suffix in ("item_ids", "actions", "timestamps"):
            column = f"{name}_{suffix}"
            expected = [list(v) if v is not None else [] for v in single[column]]
            assert [list(v) for v in ours[column]] == expected, column
    assert "state_time" not in ours.columns
