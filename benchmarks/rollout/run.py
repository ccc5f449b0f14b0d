"""A rollout under load on the production stack: a candidate at 10% of users, then promoted, then rolled back, with a
load generator running throughout; per-version answers and attributed events, and every failed request counted.

    make demo && python benchmarks/serving/production.py      # the production-style workdir (Redis, PostgreSQL)
    python benchmarks/rollout/run.py --workdir .recplugin/production

A real Milvus standalone server is started here; the serving version is indexed in it and a candidate is trained on the
same snapshot with another seed (`--candidate-minutes`) and indexed beside it (`recplugin index --candidate`). Two
BentoML workers; `serving.reload_interval_s` 2 s. Load: 4 threads of /recommend (k=10, a scenario at random, users from
the event table plus 10% never seen); a simulated click follows an answer with probability 0.2 on the position drawn
from a position-biased distribution, sent to /events with the answer's request_id: clicks do not depend on the model,
so the CTR columns show the attribution working, not which model is better. Phases: control, rollout 10%, promoted,
rolled back (`--phase-seconds` each). Writes benchmarks/results/rollout.json.
"""
from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.provenance import ROOT, git_commit, provenance  # noqa: E402
from recplugin import pipeline  # noqa: E402
from recplugin.config import load_config, to_dict  # noqa: E402
from recplugin.index import standalone  # noqa: E402
from recplugin.registry.models import ModelRegistry, Rollout  # noqa: E402
from recplugin.serving import experiments  # noqa: E402
from recplugin.serving.rollout import gets_candidate  # noqa: E402

SHARE, RELOAD_S, THREADS, CLICK_P = 10.0, 2.0, 4, 0.2
POSITION_WEIGHTS = 1.0 / np.arange(1, 11)  # a click lands higher in the list more often


class Load:
    """The load generator: /recommend, then sometimes /events with the answer's request_id; every outcome recorded."""

    def __init__(self, base: str, users: list[int], scenarios: list[str]):
        self.base, self.users, self.scenarios = base, users, scenarios
        self.phase = "control"
        self.answers: list[tuple[str, float, int, str | None, int, float]] = []  # phase, t, status, version, user, ms
        self.events: list[tuple[str, int, str | None]] = []  # phase, status, version clicked
        self.stop = threading.Event()

    def run(self, seed: int) -> None:
        rng, session = random.Random(seed), requests.Session()
        while not self.stop.is_set():
            user, scenario, phase = rng.choice(self.users), rng.choice(self.scenarios), self.phase
            began = time.perf_counter()
            try:
                reply = session.post(f"{self.base}/recommend", json={"user_id": user, "scenario": scenario, "k": 10}, timeout=30)
                status, body = reply.status_code, (reply.json() if reply.status_code == 200 else {})
            except requests.RequestException:
                status, body = 599, {}
            self.answers.append((phase, time.monotonic(), status, body.get("model_version"), user,
                                 (time.perf_counter() - began) * 1000))
            if body.get("items") and rng.random() < CLICK_P:
                position = min(rng.choices(range(10), weights=POSITION_WEIGHTS)[0], len(body["items"]) - 1)
                event = {"user_id": user, "item_id": body["items"][position]["item_id"], "scenario": scenario,
                         "event_id": f"bench-{uuid.uuid4().hex}", "request_id": body["request_id"], "position": position}
                try:
                    status = session.post(f"{self.base}/events", json=event, timeout=30).status_code
                except requests.RequestException:
                    status = 599
                self.events.append((phase, status, body["model_version"]))


def prepare(config, minutes: float):
    """Milvus standalone with the serving version indexed, and a candidate trained with another seed beside it."""
    if not config.snapshot_path.exists():  # the production workdir copies the data, not the demo's snapshot
        pipeline.build_training_set(config)
    server = standalone.start(Path(tempfile.mkdtemp(prefix="milvus-", dir=config.path("."))))
    try:
        return (server, *_versions(config, server, minutes))
    except BaseException:
        server.stop()
        raise


def _versions(config, server, minutes: float):
    """The serving version indexed on the server, and a candidate trained with another seed indexed beside it."""
    config = pipeline.with_overrides(config, index={"uri": server.uri, "drop_grace_s": 0.0, "keep_versions": 3},
                                     serving={"workers": 2, "reload_interval_s": RELOAD_S})
    registry = ModelRegistry(config.registry_sqlalchemy_url)
    registry.set_rollout(None)
    control = registry.latest(status="serving").version
    pipeline.index(config, control, progress=False)
    candidate = pipeline.train(pipeline.with_overrides(config, training={"seed": 1, "max_minutes": minutes}), progress=False).version
    pipeline.index(config, candidate, progress=False, serve=False, force=True)
    return config, control, candidate


