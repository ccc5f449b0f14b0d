"""The user-state table on Spark: the same SQL as DuckDB's (state_sql) in Spark's dialect, for a team past one machine.

`feast.spark_master` picks the cluster (`local[2]` by default; `spark://host:7077`, `yarn`, `k8s://...`); the output
is one parquet file for recplugin's file source, or the written folder for a team's own Spark source.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recplugin.features.history import state_schema
from recplugin.features.state_sql import SPARK, state_columns, user_state_query


def spark_session(master: str):
    """A Spark session in UTC that writes microsecond timestamps (what Feast and pyarrow read)."""
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master(master).appName("recplugin-user-state")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
            .config("spark.ui.enabled", "false")
            .getOrCreate())


def build_user_state_spark(events_path: Path, out_path: Path, scenarios: list[str], actions: list[str], limit: int,
                           live_events: pd.DataFrame | None = None, master: str = "local[2]") -> int:
    """Write the state table with Spark SQL; returns its rows."""
    from pyspark.sql import functions as F

    spark = spark_session(master)
    events = spark.read.parquet(str(events_path)).select("user_id", "item_id", "scenario", "action", "event_timestamp")
    events = events.withColumn("seq", F.monotonically_increasing_id())  # file order: a total order within a timestamp
    if live_events is not None and len(live_events):
        logged = spark.createDataFrame(live_events[["user_id", "item_id", "scenario", "action", "event_timestamp"]])
        offset = events.agg(F.max("seq")).first()[0] or 0
        events = events.unionByName(logged.withColumn("seq", F.monotonically_increasing_id() + F.lit(offset + 1)))
    action_list = ", ".join("'" + name.replace("'", "\\'") + "'" for name in actions)
    events.createOrReplaceTempView("raw_events")
    spark.sql(f"""SELECT user_id, item_id, scenario, CAST(array_position(array({action_list}), action) - 1 AS BIGINT)
                  AS action_code, event_timestamp, CAST(unix_seconds(event_timestamp) AS BIGINT) AS seconds, seq
                  FROM raw_events""").createOrReplaceTempView("events")
    folder = out_path.with_name(f".{out_path.name}.spark")
    select = ", ".join(state_columns(scenarios))
    spark.sql(f"SELECT {select} FROM ({user_state_query('events', scenarios, limit, SPARK)}) AS state") \
        .write.mode("overwrite").parquet(str(folder))
    return single_file(folder, out_path, state_schema(scenarios))


def single_file(folder: Path, out_path: Path, schema) -> int:
    """Stream Spark's part files into one parquet file with the state schema (one batch at a time: no read-ahead,
    which held ~3 GB at 10M events), replacing `out_path`."""
    staged = out_path.with_name(f".{out_path.name}.staged")
    rows = 0
    with pq.ParquetWriter(staged, schema, compression="zstd") as writer:
        for part in sorted(folder.glob("part-*.parquet")):
            for batch in pq.ParquetFile(part).iter_batches(batch_size=65_536, columns=schema.names):
                table = pa.Table.from_batches([batch]).select(schema.names).cast(schema)
                writer.write_table(table)
                rows += table.num_rows
    os.replace(staged, out_path)
    shutil.rmtree(folder, ignore_errors=True)
    return rows

