"""The report's serving section: /recommend latency and throughput on both stacks beside a no-op BentoML service in
the same run, the CPU per request of each process, and where the service's CPU samples fall (serving_*.json)."""
from __future__ import annotations

import statistics

from benchmarks.report_tables import load, source, table
from benchmarks.serving.load import top_throughput

SERVING = ["serving_embedded_3000", "serving_embedded_100000", "serving_production_server_3000", "serving_production_server_100000"]


def batch_size(levels: list[dict], concurrency: int, stages: dict) -> str:
    """The mean /recommend batch at that concurrency, its mean time in the service, and the median time of a batch of
    about that size alone in one process (n/a where the result file predates them)."""
    level = next((level for level in levels if level["concurrency"] == concurrency and "mean_batch_size" in level), None)
    alone = {int(name.split("_")[2]): ms for name, ms in stages.items() if name.startswith("batch_of_")}
    if level is None:
        return "n/a"
    if "mean_batch_ms" not in level or not alone:
        return f"{level['mean_batch_size']:.1f}"
    size = min(alone, key=lambda n: abs(n - level["mean_batch_size"]))
    return f"{level['mean_batch_size']:.1f}: {level['mean_batch_ms']:.1f} ms ({alone[size]:.1f} ms for {size} alone)"


def ratio_to(value: float, baseline: float | None) -> str:
    """value ÷ baseline as a table cell, n/a without a baseline."""
    return "n/a" if not baseline else f"{value / baseline:.2f}x"


def settled(burst: dict) -> float:
    """The p50 of the c=1 level after the burst once settled (from its fourth second on; older files: the whole level)."""
    return burst.get("after_settled_p50_ms", burst["after_p50_ms"])


def just_before(levels: list[dict], burst_number: int) -> float | None:
    """The median per-second c=1 p50 over the last 3 seconds before the burst (levels run c=1, c=32, c=1, ...): the
    closest baseline in time; None where the file has no per-second p50s."""
    seconds = levels[2 * burst_number - 2].get("p50_by_second_ms") if 2 * burst_number - 2 < len(levels) else None
    return statistics.median(seconds[-3:]) if seconds else None


def noise_floor(levels: list[dict]) -> str:
    """How far the fresh c=1 level's own seconds stray from its p50: their range, and how many are over 1.2x of it."""
    seconds, p50 = levels[0].get("p50_by_second_ms"), levels[0]["p50_ms"]
    if not seconds:
        return "n/a"
    over = sum(second > 1.2 * p50 for second in seconds)
    return f"{min(seconds) / p50:.2f}-{max(seconds) / p50:.2f}x; {over} of {len(seconds)} over 1.2x"


def twin_floor(levels: list[dict]) -> str:
    """How far the fresh c=1 level's seconds stray from the twin's same seconds: the resolution of the paired measure."""
    control = levels[0].get("control")
    if not control:
        return "n/a"
    ratios = [ours / twin for ours, twin in zip(levels[0]["p50_by_second_ms"], control["p50_by_second_ms"])]
    return f"{min(ratios):.2f}-{max(ratios):.2f}x; {sum(ratio > 1.2 for ratio in ratios)} of {len(ratios)} over 1.2x"


def median_cpu(levels: list[dict]) -> dict[str, float]:
    """Each role's median CPU ms per request over the levels (the bursts) that recorded it."""
    readings = [level["cpu_ms_per_request"] for level in levels if level.get("cpu_ms_per_request")]
    return {role: statistics.median(reading.get(role, 0.0) for reading in readings) for role in readings[0]} if readings else {}


