"""Per-version online metrics over HTTP: answers carry a request_id naming their model version, events sent back with
it count for that version on /metrics (a forged id counts as "unknown"), and `recplugin experiments` reads them."""
import time

import pandas as pd
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from recplugin import cli, pipeline
from recplugin.client import RecClient
from tests.conftest import served_copy

pytestmark = pytest.mark.integration


def _samples(base: str, name: str) -> list:
    text = requests.get(f"{base}/metrics", timeout=30).text
    return [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]


def test_events_that_name_their_answer_count_for_its_version(built_pipeline, tmp_path, capsys):
    config = served_copy(built_pipeline, tmp_path / "work", "milvus.db")
    port = pipeline.free_port()
    process = pipeline.start_service(config, port, log_path=tmp_path / "service.log")
    base = f"http://127.0.0.1:{port}"
    try:
        pipeline.wait_ready(base, process)
        user = int(pd.read_parquet(config.events_path)["user_id"].iloc[0])
        with RecClient(base, timeout_s=30) as client:
            answers = [client.recommend(user, "feed", k=10) for _ in range(4)]
            version = answers[0].model_version
            assert all(a.request_id.startswith(version + ".") for a in answers) and len({a.request_id for a in answers}) == 4
            for position, answer in enumerate(answers[:3]):
                client.event(user, answer.items[position].item_id, "feed", "click", request_id=answer.request_id,
                             position=position)
            client.event(user, answers[3].items[0].item_id, "feed", "click", request_id="v_forged.0123456789abcdef")
        attributed = {(s.labels["model_version"], s.labels["position"]): s.value
                      for s in _samples(base, "recplugin_attributed_events_total")}
        assert attributed == {(version, "top10"): 3.0, ("unknown", "unknown"): 1.0}
        served = sum(s.value for s in _samples(base, "recplugin_answers_total") if s.labels["model_version"] == version)
        assert served == 4
        cli.main(["experiments", "--url", base, "-c", str(pipeline.save_config(config, tmp_path / "recplugin.yaml"))])
        line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith(version))
        assert line.split()[1:4] == ["4", "3", "0.7500"] and line.endswith("control")
        second = pipeline.start_service(config, pipeline.free_port(), log_path=tmp_path / "second.log")
        try:  # another service on the host keeps this one's counts: its start empties only its own metrics directory
            _wait_listening(second, tmp_path / "second.log")
            served = sum(s.value for s in _samples(base, "recplugin_answers_total") if s.labels["model_version"] == version)
            assert served == 4
        finally:
            pipeline.stop_service(second)
    finally:
        pipeline.stop_service(process)


def _wait_listening(process, log, timeout_s: float = 60.0) -> None:
    """Until `bentoml serve` has started its workers (it prepares its metrics directory before that)."""
    deadline = time.monotonic() + timeout_s
    while "Starting production HTTP BentoServer" not in log.read_text(errors="replace"):
        assert process.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-2000:]
        time.sleep(0.2)
