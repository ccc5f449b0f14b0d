"""The configuration's cross-field rules, what types alone cannot express (RecConfig.validate runs them)."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from recplugin.typed_config import ConfigError

if TYPE_CHECKING:
    from recplugin.config import RecConfig

INDEX_TYPES = ("auto", "FLAT", "IVF_FLAT", "HNSW")
CHOICES = {  # section.field -> the values it may take
    "model.item_finetune": ("frozen", "full", "lora"), "model.mixing": ("interleaved", "blocks"),
    "model.user_attention": ("causal", "bidirectional"), "training.positions": ("all", "last"),
    "training.negatives": ("scenario", "global"), "training.softmax": ("sampled", "full"), "training.sampling": ("natural", "balanced"),
    "training.window_weights": ("target", "row"), "serving.merge": ("max", "interleave"),
    "serving.exclude_seen": ("all", "window", "none"), "index.index_type": INDEX_TYPES,
    "feast.state_engine": ("duckdb", "spark", "python"), "training.split": ("last", "time"),
}


def check(config: RecConfig) -> None:
    """Raise ConfigError naming the field and what is allowed when a cross-field rule is broken."""
    if len(set(config.scenarios)) != len(config.scenarios) or not config.scenarios:
        raise ConfigError("scenarios must be a non-empty list of distinct names")
    for name in config.scenarios:
        if not name.isidentifier():
            raise ConfigError(f"scenario name {name!r} must be a Python identifier (letters, digits, _)")
    if config.model.embedding_dim <= 0 or config.model.interests_per_scenario <= 0:
        raise ConfigError("model.embedding_dim and model.interests_per_scenario must be positive")
    if config.model.user_dim % config.model.user_heads:
        raise ConfigError("model.user_dim must be divisible by model.user_heads")
    if config.serving.max_k <= 0 or not 0 < config.serving.default_k <= config.serving.max_k:
        raise ConfigError("serving.default_k must be in 1..serving.max_k")
    for path, allowed in CHOICES.items():
        section, name = path.split(".")
        if (value := getattr(getattr(config, section), name)) not in allowed:
            raise ConfigError(f"{path} must be one of {list(allowed)}, got {value!r}")
    if config.model.user_attention == "causal" and config.model.mixing == "blocks":
        raise ConfigError("model.mixing: blocks needs model.user_attention: bidirectional and training.positions: last "
                          "(a causal tower reads events in time order)")
    if config.training.positions == "all" and (config.model.user_attention != "causal" or config.model.mixing != "interleaved"
                                             or config.model.user_llm):
        raise ConfigError("training.positions: all needs model.user_attention: causal, model.mixing: interleaved and the "
                          "built-in user encoder (no model.user_llm); set training.positions: last otherwise")
    if config.training.softmax == "full" and config.model.item_finetune != "frozen":
        raise ConfigError("training.softmax: full needs model.item_finetune: frozen (it encodes every item each step)")
    if not (config.model.use_text or config.model.use_item_ids):
        raise ConfigError("the item tower needs model.use_text or model.use_item_ids (or both)")
    if config.training.only_scenario and config.training.only_scenario not in config.scenarios:
        raise ConfigError(f"training.only_scenario {config.training.only_scenario!r} is not one of {config.scenarios}")
    if not 0.0 <= config.training.min_context <= 1.0:
        raise ConfigError(f"training.min_context must be a fraction of the window in 0..1, got {config.training.min_context}")
    if config.training.target_window < 1:
        raise ConfigError("training.target_window must be at least 1 (the next target)")
    if not set(config.negative_actions) <= set(config.actions):
        raise ConfigError(f"negative_actions {config.negative_actions} must be among actions {config.actions}")
    if not 0 < config.training.split_fraction < 0.5:
        raise ConfigError(f"training.split_fraction must be in (0, 0.5), got {config.training.split_fraction}")
    if config.demo.training_minutes < 0:
        raise ConfigError(f"demo.training_minutes must be >= 0 (0: no budget), got {config.demo.training_minutes}")
    if config.model.item_id_init_std <= 0:
        raise ConfigError(f"model.item_id_init_std must be positive, got {config.model.item_id_init_std}")
    if not 1 <= config.model.interests_per_scenario <= 6:
        raise ConfigError("model.interests_per_scenario must be 1..6 (clusters are matched to interests exactly)")
    if config.serving.workers < 1:
        raise ConfigError("serving.workers must be at least 1")
    if min(config.serving.batch_slots, config.serving.batch_max_size, config.serving.batch_max_latency_ms,
           config.serving.torch_threads) < 1:
        raise ConfigError("serving.batch_slots, batch_max_size, batch_max_latency_ms and torch_threads must be at least 1")
    if config.serving.event_id_retention_h <= 0 or config.serving.max_clock_skew_s < 0:
        raise ConfigError("serving.event_id_retention_h must be positive and serving.max_clock_skew_s >= 0")
    if config.serving.workers > 1 and "://" not in config.index.uri:
        raise ConfigError("serving.workers > 1 needs a Milvus server: a Milvus Lite file opens in one process only; run "
                          "`recplugin milvus-server` and set index.uri: http://127.0.0.1:19530 (or use Milvus standalone)")
    if min(config.index.ivf_nprobe, config.index.insert_batch, config.index.hnsw_m, config.index.hnsw_ef, config.index.keep_versions) < 1:
        raise ConfigError("index.ivf_nprobe, insert_batch, hnsw_m, hnsw_ef and keep_versions must be positive")
    if not re.fullmatch(r"[A-Za-z0-9_]*", config.feast.prefix):
        raise ConfigError(f"feast.prefix may hold letters, digits and _ only, got {config.feast.prefix!r}")
    if config.feast.online_timeout_s <= 0:
        raise ConfigError("feast.online_timeout_s must be positive")
    if config.index.rpc_timeout_s <= 0 or config.serving.reload_interval_s <= 0 or config.index.drop_grace_s < 0:
        raise ConfigError("index.rpc_timeout_s and serving.reload_interval_s must be positive, index.drop_grace_s >= 0")
