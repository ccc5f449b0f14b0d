"""A Milvus *server*: FLAT, IVF_FLAT (nprobe sweep) and HNSW (ef sweep, ef >= k) at each catalogue size, with the service's
scenario filter and 2 interest vectors per call: build and load time, latency p50/p95, recall@100 against exact search.

    python benchmarks/milvus/server.py --sizes 100000 1000000            # starts a local Milvus standalone (`milvus` package)
    python benchmarks/milvus/server.py --uri http://milvus:19530 ...     # or measures a server you run
Writes benchmarks/results/milvus_server.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pymilvus import DataType, MilvusClient

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from recplugin.index import standalone  # noqa: E402
from recplugin.index.collections import ivf_lists, wait_for_index  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
K, DIM, ELIGIBLE = 100, 64, 0.6


def catalogue(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors (topics, like trained item vectors; n/200 centres) and a 60% scenario eligibility mask."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(max(50, n // 200), DIM)).astype(np.float32)
    vectors = centers[rng.integers(0, len(centers), n)] + 0.5 * rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, rng.random(n) < ELIGIBLE


def fill(client: MilvusClient, name: str, vectors: np.ndarray, eligible: np.ndarray) -> float:
    """Create the collection (no index yet), insert every row, flush; returns seconds."""
    if client.has_collection(name):
        client.drop_collection(name)
    schema = client.create_schema(auto_id=False)
    schema.add_field("item_id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("in_discovery", DataType.BOOL)
    client.create_collection(name, schema=schema)
    start = time.perf_counter()
    for first in range(0, len(vectors), 10_000):
        stop = min(len(vectors), first + 10_000)
        client.insert(name, [{"item_id": i, "vector": vectors[i].tolist(), "in_discovery": bool(eligible[i])}
                             for i in range(first, stop)])
    client.flush(name)
    return time.perf_counter() - start


def build_index(client: MilvusClient, name: str, index_type: str, params: dict) -> float:
    """Replace the vector index, wait until every row is indexed and the collection is loaded; returns seconds."""
    client.release_collection(name)
    for existing in client.list_indexes(name):
        client.drop_index(name, existing)
    start = time.perf_counter()
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type=index_type, metric_type="IP", params=params)
    client.create_index(name, index)
    wait_for_index(client, name, timeout_s=4 * 3600)
    client.load_collection(name)
    return time.perf_counter() - start


def measure(client: MilvusClient, name: str, vectors: np.ndarray, eligible: np.ndarray, params: dict,
            queries: int, seconds: float) -> dict:
    """Top-100 for 2 interest vectors per call with the filter: latency percentiles and recall@100 (exact numpy)."""
    rng = np.random.default_rng(1)
    latencies, recalls, short = [], [], 0
    deadline = time.monotonic() + seconds
    for query in range(queries):
        if query >= 10 and time.monotonic() > deadline:
            break
        interests = vectors[rng.integers(0, len(vectors), 2)] + 0.2 * rng.normal(size=(2, DIM)).astype(np.float32)
        interests /= np.linalg.norm(interests, axis=1, keepdims=True)
        start = time.perf_counter()
        hits = client.search(name, data=interests.tolist(), limit=K, filter="in_discovery == true",
                             search_params={"metric_type": "IP", "params": params})
        latencies.append((time.perf_counter() - start) * 1000)
        for vector, found in zip(interests, hits):
            scores = np.where(eligible, vectors @ vector, -np.inf)
            exact = set(np.argpartition(-scores, K)[:K].tolist())
            got = {int(h["id"]) for h in found}
            short += len(got) < K
            recalls.append(len(got & exact) / K)
    return {"queries": len(latencies), "p50_ms": float(np.percentile(latencies, 50)), "p95_ms": float(np.percentile(latencies, 95)),
            "recall_at_100": float(np.mean(recalls)), "short_lists": short}


def sweeps(n: int) -> list[tuple[str, dict, list[dict]]]:
    """(index type, build params, search-param sweep) at a catalogue size."""
    return [("FLAT", {}, [{}]),
            ("IVF_FLAT", {"nlist": ivf_lists(n)}, [{"nprobe": p} for p in (16, 32, 64, 128)]),
            ("HNSW", {"M": 16, "efConstruction": 200}, [{"ef": e} for e in (128, 256, 512, 1024)])]


def git_commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--uri", help="a running Milvus server (default: start a local standalone from the `milvus` package)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60, help="time limit per search configuration")
    parser.add_argument("--label", default="milvus_server")
    args = parser.parse_args()
    server = None if args.uri else standalone.start(Path(tempfile.mkdtemp(prefix="milvus-bench-")))
    uri = args.uri or server.uri
    client = MilvusClient(uri, timeout=60)
    rows = []
    try:
        version = client.get_server_version()
        for n in args.sizes:
            vectors, eligible = catalogue(n)
            name = f"bench_{n}"
            insert_s = fill(client, name, vectors, eligible)
            print(f"{n:,} items inserted and flushed in {insert_s:.1f} s", flush=True)
            for index_type, build, searches in sweeps(n):
                build_s = build_index(client, name, index_type, build)
                print(f"  {index_type} {build} built and loaded in {build_s:.1f} s", flush=True)
                for params in searches:
                    row = {"items": n, "index": index_type, "build": build, "search": params, "insert_s": insert_s,
                           "build_load_s": build_s, **measure(client, name, vectors, eligible, params, args.queries, args.seconds)}
                    rows.append(row)
                    print("   ", json.dumps(row), flush=True)
            client.drop_collection(name)
    finally:
        client.close()
        if server:
            server.stop()
    meta = {"command": "python benchmarks/milvus/server.py " + " ".join(sys.argv[1:]), "git_commit": git_commit(),
            "milvus": version, "server": args.uri or "local standalone from the `milvus` package (started by the script)",
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}",
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "query": f"2 interest vectors per call, top-{K}, filter in_discovery == true ({ELIGIBLE:.0%} eligible), {DIM}-d IP, "
                     "clustered vectors (n/200 centres), 10k-row inserts then flush; recall against exact numpy search with "
                     f"the same filter; at most {args.queries} queries or {args.seconds:.0f} s per row"}
    write(rows, meta, args.label)


def write(rows: list[dict], meta: dict, label: str) -> None:
    """JSON with everything, markdown table for people."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{label}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# Milvus server: index choice by catalogue size\n\n`{meta['command']}` (commit {meta['git_commit'][:10]}) on "
             f"{meta['machine']}, {meta['date']}; Milvus {meta['milvus']} ({meta['server']}).\n\nQuery: {meta['query']}.\n",
             "| items | index | build params | search params | build+load s | queries | p50 ms | p95 ms | recall@100 | short lists |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['items']:,} | {row['index']} | {row['build'] or '-'} | {row['search'] or '-'} | {row['build_load_s']:.1f} "
                     f"| {row['queries']} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | {row['recall_at_100']:.4f} | {row['short_lists']} |")
    (RESULTS / f"{label}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
