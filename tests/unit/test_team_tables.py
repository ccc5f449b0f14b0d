"""`recplugin load events`: a team's own tables, with its own column names and values, mapped and validated."""
import pandas as pd
import pytest

from recplugin import pipeline
from recplugin.data.schema import SchemaError
from recplugin.data.tables import stable_id
from tests.conftest import tiny_config

SOURCE = {
    "events": {"user": "uid", "item": "iid", "timestamp": "ts", "scenario": "surface", "action": "event_type",
               "query": "search_text", "timezone": "Europe/Berlin",
               "scenario_values": {"home": "feed", "search_page": "search", "explore": "discovery"},
               "action_values": {"tap": "click", "heart": "like"}},
    "items": {"item": "iid", "title": "name", "text": "description", "category": "section", "scenarios": "surfaces"},
}


def _team_tables(folder, **changes):
    """A team's event CSV and item parquet whose columns and values differ from recplugin's."""
    events = pd.DataFrame({"uid": [7, 7, 9, 9], "iid": [100, 101, 100, 102],
                           "ts": ["2024-03-01 10:00:00", "2024-03-01 10:05:00", "2024-03-02 09:00:00", "2024-03-02 09:01:00"],
                           "surface": ["home", "search_page", "explore", "home"], "event_type": ["tap", "tap", "heart", "tap"],
                           "search_text": [None, "red shoes", None, None]})
    items = pd.DataFrame({"iid": [100, 101, 102], "name": ["a", "b", "c"], "description": ["aa", "bb", "cc"],
                          "section": ["x", "y", "x"], "surfaces": ["feed,search,discovery", "search", "feed"]})
    for table, column, values in changes.get("edits", []):
        (events if table == "events" else items)[column] = values
    events.to_csv(folder / "events.csv", index=False)
    items.to_parquet(folder / "items.parquet", index=False)
    return str(folder / "events.csv"), str(folder / "items.parquet")


@pytest.fixture
def team_config(tmp_path):
    return tiny_config(tmp_path / "work", source=SOURCE)


def test_a_team_table_maps_onto_the_schema(team_config, tmp_path):
    events_path, items_path = _team_tables(tmp_path)
    pipeline.load_events(team_config, events_path, items_path)
    events = pd.read_parquet(team_config.events_path)
    assert events["scenario"].tolist() == ["feed", "search", "discovery", "feed"]
    assert events["action"].tolist() == ["click", "click", "like", "click"]
    assert events["query"].tolist() == [None, "red shoes", None, None]
    assert str(events["event_timestamp"].iloc[0]) == "2024-03-01 09:00:00+00:00"  # Berlin winter time, stored in UTC
    items = pd.read_parquet(team_config.catalog_path)
    assert [list(s) for s in items["scenarios"]] == [["feed", "search", "discovery"], ["search"], ["feed"]]
    assert items["text"].tolist() == ["title: a; description: aa", "title: b; description: bb", "title: c; description: cc"]
    assert items["category"].tolist() == ["x", "y", "x"]


def test_string_ids_become_stable_integers(team_config, tmp_path):
    team_config.source.string_ids = True
    events_path, items_path = _team_tables(tmp_path, edits=[("events", "uid", ["u-7", "u-7", "u-9", "u-9"]),
                                                            ("events", "iid", ["i0", "i1", "i0", "i2"]),
                                                            ("items", "iid", ["i0", "i1", "i2"])])
    pipeline.load_events(team_config, events_path, items_path)
    events = pd.read_parquet(team_config.events_path)
    assert events["user_id"].tolist() == [stable_id("u-7")] * 2 + [stable_id("u-9")] * 2
    assert stable_id("u-7") == stable_id("u-7") and 0 <= stable_id("u-7") < 2**62 and stable_id("u-7") != stable_id("u-9")


@pytest.mark.parametrize("edit, message", [
    (("events", "surface", ["home", "checkout", "home", "home"]), r"column 'surface' has 'checkout' at row 1, which is not a configured scenario"),
    (("events", "event_type", ["tap", "tap", "tap", "buy"]), r"column 'event_type' has 'buy' at row 3, which is not a configured action"),
    (("events", "uid", [7, None, 9, 9]), r"column 'uid' has a null id at row 1"),
    (("events", "ts", ["2024-03-01 10:00:00", "yesterday", "2024-03-02 09:00:00", "2024-03-02 09:01:00"]), r"column 'ts' has 'yesterday' at row 1"),
    (("items", "iid", [100, 101, 101]), r"column 'iid' repeats 101 at row 2; item ids must be unique"),
    (("events", "iid", [100, 101, 100, 555]), r"row 3 refers to item 555"),
    (("events", "uid", ["7", "x", "9", "9"]), r"ids must be non-negative integers, or set source.string_ids"),
])
def test_bad_rows_are_named_and_nothing_is_written(team_config, tmp_path, edit, message):
    pipeline.load_events(team_config, *_team_tables(tmp_path))  # a good load first: a failed one must leave it whole
    before = pd.read_parquet(team_config.events_path)
    with pytest.raises(SchemaError, match=message):
        pipeline.load_events(team_config, *_team_tables(tmp_path, edits=[edit]))
    pd.testing.assert_frame_equal(pd.read_parquet(team_config.events_path), before)
    assert not list(team_config.data_dir.glob("*.partial"))


def test_a_missing_column_names_the_config_key(team_config, tmp_path):
    team_config.source.events.action = "kind"
    with pytest.raises(SchemaError, match=r"column 'kind' \(source.events.action\) is missing"):
        pipeline.load_events(team_config, *_team_tables(tmp_path))


def test_a_glob_of_parquet_files_and_unix_times(team_config, tmp_path):
    team_config.source.events.timestamp_format = "unix_ms"
    events_path, items_path = _team_tables(tmp_path)
    frame = pd.read_csv(events_path)
    frame["ts"] = [1709287200000, 1709287500000, 1709370000000, 1709370060000]
    (tmp_path / "parts").mkdir()
    frame.iloc[:2].to_parquet(tmp_path / "parts" / "a.parquet")
    frame.iloc[2:].to_parquet(tmp_path / "parts" / "b.parquet")
    pipeline.load_events(team_config, str(tmp_path / "parts" / "*.parquet"), items_path)
    events = pd.read_parquet(team_config.events_path)
    assert len(events) == 4 and str(events["event_timestamp"].iloc[0]) == "2024-03-01 10:00:00+00:00"
