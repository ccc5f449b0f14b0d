"""The user-state table in SQL, run by the offline engine (DuckDB here; the same query on Spark SQL).

One output row per (user, distinct event time): per scenario the last N item ids, action codes and epoch seconds up to
and including that time, and the all-time count; and the row's time in microseconds (`state_time`, its key beside the
user id). Bounded window lists per (user, scenario), then each scenario's latest state carried forward along the user's
timeline: linear in the events, no per-user Python loop.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


@dataclass(frozen=True)
class Dialect:
    """What differs between the engines' SQL."""

    list_agg: str  # ordered list aggregate over a window frame
    struct: str  # "{fields}" -> a struct value with named fields
    carry: str  # "{value}" -> its last non-null value over the frame
    empty_list: str
    micros: str  # "{value}" -> a timestamp's microseconds since the epoch


DUCKDB = Dialect("list", "struct_pack({fields})", "last_value({value} IGNORE NULLS)", "[]::BIGINT[]", "epoch_us({value})")
SPARK = Dialect("collect_list", "named_struct({fields})", "last({value}, true)", "CAST(array() AS ARRAY<BIGINT>)",
                "unix_micros({value})")


def _field(dialect: Dialect, name: str, value: str) -> str:
    return f"{name} := {value}" if dialect is DUCKDB else f"'{name}', {value}"


def user_state_query(events: str, scenarios: list[str], limit: int, dialect: Dialect = DUCKDB) -> str:
    """SQL over a relation `events` (user_id, item_id, scenario, action_code, event_timestamp, seconds, seq: a total
    order of events that share a timestamp) that yields the state table's columns."""
    frame = f"ROWS BETWEEN {limit - 1} PRECEDING AND CURRENT ROW"
    fields = ", ".join(_field(dialect, name, value) for name, value in (
        ("item_ids", "s_items"), ("actions", "s_actions"), ("timestamps", "s_times"), ("count", "s_count")))
    carried = ",\n    ".join(
        dialect.carry.format(value=f"CASE WHEN scenario = '{name}' THEN {dialect.struct.format(fields=fields)} END")
        + f" OVER timeline AS st_{index}" for index, name in enumerate(scenarios))
    columns = ",\n  ".join(
        f"coalesce(st_{index}.{part}, {dialect.empty_list}) AS {name}_{part}" for index, name in enumerate(scenarios)
        for part in ("item_ids", "actions", "timestamps")) + ",\n  " + ",\n  ".join(
        f"coalesce(st_{index}.count, 0) AS {name}_count" for index, name in enumerate(scenarios))
    return f"""
WITH per_scenario AS (
  SELECT user_id, scenario, event_timestamp, seq,
    {dialect.list_agg}(item_id) OVER recent AS s_items,
    {dialect.list_agg}(action_code) OVER recent AS s_actions,
    {dialect.list_agg}(seconds) OVER recent AS s_times,
    CAST(row_number() OVER (PARTITION BY user_id, scenario ORDER BY event_timestamp, seq) AS BIGINT) AS s_count
  FROM {events}
  WINDOW recent AS (PARTITION BY user_id, scenario ORDER BY event_timestamp, seq {frame})
), carried AS (
  SELECT user_id, event_timestamp,
    row_number() OVER (PARTITION BY user_id, event_timestamp ORDER BY seq DESC) AS newest_first,
    {carried}
  FROM per_scenario
  WINDOW timeline AS (PARTITION BY user_id ORDER BY event_timestamp, seq ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT user_id, event_timestamp, CAST({dialect.micros.format(value="event_timestamp")} AS BIGINT) AS state_time,
  {columns}
FROM carried WHERE newest_first = 1"""


def state_columns(scenarios: list[str]) -> list[str]:
    """The state table's column order (as history.state_schema)."""
    return ["user_id", "event_timestamp", "state_time"] + [f"{name}_{part}" for name in scenarios
                                             for part in ("item_ids", "actions", "timestamps", "count")]


