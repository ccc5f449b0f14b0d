"""The text a team maps (several columns, named; the title first), constant scenarios and actions, a row filter,
value-map keys of any scalar type, and negative actions that never become labels."""
import pandas as pd
import pytest

from recplugin import pipeline
from recplugin.config import ConfigError
from recplugin.data.schema import SchemaError
from recplugin.features.labels import label_events
from tests.conftest import tiny_config


def _tables(folder):
    """A ratings-style log: no scenario column, stars instead of actions; films with a title and genres."""
    events = pd.DataFrame({"uid": [1, 1, 1, 2, 2], "film": [10, 11, 12, 10, 12], "stars": [5, 2, 4, 1, 5],
                           "ts": pd.date_range("2024-01-01", periods=5, freq="h", tz="UTC")})
    items = pd.DataFrame({"film": [10, 11, 12], "name": ["Heat", "Up", "Fargo"], "genres": ["Crime", "Animation", "Crime"],
                          "year": [1995, 2009, 1996]})
    events.to_parquet(folder / "events.parquet")
    items.to_parquet(folder / "items.parquet")
    return str(folder / "events.parquet"), str(folder / "items.parquet")


def _config(folder, events=None, items=None, **top):
    source = {"events": {"user": "uid", "item": "film", "timestamp": "ts", "scenario": "", "action": "stars",
                         "action_values": {1: "dislike", 2: "dislike", 3: "click", 4: "like", 5: "like"}, **(events or {})},
              "items": {"item": "film", "title": "name", "text": ["genres", "year"], **(items or {})}}
    return tiny_config(folder / "work", scenarios=["feed"], actions=["click", "like", "dislike"], source=source, **top)


def test_several_text_columns_are_read_with_their_names_after_the_title(tmp_path):
    config = _config(tmp_path)
    pipeline.load_events(config, *_tables(tmp_path))
    items = pd.read_parquet(config.catalog_path)
    assert items["text"].tolist()[0] == "title: Heat; genres: Crime; year: 1995"
    assert items["title"].tolist() == ["Heat", "Up", "Fargo"]
    untitled = _config(tmp_path, items={"text": "genres", "title_in_text": False})
    pipeline.load_events(untitled, *_tables(tmp_path))
    assert pd.read_parquet(untitled.catalog_path)["text"].tolist() == ["genres: Crime", "genres: Animation", "genres: Crime"]


def test_no_scenario_column_means_the_only_scenario_and_integer_value_map_keys_work(tmp_path):
    config = _config(tmp_path)
    pipeline.load_events(config, *_tables(tmp_path))
    events = pd.read_parquet(config.events_path)
    assert events["scenario"].tolist() == ["feed"] * 5
    assert events["action"].tolist() == ["like", "dislike", "like", "dislike", "like"]


def test_a_constant_is_needed_with_several_scenarios_and_must_be_configured(tmp_path):
    source = {"events": {"user": "uid", "item": "film", "timestamp": "ts", "scenario": "", "action": ""},
              "items": {"item": "film", "title": "name"}}
    several = tiny_config(tmp_path / "w", source=source)  # three scenarios, four actions: no default for either
    with pytest.raises(SchemaError, match=r"source.events.scenario is empty and 3 scenarios are configured: set "
                                          r"source.events.scenario_constant"):
        pipeline.load_events(several, *_tables(tmp_path))
    several.source.events.scenario_constant = "feed"
    several.source.events.action_constant = "purchase"
    pipeline.load_events(several, *_tables(tmp_path))
    events = pd.read_parquet(several.events_path)
    assert set(events["scenario"]) == {"feed"} and set(events["action"]) == {"purchase"}
    several.source.events.scenario_constant = "shop"
    with pytest.raises(SchemaError, match=r"scenario_constant 'shop' is not a configured scenario"):
        pipeline.load_events(several, *_tables(tmp_path))


def test_a_row_filter_keeps_matching_rows_and_a_bad_one_names_the_key(tmp_path):
    config = _config(tmp_path, events={"where": "stars >= 4"})
    pipeline.load_events(config, *_tables(tmp_path))
    events = pd.read_parquet(config.events_path)
    assert events["item_id"].tolist() == [10, 12, 12] and set(events["action"]) == {"like"}
    broken = _config(tmp_path, events={"where": "rating >= 4"})
    with pytest.raises(SchemaError, match=r"source.events.where 'rating >= 4' does not evaluate.*the table has \['uid'"):
        pipeline.load_events(broken, *_tables(tmp_path))


def test_negative_actions_are_never_labels_but_the_last_positive_ones_are_held_out():
    events = pd.DataFrame({"user_id": [1] * 5, "item_id": [10, 11, 12, 13, 14],
                           "action": ["like", "like", "dislike", "like", "dislike"],
                           "event_timestamp": pd.date_range("2024-01-01", periods=5, freq="h", tz="UTC")})
    labels = label_events(events, negative_actions=["dislike"])
    assert labels["target_item_id"].tolist() == [11, 13] and labels["split"].tolist() == ["validation", "test"]
    assert labels["rated_item_ids"].tolist()[1] == [10, 11, 12]  # a disliked item was seen: evaluation excludes it
    assert label_events(events)["target_item_id"].tolist() == [11, 12, 13, 14]


def test_negative_actions_must_be_configured_actions(tmp_path):
    with pytest.raises(ConfigError, match=r"negative_actions \['skip'\] must be among actions"):
        tiny_config(tmp_path, negative_actions=["skip"])
