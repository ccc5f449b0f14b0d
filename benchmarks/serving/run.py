"""Serving latency and throughput over HTTP, next to the cost of each stage alone.

    make demo                                   # builds .recplugin/demo (or point --workdir at any built pipeline)
    python benchmarks/serving/run.py --workdir .recplugin/demo --items 100000 1000000 --label embedded
    python benchmarks/serving/production.py && python benchmarks/serving/run.py --workdir .recplugin/production \
        --milvus standalone --items 100000 1000000 --label production     # Redis, PostgreSQL, a real Milvus server

`--items N` serves a copy of the workdir's serving model whose catalogue is padded to N items with synthetic
vectors (each a real item's vector plus small noise, renormalised), indexed in Milvus like any version: latency
depends on the index size, not on what the extra items are. The original version is serving again afterwards.
`--milvus standalone` starts a real Milvus standalone server (the `milvus` package, data under the workdir) and indexes
there (the index `index.index_type` picks: IVF_FLAT from `index.flat_index_below` items). Recall@100 of the served index
is measured against exact search over the same catalogue, filter and seen items.
Levels run in the order given (default c=1, then five rounds of c=32 and c=1: each c=1 after a burst shows how fast
single requests recover, against the c=1 level just before that burst, the fresh one, and a twin of the service
that never sees a burst: each c=1 request is followed by the same one to the twin, so a second of the service compares
with the same second of a fresh service on the same machine; the twin shares the stores and a Milvus server, and reads
a copy of a Milvus Lite file). A no-op BentoML service
(benchmarks/serving/noop_service.py), the framework's ceiling on this machine, runs beside it: each c=32 level is
driven against it right before the service's, and the ceiling ratio is the median over these pairs; `--profile` adds
a c=32 level under py-spy and records where the samples fall.
Loopback only; every level is bounded in request count and in time. Writes benchmarks/results/serving_<label>_<items>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.serving import spy  # noqa: E402
from benchmarks.serving.load import burst_recovery, ceiling_ratios, drive  # noqa: E402
from benchmarks.serving.padding import feed_eligibility, padded_version, restore_serving  # noqa: E402
from recplugin import pipeline  # noqa: E402
from recplugin.config import load_config  # noqa: E402
from recplugin.models.artifact import ITEM_IDS  # noqa: E402
from recplugin.registry.models import ModelRegistry  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
TWIN_MILVUS_LITE = "twin-milvus.db"


def time_stages(config, users: list[int], repeats: int) -> dict:
    """Median milliseconds of each stage alone, in this process (the service must be stopped: Milvus Lite locks)."""
    from recplugin.index.milvus import search_interests
    from recplugin.models.inputs import NO_QUERY, ScenarioEvents, build_batch
    from recplugin.serving.recommender import Recommender

    import torch

    torch.set_num_threads(config.serving.torch_threads)  # as in the service's workers
    engine = Recommender(config)
    try:
        timings: dict[str, list[float]] = {"feast_online_read": [], "user_tower": [], "milvus_search": [], "numpy_exact_topk": []}
        eligible, recalls = feed_eligibility(config, engine.model), []
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
            search_interests(engine.milvus, engine.served.collection, interests, 20, config.scenarios[1], seen, config.index,
                             engine.served.index_type)
            timings["milvus_search"].append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            scores = (engine.model.item_vectors @ interests.T).max(axis=1)
            np.argpartition(-scores, 20)[:20]
            timings["numpy_exact_topk"].append((time.perf_counter() - start) * 1000)
            if index < 30:  # recall@100 of the served index: the service's own search against exact search
                found = search_interests(engine.milvus, engine.served.collection, interests, 100, config.scenarios[1], seen,
                                         config.index, engine.served.index_type)
                allowed = eligible & ~np.isin(engine.model.item_ids, seen)
                exact = np.where(allowed, scores, -np.inf)
                top = set(engine.model.item_ids[np.argsort(-exact, kind="stable")[:100]].tolist())
                recalls.append(len(top & {h.item_id for h in found}) / 100)
        for size in (8, 16, 32):  # whole batches alone, as the service's batch thread runs them, nothing else running
            timings[f"batch_of_{size}_alone"] = batch_alone(engine, config, users, size)
        return {**{name: statistics.median(values) for name, values in timings.items()}, "recall_at_100": float(np.mean(recalls))}
    finally:
        engine.close()


def batch_alone(engine, config, users: list[int], size: int, repeats: int = 30) -> list[float]:
    """Milliseconds of `recommend_many` over `size` requests (the benchmark's bodies), one batch at a time."""
    from recplugin.serving.messages import RecommendRequest

    timings = []
    for index in range(repeats + 3):
        requests = [RecommendRequest(users[(index * size + j) % len(users)], config.scenarios[j % len(config.scenarios)], 20)
                    for j in range(size)]
        start = time.perf_counter()
        engine.recommend_many(requests)
        timings.append((time.perf_counter() - start) * 1000)
    return timings[3:]  # the first batches warm up


def git_commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=RESULTS.parents[1], capture_output=True, text=True).stdout.strip()


