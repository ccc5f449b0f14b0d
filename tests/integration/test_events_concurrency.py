"""No acknowledged event lost or double-counted: two workers, ~100 concurrent events for one user, on the SQLite and on
the Redis online store; then `materialize`, which must not roll the live state back. The service runs as an operator
runs it, `recplugin serve`, which must stop every worker on SIGTERM."""
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import requests

from recplugin import pipeline
from recplugin.data.live_events import read_events
from recplugin.features.online import OnlineFeatures
from recplugin.features.store import open_store
from tests.conftest import served_copy

pytestmark = pytest.mark.integration
EVENTS = 96


@pytest.fixture(params=["sqlite", "redis"])
def two_workers(request, built_pipeline, milvus_server_uri, tmp_path):
    config = served_copy(built_pipeline, tmp_path / "work", milvus_server_uri, production=request.param == "redis",
                         serving={"workers": 2})
    port, log = pipeline.free_port(), tmp_path / "service.log"
    cli = shutil.which("recplugin", path=str(Path(sys.executable).parent))
    config_path = pipeline.save_config(config, tmp_path / "recplugin.yaml")
    process = subprocess.Popen([cli, "serve", "-c", str(config_path), "--port", str(port), "--log-file", str(log)])
    try:
        pipeline.wait_ready(f"http://127.0.0.1:{port}", process)
        yield config, f"http://127.0.0.1:{port}", process
        _stop_with_sigterm(process, port)
        text = log.read_text()
        assert "[entry_service:recplugin:1]" in text and "[entry_service:recplugin:2]" in text, text[-2000:]
    finally:
        if process.poll() is None:  # a failure before the SIGTERM check: still stop the workers through recplugin serve
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        if request.param == "redis":  # remove this test's project from the shared Redis and PostgreSQL registry
            store = open_store(config)
            store._get_provider().teardown_infra(config.feast.project, store.list_feature_views(), store.list_entities())
            store.delete_project(config.feast.project)


def _stop_with_sigterm(process: subprocess.Popen, port: int) -> None:
    """SIGTERM to `recplugin serve`: it exits, and so do `bentoml serve` and its workers; nothing answers any more."""
    children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert children, "recplugin serve runs bentoml serve as its child"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(Path(f"/proc/{pid}").exists() for pid in children), "bentoml serve outlived recplugin serve"
    try:
        requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        raise AssertionError("the service still answers after SIGTERM")
    except requests.ConnectionError:
        pass


def _total(config, user: int) -> tuple[int, list[int]]:
    state = OnlineFeatures(config).user_states([user])[0]
    return sum(h.count for h in state.histories.values()), [int(i) for h in state.histories.values() for i in h.item_ids]


def test_concurrent_events_for_one_user_on_two_workers_are_all_kept_through_materialize(two_workers):
    config, base, _ = two_workers
    events = pd.read_parquet(config.events_path)
    user = int(events["user_id"].iloc[0])
    items = sorted(events["item_id"].unique().tolist())
    before, _ = _total(config, user)
    bodies = [{"user_id": user, "item_id": int(items[i % len(items)]), "scenario": config.scenarios[i % len(config.scenarios)],
               "action": config.actions[i % len(config.actions)]} for i in range(EVENTS)]
    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda body: requests.post(f"{base}/events", json=body, timeout=60), bodies))
    assert [a.status_code for a in answers] == [200] * EVENTS, [a.text for a in answers if a.status_code != 200][:3]
    after, _ = _total(config, user)
    assert after == before + EVENTS, f"{before + EVENTS - after} acknowledged events lost in the online store"
    for scenario in config.scenarios:  # each event saw its own count: no two read the same state and overwrote each other
        counts = [a.json()["counts"][scenario] for a, b in zip(answers, bodies) if b["scenario"] == scenario]
        assert len(set(counts)) == len(counts), scenario
    logged = read_events(config.live_events_path)
    assert len(logged[logged.user_id == user]) == EVENTS
    pipeline.materialize(config)  # rows as of the last apply, older than every live event: they must not win
    assert _total(config, user)[0] == before + EVENTS, "materialize rolled back acknowledged events"
    pipeline.apply(config, progress=False)  # the live log folded into the offline source, then materialised: same state
    pipeline.materialize(config)
    assert _total(config, user)[0] == before + EVENTS
