"""A rolling restart under load: SIGTERM each of two workers in turn (BentoML starts a new one), with requests and events
flowing the whole time on the production stack (Redis, PostgreSQL, a Milvus server). A worker drains what it accepted
before it exits, so no request fails (a connection dropped before it was read is sent again once, as clients do) and
every acknowledged event is stored exactly once."""
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import requests

from recplugin import pipeline
from recplugin.features.online import OnlineFeatures
from recplugin.features.store import open_store
from tests.conftest import served_copy

pytestmark = pytest.mark.integration


def _workers(root: int) -> set[int]:
    """The BentoML worker processes under `bentoml serve`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if parent == root and b"_bentoml_impl.worker" in command:
                found.add(int(entry.name))
    return found


def _wait(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_rolling_restart_of_two_workers_under_load_fails_no_request(built_pipeline, milvus_server_uri, tmp_path):
    config = served_copy(built_pipeline, tmp_path / "work", milvus_server_uri, production=True, serving={"workers": 2})
    port = pipeline.free_port()
    log = tmp_path / "service.log"
    process = pipeline.start_service(config, port, log_path=log)
    base, stop = f"http://127.0.0.1:{port}", threading.Event()
    events = pd.read_parquet(config.events_path)
    user, item = int(events["user_id"].iloc[0]), int(events["item_id"].iloc[0])
    outcomes: list[str] = []
    acknowledged: list[str] = []

    dropped: list[str] = []

    def post(path: str, body: dict) -> requests.Response:
        """One call, sent again once if its connection was dropped unanswered (a worker that is exiting may close a
        connection it accepted but had not read yet, as uvicorn's shutdown does; a client retries that, and the
        event's id keeps a resent event from counting twice)."""
        try:
            return requests.post(f"{base}{path}", json=body, timeout=30)
        except requests.ConnectionError as error:
            dropped.append(f"{path}: {error}"[:200])
            return requests.post(f"{base}{path}", json=body, timeout=30)

    def load(thread: int) -> None:
        count = 0
        while not stop.is_set():
            count += 1
            try:
                if count % 5 == 0:
                    event_id = f"roll-{thread}-{count}-{uuid.uuid4().hex[:6]}"
                    reply = post("/events", {"user_id": user, "item_id": item, "scenario": "feed", "event_id": event_id})
                    if reply.status_code == 200:
                        acknowledged.append(event_id)
                else:
                    reply = post("/recommend", {"user_id": user + count % 7, "scenario": "feed", "k": 10})
                outcomes.append(str(reply.status_code))
            except requests.RequestException as error:
                outcomes.append(type(error).__name__)

    try:
        pipeline.wait_ready(base, process)
        original = _workers(process.pid)
        assert len(original) == 2, original
        before = OnlineFeatures(config).user_states([user])[0].histories["feed"].count
        threads = [threading.Thread(target=load, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        _wait(lambda: len(outcomes) > 50, 60, "no load before the restart")
        current = set(original)
        for pid in sorted(original):  # one at a time, as a rolling restart does
            started = log.read_text().count("Service recplugin initialized")
            os.kill(pid, signal.SIGTERM)
            _wait(lambda pid=pid: not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z",
                  60, f"worker {pid} did not exit after SIGTERM")
            _wait(lambda: len(_workers(process.pid) - current) == 1, 60, "no worker replaced the stopped one")
            current = _workers(process.pid)
            _wait(lambda started=started: log.read_text().count("Service recplugin initialized") > started, 120,
                  "the new worker did not start")
        served_after = len(outcomes)
        _wait(lambda: len(outcomes) > served_after + 50, 60, "no load after the restart")
        stop.set()
        for thread in threads:
            thread.join(60)
        failures = [outcome for outcome in outcomes if outcome != "200"]
        assert not failures, f"{len(failures)} of {len(outcomes)} requests failed: {sorted(set(failures))}"
        assert len(dropped) <= 2, f"{len(dropped)} connections dropped unanswered: {dropped}"  # a rare race, not a pattern
        assert len(_workers(process.pid) & original) == 0 and len(_workers(process.pid)) == 2
        after = OnlineFeatures(config).user_states([user])[0].histories["feed"].count
        assert after == before + len(acknowledged), "an acknowledged event was lost or doubled"
    finally:
        stop.set()
        pipeline.stop_service(process)
        store = open_store(config)
        store._get_provider().teardown_infra(config.feast.project, store.list_feature_views(), store.list_entities())
