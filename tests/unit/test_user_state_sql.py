"""The user-state table built by SQL in DuckDB equals the pure-Python reference, row for row."""
import pyarrow.parquet as pq
import pytest

from recplugin.features.history import state_schema
from recplugin.features.state_sql import build_user_state_duckdb
from tests.support.state_cases import ACTIONS, LIMIT, SCENARIOS, reference_state, sorted_state, write_case


@pytest.mark.parametrize("generated", [False, True], ids=["constructed-ties-and-live-log", "generated"])
def test_duckdb_state_equals_the_reference(tmp_path, generated):
    events_path, live = write_case(tmp_path, generated)
    expected = reference_state(events_path, live, tmp_path / "reference.parquet")
    rows = build_user_state_duckdb(events_path, tmp_path / "state.parquet", SCENARIOS, ACTIONS, LIMIT, live_events=live,
                                   memory_limit="256MB", spill_dir=tmp_path / "spill")
    assert rows == len(expected)
    assert sorted_state(tmp_path / "state.parquet").equals(expected)
    assert pq.read_schema(tmp_path / "state.parquet").remove_metadata().types == state_schema(SCENARIOS).types


def test_the_constructed_case_keeps_file_order_within_a_timestamp_and_the_last_n(tmp_path):
    events_path, live = write_case(tmp_path, generated=False)
    build_user_state_duckdb(events_path, tmp_path / "state.parquet", SCENARIOS, ACTIONS, LIMIT, live_events=live)
    state = sorted_state(tmp_path / "state.parquet").set_index(["user_id", "event_timestamp"])
    user1 = state.loc[1]
    assert len(user1) == 4  # one row per distinct time: 100, 200, 300, 400
    assert user1.iloc[0]["feed_item_ids"] == [10, 12] and user1.iloc[0]["search_item_ids"] == [11]
    assert user1.iloc[-1]["feed_item_ids"] == [14, 15, 17] and user1.iloc[-1]["feed_count"] == 6  # live 17 after file 15
    assert user1.iloc[-1]["feed_actions"] == [0, 1, 1] and user1.iloc[-1]["discovery_item_ids"] == [16]
    assert state.loc[5].iloc[0]["discovery_item_ids"] == [50]  # a user known only from the live log
