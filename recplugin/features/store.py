"""A small facade over Feast: open the store, apply, materialise, build the point-in-time training set (the online side:
features/online.py)."""
from __future__ import annotations

import os
import string
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from feast import FeatureStore, RepoConfig

from recplugin.config import RecConfig
from recplugin.data.live_events import read_all_events
from recplugin.features import definitions as defs
from recplugin.features.history import build_user_state
from recplugin.features.labels import label_events
from recplugin.features.state_sql import build_user_seen, build_user_state_duckdb
from recplugin.progress import progress as progress_bar

TEMPLATES = Path(__file__).resolve().parents[1] / "feature_repo"  # the feature_store.yaml templates shipped with the package
EMBEDDING_SCHEMA = pa.schema([("item_id", pa.int64()), ("embedding", pa.list_(pa.float32())),
                              ("model_version", pa.string()), ("event_timestamp", pa.timestamp("us", tz="UTC"))])
LABEL_COLUMNS = ["user_id", "target_item_id", "scenario", "action", "query", "label_timestamp"]


def store_yaml_path(config: RecConfig) -> Path:
    """The feature_store.yaml in use: the team's repo (a relative path against the cwd) when it has that file, else
    recplugin's own templates."""
    repo = Path(config.feast.repo_path) if config.feast.repo_path else TEMPLATES
    if not (repo / config.feast.store_yaml).exists():
        repo = TEMPLATES
    return (repo / config.feast.store_yaml).resolve()


def redis_connection(config: RecConfig) -> str:
    """`feast.redis` with socket timeouts from `feast.online_timeout_s` (unless it sets its own): a hung Redis fails fast."""
    timeout = config.feast.online_timeout_s
    extra = [f"{name}={timeout}" for name in ("socket_timeout", "socket_connect_timeout") if f"{name}=" not in config.feast.redis]
    return ",".join([config.feast.redis, *extra])


def repo_config(config: RecConfig) -> RepoConfig:
    """Render feature_store.yaml with recplugin's values for ${RECPLUGIN_*} (other variables from the environment)."""
    values = {
        **os.environ,
        "RECPLUGIN_DATA": str(config.data_dir),
        "RECPLUGIN_PROJECT": config.feast.project,
        "RECPLUGIN_REDIS": redis_connection(config),
        "RECPLUGIN_POSTGRES_URL": config.feast.postgres_url,
        "RECPLUGIN_SPARK_MASTER": config.feast.spark_master,
    }
    path = store_yaml_path(config)
    rendered = string.Template(path.read_text()).substitute(values)
    repo = RepoConfig(**yaml.safe_load(rendered))
    repo.repo_path = path.parent
    return repo


def open_store(config: RecConfig) -> FeatureStore:
    """A FeatureStore configured from the recplugin config."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    repo = repo_config(config)
    return FeatureStore(repo_path=str(repo.repo_path), config=repo)  # the repo's relative paths resolve against the repo


def prepare_sources(config: RecConfig, progress: bool = True) -> int:
    """Build the user-state table from the events and the service's live event log (in the configured engine); make
    sure the embedding source exists."""
    live = read_all_events(config.live_events_path)
    out = config.data_dir / "user_state.parquet"
    if config.feast.state_engine == "duckdb":
        rows = build_user_state_duckdb(config.events_path, out, config.scenarios, config.actions, config.feast.history_length,
                                       live_events=live, memory_limit=config.feast.duckdb_memory_limit,
                                       spill_dir=config.data_dir / "spill")
    elif config.feast.state_engine == "spark":
        from recplugin.features.state_spark import build_user_state_spark

        rows = build_user_state_spark(config.events_path, out, config.scenarios, config.actions,
                                      config.feast.history_length, live_events=live, master=config.feast.spark_master)
    else:
        rows = build_user_state(config.events_path, out, config.scenarios, config.actions, config.feast.history_length,
                                progress=progress, live_events=live)
    build_user_seen(config.events_path, config.data_dir / "user_seen.parquet", live)
    embeddings = config.data_dir / "item_embeddings.parquet"
    if not embeddings.exists():
        pq.write_table(EMBEDDING_SCHEMA.empty_table(), embeddings)
    return rows


class FeastNameCollision(RuntimeError):
    """The Feast repo already has an object of that name that recplugin did not register."""


def registered_tags(store: FeatureStore) -> dict[str, dict[str, str]]:
    """Tags of every registered entity, data source, feature view and feature service, by name."""
    listed = [*store.list_entities(), *store.list_data_sources(), *store.list_all_feature_views(),
              *store.list_feature_services()]
    return {obj.name: dict(obj.tags) for obj in listed}


def apply(config: RecConfig) -> FeatureStore:
    """Register recplugin's Feast objects (the SDK form of `feast apply`), never replacing one of the team's; with
    `feast.register_objects` false, only check that the team's repo registered them."""
    store = open_store(config)
    objects = list(defs.build_objects(config, config.data_dir, offline_store=store.config.offline_store.type).values())
    existing = registered_tags(store)
    if not config.feast.register_objects:
        missing = [obj.name for obj in objects if obj.name not in existing]
        if missing:
            raise FeastNameCollision(f"feast.register_objects is false but the repo lacks {missing}: call "
                                     "recplugin.features.feast_objects() in its definitions and run `feast apply`")
        return store
    foreign = [obj.name for obj in objects if obj.name in existing and existing[obj.name].get("managed_by") != "recplugin"]
    if foreign:
        raise FeastNameCollision(f"the Feast repo already has {foreign}, not registered by recplugin; set feast.prefix "
                                 "(e.g. rec_) so recplugin's objects get names of their own")
    store.apply(objects)
    return store