def serving_section() -> tuple[str, list[dict]]:
    """/recommend latency and throughput on both stacks, beside a no-op BentoML service in the same run."""
    rows, records, profiles, cpu_rows, burst_rows, floors = [], [], {}, {}, [], []
    for name in SERVING:
        data = load(name)
        levels, summary = data["levels"], data["summary"]
        top = summary["ceiling_concurrency"]
        stack = "embedded (SQLite, Milvus Lite, 1 worker)" if "embedded" in name else \
            f"production (Redis, PostgreSQL, Milvus server, {data['meta'].get('workers', 2)} workers)"
        record = {"stack": stack, "items": data["meta"]["items"], "p50": summary["fresh_p50_ms"], "p99": levels[0]["p99_ms"],
                  "rps": top_throughput(levels), "ratio": summary["ceiling_ratio"],
                  "after": summary["after_burst_first_second_p50_ms"], "recovery": summary["ratio_first_second"],
                  "errors": sum(level["errors"] for level in levels)}
        records.append(record)
        floors.append([f"{stack}, {record['items']:,} items", f"{record['p50']:.1f}", noise_floor(levels), twin_floor(levels)])
        bursts = summary.get("bursts", [])
        worst = max(bursts, key=lambda burst: burst["ratio_to_fresh"], default=None)
        recovery = f"{record['after']:.1f} ({record['recovery']:.2f}x)" if worst is None else \
            f"{worst['after_first_second_p50_ms']:.1f} ({worst['ratio_to_fresh']:.2f}x, the worst of {len(bursts)}; median " \
            f"{statistics.median(burst['ratio_to_fresh'] for burst in bursts):.2f}x)" + \
            (f"; ÷ the twin in the same second: worst {summary['ratio_to_twin_worst']:.2f}x, median "
             f"{summary['ratio_to_twin_median']:.2f}x" if "ratio_to_twin_worst" in summary else "")
        burst_rows += [[f"{stack}, {record['items']:,} items", number, f"{burst['before_p50_ms']:.1f}",
                        f"{burst['after_first_second_p50_ms']:.1f}", f"{settled(burst):.1f}", f"{burst['ratio_to_fresh']:.2f}x",
                        f"{burst['ratio']:.2f}x", ratio_to(burst["after_first_second_p50_ms"], just_before(levels, number)),
                        f"{burst['after_first_second_p50_ms'] / settled(burst):.2f}x",
                        f"{burst['ratio_to_twin']:.2f}x" if "ratio_to_twin" in burst else "n/a"]
                       for number, burst in enumerate(bursts, 1)]
        rows.append([stack, f"{record['items']:,}", f"{record['p50']:.1f} / {record['p99']:.1f}", recovery,
                     f"{record['rps']:.0f}", f"{top_throughput(data['noop_levels']):.0f}",
                     f"{record['ratio']:.2f}x" + (f" ({min(summary['ceiling_ratios']):.2f}-{max(summary['ceiling_ratios']):.2f})"
                                                  if "ceiling_ratios" in summary else ""), batch_size(levels, top, data["stages_ms"]), record["errors"]])
        if data.get("profile", {}).get("share"):
            profiles[f"{stack}, {record['items']:,} items"] = data["profile"]["share"]
        cpu = [median_cpu([level for level in runs if level["concurrency"] == top]) for runs in (levels, data["noop_levels"])]
        if all(cpu):
            cpu_rows[f"{stack}, {record['items']:,} items"] = cpu
    stages = sorted({stage for share in profiles.values() for stage in share},
                    key=lambda stage: -max(share.get(stage, 0) for share in profiles.values()))
    profile_text = ("\nWhere the service's CPU samples fall at c=32 (py-spy over every service process, idle threads left "
                    "out; a sample counts for the innermost frame that names a stage; the Milvus server or Milvus Lite process, "
                    "Redis and the load generator are not Python in the service and are not sampled):\n\n" +
                    table(["stage", *profiles], [[stage, *(f"{share.get(stage, 0):.0%}" for share in profiles.values())]
                                                 for stage in stages]) + "\n") if profiles else ""
    burst_text = ("\nRecovery after each burst: the p50 of the c=1 requests that ended within the first second after the "
                  "burst, against the fresh c=1 p50 (the issue's measure), the c=1 level just before the burst and the c=1 "
                  "level it starts once settled (the median per-second p50 from its fourth second on; older files: the whole "
                  "level), and the last 3 seconds before the burst (the median of their per-second p50s: the baseline "
                  "closest in time). The machine's speed drifts by a third over minutes, and a c=1 level's per-second p50 "
                  "wanders over as much within seconds: a slow recovery shows as a first second slower than the seconds "
                  "just before the burst and than the rest of its level, a slow machine as a slow stretch of seconds on "
                  "both sides of the burst. The last column compares with a twin of the service (same config, same "
                  "stores, started beside it) that never sees a burst: each c=1 request goes to the service and then the "
                  "same one to the twin, so both share the machine's speed of that second (older files: n/a). The twin "
                  "shares the online store, and on the production stack the Milvus server, with the service (embedded: it "
                  "reads a copy of the Milvus Lite file in a Milvus Lite process of its own), so a store slowed by the "
                  "burst slows both: that shows in the other columns:\n\n" +
                  table(["stack", "burst", "c=1 p50 before, ms", "first second after, ms", "its level settled, ms", "÷ fresh",
                         "÷ before", "÷ last 3 s before", "÷ its level", "÷ twin, same second"], burst_rows) + "\n" +
                  "\nHow far the fresh c=1 level's own per-second p50s stray, with no burst before them, from its p50 and "
                  "from the twin's p50 in the same second: the resolution of a 1.2x bound on one second on this machine, "
                  "alone and paired:\n\n" +
                  table(["stack", "fresh c=1 p50, ms", "its seconds ÷ its p50", "its seconds ÷ the twin's"], floors) + "\n") \
        if burst_rows else ""
    order = ["HTTP worker", "batch process", "Milvus Lite", "load generator"]
    roles = sorted({role for service, _ in cpu_rows.values() for role, ms in service.items() if ms >= 0.005},
                   key=lambda role: order.index(role) if role in order else len(order))
    cpu_text = ("\nCPU per request at c=32, ms (user + system time of each process over the level, by what it is, the median "
                "over the bursts; the no-op column is its worker in the same run; the production stack's Milvus server, Redis and PostgreSQL run outside "
                "the service and are not counted). Both cores are shared by all of them:\n\n" +
                table(["stack", *roles, "total", "no-op worker"],
                      [[stack, *(f"{service.get(role, 0):.2f}" for role in roles), f"{sum(service.values()):.2f}",
                        f"{noop.get('HTTP worker', 0):.2f}"] for stack, (service, noop) in cpu_rows.items()]) + "\n") \
        if cpu_rows else ""
    text = ("## Serving\n\n`POST /recommend` over HTTP, the load generator on the same 2 cores. Levels run in the order "
            "c=1, then c=32 and c=1 five times: each c=1 after a burst shows how fast single requests recover (the p50 of "
            "the requests that ended within its first second). The after-burst column gives the burst whose first second was "
            "slowest against the fresh c=1 p50 (older files: one burst); every burst is in the table below it. c=32 req/s is "
            "the median of the bursts. The no-op column is a BentoML service that "
            "does no work (benchmarks/serving/noop_service.py, 1 worker), running beside the service: each of its c=32 levels "
            "is driven right before the service's (older files: all its levels after the service's), and the ratio is the "
            "median over these pairs (the range in brackets): the framework's "
            "ceiling on this machine. The mean batch is the number of requests per /recommend batch at c=32 and its mean "
            "time, from the service's `recplugin_recommend_batch_size` and `_seconds` histograms on /metrics, beside the "
            "median time of a batch of about that size run alone in one process (same users, same torch threads). Each "
            "batch runs in a batch process of the worker (`serving.batch_process`), beside the HTTP event loop, the Milvus "
            "process and the load generator on the same 2 cores.\n\n" +
            table(["stack", "items", "c=1 p50 / p99 ms", "c=1 after a burst p50 ms (÷ fresh)", "c=32 req/s", "no-op c=32 req/s",
                   "of the ceiling", "c=32 mean batch: size, time", "errors"], rows) + "\n" + burst_text + cpu_text + profile_text +
            f"\n{source(*SERVING)}\n")
    return text, records