def index_description(config, version: str) -> str:
    """The served collection's index type and search parameters."""
    from recplugin.index import collections, milvus
    client = milvus.connect(config.milvus_uri)
    try:
        kind = collections.collection_index(client, ModelRegistry(config.registry_sqlalchemy_url).get(version).collection)
    finally:
        milvus.disconnect(client, config.milvus_uri)
    search = milvus.search_params(kind, config.index, 40)["params"]
    return f"{kind} {search}" if search else kind


def batch_counters(base: str) -> tuple[float, float, float]:
    """The service's /recommend batches so far: (requests in them, batches, seconds in them), from its /metrics."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    value = lambda name: sum(float(line.split()[-1]) for line in lines if line.startswith(name + " ") or line.startswith(name + "{"))  # noqa: E731
    return (value("recplugin_recommend_batch_size_sum"), value("recplugin_recommend_batch_size_count"),
            value("recplugin_recommend_batch_seconds_sum"))


def measure(base: str, bodies: list[dict], concurrency: int, args, pid: int, batches: bool = False,
            control: str | None = None) -> dict:
    """One level, with the CPU per request of each process of service `pid` and of the load generator (and the mean
    /recommend batch when `batches`; each request followed by the same one to `control` where given)."""
    before, cpu = batch_counters(base) if batches else None, spy.cpu_seconds(pid)
    level = drive(base, bodies, concurrency, args.requests, args.seconds if concurrency > 1 else args.single_seconds, control)
    level["cpu_ms_per_request"] = spy.cpu_ms_per_request(cpu, spy.cpu_seconds(pid), level["requests"])
    if before is not None:
        after = batch_counters(base)
        count = max(1.0, after[1] - before[1])
        level["mean_batch_size"] = (after[0] - before[0]) / count
        level["mean_batch_ms"] = 1000 * (after[2] - before[2]) / count
    print(f"  {'recplugin' if batches else 'no-op'} c={concurrency}: p50 {level['p50_ms']:.1f} ms, "
          f"{level['throughput_rps']:.0f} req/s, {level['errors']} errors"
          + (f"; twin p50 {level['control']['p50_ms']:.1f} ms" if control else ""), flush=True)
    return level


def drive_side_by_side(service: tuple[str, int], noop: tuple[str, int], twin: str, bodies: list[dict],
                       args) -> tuple[list, list]:
    """Warm all three up at concurrency 1 (no burst before the fresh level), then the service's levels in the order
    given, each of its bursts right after the same burst against the no-op service, each c=1 request followed by the
    same one to the twin, which never sees a burst: the machine's speed drifts by a third over minutes here, so each
    ceiling ratio compares levels seconds apart and each recovery a second of the service with the same second of
    the twin."""
    for base in (service[0], noop[0], twin):
        drive(base, bodies, 1, 100, 30)
    top, levels, ceiling = max(args.concurrency), [], []
    for concurrency in args.concurrency:
        if concurrency == top:
            ceiling.append(measure(noop[0], bodies, concurrency, args, noop[1]))
        levels.append(measure(service[0], bodies, concurrency, args, service[1], batches=True,
                              control=twin if concurrency == 1 else None))
    return levels, ceiling


@contextmanager
def noop_service(workdir: Path) -> Iterator[tuple[str, int]]:
    """A BentoML service that does no work (its base URL and pid): the framework's ceiling on this machine."""
    port = pipeline.free_port()
    bentoml_cli = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or "bentoml"
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "PYTHONPATH": str(RESULTS.parents[1])}
    with open(workdir / "bench_noop.log", "a") as log:
        process = subprocess.Popen([bentoml_cli, "serve", "benchmarks.serving.noop_service:NoOp", "--host", "127.0.0.1",
                                    "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=RESULTS.parents[1])
    try:
        pipeline.wait_ready(f"http://127.0.0.1:{port}", process)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        pipeline.stop_service(process)


def profile_burst(base: str, process: subprocess.Popen, bodies: list[dict], args, out: Path) -> dict:
    """py-spy over the service's processes during a c=32 level: the share of samples per stage."""
    if spy.executable() is None:
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    sampler = spy.record(process.pid, args.profile_seconds, out)
    drive(base, bodies, 32, 10**6, args.profile_seconds)
    sampler.wait(timeout=args.profile_seconds + 60)
    return {"seconds": args.profile_seconds, "concurrency": 32, **spy.breakdown(out)}


def twin_config(config):
    """The config of the service's twin: the same, but on a copy of a Milvus Lite file (Milvus Lite serves one process per
    file); a Milvus server is shared."""
    if "://" in config.index.uri:
        return config
    shutil.copyfile(config.milvus_uri, config.path(TWIN_MILVUS_LITE))
    return pipeline.with_overrides(config, index={"uri": TWIN_MILVUS_LITE})


def bench_one(config, args, items: int, users: list[int], bodies: list[dict]) -> None:
    """Serve the catalogue padded to `items`, drive every level (and the no-op ceiling), time the stages, write the report."""
    version = padded_version(config, items)
    items = items or len(np.load(Path(ModelRegistry(config.registry_sqlalchemy_url).get(version).artifact_uri) / ITEM_IDS))
    port, twin_port = pipeline.free_port(), pipeline.free_port()
    base, twin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{twin_port}"
    process = pipeline.start_service(config, port, log_path=config.path("bench_service.log"))
    twin_process = pipeline.start_service(twin_config(config), twin_port, log_path=config.path("bench_twin.log"))
    try:
        pipeline.wait_ready(base, process)
        pipeline.wait_ready(twin, twin_process)
        with noop_service(config.path(".")) as noop:
            print(f"recplugin, {items:,} items, beside the no-op service and a twin:", flush=True)
            levels, ceiling = drive_side_by_side((base, process.pid), noop, twin, bodies, args)
        pipeline.stop_service(twin_process)
        spent = profile_burst(base, process, bodies, args, config.path("bench_profile.txt")) if args.profile else {}
    finally:
        pipeline.stop_service(process)
        pipeline.stop_service(twin_process)
        config.path(TWIN_MILVUS_LITE).unlink(missing_ok=True)
    stages = time_stages(config, users, repeats=100)
    recall = stages.pop("recall_at_100")
    in_path = stages["feast_online_read"] + stages["user_tower"] + stages["milvus_search"]
    top = max(args.concurrency)
    label = f"{args.label}_{items}"
    meta = {"command": "python benchmarks/serving/run.py " + " ".join(sys.argv[1:]), "git_commit": git_commit(),
            "items": items, "model_version": version, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d %H:%M"), "online_store": config.feast.store_yaml, "milvus": args.milvus_label,
            "workers": config.serving.workers, "batch_slots": config.serving.batch_slots, "batch_process": config.serving.batch_process,
            "batch_max_size": config.serving.batch_max_size, "index": index_description(config, version),
            "recall_at_100": recall, "service_overhead_ratio_c1": levels[0]["p50_ms"] / in_path}
    summary = {**ceiling_ratios(levels, ceiling), "ceiling_concurrency": top, **burst_recovery(levels)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"serving_{label}.json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "levels": levels, "noop_levels": ceiling, "stages_ms": stages, "profile": spent},
        indent=2))
    print(json.dumps(summary, indent=2), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=".recplugin/demo")
    parser.add_argument("--label", default="embedded")
    parser.add_argument("--items", type=int, nargs="+", default=[0], help="catalogue sizes (0: the workdir's own)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1] + [32, 1] * 5,
                        help="levels in this order; a c=1 after each level at the highest concurrency measures the recovery "
                             "from that burst (against the c=1 level before it), the ceiling ratio takes their median req/s")
    parser.add_argument("--profile", action="store_true", help="py-spy the service during an extra c=32 level")
    parser.add_argument("--profile-seconds", type=float, default=15)
    parser.add_argument("--requests", type=int, default=3000, help="at most this many requests per level")
    parser.add_argument("--seconds", type=float, default=30, help="at most this long per level")
    parser.add_argument("--single-seconds", type=float, default=12, help="at most this long per c=1 level")
    parser.add_argument("--milvus", choices=["config", "standalone"], default="config",
                        help="the config's index.uri, or a Milvus standalone server started here (data under the workdir)")
    args = parser.parse_args()
    config = load_config(Path(args.workdir) / pipeline.CONFIG_FILE)
    args.milvus_label = config.index.uri
    events = pd.read_parquet(config.events_path, columns=["user_id"])
    users = [int(u) for u in events["user_id"].drop_duplicates().sample(200, random_state=0, replace=True)]
    bodies = [{"user_id": u, "scenario": config.scenarios[i % len(config.scenarios)], "k": 20} for i, u in enumerate(users)]
    original = ModelRegistry(config.registry_sqlalchemy_url).latest(status="serving").version
    server = None
    if args.milvus == "standalone":
        from recplugin.index import standalone

        server = standalone.start(Path(tempfile.mkdtemp(prefix="milvus-", dir=config.path("."))))
        config = pipeline.with_overrides(config, index={"uri": server.uri, "drop_grace_s": 0.0})
        pipeline.save_config(config, pipeline.workdir_config_path(config))
        args.milvus_label = f"Milvus standalone {server.uri} (the `milvus` package)"
        pipeline.index(config, original, progress=False)
    elif config.index.uri.startswith("http://127.0.0.1:"):  # the workdir's Milvus Lite file, served to every worker
        file_config = pipeline.with_overrides(config, index={"uri": "milvus.db"}, serving={"workers": 1})
        server = pipeline.start_milvus_server(file_config, config.index.uri.removeprefix("http://"))
    try:
        for items in args.items:
            bench_one(config, args, items, users, bodies)
    finally:
        restore_serving(config, original)
        if server is not None:
            server.stop() if args.milvus == "standalone" else pipeline.stop_service(server)


if __name__ == "__main__":
    main()
