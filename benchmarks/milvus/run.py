"""Milvus Lite versions and index types side by side: build time, top-100 latency, recall@100 against exact search.

Each milvus-lite version gets its own virtualenv (pymilvus 3.0.2 + that version), built once under
.recplugin/bench/; every (version, size, index) runs in its own process with a time limit.

    python benchmarks/milvus/run.py --sizes 100000 --versions 3.2.2 2.5.1
Writes benchmarks/results/milvus_lite.{json,md}. A Milvus *server* (the production path): benchmarks/milvus/server.py.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
VENVS = ROOT / ".recplugin" / "bench"
INDEXES = {"3.2.2": [("FLAT", 0), ("HNSW", 0)], "2.5.1": [("FLAT", 0), ("IVF_FLAT", 32), ("IVF_FLAT", 64), ("IVF_FLAT", 128)]}

CHILD = r'''
import json, sys, time
import numpy as np
from pymilvus import DataType, MilvusClient
n, index, folder, nprobe = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
rng = np.random.default_rng(0)
# Clustered like trained item vectors (topics), not uniform on the sphere, where no ANN index has structure to use.
centers = rng.normal(size=(max(50, n // 200), 64)).astype("float32")
vectors = centers[rng.integers(0, len(centers), n)] + 0.5 * rng.normal(size=(n, 64)).astype("float32")
vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
eligible = rng.random(n) < 0.6
client = MilvusClient(f"{folder}/bench.db")
schema = client.create_schema(auto_id=False)
schema.add_field("item_id", DataType.INT64, is_primary=True)
schema.add_field("vector", DataType.FLOAT_VECTOR, dim=64)
schema.add_field("in_discovery", DataType.BOOL)
params = client.prepare_index_params()
nlist = int(min(16384, max(64, 4 * round(n ** 0.5))))
build = {"HNSW": {"M": 16, "efConstruction": 200}, "IVF_FLAT": {"nlist": nlist}}.get(index, {})
params.add_index(field_name="vector", index_type=index, metric_type="IP", params=build)
client.create_collection("items", schema=schema, index_params=params)
start = time.perf_counter()
for first in range(0, n, 500):
    client.insert("items", [{"item_id": i, "vector": vectors[i].tolist(), "in_discovery": bool(eligible[i])}
                            for i in range(first, min(n, first + 500))])
client.load_collection("items")
build_seconds = time.perf_counter() - start
try:
    client.create_alias("items", "items_current")
    aliases = True
except Exception:
    aliases = False
search = {"HNSW": {"ef": 256}, "IVF_FLAT": {"nprobe": nprobe}}.get(index, {})
latencies, recalls, deadline = [], [], time.monotonic() + 120
for query in range(100):
    if query >= 5 and time.monotonic() > deadline:
        break
    interests = vectors[rng.integers(0, n, 2)] + 0.2 * rng.normal(size=(2, 64)).astype("float32")
    interests /= np.linalg.norm(interests, axis=1, keepdims=True)
    start = time.perf_counter()
    hits = client.search("items", data=interests.tolist(), limit=100, filter="in_discovery == true",
                         search_params={"metric_type": "IP", "params": search})
    latencies.append((time.perf_counter() - start) * 1000)
    for vector, found in zip(interests, hits):
        scores = np.where(eligible, vectors @ vector, -np.inf)
        exact = set(np.argpartition(-scores, 100)[:100].tolist())
        got = {int(h["id"] if "id" in h else h["item_id"]) for h in found}
        recalls.append(len(got & exact) / 100)
print(json.dumps({"build_seconds": build_seconds, "queries": len(latencies), "p50_ms": float(np.percentile(latencies, 50)),
                  "p95_ms": float(np.percentile(latencies, 95)), "recall_at_100": float(np.mean(recalls)), "aliases": aliases}))
'''


def venv_for(version: str) -> Path:
    """A virtualenv with pymilvus 3.0.2 and the given milvus-lite (uv from this interpreter's venv)."""
    target = VENVS / f"milvus-lite-{version}"
    python = target / "bin" / "python"
    if not python.exists():
        uv = Path(sys.executable).parent / "uv"
        subprocess.run([str(uv), "venv", "-q", str(target), "--python", sys.executable], check=True)
        subprocess.run([str(uv), "pip", "install", "-q", "--python", str(python), "pymilvus==3.0.2", f"milvus-lite=={version}",
                        "numpy", "setuptools<81"], check=True)
    return python


def measure(version: str, size: int, index: str, nprobe: int, limit: float) -> dict:
    """One configuration in a fresh process and folder."""
    import tempfile

    row = {"milvus_lite": version, "items": size, "index": index + (f" nprobe {nprobe}" if nprobe else "")}
    with tempfile.TemporaryDirectory() as folder:
        try:
            done = subprocess.run([str(venv_for(version)), "-c", CHILD, str(size), index, folder, str(nprobe)],
                                  capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            return {**row, "error": f"over {limit:.0f} s"}
    if done.returncode != 0:
        return {**row, "error": done.stderr.strip().splitlines()[-1][:200]}
    return {**row, **json.loads(done.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--versions", nargs="+", default=["3.2.2", "2.5.1"])
    parser.add_argument("--limit", type=float, default=900, help="seconds allowed per configuration")
    parser.add_argument("--largest", nargs="*", default=["3.2.2=100000"], metavar="VERSION=ITEMS",
                        help="skip sizes above ITEMS for VERSION (3.2.2 already takes seconds per query at 100k)")
    args = parser.parse_args()
    largest = {version: int(items) for version, items in (entry.split("=") for entry in args.largest)}
    rows = []
    for size in args.sizes:
        for version in args.versions:
            for index, nprobe in INDEXES[version]:
                if size > largest.get(version, size):
                    rows.append({"milvus_lite": version, "items": size, "index": index, "error": f"not run above {largest[version]:,} items"})
                    continue
                print(f"milvus-lite {version}, {size:,} items, {index} {nprobe or ''} ...", flush=True)
                rows.append(measure(version, size, index, nprobe, args.limit))
                print(json.dumps(rows[-1]), flush=True)
    meta = {"command": f"python benchmarks/milvus/run.py --sizes {' '.join(map(str, args.sizes))} --versions {' '.join(args.versions)} "
                       f"--limit {args.limit:.0f}",
            "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
            "query": "2 interest vectors in one call, top-100, the service's scenario filter (BOOL field, 60% eligible), 64-d IP, "
                     "clustered vectors (n/200 centres), 500-row inserts, IVF nlist = 4 sqrt(n); at most 100 queries or 120 s"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "milvus_lite.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# Milvus Lite versions and indexes\n\n`{meta['command']}` on {meta['machine']}, {meta['date']}. "
             f"Query: {meta['query']}; recall@100 against exact numpy search with the same filter.\n",
             "| milvus-lite | items | index | build+load s | queries | p50 ms | p95 ms | recall@100 | aliases |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['milvus_lite']} | {row['items']:,} | {row['index']} | {row['error']} | | | | | |")
        else:
            lines.append(f"| {row['milvus_lite']} | {row['items']:,} | {row['index']} | {row['build_seconds']:.1f} | {row['queries']} | {row['p50_ms']:.2f} "
                         f"| {row['p95_ms']:.2f} | {row['recall_at_100']:.3f} | {'yes' if row['aliases'] else 'no'} |")
    (RESULTS / "milvus_lite.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