def build_user_state_duckdb(events_path: Path, out_path: Path, scenarios: list[str], actions: list[str], limit: int,
                            live_events: pd.DataFrame | None = None, memory_limit: str = "2GB",
                            spill_dir: Path | None = None) -> int:
    """Write the state table with DuckDB straight from parquet to parquet (out-of-core beyond `memory_limit`)."""
    import duckdb

    if not Path(events_path).exists():
        raise FileNotFoundError(f"{events_path} does not exist: run `recplugin generate` or `recplugin load` first")
    connection = duckdb.connect(config={"memory_limit": memory_limit, "preserve_insertion_order": False,
                                        **({"temp_directory": str(spill_dir)} if spill_dir else {})})
    try:
        connection.execute("SET TimeZone = 'UTC'")
        action_list = "[" + ", ".join("'" + name.replace("'", "''") + "'" for name in actions) + "]"
        logged = live_events if live_events is not None and len(live_events) else None
        union = ""
        if logged is not None:
            connection.register("logged", logged[["user_id", "item_id", "scenario", "action", "event_timestamp"]])
            union = ("UNION ALL SELECT user_id, item_id, scenario, action, CAST(event_timestamp AS TIMESTAMPTZ), "
                     "(SELECT count(*) FROM raw_events) + row_number() OVER () AS seq FROM logged")
        connection.execute(f"CREATE VIEW raw_events AS SELECT user_id, item_id, scenario, action, "
                           f"CAST(event_timestamp AS TIMESTAMPTZ) AS event_timestamp, "
                           f"file_row_number AS seq FROM read_parquet('{events_path}', file_row_number = true)")
        connection.execute(f"""CREATE VIEW events AS SELECT user_id, item_id, scenario,
            CAST(list_position({action_list}, action) - 1 AS BIGINT) AS action_code, event_timestamp,
            CAST(epoch_us(event_timestamp) // 1000000 AS BIGINT) AS seconds, seq
            FROM (SELECT * FROM raw_events {union})""")
        select = ", ".join(state_columns(scenarios))
        staged = out_path.with_name(f".{out_path.name}.staged")  # readers (Feast) never see a half-written table
        connection.execute(f"COPY (SELECT {select} FROM ({user_state_query('events', scenarios, limit)})) "
                           f"TO '{staged}' (FORMAT parquet, COMPRESSION zstd)")
        rows = int(connection.execute(f"SELECT count(*) FROM read_parquet('{staged}')").fetchone()[0])
        os.replace(staged, out_path)
        return rows
    finally:
        connection.close()


USER_SEEN_SCHEMA = pa.schema([("user_id", pa.int64()), ("seen_item_ids", pa.list_(pa.int64())),
                              ("event_timestamp", pa.timestamp("us", tz="UTC"))])


def build_user_seen(events_path: Path, out: Path, live: pd.DataFrame | None) -> int:
    """One row per user: every item of the user's events (and live events), as of the user's last one (DuckDB)."""
    import duckdb

    live = live if live is not None and len(live) else pd.DataFrame({"user_id": pd.Series(dtype="int64"),
                                                                       "item_id": pd.Series(dtype="int64"),
                                                                       "event_timestamp": pd.Series(dtype="datetime64[us, UTC]")})
    connection = duckdb.connect()
    try:
        connection.register("live", live[["user_id", "item_id", "event_timestamp"]])
        table = connection.sql(
            "SELECT user_id, list(DISTINCT item_id ORDER BY item_id) AS seen_item_ids, max(event_timestamp) AS event_timestamp "
            f"FROM (SELECT user_id, item_id, event_timestamp FROM read_parquet('{events_path}') UNION ALL "
            "SELECT user_id, item_id, event_timestamp FROM live) GROUP BY user_id").to_arrow_table()
    finally:
        connection.close()
    table = table.cast(USER_SEEN_SCHEMA)
    pq.write_table(table, out)
    return table.num_rows
