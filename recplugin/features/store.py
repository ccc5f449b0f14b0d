"""A small facade over Feast: open the store, apply, materialise, build the point-in-time training set, read and push."""
from __future__ import annotations

import os
import string
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from feast import FeatureStore, RepoConfig
from feast.data_source import PushMode
from tqdm import tqdm

from recplugin.config import RecConfig
from recplugin.data.live_events import read_events
from recplugin.features import definitions as defs
from recplugin.features.history import UserState, build_user_state
from recplugin.features.locks import FileUserLocks, RedisUserLocks

SOURCE_ROOT = Path(__file__).resolve().parents[2]
EMBEDDING_SCHEMA = pa.schema([("item_id", pa.int64()), ("embedding", pa.list_(pa.float32())),
                              ("model_version", pa.string()), ("event_timestamp", pa.timestamp("us", tz="UTC"))])
LABEL_COLUMNS = ["user_id", "target_item_id", "scenario", "action", "query", "label_timestamp"]


def store_yaml_path(config: RecConfig) -> Path:
    """The feature_store.yaml in use: relative repo paths resolve against the cwd, then the source checkout."""
    repo = Path(config.feast.repo_path)
    if not repo.is_absolute() and not (repo / config.feast.store_yaml).exists():
        repo = SOURCE_ROOT / repo
    return repo / config.feast.store_yaml


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
    }
    path = store_yaml_path(config)
    rendered = string.Template(path.read_text()).substitute(values)
    repo = RepoConfig(**yaml.safe_load(rendered))
    repo.repo_path = path.parent
    return repo


def open_store(config: RecConfig) -> FeatureStore:
    """A FeatureStore configured from the recplugin config."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    return FeatureStore(config=repo_config(config))


def prepare_sources(config: RecConfig, progress: bool = True) -> int:
    """Build the user-state table from the events and the service's live event log; make sure the embedding source exists."""
    rows = build_user_state(config.events_path, config.data_dir / "user_state.parquet", config.scenarios,
                            config.actions, config.feast.history_length, progress=progress,
                            live_events=read_events(config.live_events_path))
    embeddings = config.data_dir / "item_embeddings.parquet"
    if not embeddings.exists():
        pq.write_table(EMBEDDING_SCHEMA.empty_table(), embeddings)
    return rows


def apply(config: RecConfig) -> FeatureStore:
    """Register entities, sources, feature views and feature services (the SDK form of `feast apply`)."""
    store = open_store(config)
    store.apply(list(defs.build_objects(config, config.data_dir).values()))
    return store


def materialize(config: RecConfig, views: list[str] | None = None, end: datetime | None = None) -> None:
    """Load the latest feature values into the online store (Feast shows progress bars)."""
    store = open_store(config)
    views = views or [defs.USER_HISTORY_VIEW, defs.USER_COUNTS_VIEW, defs.ITEM_FEATURES_VIEW]
    start = datetime(1970, 1, 2, tzinfo=timezone.utc)
    store.materialize(start, end or datetime.now(timezone.utc) + timedelta(days=1), feature_views=views)


