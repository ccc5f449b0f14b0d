"""The user-state table built by Spark SQL (local mode, a real JVM) equals the pure-Python reference and DuckDB's."""
import pytest

from recplugin.features.state_spark import build_user_state_spark
from recplugin.features.state_sql import build_user_state_duckdb
from tests.support.state_cases import ACTIONS, LIMIT, SCENARIOS, reference_state, sorted_state, write_case

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("generated", [False, True], ids=["constructed-ties-and-live-log", "generated"])
def test_spark_state_equals_the_reference_and_duckdb(tmp_path, generated):
    events_path, live = write_case(tmp_path, generated)
    expected = reference_state(events_path, live, tmp_path / "reference.parquet")
    rows = build_user_state_spark(events_path, tmp_path / "spark.parquet", SCENARIOS, ACTIONS, LIMIT, live_events=live)
    build_user_state_duckdb(events_path, tmp_path / "duckdb.parquet", SCENARIOS, ACTIONS, LIMIT, live_events=live)
    assert rows == len(expected)
    assert sorted_state(tmp_path / "spark.parquet").equals(expected)
    assert sorted_state(tmp_path / "duckdb.parquet").equals(expected)
    assert not list(tmp_path.glob(".*.spark"))  # Spark's part files are gone once combined
