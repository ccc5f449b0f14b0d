"""User-state rows: per-scenario last-N arrays, counts, one row per distinct event time."""
import pandas as pd
import pyarrow.parquet as pq

from recplugin.data.schema import write_events
from recplugin.features.history import UserState, build_user_state

T0 = pd.Timestamp("2026-01-01", tz="UTC")


def _events(rows):
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "scenario", "action", "query", "event_timestamp"])
    frame["event_timestamp"] = [T0 + pd.Timedelta(seconds=s) for s in frame["event_timestamp"]]
    return frame


def test_state_rows_keep_last_n_per_scenario(tmp_path):
    events = _events([(1, 10 + i, "feed", "click", None, i) for i in range(5)] + [(1, 99, "search", "like", "q", 10), (2, 7, "feed", "share", None, 3)])
    write_events(events, tmp_path / "e.parquet")
    rows = build_user_state(tmp_path / "e.parquet", tmp_path / "s.parquet", ["search", "feed"], ["click", "like", "share"], limit=3, progress=False)
    state = pq.read_table(tmp_path / "s.parquet").to_pandas()
    assert rows == len(state) == 7
    last = state[state.user_id == 1].iloc[-1]
    assert list(last.feed_item_ids) == [12, 13, 14]
    assert last.feed_count == 5
    assert list(last.search_item_ids) == [99] and list(last.search_actions) == [1]
    assert list(last.search_timestamps) == [int((T0 + pd.Timedelta(seconds=10)).timestamp())]
    assert list(state[state.user_id == 2].iloc[0].feed_actions) == [2]


def test_events_at_the_same_time_share_one_row(tmp_path):
    events = _events([(1, 1, "feed", "click", None, 5), (1, 2, "feed", "click", None, 5), (1, 3, "feed", "click", None, 6)])
    write_events(events, tmp_path / "e.parquet")
    assert build_user_state(tmp_path / "e.parquet", tmp_path / "s.parquet", ["feed"], ["click"], limit=10, progress=False) == 2


def test_state_round_trips_through_feature_values():
    state = UserState(["feed", "search"], limit=2)
    for item in (1, 2, 3):
        state.histories["feed"].append(item, 0, 100 + item)
    row = state.row(5, T0)
    back = UserState.from_online(["feed", "search"], 2, row)
    assert list(back.histories["feed"].item_ids) == [2, 3] and back.histories["feed"].count == 3
    assert list(back.histories["search"].item_ids) == [] and back.histories["search"].count == 0


def test_live_events_are_folded_into_the_user_state(tmp_path):
    from recplugin.data.live_events import append_event, read_events

    write_events(_events([(1, 10, "feed", "click", None, 1), (2, 7, "feed", "share", None, 3)]), tmp_path / "e.parquet")
    log = tmp_path / "live.jsonl"
    append_event(log, 1, 99, "feed", "like", pd.Timestamp("2031-01-01", tz="UTC"))
    rows = build_user_state(tmp_path / "e.parquet", tmp_path / "s.parquet", ["search", "feed"], ["click", "like", "share"], limit=3,
                            progress=False, live_events=read_events(log))
    states = pd.read_parquet(tmp_path / "s.parquet")
    last = states[states.user_id == 1].sort_values("event_timestamp").iloc[-1]
    assert rows == len(states) and list(last.feed_item_ids)[-1] == 99 and list(last.feed_actions)[-1] == 1


def test_a_torn_last_line_of_the_live_log_is_skipped_with_a_warning(tmp_path, caplog):
    import pandas as pd

    from recplugin.data.live_events import append_event, read_events

    log = tmp_path / "live_events.jsonl"
    append_event(log, 1, 10, "feed", "click", pd.Timestamp("2026-01-02", tz="UTC"))
    append_event(log, 2, 11, "search", "like", pd.Timestamp("2026-01-03", tz="UTC"))
    with open(log, "ab") as handle:
        handle.write(b'{"user_id": 3, "item_id": 12, "scen')  # a crash or a full disk in the middle of a write
    with caplog.at_level("WARNING"):
        events = read_events(log)
    assert events["user_id"].tolist() == [1, 2] and events["item_id"].tolist() == [10, 11]
    assert str(events["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    assert "line 3 is not a complete event" in caplog.text
