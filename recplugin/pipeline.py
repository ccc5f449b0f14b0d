"""The pipeline stages, one function each: events -> Feast -> snapshot -> trainer -> registry -> Milvus -> service."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import requests

from recplugin.config import RecConfig, from_dict, load_config, save_config, to_dict, with_overrides  # noqa: F401
from recplugin.data.generator import generate as generate_dataset
from recplugin.features import store as feast_glue
from recplugin.index.standalone import free_port  # noqa: F401  (re-exported for callers)
from recplugin.registry.models import ModelRegistry, UnknownVersion, confined_artifact

CONFIG_FILE = "recplugin.yaml"


def workdir_config_path(config: RecConfig) -> Path:
    """The resolved config saved in the workdir, which the service process reads."""
    return config.path(CONFIG_FILE)


def generate(config: RecConfig, progress: bool = True) -> tuple[Path, Path]:
    """Write the generated items and events into the data directory."""
    return generate_dataset(config.generator, config.data_dir, progress=progress)


def load_dataset(config: RecConfig, name: str, folder: Path) -> tuple[Path, Path]:
    """Convert a public dataset (ml-1m or amazon-food-kitchen) into the data directory's events and items."""
    from recplugin.data import loaders
    from recplugin.data.schema import check_events, check_items, write_events, write_items

    load = {"ml-1m": loaders.load_movielens, "amazon-food-kitchen": loaders.load_amazon_food_kitchen}.get(name)
    if load is None:
        raise ValueError(f"unknown dataset {name!r}; allowed: ml-1m, amazon-food-kitchen")
    data = load(folder)
    if config.scenarios != data.scenarios:
        raise ValueError(f"{name} uses scenarios {data.scenarios}; set `scenarios: {data.scenarios}` in the config")
    config.data_dir.mkdir(parents=True, exist_ok=True)
    write_items(check_items(data.items), config.catalog_path)
    write_events(check_events(data.events, config.scenarios, config.actions), config.events_path)
    config.holdout_path.unlink(missing_ok=True)
    if data.holdout is not None:  # the dataset's own evaluation users (e.g. Amazon's valid.txt / test.txt)
        data.holdout.to_parquet(config.holdout_path, index=False)
    return config.catalog_path, config.events_path


def load_events(config: RecConfig, events: str, items: str) -> tuple[Path, Path]:
    """A team's own event and item tables (config `source` maps their columns) into the data directory; on any error
    nothing is written."""
    from recplugin.data import tables
    from recplugin.data.schema import SchemaError, check_events, check_items, write_events, write_items

    source = config.source
    tables.check_header(items, source.items, "items")
    tables.check_header(events, source.events, "events")
    raw_items = tables.read_table(items)
    catalog = check_items(tables.map_items(raw_items, source.items, config.scenarios, source.string_ids))
    behaviour = check_events(tables.map_events(tables.read_table(events), source.events, config.scenarios, config.actions,
                                               source.string_ids), config.scenarios, config.actions)
    holdout = tables.map_holdout(tables.read_table(source.holdout), source.events.user, source.string_ids) \
        if source.holdout else None
    unknown = ~behaviour["item_id"].isin(catalog["item_id"])
    if unknown.any():
        row = int(unknown.idxmax())
        raise SchemaError(f"events: row {row} refers to item {behaviour['item_id'][row]} ({source.events.item!r}), which is "
                          f"not in the item table; {int(unknown.sum())} event(s) do")
    config.data_dir.mkdir(parents=True, exist_ok=True)
    staged = {config.catalog_path: config.data_dir / ".items.parquet.partial", config.events_path: config.data_dir / ".events.parquet.partial"}
    write_items(catalog, staged[config.catalog_path])
    write_events(behaviour.sort_values("event_timestamp", kind="stable"), staged[config.events_path])
    for final, partial in staged.items():
        os.replace(partial, final)
    config.holdout_path.unlink(missing_ok=True)
    if holdout is not None:
        holdout.to_parquet(config.holdout_path, index=False)
    if source.string_ids:  # answers name items by the team's own ids again
        tables.write_item_keys(raw_items[source.items.item], catalog["item_id"], config.data_dir)
    return config.catalog_path, config.events_path


def apply(config: RecConfig, progress: bool = True) -> int:
    """Fold the items added while serving into the catalogue, build the user-state source from events (and live ones),
    and register every Feast object; returns state rows."""
    from recplugin.data.live_items import fold_live_items

    if config.catalog_path.exists():
        fold_live_items(config.data_dir, config.catalog_path)
    rows = feast_glue.prepare_sources(config, progress=progress)
    feast_glue.apply(config)
    save_config(config, workdir_config_path(config))
    return rows


def materialize(config: RecConfig) -> None:
    """Load the latest user and item features into the online store."""
    feast_glue.materialize(config)


def build_training_set(config: RecConfig) -> Path:
    """Write the point-in-time-correct training snapshot."""
    return feast_glue.build_training_set(config)


