"""Shared fixtures: tiny configs, and one real pipeline run (Feast, trainer, Milvus Lite) reused by integration tests."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from recplugin.config import RecConfig, from_dict

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
warnings.filterwarnings("ignore", category=DeprecationWarning)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def tiny_config(workdir: Path, **sections: dict) -> RecConfig:
    """A config small enough for tests; `sections` override whole sub-sections by key."""
    raw = {
        "workdir": str(workdir),
        "generator": {"num_users": 240, "num_items": 400, "events_per_user": 24, "seed": 3},
        "feast": {"history_length": 20, "project": "recplugin_test", "training_set_chunk_rows": 2000},  # several chunks
        "model": {"embedding_dim": 32, "user_dim": 32, "user_layers": 1, "max_sequence_length": 30,
                  "interests_per_scenario": 2},  # K=2: the multi-interest paths (merges, coverage, several vectors)
        "training": {"epochs": 6, "batch_size": 64, "learning_rate": 3e-3, "random_negatives": 128},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return from_dict(raw)


def tiny_qwen_folder(folder: Path) -> str:
    """A random-weight Qwen2 decoder with MiniLM's tokenizer, saved as a local model folder (the decoder-LLM path)."""
    import shutil

    import torch
    import transformers

    from recplugin.models.item_tower import resolve_encoder_path

    folder.mkdir(parents=True, exist_ok=True)
    minilm = resolve_encoder_path("default")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(f"{minilm}/{name}", folder / name)
    qwen = transformers.Qwen2Config(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    transformers.Qwen2Model(qwen).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory):
    """A real Milvus standalone for the session (the `milvus` package, loopback only, free ports, stopped at the end)."""
    import platform

    from recplugin.index import standalone

    try:
        standalone.executable()
    except standalone.StandaloneUnavailable as error:
        if platform.system() == "Linux" and platform.machine() == "x86_64":
            raise  # the dev extra installs it here: a missing server is a broken install, not a skip
        pytest.skip(f"no Milvus standalone wheel for {platform.system()} {platform.machine()}: {error}")
    server = standalone.start(tmp_path_factory.mktemp("milvus-standalone"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def milvus_server_uri(request: pytest.FixtureRequest) -> str:
    """The session's Milvus server; RECPLUGIN_TEST_MILVUS_URI points the tests at another one (e.g. Milvus 2.5 in Docker)."""
    return os.environ.get("RECPLUGIN_TEST_MILVUS_URI") or request.getfixturevalue("milvus_server").uri


@pytest.fixture
def config(tmp_path: Path) -> RecConfig:
    return tiny_config(tmp_path)


@dataclass
class BuiltPipeline:
    """A workdir where every offline stage has run for real."""

    config: RecConfig
    version: str
    collection: str
    metrics: dict


@pytest.fixture(scope="session")
def built_pipeline(tmp_path_factory: pytest.TempPathFactory) -> BuiltPipeline:
    from recplugin import pipeline

    config = tiny_config(tmp_path_factory.mktemp("pipeline"))
    pipeline.generate(config, progress=False)
    pipeline.apply(config, progress=False)
    pipeline.materialize(config)
    pipeline.build_training_set(config)
    result = pipeline.train(config, progress=False)
    collection = pipeline.index(config, progress=False)
    return BuiltPipeline(config, result.version, collection, result.metrics)


def served_copy(built: BuiltPipeline, workdir: Path, milvus_uri: str, production: bool = False, extra_events=None,
                **sections: dict) -> RecConfig:
    """The built pipeline's data and model in a workdir of its own, its Feast stores applied and materialised (Redis and
    PostgreSQL when `production`), its model registered in a fresh registry and indexed on the Milvus server (or a
    Milvus Lite file); `extra_events` (a frame in the events schema) join the copied events before `apply`."""
    import shutil
    import uuid

    from recplugin import pipeline
    from recplugin.config import to_dict

    raw = to_dict(built.config)
    tag = uuid.uuid4().hex[:10]
    raw.update(workdir=str(workdir), registry_url=f"sqlite:///{workdir / 'registry.db'}")
    raw["index"].update(uri=milvus_uri, collection_prefix=f"copy_{tag}", alias=f"copy_{tag}_current", drop_grace_s=0.0)
    raw["feast"].update(project=f"recplugin_{tag}")
    if production:
        raw["feast"].update(store_yaml="feature_store.production.yaml")
    for key, value in sections.items():
        raw[key] = {**raw[key], **value}
    config = from_dict(raw)
    config.data_dir.mkdir(parents=True)
    for name in ("items.parquet", "events.parquet"):
        shutil.copy(built.config.data_dir / name, config.data_dir / name)
    if extra_events is not None:
        import pandas as pd

        from recplugin.data.schema import write_events

        write_events(pd.concat([pd.read_parquet(config.events_path), extra_events], ignore_index=True), config.events_path)
    pipeline.apply(config, progress=False)
    pipeline.materialize(config)
    version = pipeline.register_artifact(config, built.config.models_dir / built.version)
    pipeline.index(config, version, progress=False)
    return config


def feast_states(online, user_ids: list[int]) -> list:
    """The users' states as Feast's own get_online_features gives them: what OnlineFeatures' direct read must equal."""
    from recplugin.features.history import UserState

    values = online.store.get_online_features(features=online.service, entity_rows=[{"user_id": u} for u in user_ids]).to_dict()
    scenarios, limit = online.config.scenarios, online.config.feast.history_length
    rows = [{name: column[index] for name, column in values.items()} for index in range(len(user_ids))]
    return [UserState.from_online(scenarios, limit, row) if any(row.get(f"{s}_count") is not None for s in scenarios) else None
            for row in rows]


def state_tuple(state) -> tuple | None:
    """A comparable form of a UserState (None stays None)."""
    if state is None:
        return None
    return (sorted(state.seen), [(name, list(h.item_ids), list(h.actions), list(h.timestamps), h.count)
                                 for name, h in state.histories.items()])


_EXIT_STATUS: list[int] = []


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave before interpreter finalisation, where duckdb's bindings (used by Feast) print pages of
    "nanobind: leaked instance" reports after pytest's summary line."""
    if _EXIT_STATUS:
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])
