"""One or two lines per pipeline stage saying what it did: rows, users, items, scenarios, time."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import pandas as pd
import pyarrow.parquet as pq

from recplugin.config import RecConfig


def describe_data(config: RecConfig) -> str:
    """Events, users, items and events per scenario in the workdir's data, and their time span."""
    events = pd.read_parquet(config.events_path, columns=["user_id", "scenario", "event_timestamp"])
    items = pq.read_metadata(config.catalog_path).num_rows
    per_scenario = events["scenario"].value_counts()
    scenarios = ", ".join(f"{name} {int(per_scenario.get(name, 0)):,}" for name in config.scenarios)
    span = f"{events['event_timestamp'].min():%Y-%m-%d} .. {events['event_timestamp'].max():%Y-%m-%d}" if len(events) else "-"
    return (f"{len(events):,} events from {events['user_id'].nunique():,} users on {items:,} items ({span})\n"
            f"events per scenario: {scenarios}")


def describe_snapshot(config: RecConfig) -> str:
    """Labels per split and per scenario in the training snapshot."""
    labels = pd.read_parquet(config.snapshot_path, columns=["split", "scenario"])
    splits = labels["split"].value_counts()
    test = labels.loc[labels["split"] == "test", "scenario"].value_counts()
    per_scenario = ", ".join(f"{name} {int(test.get(name, 0)):,}" for name in config.scenarios)
    return (f"{len(labels):,} labels: train {int(splits.get('train', 0)):,}, validation {int(splits.get('validation', 0)):,}, "
            f"test {int(splits.get('test', 0)):,} (test per scenario: {per_scenario})")


def describe_materialized(config: RecConfig, online_store: str) -> str:
    """How many users and items the online store now holds features for."""
    users = pq.read_metadata(config.data_dir / "user_state.parquet").num_rows
    items = pq.read_metadata(config.catalog_path).num_rows
    kind = next((name for name in ("redis", "sqlite", "postgres") if name in online_store.lower()), online_store)
    return f"materialised {users:,} user-state rows and {items:,} items into the {kind} online store"


@contextmanager
def timed(what: str) -> Iterator[list[str]]:
    """Collect lines while a stage runs; print them and '<what> done in N s' when it ends."""
    lines: list[str] = []
    began = time.monotonic()
    yield lines
    for line in lines:
        print(line, flush=True)
    print(f"{what} done in {time.monotonic() - began:.1f} s", flush=True)