def train(config: RecConfig, progress: bool = True, warm_start_from: Path | None = None):
    """Train on the snapshot (from a trained artifact's weights with `warm_start_from`), write the artifact and register
    the version."""
    from recplugin.training.train import train as train_towers

    result = train_towers(config, config.snapshot_path, config.catalog_path, config.models_dir, progress=progress,
                          warm_start_from=warm_start_from)
    ModelRegistry(config.registry_sqlalchemy_url).register(result.version, to_dict(config), result.metrics, str(result.artifact_dir))
    return result


def register_artifact(config: RecConfig, artifact_dir: Path) -> str:
    """Register an artifact trained on another box (copied under the artifact root); its scenarios and actions must
    match this deployment's."""
    import json

    from recplugin.models.artifact import CONFIG, META, METRICS

    if not (artifact_dir / META).exists():
        raise FileNotFoundError(f"{artifact_dir} is not a model artifact (no {META})")
    trained = load_config(artifact_dir / CONFIG)
    if trained.scenarios != config.scenarios or trained.actions != config.actions:
        raise ValueError(f"artifact scenarios/actions {trained.scenarios}/{trained.actions} differ from the config's "
                         f"{config.scenarios}/{config.actions}")
    version = json.loads((artifact_dir / META).read_text())["version"]
    metrics = json.loads((artifact_dir / METRICS).read_text())
    stored = config.models_dir / version
    if artifact_dir.resolve() != stored.resolve():  # artifacts are only ever loaded from under the artifact root
        if stored.exists():
            raise ValueError(f"{stored} already exists: version {version} is already in the artifact root")
        shutil.copytree(artifact_dir, stored, symlinks=False)
    ModelRegistry(config.registry_sqlalchemy_url).register(version, to_dict(trained), metrics, str(stored.resolve()))
    return version


class WorseThanPopularity(ValueError):
    """The version did not beat popularity on validation; `index` serves it only when forced."""


def index(config: RecConfig, version: str | None = None, progress: bool = True, force: bool = False,
          serve: bool = True) -> str:
    """Index a version's item vectors in a new collection, publish them to Feast, make it the served one, then (after
    `index.drop_grace_s`, while running services switch over) drop the collections it replaced (never a rollout's
    candidate). A version that did not beat popularity on validation is refused unless `force`. Without `serve`, only
    the collection is built: a candidate for `rollout`."""
    import numpy as np

    from recplugin.features.online import forget_trained_new_items
    from recplugin.index import collections
    from recplugin.index.milvus import connect, disconnect
    from recplugin.models.artifact import ITEM_IDS, ITEM_VECTORS
    from recplugin.training.verdict import load_verdict

    registry = ModelRegistry(config.registry_sqlalchemy_url)
    entry = registry.get(version) if version else registry.latest()
    artifact = confined_artifact(config.models_dir, entry.artifact_uri)
    verdict = load_verdict(artifact)
    if verdict is not None and not verdict.beats_popularity and not force:
        raise WorseThanPopularity(
            f"version {entry.version} does not beat popularity on validation (NDCG@10 {verdict.model_ndcg:.4f} vs "
            f"{verdict.popularity_ndcg:.4f}); nothing was indexed. Serve it anyway with --force")
    item_ids, vectors = np.load(artifact / ITEM_IDS), np.load(artifact / ITEM_VECTORS)
    catalog = pd.read_parquet(config.catalog_path, columns=["item_id", "category", "scenarios"]).set_index("item_id")
    catalog = catalog.reindex(item_ids)
    client = connect(config.milvus_uri, timeout=config.index.rpc_timeout_s)
    try:
        name = collections.build_collection(
            client, config.index, entry.version, item_ids, vectors, catalog["category"].fillna("").tolist(),
            [list(s) if isinstance(s, (list, np.ndarray)) else list(config.scenarios) for s in catalog["scenarios"]],
            progress=progress, scenario_names=list(config.scenarios))
        registry.mark_indexed(entry.version, name)
        if serve:
            feast_glue.publish_item_embeddings(config, item_ids, vectors, entry.version)
            serve_collection(client, registry, config, entry.version, name)
            previous = [row.collection for row in registry.list() if row.collection and row.collection != name]
            rollout = registry.rollout()
            keep = set(previous[:config.index.keep_versions - 1]) | ({registry.get(rollout.version).collection} if rollout else set())
            dropped = collections.retire_collections(client, config.index, name, keep=keep, grace_s=config.index.drop_grace_s)
            registry.forget_collections(dropped)
            forget_trained_new_items(config, [np.load(confined_artifact(config.models_dir, row.artifact_uri) / ITEM_IDS)
                                              for row in registry.list() if row.collection])
    finally:
        disconnect(client, config.milvus_uri)
    return name


