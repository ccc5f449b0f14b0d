"""Fault matrix: the service under a steady load while each dependency is killed, stopped (hung), cut off or out of disk.

    python benchmarks/faults/run.py [--outage-s 20] [--faults redis-stop redis-kill ...]

Builds its own stack (benchmarks/faults/stack.py): Redis with AOF fsync always, PostgreSQL (both registries) behind a
proxy, a Milvus standalone, the data folder with the live event log and Redis's AOF on a 64 MiB tmpfs, 2 BentoML
workers. Load: 3 threads of /recommend, 1 of /events (fresh users, so stored counts are exact), /readyz every 0.5 s.
Per fault: answers by status during the outage, the longest answer, the time to recover after the dependency is back,
and at the end every event: acknowledged (200) vs stored online (Redis) vs in the live log.
Writes benchmarks/results/faults.{json,md}. Needs root for the tmpfs (else the full-disk fault is skipped, and said so).
"""
from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root: benchmarks.* and tests.support

from benchmarks.faults.stack import Stack, build  # noqa: E402
from benchmarks.provenance import git_commit, provenance  # noqa: E402
from benchmarks.serving.production import fresh_database  # noqa: E402
from recplugin.config import to_dict  # noqa: E402
from recplugin.data.live_events import read_events  # noqa: E402
from recplugin.features.online import OnlineFeatures  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
FAULTS = ("redis-stop", "redis-kill", "milvus-stop", "milvus-kill", "postgres-down", "disk-full")
BOUND_S = 12.0  # the fault tests' bound for one answer with these timeouts (online 1 s, Milvus RPC 2 s, readiness 2 s)
EVENT_USERS = [10**9 + i for i in range(40)]
CLIENT_TIMEOUT_S = 30.0


class Load:
    """Background traffic; every answer is recorded as (start time, endpoint, outcome, seconds)."""

    def __init__(self, stack: Stack):
        config = stack.config
        self.base, self.scenarios = stack.base, config.scenarios
        self.users = [int(u) for u in pd.read_parquet(config.events_path, columns=["user_id"])["user_id"].unique()[:100]]
        self.items = [int(i) for i in pd.read_parquet(config.catalog_path, columns=["item_id"])["item_id"]]
        self.records: list[tuple[float, str, str, float]] = []
        self.acked: Counter = Counter()
        self.running = threading.Event()
        self.lock = threading.Lock()

    def _call(self, endpoint: str, method: str, body: dict | None = None) -> tuple[str, dict]:
        start = time.monotonic()
        try:
            answer = requests.request(method, f"{self.base}/{endpoint}", json=body, timeout=CLIENT_TIMEOUT_S)
            data = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
            outcome = "200 degraded" if answer.status_code == 200 and data.get("degraded") else str(answer.status_code)
        except requests.Timeout:
            outcome, data = "no answer (client timeout)", {}
        except requests.RequestException:
            outcome, data = "connection error", {}
        with self.lock:
            self.records.append((start, endpoint, outcome, time.monotonic() - start))
        return outcome, data

    def _recommend(self, seed: int) -> None:
        rng = random.Random(seed)
        while self.running.is_set():
            self._call("recommend", "POST", {"user_id": rng.choice(self.users), "scenario": rng.choice(self.scenarios), "k": 10})

    def _events(self) -> None:
        rng = random.Random(7)
        while self.running.is_set():
            user = rng.choice(EVENT_USERS)
            outcome, _ = self._call("events", "POST", {"user_id": user, "item_id": rng.choice(self.items),
                                                       "scenario": rng.choice(self.scenarios)})
            if outcome == "200":
                with self.lock:
                    self.acked[user] += 1

    def _ready(self) -> None:
        while self.running.is_set():
            self._call("readyz", "GET")
            time.sleep(0.5)

    def start(self) -> None:
        self.running.set()
        targets = [(self._recommend, (i,)) for i in range(3)] + [(self._events, ()), (self._ready, ())]
        self.threads = [threading.Thread(target=t, args=a, daemon=True) for t, a in targets]
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.running.clear()
        for thread in self.threads:
            thread.join(timeout=CLIENT_TIMEOUT_S + 5)

    def since(self, start: float, end: float = float("inf")) -> list[tuple[float, str, str, float]]:
        """Answers to requests that were in flight at some time in [start, end) (sent before, answered after, included)."""
        with self.lock:
            return [r for r in self.records if r[0] < end and r[0] + r[3] >= start]


