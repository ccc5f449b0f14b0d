"""The one typed configuration object, loaded strictly from YAML (stdlib only, so the trainer can use it anywhere)."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from recplugin.data.mapping import SourceConfig
from recplugin.config_rules import CHOICES, INDEX_TYPES  # noqa: F401  (re-exported: the allowed values)
from recplugin.typed_config import ConfigError, build

DEFAULT_SCENARIOS = ("search", "feed", "discovery")
DEFAULT_ACTIONS = ("click", "like", "share", "purchase")


@dataclass
class GeneratorConfig:
    """Size and shape of the generated cross-scenario dataset."""

    num_users: int = 2000
    num_items: int = 3000
    events_per_user: int = 40
    interests_per_user: int = 3
    seed: int = 7
    start: str = "2026-01-01T00:00:00"


@dataclass
class DemoConfig:
    """What `recplugin demo` changes for its own run (nothing else reads it)."""

    training_minutes: float = 2.0  # the demo's training budget when training.max_minutes is 0 (the default: no budget)


@dataclass
class FeastConfig:
    """Where the Feast repo and its data live, and which feature_store.yaml to use."""

    project: str = "recplugin"
    repo_path: str = ""  # "": recplugin's own templates (recplugin/feature_repo); or a team's Feast repo (relative: to the cwd)
    store_yaml: str = "feature_store.yaml"
    prefix: str = ""  # in front of every recplugin entity/source/view/service name, apart from a team's own (e.g. rec_)
    register_objects: bool = True  # false: the team's `feast apply` registers them (feast_objects) and `apply` checks
    redis: str = "127.0.0.1:6379"
    online_timeout_s: float = 2.0  # Redis socket timeouts, SQLite busy wait, per-user lock wait for /events
    postgres_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    history_length: int = 50
    history_ttl_days: int = 3650
    max_labels_per_user: int = 0
    state_engine: str = "duckdb"  # duckdb: SQL in the offline engine, out of core | spark: Spark SQL | python: reference
    duckdb_memory_limit: str = "2GB"  # DuckDB's memory for the state build and Feast's point-in-time join (spills beyond)
    spark_master: str = "local[2]"  # state_engine spark: local[N], spark://host:7077, yarn, k8s://... (docs/adopting.md)
    training_set_chunk_rows: int = 100_000


@dataclass
class ModelConfig:
    """Item and user tower shapes."""

    text_encoder: str = "default"
    max_text_tokens: int = 32
    item_finetune: str = "frozen"  # frozen (cached vectors) | full | lora: fine-tune the item LLM with the towers
    lora_rank: int = 8
    item_checkpointing: bool = False  # activation checkpointing in the fine-tuned item LLM (memory for time)
    embedding_dim: int = 64
    user_dim: int = 64
    user_layers: int = 2
    user_heads: int = 2
    user_llm: str = ""  # a local decoder LLM folder to use as the user tower's sequence model (fed inputs_embeds)
    max_sequence_length: int = 50
    interests_per_scenario: int = 1  # K; K=1 won the defaults table on every dataset here, K>=2 for multi-interest answers
    scenario_queries: bool = True
    mixing: str = "interleaved"
    user_attention: str = "causal"  # causal: each event sees only earlier ones (trains at every position) | bidirectional
    use_time_gap: bool = True
    use_hour: bool = True
    use_text: bool = True
    use_item_ids: bool = False
    item_id_init_std: float = 0.02  # id vectors are normalised: a small start turns them fast under Adam
    dropout: float = 0.1


@dataclass
class TrainingConfig:
    """Optimisation settings for the two towers."""

    epochs: int = 30  # at most: training stops when validation NDCG@10 has not improved for `patience` epochs
    batch_size: int = 256
    learning_rate: float = 3e-3
    llm_learning_rate: float = 5e-5
    weight_decay: float = 1e-4
    temperature: float = 0.07
    learn_temperature: bool = True
    max_logit_scale: float = 100.0
    target_window: int = 1
    window_weights: str = "row"  # row: each label's window weighs as one | target: every window target weighs the same
    positions: str = "all"  # all: every label of a user's sequence in one forward (causal tower) | last: one forward per label
    min_context: float = 0.5  # positions: all: a label whose history outgrew the window joins a packed sequence if it sees
    # at least this fraction of model.max_sequence_length there (0: any prefix, as SASRec's windows; fewer sequences)
    false_negative_cosine: float = 0.98
    logq_correction: bool = True
    only_scenario: str = ""
    split: str = "last"  # last: each user's last label per scenario is test, the one before validation | time: a cutoff
    split_fraction: float = 0.1  # split: time: the newest fraction of labels is test, the fraction before validation
    patience: int = 3
    max_validation_labels: int = 10_000  # each epoch's validation on at most this many labels (a seeded sample); 0: all
    sampled_negatives: int = 0
    scenario_ranking: bool = False  # also rank among the target scenario's items only (Amazon: domain-restricted)
    random_negatives: int = 512
    negatives: str = "scenario"  # scenario: only items sharing the target's scenario compete | global: the whole catalogue
    softmax: str = "sampled"  # sampled: in-batch + random_negatives with logQ | full: every item each step (small catalogues)
    sampling: str = "natural"  # natural: each row once per epoch | balanced: rows drawn so every scenario's labels weigh equally
    max_steps: int = 0
    max_minutes: float = 0.0  # wall-clock budget for training steps: the schedule is refitted after 20, 200 steps and each epoch; 0: none
    seed: int = 0
    device: str = "auto"
    checkpoint_dir: str = "checkpoints"
    resume: bool = False  # continue from this run's last per-epoch checkpoint when there is one
    warm_start: bool = True  # `recplugin refresh` starts from the serving version's weights (`train` always starts fresh)
    refresh_tolerance: float = 0.02  # refresh promotes a candidate whose test NDCG@10 is >= (1 - this) x the serving one's
    refresh_lock_ttl_h: float = 6.0  # a refresh's registry lock expires after this long (its holder died)


@dataclass
class IndexConfig:
    """Milvus connection, collection naming and index choice."""

    uri: str = "milvus.db"
    collection_prefix: str = "recplugin_items"
    alias: str = "recplugin_items_current"
    index_type: str = "auto"  # auto | FLAT | IVF_FLAT | HNSW; auto: FLAT on Milvus Lite, by catalogue size on a server
    flat_index_below: int = 100_000  # auto on a Milvus server: exact FLAT below this many items, IVF_FLAT from it
    ivf_nprobe: int = 128  # of nlist = 4 sqrt(items) lists; recall@100 0.972 at 1M items (raise it ~ nlist/32 beyond)
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef: int = 512  # raised to the number of hits asked for when that is larger (Milvus refuses ef < limit)
    insert_batch: int = 500
    build_timeout_s: float = 7200.0  # wait this long for the server to index every row before the collection is served
    rpc_timeout_s: float = 10.0  # every Milvus call
    keep_versions: int = 2  # collections kept after a switch: the served version's and the previous one's (rollback)
    drop_grace_s: float = 30.0  # wait after a switch before dropping replaced collections (services reload meanwhile)


@dataclass
class ServingConfig:
    """BentoML service limits."""

    host: str = "127.0.0.1"
    port: int = 3000
    max_k: int = 200
    default_k: int = 20
    max_query_chars: int = 512
    max_item_text_chars: int = 8000
    max_user_id: int = 2**62
    max_body_bytes: int = 16384
    max_items_body_bytes: int = 4_194_304  # POST /items: up to 1000 items with their text
    api_key_env: str = "RECPLUGIN_API_KEY"
    workers: int = 1
    batch_max_size: int = 32
    batch_max_latency_ms: int = 10000  # the longest a /recommend call waits for a batch slot before a 503
    batch_slots: int = 1  # batch processes per worker, each running a batch and holding the next (worker threads without)
    batch_process: bool = True  # /recommend batches run in a child process of each worker, not on the event loop's GIL
    batch_process_timeout_s: float = 30.0  # a batch the child has not answered by then is answered by the worker itself
    torch_threads: int = 1  # intra-op threads of the user tower per worker (2 on 2 cores: c=1 p50 10.1 -> 6.4 ms with 1)
    access_log: bool = False
    ready_timeout_s: float = 3.0  # /readyz answers 503 within this when a dependency hangs
    reload_interval_s: float = 10.0  # how often each worker checks which model version is served (alias or registry)
    merge: str = "max"  # how K interests make one answer: max (best score) | interleave (each interest in turn)
    exclude_seen: str = "all"  # never answer: all (every item the user interacted with) | window (the history) | none
    event_id_retention_h: float = 24.0  # a retried event (same event_id) within this many hours is applied once (~100 B each)
    max_clock_skew_s: float = 300.0  # an event's client timestamp may be at most this far in the future
    event_log_per_host: bool = False  # data/live_events/<hostname>.jsonl: replicas sharing one volume never interleave


@dataclass
class RecConfig:
    """Everything recplugin needs; every path is relative to `workdir` unless absolute."""

    workdir: str = ".recplugin/demo"
    scenarios: list[str] = field(default_factory=lambda: list(DEFAULT_SCENARIOS))
    actions: list[str] = field(default_factory=lambda: list(DEFAULT_ACTIONS))
    negative_actions: list[str] = field(default_factory=list)  # never labels (e.g. dislike); they stay in histories
    registry_url: str = "sqlite:///registry.db"
    artifact_root: str = "models"  # model artifacts live only here: the registry's paths must resolve under it
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    feast: FeastConfig = field(default_factory=FeastConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    source: SourceConfig = field(default_factory=SourceConfig)  # a team's own tables (`recplugin load events`)

    def path(self, relative: str) -> Path:
        """Resolve a path against the working directory."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else Path(self.workdir).resolve() / candidate

    @property
    def data_dir(self) -> Path:
        """Parquet files that back the Feast sources."""
        return self.path("data")

    @property
    def snapshot_path(self) -> Path:
        """The point-in-time training snapshot."""
        return self.path("training_set.parquet")

    @property
    def catalog_path(self) -> Path:
        """The item catalogue parquet file."""
        return self.data_dir / "items.parquet"

    @property
    def events_path(self) -> Path:
        """The raw behaviour events parquet file."""
        return self.data_dir / "events.parquet"

    @property
    def holdout_path(self) -> Path:
        """Optional user_id -> split table: users whose last event is the validation or test label (others: train only)."""
        return self.data_dir / "holdout_users.parquet"

    @property
    def live_events_path(self) -> Path:
        """Behaviours received by the service since the events file was written (JSON Lines, append-only)."""
        return self.data_dir / "live_events.jsonl"

    @property
    def models_dir(self) -> Path:
        """Where model artifacts are written, and the only place they are loaded from."""
        return self.path(self.artifact_root)

    @property
    def registry_sqlalchemy_url(self) -> str:
        """The registry URL with a relative SQLite path resolved against the workdir."""
        prefix = "sqlite:///"
        if self.registry_url.startswith(prefix) and not self.registry_url.startswith(prefix + "/"):
            return prefix + str(self.path(self.registry_url[len(prefix):]))
        return self.registry_url

    @property
    def milvus_uri(self) -> str:
        """A Milvus server URI as given, or a Milvus Lite file resolved against the workdir."""
        if "://" in self.index.uri:
            return self.index.uri
        return str(self.path(self.index.uri))

    def validate(self) -> "RecConfig":
        """Check cross-field rules that types alone cannot express (recplugin/config_rules.py)."""
        from recplugin.config_rules import check

        check(self)
        return self