def promote(config: RecConfig, version: str) -> str:
    """Serve an indexed version whose collection still exists (`index.keep_versions`); every worker follows within
    `serving.reload_interval_s`. Returns its collection."""
    from recplugin.index.milvus import connect, disconnect

    registry = ModelRegistry(config.registry_sqlalchemy_url)
    entry = registry.get(version)
    client = connect(config.milvus_uri, timeout=config.index.rpc_timeout_s)
    try:
        if not entry.collection or not client.has_collection(entry.collection):
            raise UnknownVersion(f"version {version} has no Milvus collection any more (index.keep_versions); "
                                 f"run `recplugin index --version {version}` to serve it")
        serve_collection(client, registry, config, version, entry.collection)
        rollout = registry.rollout()
        if rollout is not None and rollout.version == version:  # the candidate won: its rollout is over
            registry.set_rollout(None)
    finally:
        disconnect(client, config.milvus_uri)
    return entry.collection


def rollout(config: RecConfig, version: str, share: float) -> None:
    """Answer `share` % of users (a stable hash of their id) with an indexed `version` beside the serving one; every
    worker follows within `serving.reload_interval_s`. A share of 0 ends the rollout."""
    from recplugin.index.milvus import connect, disconnect

    if not 0 <= share <= 100:
        raise ValueError(f"share {share} is not a percentage; allowed: 0..100")
    registry = ModelRegistry(config.registry_sqlalchemy_url)
    entry = registry.get(version)
    client = connect(config.milvus_uri, timeout=config.index.rpc_timeout_s)
    try:
        if share > 0 and (not entry.collection or not client.has_collection(entry.collection)):
            raise UnknownVersion(f"version {version} has no Milvus collection; index it first: "
                                 f"`recplugin index --version {version} --candidate`")
    finally:
        disconnect(client, config.milvus_uri)
    registry.set_rollout(version, share)


def rollback(config: RecConfig) -> str:
    """Serve again the version that served before the current one (the registry's serving history); its version."""
    registry = ModelRegistry(config.registry_sqlalchemy_url)
    current = registry.latest(status="serving").version
    earlier = [version for version in registry.serving_history() if version != current]
    if not earlier:
        raise UnknownVersion(f"no version served before {current}: nothing to roll back to")
    promote(config, earlier[0])
    return earlier[0]


def serve_collection(client, registry: ModelRegistry, config: RecConfig, version: str, collection: str) -> None:
    """Make a complete collection the served one: move the alias where Milvus has aliases, then the registry row."""
    from recplugin.index import collections

    if collections.supports_aliases(client):
        collections.point_alias(client, config.index.alias, collection)
    registry.mark_serving(version)


def start_milvus_server(config: RecConfig, address: str, timeout: float = 60.0) -> subprocess.Popen:
    """Serve the workdir's Milvus Lite file over gRPC at host:port (`recplugin milvus-server`) once it accepts connections."""
    path = save_config(config, config.path(f"milvus-server-{address.replace(':', '-')}.yaml"))
    cli = shutil.which("recplugin", path=str(Path(sys.executable).parent)) or "recplugin"
    process = subprocess.Popen([cli, "milvus-server", "-c", str(path), "--address", address],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"recplugin milvus-server exited with code {process.returncode} (is the file in use?)")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.3)
    stop_service(process)
    raise TimeoutError(f"Milvus Lite did not accept connections at {address} within {timeout:.0f} s")


def start_service(config: RecConfig, port: int, log_path: Path | None = None) -> subprocess.Popen:
    """Start `bentoml serve` for the recplugin service, on exactly this config, as a subprocess on the loopback interface."""
    config_path = save_config(config, config.path(f"service-{port}.yaml"))
    # a BentoML home of its own: `bentoml serve` empties its home's Prometheus directory at start, which zeroed the /metrics
    # of every other service on the host that shared it
    env = {**os.environ, "RECPLUGIN_CONFIG": str(config_path), "BENTOML_DO_NOT_TRACK": "True",
           "BENTOML_HOME": str(config.path(f"service-{port}.bentoml"))}
    bentoml_cli = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or "bentoml"
    log = open(log_path, "a") if log_path else None  # None: the service logs to this process's stdout/stderr
    return subprocess.Popen([bentoml_cli, "serve", "recplugin.serving.service:RecPlugin", "--host", config.serving.host,
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT if log else None,
                            cwd=str(config.path(".")))


def wait_ready(base_url: str, process: subprocess.Popen, timeout: float = 180.0, report_every_s: float = 0.0) -> None:
    """Block until /readyz answers 200, or fail with the reason; with `report_every_s`, print a line that often while
    the service loads."""
    began = time.monotonic()
    deadline, next_report = began + timeout, began + report_every_s
    state = "starting (importing BentoML, torch, Feast)"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with code {process.returncode} before it was ready")
        try:
            answer = requests.get(f"{base_url}/readyz", timeout=5)
            if answer.status_code == 200:
                return
            state = f"loading (/readyz {answer.status_code})"
        except requests.RequestException:
            pass
        if report_every_s and time.monotonic() >= next_report:
            print(f"waiting for the service: {state}, {time.monotonic() - began:.0f} s", flush=True)
            next_report += report_every_s
        time.sleep(1.0)
    raise TimeoutError(f"the service at {base_url} was not ready within {timeout:.0f} s")


def stop_service(process: subprocess.Popen) -> None:
    """Stop the service and its workers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