def fill_disk(folder: Path) -> None:
    """Write a filler file until the (tmpfs) filesystem is full."""
    with open(folder / "filler", "wb") as filler:
        try:
            while True:
                filler.write(b"\0" * (1 << 20))
                filler.flush()
        except OSError:
            pass


def free_disk(stack: Stack) -> str | None:
    """Delete the filler; restart Redis if the full disk made it exit (as its supervisor would), and say so."""
    (stack.config.data_dir / "filler").unlink()
    if stack.redis.process.poll() is None:
        return None
    code = stack.redis.process.returncode
    stack.redis.start()
    return f"Redis exited (code {code}) when its AOF write failed (appendfsync always); restarted after the disk was freed"


def injections(stack: Stack) -> dict:
    """fault name -> (inject, restore)."""
    data = stack.config.data_dir
    return {
        "redis-stop": (lambda: stack.redis.signal(signal.SIGSTOP), lambda: stack.redis.signal(signal.SIGCONT)),
        "redis-kill": (lambda: stack.redis.signal(signal.SIGKILL), stack.redis.start),
        "milvus-stop": (stack.milvus.pause, stack.milvus.resume),
        "milvus-kill": (stack.milvus.kill, lambda: stack.milvus.restart(timeout=600)),  # a crashed server recovers slowly
        "postgres-down": (stack.postgres.drop, stack.postgres.resume),
        "disk-full": (lambda: fill_disk(data), lambda: free_disk(stack)),
    }


def recovered(load: Load, after: float) -> bool:
    """After `after`: an undegraded recommendation, an acknowledged event and a ready probe."""
    outcomes = {(endpoint, outcome) for _, endpoint, outcome, _ in load.since(after)}
    return {("recommend", "200"), ("events", "200"), ("readyz", "200")} <= outcomes


def run_fault(load: Load, name: str, inject, restore, outage_s: float) -> dict:
    """Inject, hold the outage, restore, wait for recovery; what the clients saw."""
    settle = time.monotonic()
    while not recovered(load, settle - 2) and time.monotonic() - settle < 120:
        time.sleep(0.5)
    print(f"[{name}] inject", flush=True)
    start = time.monotonic()
    inject()
    time.sleep(outage_s)
    restore_error = restore_note = None
    try:
        restore_note = restore()
    except Exception as error:  # the dependency did not come back: the report says so
        restore_error = f"{type(error).__name__}: {str(error)[:300]}"
    restored = time.monotonic()
    print(f"[{name}] restored after {restored - start:.1f} s", flush=True)
    while not recovered(load, restored) and time.monotonic() - restored < 180:
        time.sleep(0.25)
    back = time.monotonic()
    during = load.since(start, restored)
    by_endpoint = {endpoint: dict(Counter(o for _, e, o, _ in during if e == endpoint)) for endpoint in ("recommend", "events", "readyz")}
    longest = {endpoint: max((s for _, e, _, s in during if e == endpoint), default=0.0) for endpoint in by_endpoint}
    after = [r for r in load.since(restored, back)]
    return {"fault": name, "outage_s": round(restored - start, 1), "restore_error": restore_error,
            "restore_note": restore_note if isinstance(restore_note, str) else None, "answers_during_outage": by_endpoint,
            "longest_answer_s": {k: round(v, 2) for k, v in longest.items()},
            "within_bound": all(v <= BOUND_S for v in longest.values()),
            "recovered": recovered(load, restored), "recovery_s": round(back - restored, 1),
            "answers_while_recovering": dict(Counter(f"{e} {o}" for _, e, o, _ in after))}