def materialize(config: RecConfig, views: list[str] | None = None, end: datetime | None = None) -> None:
    """Load the latest feature values into the online store (Feast shows progress bars)."""
    store = open_store(config)
    n = defs.names(config)
    views = views or [n.user_history, n.user_counts, n.user_seen, n.item_features]
    start = datetime(1970, 1, 2, tzinfo=timezone.utc)
    store.materialize(start, end or datetime.now(timezone.utc) + timedelta(days=1), feature_views=views)


def historical_features(store: FeatureStore, labels: pd.DataFrame, names: defs.FeastNames) -> pd.DataFrame:
    """Join each label with the user's features as of strictly before its timestamp, in two of Feast's point-in-time
    joins: the scalar view (counts and the state row's `state_time`) along the user's timeline, then the history lists
    by that row's exact (user_id, state_time) key. (One join with the lists carried them through every (label, earlier
    state row) pair of a user: 21.5 GB on ML-1M.) The labels' list columns are joined back by row."""
    service = store.get_feature_service(names.user_training)
    refs = {p.name: [f"{p.name}:{f.name}" for f in p.features] for p in service.feature_view_projections}
    entity_df = labels.drop(columns=["rated_item_ids"], errors="ignore").assign(label_row=np.arange(len(labels)))
    entity_df["event_timestamp"] = entity_df["label_timestamp"] - pd.Timedelta(microseconds=1)
    joined = store.get_historical_features(entity_df=entity_df, features=refs[names.user_counts]).to_df()
    known = joined[joined["state_time"].notna()]
    keys = known[["user_id", "event_timestamp", "label_row"]].assign(state_time=known["state_time"].astype("int64"))
    lists = (store.get_historical_features(entity_df=keys, features=refs[names.user_history_at_state]).to_df()
             if len(keys) else pd.DataFrame(columns=["label_row", *(r.split(":")[1] for r in refs[names.user_history_at_state])]))
    joined = joined.merge(lists.drop(columns=["user_id", "event_timestamp", "state_time"], errors="ignore"), on="label_row",
                          how="left")
    if "rated_item_ids" in labels:
        joined["rated_item_ids"] = labels["rated_item_ids"].to_numpy()[joined["label_row"].to_numpy()]
    return (joined.drop(columns=["event_timestamp", "label_row", "state_time"]).sort_values(["user_id", "label_timestamp"], kind="stable")
            .reset_index(drop=True))


