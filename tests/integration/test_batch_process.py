"""/recommend batches in the worker's child process, on a real service over HTTP: the child answers from readiness on,
and a killed or a hung (SIGSTOP) child costs no request: the worker answers the same items, and a new child takes over."""
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from recplugin import pipeline
from tests.conftest import served_copy

pytestmark = pytest.mark.integration
BOUND_S = 2.0  # serving.batch_process_timeout_s here


def _batches(base: str) -> dict[str, float]:
    """/recommend batches so far, by what answered them."""
    text = requests.get(f"{base}/metrics", timeout=30).text
    return {s.labels["answered_by"]: s.value for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "recplugin_recommend_batches_total"}


def _child(process) -> psutil.Process:
    """The live batch process under the service (a multiprocessing child of its worker)."""
    found = [p for p in psutil.Process(process.pid).children(recursive=True)
             if p.is_running() and p.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(p.cmdline())]
    assert len(found) == 1, f"expected one batch process, found {found}"
    return found[0]


def _items(base: str, user: int) -> tuple[list, float]:
    """One answer's item ids, and how long it took."""
    began = time.monotonic()
    response = requests.post(f"{base}/recommend", json={"user_id": user, "scenario": "feed", "k": 10}, timeout=60)
    assert response.status_code == 200, response.text
    return [item["item_id"] for item in response.json()["items"]], time.monotonic() - began


def test_a_killed_or_hung_batch_process_costs_no_request(built_pipeline, tmp_path):
    config = served_copy(built_pipeline, tmp_path / "work", "milvus.db", serving={"batch_process_timeout_s": BOUND_S})
    users = [int(u) for u in pd.read_parquet(config.events_path)["user_id"].unique()[:4]]
    port = pipeline.free_port()
    process = pipeline.start_service(config, port, log_path=tmp_path / "service.log")
    base = f"http://127.0.0.1:{port}"
    try:
        pipeline.wait_ready(base, process)  # ready means the child answers: the worker has answered nothing
        expected = [_items(base, user)[0] for user in users]
        assert _batches(base) == {"batch_process": len(users)}
        with ThreadPoolExecutor(40) as pool:  # batches queued behind a running one, in the child's pipe, answered in order
            answers = list(pool.map(lambda n: _items(base, users[n % len(users)])[0], range(160)))
        assert answers == [expected[n % len(users)] for n in range(160)]
        assert set(_batches(base)) == {"batch_process"}

        first = _child(process)
        first.kill()
        assert _items(base, users[0])[0] == expected[0]  # the child is gone: the worker answers the same items
        assert _batches(base).get("worker") == 1

        deadline = time.monotonic() + 120  # a new child was started by that batch; it takes over once it has loaded
        answered = _batches(base)["batch_process"]
        while _batches(base)["batch_process"] == answered:
            assert time.monotonic() < deadline, "no new batch process answered within 120 s"
            assert _items(base, users[1])[0] == expected[1]
            time.sleep(0.5)
        second = _child(process)
        assert second.pid != first.pid

        os.kill(second.pid, signal.SIGSTOP)  # hung: the worker answers after the bound, and the child is killed
        items, took = _items(base, users[2])
        assert items == expected[2] and BOUND_S <= took < BOUND_S + 10
        second.wait(timeout=10)
        assert [_items(base, user)[0] for user in users] == expected
        tree = psutil.Process(process.pid).children(recursive=True)
    finally:
        pipeline.stop_service(process)
    assert not psutil.wait_procs(tree, timeout=30)[1], "a process of the service outlived it (a batch process left behind?)"
