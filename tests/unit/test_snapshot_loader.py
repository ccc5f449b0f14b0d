"""The vectorised snapshot loader builds exactly what serving's per-user merge (build_batch) builds."""
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recplugin.models.inputs import NO_QUERY, ScenarioEvents, build_batch
from recplugin.training import dataset
from recplugin.training.dataset import load_snapshot

SCENARIOS = ["search", "feed"]


def random_snapshot(rng: np.random.Generator, users: int = 40) -> pd.DataFrame:
    """Rows in shuffled order; histories up to 12 events per scenario, equal timestamps, ids outside the catalogue."""
    rows = []
    start = pd.Timestamp("2026-01-01", tz="UTC")
    for user in rng.permutation(users):
        for label in range(int(rng.integers(1, 6))):
            row = {"user_id": int(user) + 100, "label_timestamp": start + pd.Timedelta(hours=label),
                   "target_item_id": int(rng.integers(0, 34)), "scenario": SCENARIOS[int(rng.integers(0, 2))],
                   "query": [None, "shoes", "red hat"][int(rng.integers(0, 3))],
                   "split": ["train", "train", "validation", "test"][int(rng.integers(0, 4))],
                   "rated_item_ids": rng.integers(0, 34, size=int(rng.integers(0, 4))).tolist()}
            for name in SCENARIOS:
                size = int(rng.integers(0, 13))
                row[f"{name}_item_ids"] = rng.integers(0, 34, size=size).tolist()  # 30..33 are not in the catalogue
                row[f"{name}_actions"] = rng.integers(0, 3, size=size).tolist()
                row[f"{name}_timestamps"] = np.sort(rng.integers(0, 8, size=size)).tolist()  # many ties across scenarios
            rows.append(row)
    return pd.DataFrame(rows).sample(frac=1.0, random_state=int(rng.integers(0, 1000)))


def reference(frame: pd.DataFrame, split: str, id_to_row: dict[int, int], length: int):
    """Row by row: the user's rows in time order, histories merged by serving's build_batch."""
    rows = frame.sort_values(["user_id", "label_timestamp"], kind="stable")
    rows = rows[(rows.split == split) & rows.target_item_id.isin(list(id_to_row))]
    histories = [[ScenarioEvents(r[f"{s}_item_ids"], r[f"{s}_actions"], r[f"{s}_timestamps"]) for s in SCENARIOS]
                 for r in rows.to_dict("records")]
    return rows, build_batch(histories, [SCENARIOS.index(s) for s in rows.scenario], [0] * len(rows), length, id_to_row)


@pytest.mark.parametrize("chunk_rows", [7, 50_000])
def test_loader_matches_serving_merge_row_for_row(tmp_path, monkeypatch, chunk_rows):
    """Every split, every field, with chunks that cut users apart and histories longer than the window."""
    monkeypatch.setattr(dataset, "CHUNK_ROWS", chunk_rows)
    frame = random_snapshot(np.random.default_rng(3))
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "snapshot.parquet")
    id_to_row = {item: 29 - item for item in range(30)}  # rows in another order than ids
    snapshot = load_snapshot(tmp_path / "snapshot.parquet", SCENARIOS, id_to_row, max_length=9)
    for split in ("train", "validation", "test"):
        rows, expected = reference(frame, split, id_to_row, 9)
        loaded = snapshot.splits[split]
        assert len(loaded) == len(rows) > 0
        for field in ("item_rows", "scenarios", "actions", "timestamps", "mask"):
            assert np.array_equal(getattr(loaded.inputs, field), getattr(expected, field)), (split, field)
        assert np.array_equal(loaded.inputs.target_scenario, expected.target_scenario)
        assert loaded.target_rows.tolist() == [id_to_row[i] for i in rows.target_item_id]
        assert loaded.user_ids.tolist() == rows.user_id.tolist()
        names = [snapshot.queries[q] if q != NO_QUERY else None for q in loaded.inputs.query_rows]
        assert names == rows["query"].tolist()


def test_held_out_rows_see_every_known_item_of_their_past(tmp_path):
    """History (all of it, not only the window), earlier targets of any split, rated items; nothing of another user."""
    frame = random_snapshot(np.random.default_rng(5))
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "snapshot.parquet")
    id_to_row = {item: item for item in range(30)}
    snapshot = load_snapshot(tmp_path / "snapshot.parquet", SCENARIOS, id_to_row, max_length=3)
    ordered = frame.sort_values(["user_id", "label_timestamp"], kind="stable")
    for split in ("validation", "test"):
        rows = ordered[(ordered.split == split) & ordered.target_item_id.isin(list(id_to_row))]
        for seen, row in zip(snapshot.splits[split].seen, rows.to_dict("records")):
            earlier = ordered[(ordered.user_id == row["user_id"]) & (ordered.label_timestamp < row["label_timestamp"])]
            items = set(earlier.target_item_id) | set(row["rated_item_ids"])
            items |= {i for s in SCENARIOS for i in row[f"{s}_item_ids"]}
            assert seen.tolist() == sorted(i for i in items if i in id_to_row)


@pytest.mark.parametrize("mode", ["window", "none"])
def test_evaluation_leaves_out_what_serving_would_under_each_exclude_seen(tmp_path, mode):
    """serving.exclude_seen: window leaves out the history lists' items alone (what /recommend drops under it), none
    nothing; `all` is the test above."""
    frame = random_snapshot(np.random.default_rng(5))
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "snapshot.parquet")
    id_to_row = {item: item for item in range(30)}
    snapshot = load_snapshot(tmp_path / "snapshot.parquet", SCENARIOS, id_to_row, max_length=3, exclude_seen=mode)
    ordered = frame.sort_values(["user_id", "label_timestamp"], kind="stable")
    rows = ordered[(ordered.split == "test") & ordered.target_item_id.isin(list(id_to_row))]
    for seen, row in zip(snapshot.splits["test"].seen, rows.to_dict("records")):
        window = {i for s in SCENARIOS for i in row[f"{s}_item_ids"] if i in id_to_row}
        assert seen.tolist() == (sorted(window) if mode == "window" else [])


def test_a_validation_sample_is_seeded_and_keeps_whole_rows(tmp_path):
    frame = random_snapshot(np.random.default_rng(5))
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "snapshot.parquet")
    split = load_snapshot(tmp_path / "snapshot.parquet", SCENARIOS, {item: item for item in range(30)}, max_length=3).splits["test"]
    assert split.sample(0, seed=1) is split and split.sample(len(split), seed=1) is split
    small, again = split.sample(3, seed=1), split.sample(3, seed=1)
    assert len(small) == 3 and small.user_ids.tolist() == again.user_ids.tolist()
    whole = {(int(u), int(t), tuple(s.tolist())) for u, t, s in zip(split.user_ids, split.target_rows, split.seen)}
    assert {(int(u), int(t), tuple(s.tolist())) for u, t, s in zip(small.user_ids, small.target_rows, small.seen)} <= whole
