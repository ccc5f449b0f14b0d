"""Labels for the point-in-time snapshot: leave-last-out splits, optionally only each user's last labels."""
import pandas as pd

from recplugin.features.store import label_events


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