def from_dict(raw: dict) -> RecConfig:
    """Build and validate a RecConfig from a plain mapping (e.g. parsed YAML); a relative workdir is
    resolved against the current directory now, so saved copies of the config mean the same place."""
    config = build(RecConfig, raw or {}, "").validate()
    config.workdir = str(Path(config.workdir).resolve())
    return config


def to_dict(config: RecConfig) -> dict:
    """The config as plain data, for YAML/JSON."""
    return dataclasses.asdict(config)


def with_overrides(config: RecConfig, **sections: dict) -> RecConfig:
    """A copy of the config with some fields of some sections replaced, e.g. index={"uri": ...}."""
    raw = to_dict(config)
    for section, values in sections.items():
        raw[section] = {**raw[section], **values}
    return from_dict(raw)


def load_config(path: str | os.PathLike | None = None, **overrides: object) -> RecConfig:
    """Load a YAML config file (or the defaults); `RECPLUGIN_CONFIG` names the file when `path` is None."""
    path = path or os.environ.get("RECPLUGIN_CONFIG")
    raw: dict = {}
    if path:
        with open(path) as handle:
            raw = yaml.safe_load(handle) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    raw.update(overrides)
    return from_dict(raw)


def save_config(config: RecConfig, path: str | os.PathLike) -> Path:
    """Write the config as YAML and return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    return target
