"""Labels for the point-in-time snapshot: leave-last-out splits, optionally only each user's last labels."""
import pandas as pd
import pytest

from recplugin.features.labels import label_events


def _events():
    times = pd.date_range("2026-01-01", periods=6, freq="h", tz="UTC")
    return pd.DataFrame({"user_id": [1] * 6 + [2] * 2, "item_id": list(range(10, 16)) + [20, 21],
                         "event_timestamp": list(times) + list(times[:2])})


def test_every_event_after_the_first_is_a_label_with_leave_last_out_splits():
    labels = label_events(_events())
    assert labels[labels.user_id == 1]["split"].tolist() == ["train"] * 3 + ["validation", "test"]
    assert labels[labels.user_id == 2]["split"].tolist() == ["test"]


def test_max_labels_per_user_keeps_the_latest_ones_and_both_held_out_labels():
    labels = label_events(_events(), max_per_user=3)
    assert labels[labels.user_id == 1]["target_item_id"].tolist() == [13, 14, 15]
    assert labels[labels.user_id == 1]["split"].tolist() == ["train", "validation", "test"]
    assert label_events(_events(), max_per_user=1)[lambda f: f.user_id == 1]["split"].tolist() == ["validation", "test"]


def test_a_holdout_table_holds_out_only_its_users_last_events():
    events = pd.concat([_events(), _events()[lambda f: f.user_id == 1].assign(user_id=3)], ignore_index=True)
    holdout = pd.DataFrame({"user_id": [2, 3], "split": ["validation", "test"]})
    labels = label_events(events, holdout=holdout)
    assert labels[labels.user_id == 1]["split"].tolist() == ["train"] * 5  # not a holdout user: all training labels
    assert labels[labels.user_id == 2]["split"].tolist() == ["validation"]
    assert labels[labels.user_id == 3]["split"].tolist() == ["train"] * 4 + ["test"]
    assert labels[labels.user_id == 3]["target_item_id"].tolist()[-1] == 15


def test_snapshot_schema_types_columns_that_are_all_null_in_the_first_chunk():
    import pyarrow as pa

    from recplugin.features.store import snapshot_schema

    first = pa.table({"query": pa.array([None, None]), "food_item_ids": pa.array([[], []]), "user_id": [1, 2]})
    assert first.schema.field("food_item_ids").type == pa.list_(pa.null())
    schema = snapshot_schema(first.schema, ["food"])
    assert schema.field("query").type == pa.string() and schema.field("food_item_ids").type == pa.list_(pa.int64())
    later = pa.table({"query": ["q", None], "food_item_ids": [[1], []], "user_id": [3, 4]})
    assert later.cast(schema).column("food_item_ids").to_pylist() == [[1], []]


def test_held_out_labels_carry_every_earlier_rated_item_in_time_order_and_training_labels_none():
    events = _events()
    events.loc[4, "event_timestamp"] = events.loc[5, "event_timestamp"]  # item 14 rated at the test label's time
    labels = label_events(events, max_per_user=2)
    user1 = labels[labels.user_id == 1].set_index("split")
    assert user1.loc["test", "rated_item_ids"] == [10, 11, 12, 13, 14]  # all of them, the same-time 14 too
    assert user1.loc["validation", "rated_item_ids"] == [10, 11, 12, 13]
    assert label_events(events)[lambda f: f.split == "train"]["rated_item_ids"].map(len).eq(0).all()