def stored_events(stack: Stack, acked: Counter) -> dict:
    """Acknowledged events vs the online store's counts vs the live log, over the event users."""
    states = OnlineFeatures(stack.config).user_states(EVENT_USERS)
    online = {u: (sum(h.count for h in s.histories.values()) if s else 0) for u, s in zip(EVENT_USERS, states)}
    log = read_events(stack.config.live_events_path)
    logged = log[log.user_id.isin(EVENT_USERS)].groupby("user_id").size().to_dict()
    return {"acknowledged": sum(acked.values()), "online": sum(online.values()), "logged": int(sum(logged.values())),
            "acknowledged_but_missing_online": sum(max(0, acked[u] - online[u]) for u in EVENT_USERS),
            "acknowledged_but_missing_in_log": sum(max(0, acked[u] - logged.get(u, 0)) for u in EVENT_USERS),
            "stored_online_without_acknowledgement": sum(max(0, online[u] - acked[u]) for u in EVENT_USERS),
            "logged_without_acknowledgement": sum(max(0, logged.get(u, 0) - acked[u]) for u in EVENT_USERS)}


def markdown(meta: dict, rows: list[dict], events: dict) -> str:
    """The report."""
    lines = ["# Fault matrix: the service while its dependencies fail\n",
             f"`{meta['command']}` (commit {meta['git_commit'][:10]}) on {meta['machine']}, {meta['date']}, {meta['wall_s']:.0f} s.",
             "Redis (AOF, fsync always), PostgreSQL (Feast + model registry) behind a proxy, a Milvus 2.3.5 standalone, the "
             "live event log and Redis's AOF on a 64 MiB tmpfs, 2 BentoML workers; load: 3 threads of /recommend, 1 of "
             f"/events, /readyz every 0.5 s. Timeouts: online store 1 s, Milvus RPC 2 s, readiness 2 s; bound {BOUND_S:.0f} s.\n",
             "milvus-kill's outage includes the wait for the killed server's ports to leave TIME_WAIT before the restart "
             "(its wrapper binds without SO_REUSEADDR and would move to other ports); its recovery time is from the restart. "
             "An answer counts in an outage when it was in flight at any time during it.",
             *[f"- {note}" for note in meta["notes"]],
             "", "| fault | outage s | /recommend during outage | /events during outage | /readyz during outage | "
                 "longest answer s (rec / ev / ready) | within bound | recovered after s |", "|---|---|---|---|---|---|---|---|"]
    fmt = lambda counts: ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "-"
    for row in rows:
        a, longest = row["answers_during_outage"], row["longest_answer_s"]
        lines.append(f"| {row['fault']} | {row['outage_s']} | {fmt(a['recommend'])} | {fmt(a['events'])} | {fmt(a['readyz'])} | "
                     f"{longest['recommend']} / {longest['events']} / {longest['readyz']} | {'yes' if row['within_bound'] else '**no**'} | "
                     f"{row['recovery_s'] if row['recovered'] else '**not recovered**'} |")
    lines += [f"- {row['fault']}: {row['restore_note'] or ''} {row['restore_error'] or ''}".rstrip() for row in rows
              if row["restore_note"] or row["restore_error"]]
    lines += ["", "Events over the whole run (every fault):", "", "| | count |", "|---|---|"]
    lines += [f"| {key.replace('_', ' ')} | {value} |" for key, value in events.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outage-s", type=float, default=20.0)
    parser.add_argument("--faults", nargs="+", choices=FAULTS, default=list(FAULTS))
    args = parser.parse_args()
    began, commit = time.monotonic(), git_commit()
    stack = build(Path(tempfile.mkdtemp(prefix="recplugin-faults-")), fresh_database())
    rows: list[dict] = []
    try:
        load = Load(stack)
        load.start()
        actions = injections(stack)
        for name in args.faults:
            if name == "disk-full" and stack.tmpfs is None:
                continue
            rows.append(run_fault(load, name, *actions[name], args.outage_s))
            print(json.dumps(rows[-1]), flush=True)
        time.sleep(3)
        load.stop()
        events = stored_events(stack, load.acked)
    finally:
        stack.close()
    meta = provenance("python benchmarks/faults/run.py " + " ".join(sys.argv[1:]), began, commit)
    meta.update(notes=stack.notes, config=to_dict(stack.config), bound_s=BOUND_S, outage_s=args.outage_s)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "faults.json").write_text(json.dumps({"meta": meta, "faults": rows, "events": events}, indent=2))
    report = markdown(meta, rows, events)
    (RESULTS / "faults.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
