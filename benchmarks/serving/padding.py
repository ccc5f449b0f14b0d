"""A served model's catalogue padded to N items with synthetic vectors, for serving benchmarks at catalogue sizes a
workdir does not have (each extra item is a real item's vector plus small noise, renormalised)."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recplugin import pipeline
from recplugin.models.artifact import ITEM_IDS
from recplugin.registry.models import ModelRegistry

PADDED_SCENARIOS = "bench_scenarios.json"


def feed_eligibility(config, model) -> np.ndarray:
    """Which of the model's items the benchmark's scenario (the second one) may show: the catalogue, or the padded copy's file."""
    padded = Path(model.directory) / PADDED_SCENARIOS
    if padded.exists():
        scenarios = json.loads(padded.read_text())
    else:
        catalog = pd.read_parquet(config.catalog_path, columns=["item_id", "scenarios"]).set_index("item_id").reindex(model.item_ids)
        scenarios = [list(s) if isinstance(s, (list, np.ndarray)) else list(config.scenarios) for s in catalog["scenarios"]]
    return np.array([config.scenarios[1] in s for s in scenarios])




def padded_version(config, items: int) -> str:
    """Register and index a copy of the serving model with its catalogue padded to `items`; return its version."""
    from recplugin.index import collections, milvus
    from recplugin.models.artifact import ITEM_VECTORS, META

    registry = ModelRegistry(config.registry_sqlalchemy_url)
    base = registry.latest(status="serving")
    source = Path(base.artifact_uri)
    ids, vectors = np.load(source / ITEM_IDS), np.load(source / ITEM_VECTORS)
    if items <= len(ids):
        return base.version
    version = f"{base.version.split('_x')[0]}_x{items}"
    target = source.parent / version
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    rng = np.random.default_rng(items)
    extra = items - len(ids)
    noisy = vectors[rng.integers(0, len(ids), extra)] + 0.05 * rng.normal(size=(extra, vectors.shape[1])).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    all_ids = np.concatenate([ids, ids.max() + 1 + np.arange(extra)]).astype(np.int64)
    all_vectors = np.concatenate([vectors, noisy]).astype(np.float32)
    np.save(target / ITEM_IDS, all_ids)
    np.save(target / ITEM_VECTORS, all_vectors)
    meta = json.loads((target / META).read_text())
    (target / META).write_text(json.dumps({**meta, "version": version, "num_items": items}))
    catalog = pd.read_parquet(config.catalog_path, columns=["item_id", "category", "scenarios"]).set_index("item_id").reindex(ids)
    scenarios = [list(s) if isinstance(s, (list, np.ndarray)) else list(config.scenarios) for s in catalog["scenarios"]]
    scenarios += [scenarios[i] for i in rng.integers(0, len(ids), extra)]
    (target / PADDED_SCENARIOS).write_text(json.dumps(scenarios))
    if version not in {entry.version for entry in registry.list()}:
        registry.register(version, base.config, {}, str(target))
    client = milvus.connect(config.milvus_uri)
    try:
        started = time.perf_counter()
        name = collections.build_collection(client, config.index, version, all_ids, all_vectors, [""] * items, scenarios,
                                       scenario_names=list(config.scenarios))
        print(f"indexed {items:,} items in {time.perf_counter() - started:.1f} s", flush=True)
        registry.mark_indexed(version, name)
        pipeline.serve_collection(client, registry, config, version, name)
        print(f"index type: {collections.collection_index(client, name)}", flush=True)
    finally:
        milvus.disconnect(client, config.milvus_uri)
    return version


def restore_serving(config, version: str) -> None:
    """Serve `version` again (its collection is still there)."""
    from recplugin.index import milvus
    registry = ModelRegistry(config.registry_sqlalchemy_url)
    client = milvus.connect(config.milvus_uri)
    try:
        pipeline.serve_collection(client, registry, config, version, registry.get(version).collection)
    finally:
        milvus.disconnect(client, config.milvus_uri)
