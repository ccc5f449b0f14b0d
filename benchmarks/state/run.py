"""User-state build by engine (DuckDB SQL, Spark SQL in local mode, the Python reference) and the point-in-time training
snapshot, at growing event counts; each measurement in its own process, so peak memory is its own.

    python benchmarks/state/run.py --events 1000000 10000000     # writes benchmarks/results/state.{json,md}
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.provenance import git_commit, provenance  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
EVENTS_PER_USER = 40

CHILD = """
import json, resource, sys, time
import pyarrow.parquet as pq
from recplugin.config import load_config
from recplugin.features import store
config, stage = load_config(sys.argv[1]), sys.argv[2]
start = time.perf_counter()
if stage == "state":
    rows = store.prepare_sources(config, progress=False)
else:
    store.apply(config)
    rows = pq.read_metadata(store.build_training_set(config, progress=False)).num_rows
seconds = time.perf_counter() - start
if config.feast.state_engine == "spark" and stage == "state":  # let the JVM exit, so its peak RSS is counted
    from pyspark import SparkContext
    gateway = SparkContext._gateway
    SparkContext._active_spark_context.stop()
    gateway.proc.stdin.close()
    gateway.proc.wait()
usage = resource.getrusage
print(json.dumps({"rows": rows, "seconds": seconds, "peak_rss_mib": usage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "children_peak_rss_mib": usage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def config_file(workdir: Path, events: int, items: int, engine: str, labels_per_user: int) -> Path:
    """A recplugin config for one size and engine (the data directory is shared by every engine of a size)."""
    from recplugin.config import from_dict, save_config

    users = max(1, events // EVENTS_PER_USER)
    config = from_dict({"workdir": str(workdir), "generator": {"num_users": users, "num_items": items,
                                                             "events_per_user": EVENTS_PER_USER, "seed": 1},
                        "feast": {"project": f"bench_state_{events}", "state_engine": engine,
                                  "max_labels_per_user": labels_per_user}})
    return save_config(config, workdir / f"{engine}.yaml")


def ensure_data(config_path: Path) -> int:
    """Generate the size's events once (not timed); their count."""
    import pyarrow.parquet as pq

    from recplugin import pipeline
    from recplugin.config import load_config

    config = load_config(config_path)
    if not config.events_path.exists():
        pipeline.generate(config, progress=True)
    return pq.read_metadata(config.events_path).num_rows


def measure(config_path: Path, stage: str) -> dict:
    """Run one stage in a fresh process; its figures."""
    done = subprocess.run([sys.executable, "-c", CHILD, str(config_path), stage], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(report: dict) -> str:
    """The report as a table with ratios against the smallest size's DuckDB run."""
    lines = ["# User-state build and training snapshot by engine", "",
             f"`{report['command']}` at commit `{report['git_commit']}` on {report['machine']}, {report['date']}, "
             f"{report['wall_s']} s in all. Each row is its own process; peak RSS is that process's (Spark: the Python "
             "driver; its JVM is listed apart), ~0.5 GB of it imports (Feast, pyarrow). DuckDB runs with "
             f"`feast.duckdb_memory_limit` {report['duckdb_memory_limit']} (it spills beyond it); Spark in local mode "
             "(`local[2]`). The snapshot is Feast's point-in-time join (DuckDB offline store) of "
             f"{report['config']['labels_per_user']} labels per user. Data generated with seed 1, 40 events per user.", "",
             "| events | stage | engine | rows | seconds | events/s | peak RSS MiB | JVM peak RSS MiB | RSS x (vs smallest) |",
             "|---|---|---|---|---|---|---|---|---|"]
    base = {}
    for row in report["rows"]:
        key = (row["stage"], row["engine"])
        base.setdefault(key, row["peak_rss_mib"])
        jvm = f"{row['children_peak_rss_mib']:.0f}" if row["engine"] == "spark" else "-"
        lines.append(f"| {row['events']:,} | {row['stage']} | {row['engine']} | {row['rows']:,} | {row['seconds']:.1f} | "
                     f"{row['events'] / row['seconds']:,.0f} | {row['peak_rss_mib']:.0f} | {jvm} | "
                     f"{row['peak_rss_mib'] / base[key]:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--engines", nargs="+", default=["duckdb", "spark", "python"])
    parser.add_argument("--python-max-events", type=int, default=1_000_000, help="the reference builder only up to this")
    parser.add_argument("--snapshot-max-events", type=int, default=1_000_000, help="the Feast snapshot only up to this")
    parser.add_argument("--labels-per-user", type=int, default=20, help="training labels per user in the snapshot")
    parser.add_argument("--workdir", default=".recplugin/bench-state")
    args = parser.parse_args()
    began, commit = time.monotonic(), git_commit()
    rows = []
    for target in args.events:
        workdir = Path(args.workdir).resolve() / str(target)
        paths = {engine: config_file(workdir, target, args.items, engine, args.labels_per_user) for engine in args.engines}
        events = ensure_data(next(iter(paths.values())))
        for engine, path in paths.items():
            if engine == "python" and events > args.python_max_events:
                continue
            print(f"{events:,} events: state by {engine} ...", flush=True)
            rows.append({"events": events, "stage": "state", "engine": engine, **measure(path, "state")})
            print(json.dumps(rows[-1]), flush=True)
        if "duckdb" in paths and events <= args.snapshot_max_events:
            print(f"{events:,} events: training snapshot ...", flush=True)
            rows.append({"events": events, "stage": "snapshot", "engine": "duckdb", **measure(paths["duckdb"], "snapshot")})
            print(json.dumps(rows[-1]), flush=True)
    from recplugin.config import FeastConfig

    report = {**provenance(" ".join(["python", "benchmarks/state/run.py", *sys.argv[1:]]), began, commit),
              "config": vars(args), "duckdb_memory_limit": FeastConfig().duckdb_memory_limit, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "state.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "state.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