def test_a_held_out_row_filters_rated_items_beyond_the_kept_history(tmp_path):
    """Item 10 left the history window long ago; the test row must still not be credited for ranking it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recplugin.training.dataset import load_snapshot

    at = pd.Timestamp("2026-01-02", tz="UTC")
    rows = {"user_id": [1, 1], "label_timestamp": [at, at + pd.Timedelta(hours=1)], "target_item_id": [12, 13],
            "scenario": ["feed", "feed"], "query": [None, None], "split": ["train", "test"],
            "feed_item_ids": [[11], [11, 12]], "feed_actions": [[0], [0, 0]], "feed_timestamps": [[1], [1, 2]],
            "feed_count": [2, 3], "rated_item_ids": [[], [10, 11, 12]]}
    pq.write_table(pa.table(rows), tmp_path / "snapshot.parquet")
    id_to_row = {item: item - 10 for item in range(10, 14)}
    snapshot = load_snapshot(tmp_path / "snapshot.parquet", ["feed"], id_to_row, max_length=5)
    assert snapshot.splits["test"].seen[0].tolist() == [0, 1, 2]  # 10 (rated only), 11 (history), 12 (earlier target)
    assert snapshot.splits["train"].seen[0].tolist() == []  # nothing ranks training rows


def test_the_gsasrec_split_holds_out_every_last_item_and_its_validation_users_second_to_last(tmp_path):
    """A miniature of gSASRec's split folder: train = all but the last two; val = a few users' second-to-last."""
    from recplugin.data.loaders import gsasrec_holdout

    sequences = {1: [5, 6, 7, 8], 2: [6, 7, 9], 3: [5, 9, 8, 7, 6]}
    pairs = pd.DataFrame([(u, i) for u, seq in sequences.items() for i in seq], columns=["user_id", "item_id"])
    for name in ("train", "val", "test"):
        (tmp_path / name).mkdir()
    (tmp_path / "test" / "input.txt").write_text("".join(" ".join(map(str, s[:-1])) + "\n" for s in sequences.values()))
    (tmp_path / "test" / "output.txt").write_text("".join(f"{s[-1]}\n" for s in sequences.values()))
    (tmp_path / "val" / "input.txt").write_text("5 9 8\n")
    (tmp_path / "val" / "output.txt").write_text("7\n")
    holdout = gsasrec_holdout(tmp_path, pairs)
    events = pairs.assign(event_timestamp=pd.Timestamp("2026-01-01", tz="UTC")
                          + pd.to_timedelta(pairs.groupby("user_id").cumcount(), unit="min"))
    labels = label_events(events, holdout=holdout)
    by_user = {u: dict(zip(f["target_item_id"], f["split"])) for u, f in labels.groupby("user_id")}
    assert by_user[3] == {9: "train", 8: "train", 7: "validation", 6: "test"}
    assert by_user[1] == {6: "train", 8: "test"}  # 7, the second-to-last of a non-validation user: no label at all
    assert by_user[2] == {9: "test"}
    (tmp_path / "test" / "output.txt").write_text("8\n9\n5\n")  # a split that does not match the sequences
    with pytest.raises(ValueError, match="user 3"):
        gsasrec_holdout(tmp_path, pairs)


def _two_domains():
    """Every user ends in domain a (the Amazon case): a per-user split would hold out no b label at all."""
    times = pd.date_range("2026-01-01", periods=6, freq="h", tz="UTC")
    return pd.DataFrame({"user_id": [1] * 6 + [2] * 6, "item_id": list(range(10, 16)) + list(range(20, 26)),
                         "scenario": ["b", "b", "b", "a", "a", "a"] * 2, "event_timestamp": list(times) * 2})


def test_leave_last_out_holds_out_the_last_labels_of_every_scenario():
    labels = label_events(_two_domains())
    test, validation = labels[labels.split == "test"], labels[labels.split == "validation"]
    assert sorted(zip(test.user_id, test.scenario)) == [(1, "a"), (1, "b"), (2, "a"), (2, "b")]
    assert sorted(zip(validation.user_id, validation.scenario)) == [(1, "a"), (1, "b"), (2, "a"), (2, "b")]
    assert set(test.target_item_id) == {12, 15, 22, 25} and set(validation.target_item_id) == {11, 14, 21, 24}


def test_a_time_split_holds_out_the_newest_labels_of_everybody():
    events = _two_domains()
    events.loc[events.user_id == 2, "event_timestamp"] += pd.Timedelta(days=1)  # user 2 acts a day later
    labels = label_events(events, split="time", fraction=0.2)
    assert set(labels[labels.split == "test"].user_id) == {2}  # one cutoff for all: the newest labels are user 2's
    assert labels[labels.split == "test"].label_timestamp.min() > labels[labels.split == "validation"].label_timestamp.max()
    assert labels[labels.split == "train"].label_timestamp.max() <= labels[labels.split == "validation"].label_timestamp.min()


def test_a_teams_own_held_out_users_come_in_with_the_load(tmp_path):
    from recplugin import pipeline
    from tests.conftest import tiny_config

    events = pd.DataFrame({"uid": ["u1"] * 3 + ["u2"] * 3, "iid": [1, 2, 3, 1, 2, 3], "scenario": "feed", "action": "click",
                           "event_timestamp": list(pd.date_range("2026-01-01", periods=3, freq="h", tz="UTC")) * 2})
    events.to_parquet(tmp_path / "events.parquet")
    pd.DataFrame({"item_id": [1, 2, 3], "title": ["a", "b", "c"]}).to_parquet(tmp_path / "items.parquet")
    pd.DataFrame({"uid": ["u2"], "split": ["test"]}).to_csv(tmp_path / "holdout.csv", index=False)
    config = tiny_config(tmp_path / "work", source={"events": {"user": "uid", "item": "iid"}, "string_ids": True,
                                                    "holdout": str(tmp_path / "holdout.csv")})
    pipeline.load_events(config, str(tmp_path / "events.parquet"), str(tmp_path / "items.parquet"))
    holdout = pd.read_parquet(config.holdout_path)
    labels = label_events(pd.read_parquet(config.events_path), holdout=holdout)
    assert labels[labels.split == "test"]["user_id"].nunique() == 1 and "validation" not in set(labels.split)
