"""Serving latency and throughput over HTTP, next to the cost of each stage alone.

    make demo                                   # builds .recplugin/demo (or point --workdir at any built pipeline)
    python benchmarks/serving/run.py --workdir .recplugin/demo --label demo-3k

Loopback only; every load level is bounded in request count and in time. Writes
benchmarks/results/serving_<label>.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import requests

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

    def worker() -> None:
        nonlocal errors
        session = requests.Session()
        for index in counter:
            if time.monotonic() > deadline:
                return
            body = bodies[index % len(bodies)]
            start = time.perf_counter()
            try:
                ok = session.post(f"{base}/recommend", json=body, timeout=30).status_code == 200
            except requests.RequestException:
                ok = False
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
            search_interests(engine.milvus, engine.collection, interests, 20, config.scenarios[1], seen)
            timings["milvus_search"].append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            scores = (engine.model.item_vectors @ interests.T).max(axis=1)
            np.argpartition(-scores, 20)[:20]
            timings["numpy_exact_topk"].append((time.perf_counter() - start) * 1000)
        return {name: statistics.median(values) for name, values in timings.items()}
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=".recplugin/demo")
    parser.add_argument("--label", default="demo")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--requests", type=int, default=600, help="at most this many requests per level")
    parser.add_argument("--seconds", type=float, default=60, help="at most this long per level")
    args = parser.parse_args()
    config = load_config(Path(args.workdir) / pipeline.CONFIG_FILE)
    events = pd.read_parquet(config.events_path, columns=["user_id"])
    users = [int(u) for u in events["user_id"].drop_duplicates().sample(200, random_state=0, replace=True)]
    bodies = [{"user_id": u, "scenario": config.scenarios[i % len(config.scenarios)], "k": 20} for i, u in enumerate(users)]
    num_items = len(pd.read_parquet(config.catalog_path, columns=["item_id"]))
    port = pipeline.free_port()
    base = f"http://127.0.0.1:{port}"
    process = pipeline.start_service(config, port, log_path=config.path("bench_service.log"))
    try:
        pipeline.wait_ready(base, process)
        drive(base, bodies, 4, 40, 30)  # warm-up
        levels = [drive(base, bodies, c, args.requests, args.seconds) for c in args.concurrency]
    finally:
        pipeline.stop_service(process)
    stages = time_stages(config, users, repeats=100)
    in_path = stages["feast_online_read"] + stages["user_tower"] + stages["milvus_search"]
    meta = {"command": f"python benchmarks/serving/run.py --workdir {args.workdir} --label {args.label}",
            "items": num_items, "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d"), "service_overhead_ratio_c1": levels[0]["p50_ms"] / in_path}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"serving_{args.label}.json").write_text(json.dumps({"meta": meta, "levels": levels, "stages_ms": stages}, indent=2))
    lines = [f"# Serving: {num_items:,} items, embedded defaults\n", f"`{meta['command']}` on {meta['machine']}, {meta['date']}.\n",
             "| concurrency | requests | errors | p50 ms | p95 ms | p99 ms | req/s |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['concurrency']} | {r['requests']} | {r['errors']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} "
              f"| {r['throughput_rps']:.1f} |" for r in levels]
    lines += ["", "| stage alone (median of 100) | ms |", "|---|---|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in stages.items()]
    lines += ["", f"Service p50 at concurrency 1 / (Feast read + user tower + Milvus search) = **{meta['service_overhead_ratio_c1']:.2f}x**"]
    (RESULTS / f"serving_{args.label}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