def summary(load: Load, phases: list[tuple[str, float]], candidate: str, control: str) -> list[dict]:
    """Per phase: requests, failures, answers per version, latency; in the rollout, how many settled answers went to
    the version the user's bucket names."""
    rows = []
    for phase, switched_at in phases:
        answers = [a for a in load.answers if a[0] == phase]
        settled = [a for a in answers if a[1] > switched_at + RELOAD_S + 1]  # every worker has looked again
        latencies = np.array([a[5] for a in answers if a[2] == 200])
        events = [e for e in load.events if e[0] == phase]
        row = {"phase": phase, "requests": len(answers), "failed_requests": sum(a[2] != 200 for a in answers),
               "answers_by_version": dict(Counter(a[3] for a in answers if a[2] == 200)),
               "settled_answers_by_version": dict(Counter(a[3] for a in settled if a[2] == 200)),
               "events": len(events), "failed_events": sum(e[1] != 200 for e in events),
               "events_by_version": dict(Counter(e[2] for e in events if e[1] == 200)),
               "p50_ms": round(float(np.percentile(latencies, 50)), 2) if len(latencies) else None,
               "p99_ms": round(float(np.percentile(latencies, 99)), 2) if len(latencies) else None}
        if phase.startswith("rollout"):
            rollout = Rollout(candidate, SHARE)
            row["settled_answers_in_their_bucket"] = sum(
                a[3] == (candidate if gets_candidate(rollout, a[4]) else control) for a in settled)
            row["settled_answers"] = len(settled)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=".recplugin/production")
    parser.add_argument("--phase-seconds", type=float, default=30.0)
    parser.add_argument("--candidate-minutes", type=float, default=2.0)
    args = parser.parse_args()
    config_file = Path(args.workdir) / pipeline.CONFIG_FILE
    if not config_file.exists():
        raise SystemExit(f"{config_file} is absent: run `make demo` and `python benchmarks/serving/production.py` first")
    began, commit = time.monotonic(), git_commit()
    server, config, control, candidate = prepare(load_config(config_file), args.candidate_minutes)
    port = pipeline.free_port()
    base = f"http://127.0.0.1:{port}"
    process = pipeline.start_service(config, port, log_path=config.path("rollout-service.log"))
    events = pd.read_parquet(config.events_path, columns=["user_id"])["user_id"].drop_duplicates()
    known = events.sample(min(2000, len(events)), random_state=0).astype(int).tolist()
    load = Load(base, known + [10**9 + i for i in range(len(known) // 10)], list(config.scenarios))
    phases: list[tuple[str, float]] = []
    try:
        pipeline.wait_ready(base, process)
        threads = [threading.Thread(target=load.run, args=(seed,)) for seed in range(THREADS)]
        for thread in threads:
            thread.start()
        steps = [("control", lambda: None), (f"rollout {SHARE:g}%", lambda: pipeline.rollout(config, candidate, SHARE)),
                 ("promoted", lambda: pipeline.promote(config, candidate)), ("rolled back", lambda: pipeline.rollback(config))]
        for phase, change in steps:
            change()
            load.phase = phase
            phases.append((phase, time.monotonic()))
            print(f"{phase}: {len(load.answers)} answers so far", flush=True)
            time.sleep(args.phase_seconds)
        metrics = requests.get(f"{base}/metrics", timeout=30).text
        load.stop.set()
        for thread in threads:
            thread.join()
    finally:
        load.stop.set()
        pipeline.stop_service(process)
        ModelRegistry(config.registry_sqlalchemy_url).set_rollout(None)
        server.stop()
    stats = experiments.parse(metrics)
    result = {"meta": {**provenance(f"python {shlex.join(sys.argv)}", began, commit), "config": to_dict(config),
                       "control": control, "candidate": candidate, "share": SHARE, "threads": THREADS,
                       "click_probability": CLICK_P, "phase_seconds": args.phase_seconds},
              "phases": summary(load, phases, candidate, control),
              "experiments": [{"version": s.version, "answers": s.answers, "attributed": s.attributed, "clicks_top10": s.clicks_top10,
                               "ctr_at_10": s.ctr} for s in stats],
              "experiments_table": experiments.table(stats, control)}
    out = ROOT / "benchmarks" / "results" / "rollout.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for row in result["phases"]:
        print(row)
    print(result["experiments_table"])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
