"""The serving benchmark's load generator and what its levels summarise to: throughput beside the no-op ceiling, and how
single requests recover after each burst."""
from __future__ import annotations

import http.client
import json
import statistics
import threading
import time

import numpy as np


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summarise(latencies: list[float], ended: list[float], wall: float) -> dict:
    """The p50/p95/p99 of a level's requests, and the p50 of those that ended in each whole second of it."""
    by_second = [[latency for latency, end in zip(latencies, ended) if second <= end < second + 1] for second in range(int(wall))]
    return {"requests": len(latencies), "seconds": wall, "throughput_rps": len(latencies) / wall,
            "p50_first_second_ms": percentile(by_second[0] if by_second else [], 50),
            "p50_by_second_ms": [percentile(values, 50) for values in by_second], "p50_ms": percentile(latencies, 50),
            "p95_ms": percentile(latencies, 95), "p99_ms": percentile(latencies, 99)}


def drive(base: str, bodies: list[dict], concurrency: int, requests_total: int, seconds: float,
          control: str | None = None) -> dict:
    """Send up to `requests_total` POST /recommend requests from `concurrency` threads for at most `seconds`; with a
    `control` service, each request is followed by the same one to it, and its latencies come back under "control"."""
    targets = [base] if control is None else [base, control]
    latencies: list[list[float]] = [[] for _ in targets]
    ended: list[list[float]] = [[] for _ in targets]  # when each request ended, seconds after the level's start
    errors = 0
    lock = threading.Lock()
    counter = iter(range(requests_total))
    deadline = time.monotonic() + seconds
    payloads = [json.dumps(body).encode() for body in bodies]

    def connect(target: str) -> http.client.HTTPConnection:
        host, port = target.removeprefix("http://").split(":")
        return http.client.HTTPConnection(host, int(port), timeout=30)

    def worker() -> None:
        nonlocal errors
        connections = [connect(target) for target in targets]
        for index in counter:
            if time.monotonic() > deadline:
                break
            for number, target in enumerate(targets):
                start = time.perf_counter()
                try:
                    connections[number].request("POST", "/recommend", payloads[index % len(payloads)],
                                                {"Content-Type": "application/json"})
                    response = connections[number].getresponse()
                    response.read()
                    ok = response.status == 200
                except (OSError, http.client.HTTPException):
                    ok = False
                    connections[number].close()
                    connections[number] = connect(target)
                elapsed = (time.perf_counter() - start) * 1000
                with lock:
                    latencies[number].append(elapsed)
                    ended[number].append(time.perf_counter() - started)
                    errors += 0 if ok else 1
        for connection in connections:
            connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    level = {"concurrency": concurrency, "errors": errors, **summarise(latencies[0], ended[0], wall)}
    return level if control is None else {**level, "control": summarise(latencies[1], ended[1], wall)}


def top_throughput(levels: list[dict]) -> float:
    """The median req/s of the levels at the highest concurrency (one per burst)."""
    top = max(level["concurrency"] for level in levels)
    return statistics.median(level["throughput_rps"] for level in levels if level["concurrency"] == top)


def ceiling_ratios(levels: list[dict], ceiling: list[dict]) -> dict:
    """The service's req/s at the highest concurrency against the no-op's level driven just before it, pair by pair, and
    their median."""
    top = max(level["concurrency"] for level in levels)
    ratios = [level["throughput_rps"] / noop["throughput_rps"]
              for level, noop in zip([level for level in levels if level["concurrency"] == top], ceiling)]
    return {"ceiling_ratio": statistics.median(ratios), "ceiling_ratios": ratios}


def burst_recovery(levels: list[dict]) -> dict:
    """Each burst (a level at the highest concurrency between two c=1 levels): the p50 of the first second of the c=1 level
    after it, against the c=1 level just before it (a baseline minutes apart drifts on a shared machine), against the
    fresh one (the first level, before any burst), against a twin service that never saw a burst, driven in the same
    second (where the level has a control), and the same level once settled (the median per-second p50 from its fourth
    second on); the summary keeps the worst burst of each."""
    top = max(level["concurrency"] for level in levels)
    fresh = levels[0]["p50_ms"]
    bursts = [{"before_p50_ms": before["p50_ms"], "after_first_second_p50_ms": after["p50_first_second_ms"],
               "after_p50_ms": after["p50_ms"], "ratio": after["p50_first_second_ms"] / before["p50_ms"],
               "ratio_to_fresh": after["p50_first_second_ms"] / fresh,
               "after_settled_p50_ms": statistics.median(after.get("p50_by_second_ms", [])[3:] or [after["p50_ms"]]),
               **({"twin_first_second_p50_ms": after["control"]["p50_first_second_ms"],
                   "ratio_to_twin": after["p50_first_second_ms"] / after["control"]["p50_first_second_ms"]}
                  if "control" in after else {})}
              for before, burst, after in zip(levels, levels[1:], levels[2:])
              if burst["concurrency"] == top and before["concurrency"] == after["concurrency"] == 1]
    if levels[0]["concurrency"] != 1 or not bursts:
        return {}
    worst = max(bursts, key=lambda burst: burst["ratio"])
    twin = [burst["ratio_to_twin"] for burst in bursts if "ratio_to_twin" in burst]
    return {"fresh_p50_ms": fresh, "after_burst_first_second_p50_ms": worst["after_first_second_p50_ms"],
            "ratio_first_second": worst["ratio"], "ratio_first_second_median": statistics.median(b["ratio"] for b in bursts),
            "ratio_to_fresh_worst": max(burst["ratio_to_fresh"] for burst in bursts),
            **({"ratio_to_twin_worst": max(twin), "ratio_to_twin_median": statistics.median(twin)} if twin else {}),
            "bursts": bursts}