def build_training_set(config: RecConfig, progress: bool = True) -> Path:
    """Write the point-in-time training snapshot (parquet) that the trainer reads, a bounded chunk of users at a time;
    the labels are the loaded events and the live ones."""
    live = read_all_events(config.live_events_path)  # the service's events since the last load: labels too
    events = pd.read_parquet(config.events_path)
    if len(live):
        events = pd.concat([events, live[events.columns]], ignore_index=True).sort_values("event_timestamp", kind="stable")
    holdout = pd.read_parquet(config.holdout_path) if config.holdout_path.exists() else None
    labels = label_events(events, config.feast.max_labels_per_user, holdout, config.negative_actions, config.training.split,
                          config.training.split_fraction)
    del events
    store = open_store(config)
    bound_duckdb_offline_store(store, config)
    users = labels["user_id"].drop_duplicates().to_numpy()
    per_user = max(1.0, len(labels) / max(1, len(users)))
    step = max(1, int(config.feast.training_set_chunk_rows / per_user))
    writer, schema = None, None
    try:
        for start in progress_bar(range(0, len(users), step), desc="point-in-time join", unit="chunk", disable=not progress):
            chunk = labels[labels["user_id"].isin(users[start:start + step])]
            table = pa.Table.from_pandas(_tidy_snapshot(historical_features(store, chunk, defs.names(config)), config.scenarios), preserve_index=False)
            if writer is None:
                schema = snapshot_schema(table.schema, config.scenarios)
                writer = pq.ParquetWriter(config.snapshot_path, schema, compression="zstd")
            writer.write_table(table.cast(schema))
    finally:
        if writer is not None:
            writer.close()
    return config.snapshot_path


def bound_duckdb_offline_store(store: FeatureStore, config: RecConfig) -> None:
    """Feast's DuckDB offline store joins on ibis's default DuckDB connection, which may take 80% of RAM (its
    point-in-time join carries the history lists through every (label, earlier state) pair: 21.5 GB on ML-1M): give it
    `feast.duckdb_memory_limit` and a spill directory instead."""
    if store.config.offline_store.type != "duckdb":
        return
    import ibis

    import duckdb

    spill = config.data_dir / "spill"
    spill.mkdir(parents=True, exist_ok=True)
    backend = ibis.get_backend()
    backend.raw_sql(f"SET memory_limit = '{config.feast.duckdb_memory_limit}'")
    try:
        backend.raw_sql(f"SET temp_directory = '{spill}'")
    except duckdb.NotImplementedException:  # this process has spilled already (another workdir): DuckDB keeps that directory
        Path(backend.raw_sql("SELECT current_setting('temp_directory')").fetchone()[0]).mkdir(parents=True, exist_ok=True)


def snapshot_schema(first_chunk: pa.Schema, scenarios: list[str]) -> pa.Schema:
    """The first chunk's schema with all-null or empty-list columns (no queries, no kitchen events yet) given real types."""
    known = {"query": pa.string(), "rated_item_ids": pa.list_(pa.int64()), **{f"{name}_count": pa.int64() for name in scenarios},
             **{f"{name}_{suffix}": pa.list_(pa.int64()) for name in scenarios for suffix in ("item_ids", "actions", "timestamps")}}
    untyped = lambda t: pa.types.is_null(t) or (pa.types.is_list(t) and pa.types.is_null(t.value_type))  # noqa: E731
    return pa.schema([pa.field(f.name, known.get(f.name, pa.string())) if untyped(f.type) else f for f in first_chunk])


def _tidy_snapshot(snapshot: pd.DataFrame, scenarios: list[str]) -> pd.DataFrame:
    """Missing histories (None, or NaN from the exact-key join) become empty lists and missing counts zero."""
    for name in scenarios:
        for suffix in ("item_ids", "actions", "timestamps"):
            column = f"{name}_{suffix}"
            snapshot[column] = snapshot[column].map(lambda value: list(value) if hasattr(value, "__len__") else [])
        snapshot[f"{name}_count"] = snapshot[f"{name}_count"].fillna(0).astype("int64")
    return snapshot


def publish_item_embeddings(config: RecConfig, item_ids, vectors, model_version: str) -> None:
    """Write the model's item vectors to the item-embedding source and materialise them online."""
    now = pd.Timestamp.now(tz="UTC")
    table = pa.table({"item_id": pa.array(item_ids, pa.int64()),
                      "embedding": pa.array([list(map(float, v)) for v in vectors], pa.list_(pa.float32())),
                      "model_version": pa.array([model_version] * len(item_ids), pa.string()),
                      "event_timestamp": pa.array([now] * len(item_ids), pa.timestamp("us", tz="UTC"))}, schema=EMBEDDING_SCHEMA)
    pq.write_table(table, config.data_dir / "item_embeddings.parquet")
    materialize(config, views=[defs.names(config).item_embedding], end=now.to_pydatetime() + timedelta(seconds=1))
