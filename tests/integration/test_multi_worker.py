"""Several BentoML workers on one Milvus Lite file: `recplugin milvus-server` serves it to every worker over gRPC."""
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import requests

from recplugin import pipeline
from recplugin.config import ConfigError

pytestmark = pytest.mark.integration


def test_two_workers_answer_through_the_milvus_lite_server(built_pipeline, tmp_path):
    config = built_pipeline.config
    with pytest.raises(ConfigError, match="milvus-server"):
        pipeline.with_overrides(config, serving={"workers": 2})
    address = f"127.0.0.1:{pipeline.free_port()}"
    server = pipeline.start_milvus_server(config, address)
    try:
        served = pipeline.with_overrides(config, index={"uri": f"http://{address}"}, serving={"workers": 2})
        port = pipeline.free_port()
        base = f"http://127.0.0.1:{port}"
        log = tmp_path / "service.log"
        process = pipeline.start_service(served, port, log_path=log)
        try:
            pipeline.wait_ready(base, process)
            users = pd.read_parquet(config.events_path, columns=["user_id"])["user_id"].drop_duplicates().head(12).tolist()
            bodies = [{"user_id": int(u), "scenario": config.scenarios[i % len(config.scenarios)], "k": 5} for i, u in enumerate(users * 3)]
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(lambda body: requests.post(f"{base}/recommend", json=body, timeout=60), bodies))
            assert [a.status_code for a in answers] == [200] * len(bodies)
            assert {a.json()["model_version"] for a in answers} == {built_pipeline.version}
            assert all(len(a.json()["items"]) == 5 and not a.json()["cold_start"] for a in answers)
            time.sleep(40)  # idle gRPC clients used to be sent GOAWAY "too_many_pings" by the server and fail to reconnect
            again = [requests.post(f"{base}/recommend", json=body, timeout=60) for body in bodies[:4]]
            assert [a.status_code for a in again] == [200] * 4
        finally:
            pipeline.stop_service(process)
        started = log.read_text()
        assert "[entry_service:recplugin:1]" in started and "[entry_service:recplugin:2]" in started, started[-3000:]
    finally:
        pipeline.stop_service(server)