def label_events(events: pd.DataFrame, max_per_user: int = 0, holdout: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every event after a user's first becomes a label; the last two are the validation and test labels.

    With `max_per_user` > 0 only the user's last that many labels are kept (validation and test among them).
    With a `holdout` table (user_id, split), only its users' last events are held out, as its split says; every
    other label is a training label (a dataset's own protocol, e.g. Amazon's separate validation and test users).
    """
    events = events.sort_values(["user_id", "event_timestamp"], kind="stable").reset_index(drop=True)
    position = events.groupby("user_id").cumcount(ascending=False)
    keep = events.groupby("user_id").cumcount() > 0
    if max_per_user > 0:
        keep &= position < max(max_per_user, 2)
    labels = events[keep].copy()
    if holdout is None:
        split = position.loc[labels.index].map({0: "test", 1: "validation"}).fillna("train")
    else:
        held = labels["user_id"].map(holdout.set_index("user_id")["split"])
        split = held.where(position.loc[labels.index] == 0).fillna("train")
    labels["split"] = split.to_numpy()
    return labels.rename(columns={"item_id": "target_item_id", "event_timestamp": "label_timestamp"})


def historical_features(store: FeatureStore, labels: pd.DataFrame) -> pd.DataFrame:
    """Join each label with the user's features as of strictly before its timestamp."""
    entity_df = labels.copy()
    entity_df["event_timestamp"] = entity_df["label_timestamp"] - pd.Timedelta(microseconds=1)
    features = store.get_feature_service(defs.TRAINING_SERVICE)
    joined = store.get_historical_features(entity_df=entity_df, features=features).to_df()
    return joined.drop(columns=["event_timestamp"]).sort_values(["user_id", "label_timestamp"]).reset_index(drop=True)


def build_training_set(config: RecConfig, progress: bool = True) -> Path:
    """Write the point-in-time training snapshot (parquet) that the trainer reads, a bounded chunk of users at a time."""
    events = pd.read_parquet(config.events_path)
    holdout = pd.read_parquet(config.holdout_path) if config.holdout_path.exists() else None
    labels = label_events(events, config.feast.max_labels_per_user, holdout)
    del events
    store = open_store(config)
    users = labels["user_id"].drop_duplicates().to_numpy()
    per_user = max(1.0, len(labels) / max(1, len(users)))
    step = max(1, int(config.feast.training_set_chunk_rows / per_user))
    writer, schema = None, None
    try:
        for start in tqdm(range(0, len(users), step), desc="point-in-time join", unit="chunk", disable=not progress):
            chunk = labels[labels["user_id"].isin(users[start:start + step])]
            table = pa.Table.from_pandas(_tidy_snapshot(historical_features(store, chunk), config.scenarios), preserve_index=False)
            if writer is None:
                schema = snapshot_schema(table.schema, config.scenarios)
                writer = pq.ParquetWriter(config.snapshot_path, schema, compression="zstd")
            writer.write_table(table.cast(schema))
    finally:
        if writer is not None:
            writer.close()
    return config.snapshot_path


def snapshot_schema(first_chunk: pa.Schema, scenarios: list[str]) -> pa.Schema:
    """The first chunk's schema with all-null or empty-list columns (no queries, no kitchen events yet) given real types."""
    known = {"query": pa.string(), **{f"{name}_count": pa.int64() for name in scenarios},
             **{f"{name}_{suffix}": pa.list_(pa.int64()) for name in scenarios for suffix in ("item_ids", "actions", "timestamps")}}
    untyped = lambda t: pa.types.is_null(t) or (pa.types.is_list(t) and pa.types.is_null(t.value_type))  # noqa: E731
    return pa.schema([pa.field(f.name, known.get(f.name, pa.string())) if untyped(f.type) else f for f in first_chunk])


def _tidy_snapshot(snapshot: pd.DataFrame, scenarios: list[str]) -> pd.DataFrame:
    """Missing histories become empty lists and missing counts zero."""
    for name in scenarios:
        for suffix in ("item_ids", "actions", "timestamps"):
            column = f"{name}_{suffix}"
            snapshot[column] = snapshot[column].map(lambda value: [] if value is None else list(value))
        snapshot[f"{name}_count"] = snapshot[f"{name}_count"].fillna(0).astype("int64")
    return snapshot


def without_retries(store: FeatureStore) -> None:
    """Feast's Redis client retries a timed-out call 3 times with backoff (redis-py's default, not settable from the
    connection string): with Redis hung one read took ~10 s instead of `feast.online_timeout_s`. One try, one timeout."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    online_store = store._get_provider().online_store
    online_store._get_client(store.config.online_store).set_retry(Retry(NoBackoff(), 0))


class OnlineFeatures:
    """Reads user state from the online store and pushes new behaviour through the push source."""

    def __init__(self, config: RecConfig, store: FeatureStore | None = None):
        self.config = config
        self.store = store or open_store(config)
        self.service = self.store.get_feature_service(defs.SERVING_SERVICE)
        timeout = config.feast.online_timeout_s
        if self.store.config.online_store.type == "redis":
            self.locks = RedisUserLocks(config.feast.redis, f"recplugin:{config.feast.project}", timeout)
            without_retries(self.store)
        else:
            self.locks = FileUserLocks(config.data_dir / "user_locks", timeout)

    def user_states(self, user_ids: list[int]) -> list[UserState | None]:
        """Each user's state, or None when the online store has nothing for that user."""
        if not user_ids:
            return []
        response = self.store.get_online_features(features=self.service, entity_rows=[{"user_id": u} for u in user_ids])
        columns = response.to_dict()
        states: list[UserState | None] = []
        for index in range(len(user_ids)):
            values = {name: column[index] for name, column in columns.items()}
            known = any(values.get(f"{s}_count") is not None for s in self.config.scenarios)
            states.append(UserState.from_online(self.config.scenarios, self.config.feast.history_length, values) if known else None)
        return states

    def push_state(self, user_id: int, state: UserState, timestamp: pd.Timestamp) -> None:
        """Write the user's new state to the online store (every view on the push source).

        The offline side is the live event log, folded into the user-state source by the next `recplugin apply`:
        Feast's offline write rewrites the whole parquet source per call and grew the service by ~55 MB per event.
        """
        self.store.push(defs.USER_PUSH_SOURCE, pd.DataFrame([state.row(user_id, timestamp)]), to=PushMode.ONLINE)

    def ping(self) -> bool:
        """True when the online store answers a read."""
        self.user_states([0])
        return True


def publish_item_embeddings(config: RecConfig, item_ids, vectors, model_version: str) -> None:
    """Write the model's item vectors to the item-embedding source and materialise them online."""
    now = pd.Timestamp.now(tz="UTC")
    table = pa.table({"item_id": pa.array(item_ids, pa.int64()),
                      "embedding": pa.array([list(map(float, v)) for v in vectors], pa.list_(pa.float32())),
                      "model_version": pa.array([model_version] * len(item_ids), pa.string()),
                      "event_timestamp": pa.array([now] * len(item_ids), pa.timestamp("us", tz="UTC"))}, schema=EMBEDDING_SCHEMA)
    pq.write_table(table, config.data_dir / "item_embeddings.parquet")
    materialize(config, views=[defs.ITEM_EMBEDDING_VIEW], end=now.to_pydatetime() + timedelta(seconds=1))
