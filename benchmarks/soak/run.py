"""Soak: many requests of mixed valid and invalid input at fixed concurrency; counts by status, latency, memory.

    python benchmarks/soak/run.py --workdir .recplugin/demo --requests 50000 --concurrency 32

Loopback only, bounded in requests and time. The service's memory (RSS of `bentoml serve` and all its
children) is sampled every 2 s. Writes benchmarks/results/soak.{json,md}.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from recplugin import pipeline
from recplugin.config import load_config

RESULTS = Path(__file__).resolve().parents[1] / "results"


def tree_rss_mib(root: int) -> float:
    """Resident memory of a process and all its descendants, MiB."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    family, grew = {root}, True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in family} - family
        family |= children
        grew = bool(children)
    total = 0
    for pid in family:
        try:
            total += int(next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS")).split()[1])
        except (OSError, StopIteration):
            continue
    return total / 1024


def request_mix(config, users: list[int]) -> list[tuple[str, str, bytes]]:
    """(kind, path, body) cases: mostly valid recommendations, then every kind of bad input, a few events."""
    limits = config.serving
    valid = [("valid", "/recommend", json.dumps({"user_id": u, "scenario": config.scenarios[i % len(config.scenarios)],
                                                  "k": 1 + i % limits.max_k}).encode()) for i, u in enumerate(users)]
    valid += [("valid", "/recommend", json.dumps({"user_id": users[0], "scenario": config.scenarios[0], "k": 10,
                                                   "query": "caf\u00e9 \u5317\u4eac \U0001f600 \t\x01 tab"}).encode())]
    bad = [("unknown scenario", "/recommend", b'{"user_id": 1, "scenario": "shopping", "k": 5}'),
           ("k = 0", "/recommend", b'{"user_id": 1, "scenario": "feed", "k": 0}'),
           ("k too large", "/recommend", json.dumps({"user_id": 1, "scenario": "feed", "k": limits.max_k + 1}).encode()),
           ("user_id a string", "/recommend", b'{"user_id": "abc", "scenario": "feed"}'),
           ("user_id missing", "/recommend", b'{"scenario": "feed"}'),
           ("user_id huge", "/recommend", b'{"user_id": 1000000000000000000000000, "scenario": "feed"}'),
           ("malformed JSON", "/recommend", b'{"user_id": 1, "scenario": '),
           ("query too long", "/recommend", json.dumps({"user_id": 1, "scenario": "search", "query": "x" * (limits.max_query_chars + 1)}).encode()),
           ("body too large", "/recommend", json.dumps({"user_id": 1, "scenario": "feed", "pad": "y" * (limits.max_body_bytes + 10)}).encode()),
           ("unknown action", "/events", b'{"user_id": 1, "item_id": 1, "scenario": "feed", "action": "steal"}')]
    events = [("event", "/events", json.dumps({"user_id": u, "item_id": 1 + i, "scenario": config.scenarios[1], "action": "click"}).encode())
              for i, u in enumerate(users[:5])]
    return valid * 40 + bad * 20 + events  # about 8% bad input and 0.2% events


def soak(base: str, cases: list[tuple[str, str, bytes]], concurrency: int, total: int, seconds: float, sample) -> dict:
    """Send `total` requests (cases in a fixed shuffled order) from `concurrency` connections."""
    host, port = base.removeprefix("http://").split(":")
    order = np.random.default_rng(0).integers(0, len(cases), total)
    counter, lock = iter(range(total)), threading.Lock()
    statuses: Counter = Counter()
    by_kind: dict[str, Counter] = {}
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    def worker() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        for index in counter:
            if time.monotonic() > deadline:
                return
            kind, path, body = cases[order[index]]
            start = time.perf_counter()
            try:
                connection.request("POST", path, body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                connection.close()
                connection = http.client.HTTPConnection(host, int(port), timeout=30)
            elapsed = (time.perf_counter() - start) * 1000
            with lock:
                statuses[status] += 1
                by_kind.setdefault(kind, Counter())[status] += 1
                latencies.append(elapsed)

    memory: list[tuple[float, float]] = []
    stop = threading.Event()
    started = time.perf_counter()

    def watch() -> None:
        while not stop.wait(2.0):
            memory.append((time.perf_counter() - started, sample()))

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    watcher.join()
    wall = time.perf_counter() - started
    return {"requests": len(latencies), "seconds": wall, "throughput_rps": len(latencies) / wall,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "by_kind": {kind: {str(k): v for k, v in sorted(c.items())} for kind, c in sorted(by_kind.items())},
            "p50_ms": float(np.percentile(latencies, 50)), "p99_ms": float(np.percentile(latencies, 99)), "memory_mib": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=".recplugin/demo")
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=900)
    args = parser.parse_args()
    config = load_config(Path(args.workdir) / pipeline.CONFIG_FILE)
    users = [int(u) for u in pd.read_parquet(config.events_path, columns=["user_id"])["user_id"].drop_duplicates().head(50)]
    users += [10**9 + i for i in range(5)]  # unknown users: cold start
    port = pipeline.free_port()
    base = f"http://127.0.0.1:{port}"
    process = pipeline.start_service(config, port, log_path=config.path("soak_service.log"))
    try:
        pipeline.wait_ready(base, process)
        result = soak(base, request_mix(config, users), args.concurrency, 2000, 60, lambda: tree_rss_mib(process.pid))
        warm_rss = tree_rss_mib(process.pid)
        result = soak(base, request_mix(config, users), args.concurrency, args.requests, args.seconds, lambda: tree_rss_mib(process.pid))
    finally:
        pipeline.stop_service(process)
    samples = [m for _, m in result["memory_mib"]]
    first, last = np.mean(samples[: max(1, len(samples) // 10)]), np.mean(samples[-max(1, len(samples) // 10):])
    meta = {"command": f"python benchmarks/soak/run.py --workdir {args.workdir} --requests {args.requests} --concurrency {args.concurrency}",
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
            "rss_after_warmup_mib": warm_rss, "rss_first_tenth_mib": first, "rss_last_tenth_mib": last, "rss_max_mib": max(samples)}
    server_errors = sum(v for k, v in result["statuses"].items() if k.startswith("5") or k == "0")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps({"meta": meta, **result}, indent=2))
    lines = ["# Soak: mixed valid and invalid input\n", f"`{meta['command']}` on {meta['machine']}, {meta['date']}.\n",
             f"{result['requests']:,} requests in {result['seconds']:.0f} s ({result['throughput_rps']:.0f} req/s), "
             f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms; **5xx or failed connections: {server_errors}**.\n",
             f"Service RSS (all processes): {meta['rss_after_warmup_mib']:.0f} MiB after warm-up, {first:.0f} MiB mean over the "
             f"first tenth, {last:.0f} MiB over the last tenth, {meta['rss_max_mib']:.0f} MiB max.\n",
             "| input | " + " | ".join(f"HTTP {s}" for s in result["statuses"]) + " |", "|---|" + "---|" * len(result["statuses"])]
    lines += [f"| {kind} | " + " | ".join(str(counts.get(s, 0)) for s in result["statuses"]) + " |" for kind, counts in result["by_kind"].items()]
    (RESULTS / "soak.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if server_errors:
        raise SystemExit(f"{server_errors} server errors")


if __name__ == "__main__":
    main()
