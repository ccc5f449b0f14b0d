"""The canonical behaviour-event and item-catalogue schemas, and their validation."""
from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

EVENT_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("item_id", pa.int64()),
        ("scenario", pa.string()),
        ("action", pa.string()),
        ("query", pa.string()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
    ]
)

ITEM_SCHEMA = pa.schema(
    [
        ("item_id", pa.int64()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("category", pa.string()),
        ("scenarios", pa.list_(pa.string())),
        ("created_timestamp", pa.timestamp("us", tz="UTC")),
    ]
)


class SchemaError(ValueError):
    """Data that does not follow the recplugin schema."""


def check_events(events: pd.DataFrame, scenarios: list[str], actions: list[str]) -> pd.DataFrame:
    """Validate an events frame against EVENT_SCHEMA and the configured vocabularies."""
    missing = [name for name in EVENT_SCHEMA.names if name not in events.columns]
    if missing:
        raise SchemaError(f"events are missing column(s) {missing}; expected {EVENT_SCHEMA.names}")
    unknown_scenarios = set(events["scenario"].unique()) - set(scenarios)
    if unknown_scenarios:
        raise SchemaError(f"unknown scenario(s) {sorted(unknown_scenarios)}; configured: {scenarios}")
    unknown_actions = set(events["action"].unique()) - set(actions)
    if unknown_actions:
        raise SchemaError(f"unknown action(s) {sorted(unknown_actions)}; configured: {actions}")
    return events[EVENT_SCHEMA.names]


def check_items(items: pd.DataFrame) -> pd.DataFrame:
    """Validate an item catalogue frame against ITEM_SCHEMA."""
    missing = [name for name in ITEM_SCHEMA.names if name not in items.columns]
    if missing:
        raise SchemaError(f"items are missing column(s) {missing}; expected {ITEM_SCHEMA.names}")
    if items["item_id"].duplicated().any():
        raise SchemaError("item_id must be unique in the catalogue")
    return items[ITEM_SCHEMA.names]


def write_events(events: pd.DataFrame, path) -> None:
    """Write events as parquet with the canonical schema."""
    pq.write_table(pa.Table.from_pandas(events, schema=EVENT_SCHEMA, preserve_index=False), path)


def write_items(items: pd.DataFrame, path) -> None:
    """Write the catalogue as parquet with the canonical schema."""
    pq.write_table(pa.Table.from_pandas(items, schema=ITEM_SCHEMA, preserve_index=False), path)
