"""Milvus Lite versions and index types side by side: build time, top-100 latency, recall@100 against exact search.

Each milvus-lite version gets its own virtualenv (pymilvus 3.0.2 + that version), built once under
.recplugin/bench/; every (version, size, index) runs in its own process with a time limit.

    python benchmarks/milvus/run.py --sizes 100000 --versions 3.2.2 2.5.1
Writes benchmarks/results/milvus_lite.{json,md}.
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
INDEXES = {"3.2.2": ["FLAT", "HNSW"], "2.5.1": ["FLAT", "IVF_FLAT"]}

CHILD = r'''
import json, sys, time
import numpy as np
from pymilvus import DataType, MilvusClient
n, index, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3]
rng = np.random.default_rng(0)
vectors = rng.normal(size=(n, 64)).astype("float32")
vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
eligible = rng.random(n) < 0.6
client = MilvusClient(f"{folder}/bench.db")
schema = client.create_schema(auto_id=False)
schema.add_field("item_id", DataType.INT64, is_primary=True)
schema.add_field("vector", DataType.FLOAT_VECTOR, dim=64)
schema.add_field("scenarios", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=4, max_length=16)
params = client.prepare_index_params()
build = {"HNSW": {"M": 16, "efConstruction": 200}, "IVF_FLAT": {"nlist": 1024}}.get(index, {})
params.add_index(field_name="vector", index_type=index, metric_type="IP", params=build)
client.create_collection("items", schema=schema, index_params=params)
start = time.perf_counter()
for first in range(0, n, 20000):
    rows = range(first, min(n, first + 20000))
    client.insert("items", [{"item_id": i, "vector": vectors[i].tolist(),
                             "scenarios": ["feed", "discovery"] if eligible[i] else ["feed"]} for i in rows])
client.load_collection("items")
build_seconds = time.perf_counter() - start
try:
    client.create_alias("items", "items_current")
    aliases = True
except Exception:
    aliases = False
search = {"HNSW": {"ef": 256}, "IVF_FLAT": {"nprobe": 64}}.get(index, {})
latencies, recalls = [], []
for query in range(100):
    interests = rng.normal(size=(2, 64)).astype("float32")
    interests /= np.linalg.norm(interests, axis=1, keepdims=True)
    exclude = rng.choice(n, 150, replace=False)
    expression = 'array_contains(scenarios, "discovery") and item_id not in [' + ", ".join(map(str, exclude)) + "]"
    start = time.perf_counter()
    hits = client.search("items", data=[v.tolist() for v in interests], limit=100, filter=expression,
                         search_params={"metric_type": "IP", "params": search})
    latencies.append((time.perf_counter() - start) * 1000)
    allowed = eligible.copy()
    allowed[exclude] = False
    for vector, found in zip(interests, hits):
        scores = np.where(allowed, vectors @ vector, -np.inf)
        exact = set(np.argpartition(-scores, 100)[:100].tolist())
        got = {int(h.get("item_id", h.get("id"))) for h in found}
        recalls.append(len(got & exact) / 100)
print(json.dumps({"build_seconds": build_seconds, "p50_ms": float(np.percentile(latencies, 50)),
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


def measure(version: str, size: int, index: str, limit: float) -> dict:
    """One configuration in a fresh process and folder."""
    import tempfile

    row = {"milvus_lite": version, "items": size, "index": index}
    with tempfile.TemporaryDirectory() as folder:
        try:
            done = subprocess.run([str(venv_for(version)), "-c", CHILD, str(size), index, folder],
                                  capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            return {**row, "error": f"over {limit:.0f} s"}
    if done.returncode != 0:
        return {**row, "error": done.stderr.strip().splitlines()[-1][:200]}
    return {**row, **json.loads(done.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--versions", nargs="+", default=["3.2.2", "2.5.1"])
    parser.add_argument("--limit", type=float, default=900, help="seconds allowed per configuration")
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        for version in args.versions:
            for index in INDEXES[version]:
                print(f"milvus-lite {version}, {size:,} items, {index} ...", flush=True)
                rows.append(measure(version, size, index, args.limit))
                print(json.dumps(rows[-1]), flush=True)
    meta = {"command": f"python benchmarks/milvus/run.py --sizes {' '.join(map(str, args.sizes))} --versions {' '.join(args.versions)}",
            "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
            "query": "2 interest vectors in one call, top-100, filter array_contains(scenarios) and 150 excluded ids, 64-d IP"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "milvus_lite.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# Milvus Lite versions and indexes\n\n`{meta['command']}` on {meta['machine']}, {meta['date']}. "
             f"Query: {meta['query']}; recall@100 against exact numpy search with the same filter.\n",
             "| milvus-lite | items | index | build+load s | p50 ms | p95 ms | recall@100 | aliases |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['milvus_lite']} | {row['items']:,} | {row['index']} | {row['error']} | | | | |")
        else:
            lines.append(f"| {row['milvus_lite']} | {row['items']:,} | {row['index']} | {row['build_seconds']:.1f} | {row['p50_ms']:.2f} "
                         f"| {row['p95_ms']:.2f} | {row['recall_at_100']:.3f} | {'yes' if row['aliases'] else 'no'} |")
    (RESULTS / "milvus_lite.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
