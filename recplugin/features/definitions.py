"""Feast objects for recplugin, built from the config so that any list of scenarios works."""
from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.data_source import DataSource
from feast.types import Array, Float32, Int64, String

from recplugin.config import RecConfig

MANAGED_BY = {"managed_by": "recplugin"}  # tag on every object recplugin registers: it never replaces one without it


@dataclass(frozen=True)
class FeastNames:
    """The name of every recplugin Feast object; `feast.prefix` goes in front of each (e.g. `rec_user`)."""

    user: str = "user"
    item: str = "item"
    user_state_source: str = "user_state_source"
    user_state_push: str = "user_state_push"
    user_history: str = "user_history"
    user_state: str = "user_state"
    user_history_at_state: str = "user_history_at_state"
    user_counts: str = "user_counts"
    item_source: str = "item_source"
    item_features: str = "item_features"
    item_embedding_source: str = "item_embedding_source"
    item_embedding: str = "item_embedding"
    user_training: str = "user_training"
    user_serving: str = "user_serving"
    item_serving: str = "item_serving"
    user_seen_source: str = "user_seen_source"
    user_seen_push: str = "user_seen_push"
    user_seen: str = "user_seen"

    @classmethod
    def prefixed(cls, prefix: str) -> FeastNames:
        """Every default name with `prefix` in front."""
        return cls(**{field.name: prefix + field.default for field in fields(cls)})


def names(config: RecConfig) -> FeastNames:
    """The configured names."""
    return FeastNames.prefixed(config.feast.prefix)


def history_fields(scenarios: list[str]) -> list[Field]:
    """Per-scenario arrays: last N item ids, their action codes and their timestamps (epoch seconds)."""
    fields = []
    for name in scenarios:
        fields += [
            Field(name=f"{name}_item_ids", dtype=Array(Int64)),
            Field(name=f"{name}_actions", dtype=Array(Int64)),
            Field(name=f"{name}_timestamps", dtype=Array(Int64)),
        ]
    return fields


def file_sources(config: RecConfig, data_dir: Path, offline_store: str = "duckdb") -> dict[str, DataSource]:
    """The default batch sources: parquet files that recplugin writes under the data directory (as SparkSources when
    the repo's offline store is Spark)."""
    n = names(config)

    def source(name: str, file: str, timestamp: str, description: str = "") -> DataSource:
        if offline_store == "spark":
            from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

            return SparkSource(name=name, path=str(data_dir / file), file_format="parquet", timestamp_field=timestamp,
                               tags=MANAGED_BY, description=description)
        return FileSource(name=name, path=str(data_dir / file), timestamp_field=timestamp, tags=MANAGED_BY,
                          description=description)

    return {
        "user_state_source": source(n.user_state_source, "user_state.parquet", "event_timestamp",
                                    "One row per user and event time: the user's state after that time"),
        "item_source": source(n.item_source, "items.parquet", "created_timestamp"),
        "item_embedding_source": source(n.item_embedding_source, "item_embeddings.parquet", "event_timestamp"),
        "user_seen_source": source(n.user_seen_source, "user_seen.parquet", "event_timestamp",
                                   "One row per user: every item the user has interacted with"),
    }


def build_objects(config: RecConfig, data_dir: Path, sources: dict[str, DataSource] | None = None,
                  offline_store: str = "duckdb") -> dict[str, object]:
    """Every recplugin Feast object by its unprefixed name; `sources` replaces default batch sources by that name."""
    n = names(config)
    batch = {**file_sources(config, data_dir, offline_store), **(sources or {})}
    user = Entity(name=n.user, join_keys=["user_id"], value_type=ValueType.INT64, tags=MANAGED_BY,
                  description="A person who acts in any scenario")
    item = Entity(name=n.item, join_keys=["item_id"], value_type=ValueType.INT64, tags=MANAGED_BY,
                  description="A recommendable item")
    state = Entity(name=n.user_state, join_keys=["state_time"], value_type=ValueType.INT64, tags=MANAGED_BY,
                   description="One row of the user-state table, by its time in microseconds (with the user id)")
    ttl = timedelta(days=config.feast.history_ttl_days)
    user_state_push = PushSource(name=n.user_state_push, batch_source=batch["user_state_source"], tags=MANAGED_BY,
                                 description="Live behaviour: the new user state after an event")
    user_history = FeatureView(
        name=n.user_history, entities=[user], ttl=ttl, schema=history_fields(config.scenarios), source=user_state_push,
        tags=MANAGED_BY, description=f"Last {config.feast.history_length} behaviours per scenario, time-ordered")
    user_counts = FeatureView(
        name=n.user_counts, entities=[user], ttl=ttl, tags=MANAGED_BY,
        schema=[*(Field(name=f"{name}_count", dtype=Int64) for name in config.scenarios), Field(name="state_time", dtype=Int64)],
        source=user_state_push, description="All-time behaviour counts per scenario, and the state row's time (microseconds)")
    user_history_at_state = FeatureView(
        name=n.user_history_at_state, entities=[user, state], ttl=ttl, schema=history_fields(config.scenarios),
        source=batch["user_state_source"], tags=MANAGED_BY, online=False,
        description="The history lists of one state row, by (user_id, state_time): the snapshot's second, exact-key join")
    user_seen_push = PushSource(name=n.user_seen_push, batch_source=batch["user_seen_source"], tags=MANAGED_BY,
                                description="Live behaviour: the user's seen items after an event")
    user_seen = FeatureView(
        name=n.user_seen, entities=[user], ttl=ttl, schema=[Field(name="seen_item_ids", dtype=Array(Int64))],
        source=user_seen_push, tags=MANAGED_BY, description="Every item the user has interacted with (never served again)")
    item_features = FeatureView(
        name=n.item_features, entities=[item], ttl=timedelta(0), tags=MANAGED_BY,
        schema=[Field(name="title", dtype=String), Field(name="text", dtype=String), Field(name="category", dtype=String)],
        source=batch["item_source"], description="Item text and category")
    item_embedding = FeatureView(
        name=n.item_embedding, entities=[item], ttl=timedelta(0), tags=MANAGED_BY,
        schema=[Field(name="embedding", dtype=Array(Float32)), Field(name="model_version", dtype=String)],
        source=batch["item_embedding_source"], description="Item-tower vectors of the current model version")
    return {
        **batch,
        "user": user,
        "user_state": state,
        "item": item,
        "user_state_push": user_state_push,
        "user_history": user_history,
        "user_history_at_state": user_history_at_state,
        "user_counts": user_counts,
        "item_features": item_features,
        "item_embedding": item_embedding,
        "user_seen_push": user_seen_push,
        "user_seen": user_seen,
        "user_training": FeatureService(name=n.user_training, features=[user_counts, user_history_at_state], tags=MANAGED_BY),
        "user_serving": FeatureService(name=n.user_serving, features=[user_history, user_counts, user_seen], tags=MANAGED_BY),
        "item_serving": FeatureService(name=n.item_serving, features=[item_features, item_embedding], tags=MANAGED_BY),
    }
