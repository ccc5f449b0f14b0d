"""Feast objects for recplugin, built from the config so that any list of scenarios works."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Array, Float32, Int64, String

from recplugin.config import RecConfig

USER_HISTORY_VIEW = "user_history"
USER_COUNTS_VIEW = "user_counts"
ITEM_FEATURES_VIEW = "item_features"
ITEM_EMBEDDING_VIEW = "item_embedding"
USER_PUSH_SOURCE = "user_state_push"
TRAINING_SERVICE = "user_training"
SERVING_SERVICE = "user_serving"
ITEM_SERVICE = "item_serving"


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


def build_objects(config: RecConfig, data_dir: Path) -> dict[str, object]:
    """Every Feast object of the repo, by variable name."""
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64, description="A person who acts in any scenario")
    item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.INT64, description="A recommendable item")
    ttl = timedelta(days=config.feast.history_ttl_days)
    user_state_source = FileSource(
        name="user_state_source", path=str(data_dir / "user_state.parquet"), timestamp_field="event_timestamp",
        description="One row per user and event time: the user's state after that time")
    user_state_push = PushSource(name=USER_PUSH_SOURCE, batch_source=user_state_source,
                                 description="Live behaviour: the new user state after an event")
    user_history = FeatureView(
        name=USER_HISTORY_VIEW, entities=[user], ttl=ttl, schema=history_fields(config.scenarios), source=user_state_push,
        description=f"Last {config.feast.history_length} behaviours per scenario, time-ordered")
    user_counts = FeatureView(
        name=USER_COUNTS_VIEW, entities=[user], ttl=ttl,
        schema=[Field(name=f"{name}_count", dtype=Int64) for name in config.scenarios], source=user_state_push,
        description="All-time behaviour counts per scenario")
    item_source = FileSource(name="item_source", path=str(data_dir / "items.parquet"), timestamp_field="created_timestamp")
    item_features = FeatureView(
        name=ITEM_FEATURES_VIEW, entities=[item], ttl=timedelta(0),
        schema=[Field(name="title", dtype=String), Field(name="text", dtype=String), Field(name="category", dtype=String)],
        source=item_source, description="Item text and category")
    embedding_source = FileSource(name="item_embedding_source", path=str(data_dir / "item_embeddings.parquet"),
                                  timestamp_field="event_timestamp")
    item_embedding = FeatureView(
        name=ITEM_EMBEDDING_VIEW, entities=[item], ttl=timedelta(0),
        schema=[Field(name="embedding", dtype=Array(Float32)), Field(name="model_version", dtype=String)],
        source=embedding_source, description="Item-tower vectors of the current model version")
    return {
        "user": user,
        "item": item,
        "user_state_source": user_state_source,
        "user_state_push": user_state_push,
        "user_history": user_history,
        "user_counts": user_counts,
        "item_source": item_source,
        "item_features": item_features,
        "item_embedding_source": embedding_source,
        "item_embedding": item_embedding,
        "user_training": FeatureService(name=TRAINING_SERVICE, features=[user_history, user_counts]),
        "user_serving": FeatureService(name=SERVING_SERVICE, features=[user_history, user_counts]),
        "item_serving": FeatureService(name=ITEM_SERVICE, features=[item_features, item_embedding]),
    }
