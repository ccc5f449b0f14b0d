"""Generator scaling: wall time, events/s and peak memory at growing event counts over a fixed catalogue,
each size in its own process (so peak memory is that size's own).

    python benchmarks/generator/run.py --events 100000 1000000        # writes benchmarks/results/generator.{json,md}
    python benchmarks/generator/run.py --events 100000 1000000 10000000 --items 20000
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EVENTS_PER_USER = 40
RESULTS = Path(__file__).resolve().parents[1] / "results"

CHILD = """
import json, resource, sys, time
from pathlib import Path
import pyarrow.parquet as pq
from recplugin.config import GeneratorConfig
from recplugin.data.generator import generate
users, items, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
start = time.perf_counter()
generate(GeneratorConfig(num_users=users, num_items=items, events_per_user=40, seed=1), out, progress=False)
seconds = time.perf_counter() - start
events = pq.ParquetFile(out / "events.parquet").metadata.num_rows
print(json.dumps({"events": events, "seconds": seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_size(target_events: int, items: int) -> dict:
    """Generate about `target_events` events over `items` items in a fresh process and report its figures."""
    users = max(1, target_events // EVENTS_PER_USER)
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run([sys.executable, "-c", CHILD, str(users), str(items), folder], capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update({"users": users, "items": items, "events_per_second": result["events"] / result["seconds"]})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--items", type=int, default=20_000, help="catalogue size, the same for every event count")
    args = parser.parse_args()
    rows = []
    for target in args.events:
        print(f"generating ~{target:,} events ...", flush=True)
        rows.append(run_size(target, args.items))
        print(json.dumps(rows[-1]), flush=True)
    smallest = rows[0]
    for row in rows:
        row["rss_ratio_vs_smallest"] = row["peak_rss_mib"] / smallest["peak_rss_mib"]
        row["events_ratio_vs_smallest"] = row["events"] / smallest["events"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"command": f"python benchmarks/generator/run.py --events {' '.join(map(str, args.events))} --items {args.items}",
            "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores", "date": time.strftime("%Y-%m-%d")}
    (RESULTS / "generator.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# Generator scaling\n\n`{meta['command']}` on {meta['machine']}, {meta['date']}.\n",
             "| events | users | items | seconds | events/s | peak RSS MiB | events x | RSS x |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['events']:,} | {row['users']:,} | {row['items']:,} | {row['seconds']:.1f} | {row['events_per_second']:,.0f} "
                     f"| {row['peak_rss_mib']:.0f} | {row['events_ratio_vs_smallest']:.1f} | {row['rss_ratio_vs_smallest']:.2f} |")
    (RESULTS / "generator.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
