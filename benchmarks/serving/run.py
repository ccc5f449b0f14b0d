"""Serving latency and throughput over HTTP, next to the cost of each stage alone.

    make demo                                   # builds .recplugin/demo (or point --workdir at any built pipeline)
    python benchmarks/serving/run.py --workdir .recplugin/demo --items 100000 1000000 --label embedded

`--items N` serves a copy of the workdir's serving model whose catalogue is padded to N items with synthetic
vectors (each a real item's vector plus small noise, renormalised), indexed in Milvus like any version: latency
depends on the index size, not on what the extra items are. The original version is serving again afterwards.
Loopback only; every load level is bounded in request count and in time. Writes
benchmarks/results/serving_<label>_<items>.{json,md}.
"""
from __future__ import annotations

import argparse
import http.client
import json
import platform
import shutil
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recplugin import pipeline
from recplugin.config import load_config

RESULTS = Path(__file__).resolve().parents[1] / "results"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def drive(base: str, bodies: list[dict], concurrency: int, requests_total: int, seconds: float) -> dict:
    """Send up to `requests_total` requests from `concurrency` threads for at most `seconds`."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(requests_total))
    deadline = time.monotonic() + seconds

    host, port = base.removeprefix("http://").split(":")
    payloads = [json.dumps(body).encode() for body in bodies]

    def worker() -> None:
        nonlocal errors
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        for index in counter:
            if time.monotonic() > deadline:
                return
            start = time.perf_counter()
            try:
                connection.request("POST", "/recommend", payloads[index % len(payloads)], {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection(host, int(port), timeout=30)
            elapsed = (time.perf_counter() - start) * 1000
            with lock:
                latencies.append(elapsed)
                errors += 0 if ok else 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors, "seconds": wall,
            "throughput_rps": len(latencies) / wall, "p50_ms": percentile(latencies, 50),
            "p95_ms": percentile(latencies, 95), "p99_ms": percentile(latencies, 99)}


def time_stages(config, users: list[int], repeats: int) -> dict:
    """Median milliseconds of each stage alone, in this process (the service must be stopped: Milvus Lite locks)."""
    from recplugin.index.milvus import search_interests
    from recplugin.models.inputs import NO_QUERY, ScenarioEvents, build_batch
    from recplugin.serving.recommender import Recommender

    engine = Recommender(config)
    try:
        timings: dict[str, list[float]] = {"feast_online_read": [], "user_tower": [], "milvus_search": [], "numpy_exact_topk": []}
        for index in range(repeats):
            user = users[index % len(users)]
            start = time.perf_counter()
            state = engine.user_state(user)
            timings["feast_online_read"].append((time.perf_counter() - start) * 1000)
            histories = [ScenarioEvents(h.item_ids, h.actions, h.timestamps) for h in state.histories.values()]
            batch = build_batch([histories], [1], [NO_QUERY], config.model.max_sequence_length, engine.model.id_to_row)
            start = time.perf_counter()
            interests = engine.model.user_vectors(batch, [None])[0]
            timings["user_tower"].append((time.perf_counter() - start) * 1000)
            seen = sorted({int(i) for h in state.histories.values() for i in h.item_ids})
            start = time.perf_counter()
            search_interests(engine.milvus, engine.collection, interests, 20, config.scenarios[1], seen, config.index.ivf_nprobe)
            timings["milvus_search"].append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            scores = (engine.model.item_vectors @ interests.T).max(axis=1)
            np.argpartition(-scores, 20)[:20]
            timings["numpy_exact_topk"].append((time.perf_counter() - start) * 1000)
        return {name: statistics.median(values) for name, values in timings.items()}
    finally:
        engine.close()


def padded_version(config, items: int) -> str:
    """Register and index a copy of the serving model with its catalogue padded to `items`; return its version."""
    from recplugin.index import milvus
    from recplugin.models.artifact import ITEM_IDS, ITEM_VECTORS, META
    from recplugin.registry.models import ModelRegistry

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
    if version not in {entry.version for entry in registry.list()}:
        registry.register(version, base.config, {}, str(target))
    client = milvus.connect(config.milvus_uri)
    try:
        started = time.perf_counter()
        name = milvus.build_collection(client, config.index, version, all_ids, all_vectors, [""] * items, scenarios,
                                       scenario_names=list(config.scenarios))
        print(f"indexed {items:,} items in {time.perf_counter() - started:.1f} s", flush=True)
        registry.mark_indexed(version, name)
        pipeline.serve_collection(client, registry, config, version, name)
        print(f"index type: {client.describe_index(name, client.list_indexes(name)[0])['index_type']}", flush=True)
    finally:
        milvus.disconnect(client, config.milvus_uri)
    return version


def restore_serving(config, version: str) -> None:
    """Serve `version` again (its collection is still there)."""
    from recplugin.index import milvus
    from recplugin.registry.models import ModelRegistry

    registry = ModelRegistry(config.registry_sqlalchemy_url)
    client = milvus.connect(config.milvus_uri)
    try:
        pipeline.serve_collection(client, registry, config, version, registry.get(version).collection)
    finally:
        milvus.disconnect(client, config.milvus_uri)


def bench_one(config, args, items: int, users: list[int], bodies: list[dict]) -> None:
    """Serve the catalogue padded to `items`, drive every level, time the stages, write the report."""
    version = padded_version(config, items)
    port = pipeline.free_port()
    base = f"http://127.0.0.1:{port}"
    process = pipeline.start_service(config, port, log_path=config.path("bench_service.log"))
    try:
        pipeline.wait_ready(base, process)
        drive(base, bodies, 4, 200, 30)  # warm-up, and BentoML's batching dispatcher trains its latency model
        levels = [drive(base, bodies, c, args.requests, args.seconds) for c in args.concurrency]
    finally:
        pipeline.stop_service(process)
    stages = time_stages(config, users, repeats=100)
    in_path = stages["feast_online_read"] + stages["user_tower"] + stages["milvus_search"]
    label = f"{args.label}_{items}"
    meta = {"command": f"python benchmarks/serving/run.py --workdir {args.workdir} --items {items} --label {args.label}",
            "items": items, "model_version": version, "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d"), "online_store": config.feast.store_yaml, "milvus": config.index.uri,
            "index": "FLAT" if items < config.index.flat_index_below else f"IVF_FLAT nprobe {config.index.ivf_nprobe}",
            "service_overhead_ratio_c1": levels[0]["p50_ms"] / in_path}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"serving_{label}.json").write_text(json.dumps({"meta": meta, "levels": levels, "stages_ms": stages}, indent=2))
    lines = [f"# Serving: {items:,} items ({args.label})\n", f"`{meta['command']}` on {meta['machine']}, {meta['date']}; "
             f"Feast store file {meta['online_store']}, Milvus {meta['milvus']}, index {meta['index']}.\n",
             "| concurrency | requests | errors | p50 ms | p95 ms | p99 ms | req/s |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['concurrency']} | {r['requests']} | {r['errors']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} "
              f"| {r['throughput_rps']:.1f} |" for r in levels]
    lines += ["", "| stage alone (median of 100) | ms |", "|---|---|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in stages.items()]
    lines += ["", f"Service p50 at concurrency 1 / (Feast read + user tower + Milvus search) = **{meta['service_overhead_ratio_c1']:.2f}x**"]
    (RESULTS / f"serving_{label}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=".recplugin/demo")
    parser.add_argument("--label", default="embedded")
    parser.add_argument("--items", type=int, nargs="+", default=[0], help="catalogue sizes (0: the workdir's own)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--requests", type=int, default=3000, help="at most this many requests per level")
    parser.add_argument("--seconds", type=float, default=30, help="at most this long per level")
    args = parser.parse_args()
    config = load_config(Path(args.workdir) / pipeline.CONFIG_FILE)
    events = pd.read_parquet(config.events_path, columns=["user_id"])
    users = [int(u) for u in events["user_id"].drop_duplicates().sample(200, random_state=0, replace=True)]
    bodies = [{"user_id": u, "scenario": config.scenarios[i % len(config.scenarios)], "k": 20} for i, u in enumerate(users)]
    from recplugin.registry.models import ModelRegistry

    original = ModelRegistry(config.registry_sqlalchemy_url).latest(status="serving").version
    server = None
    if config.index.uri.startswith("http://127.0.0.1:"):  # the workdir's Milvus Lite file, served to every worker
        file_config = pipeline.with_overrides(config, index={"uri": "milvus.db"}, serving={"workers": 1})
        server = pipeline.start_milvus_server(file_config, config.index.uri.removeprefix("http://"))
    try:
        for items in args.items:
            bench_one(config, args, items, users, bodies)
    finally:
        restore_serving(config, original)
        if server is not None:
            pipeline.stop_service(server)


if __name__ == "__main__":
    main()
