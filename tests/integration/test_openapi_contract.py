"""The service's own OpenAPI document against the live service: a bounded schemathesis run (every check) must find nothing."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from recplugin import pipeline

pytestmark = pytest.mark.integration
API_KEY = "contract-test-key"
SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture(scope="module")
def keyed_service(built_pipeline, tmp_path_factory):
    """The service with an API key set, so the document declares the key and 401s (the fuller contract)."""
    port = pipeline.free_port()
    log = tmp_path_factory.mktemp("contract") / "service.log"
    os.environ["RECPLUGIN_API_KEY"] = API_KEY
    try:
        process = pipeline.start_service(built_pipeline.config, port, log_path=log)
    finally:
        del os.environ["RECPLUGIN_API_KEY"]
    base = f"http://127.0.0.1:{port}"
    try:
        pipeline.wait_ready(base, process)
    except Exception:
        pipeline.stop_service(process)
        raise AssertionError(f"service did not become ready; log:\n{log.read_text()[-4000:]}")
    yield base, log
    pipeline.stop_service(process)


def test_the_document_declares_enums_statuses_and_the_key(keyed_service, built_pipeline):
    base, _ = keyed_service
    assert requests.get(f"{base}/docs.json", timeout=30).status_code == 401
    document = requests.get(f"{base}/docs.json", headers={"X-API-Key": API_KEY}, timeout=30).json()
    config = built_pipeline.config
    events = document["components"]["schemas"]["events__Input"]["properties"]
    assert events["scenario"]["enum"] == config.scenarios and events["action"]["enum"] == config.actions
    assert events["action"]["default"] == config.actions[0]
    assert {"400", "401", "413", "415", "422", "503"} <= set(document["paths"]["/events"]["post"]["responses"])
    assert document["components"]["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"


def test_schemathesis_finds_no_failure(keyed_service, tmp_path):
    """Coverage, fuzzing and stateful phases with every check, bounded in examples and time, fixed seed."""
    base, log = keyed_service
    st = Path(sys.executable).with_name("st")
    run = subprocess.run([str(st), "--config-file", str(SCHEMATHESIS_CONFIG), "run", f"{base}/docs.json",
                          "-H", f"X-API-Key: {API_KEY}", "--checks", "all", "--max-examples", "25", "--seed", "7",
                          "--request-timeout", "30", "--no-color"],
                         capture_output=True, text=True, timeout=400, cwd=tmp_path)  # its cache stays out of the repo
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout
    assert "Traceback" not in log.read_text()  # no request made the service fail


def test_the_python_client_speaks_the_contract_with_the_key(keyed_service, built_pipeline):
    """recplugin.client on BentoML's HTTP client: typed answers with the key (sent as a bearer token), the service's
    own messages for 401 and 4xx, and a bounded wait."""
    from recplugin.client import RecClient, ServiceError, ServiceTimeout

    base, _ = keyed_service
    config = built_pipeline.config
    events = pd.read_parquet(config.events_path)
    user, item = int(events["user_id"].iloc[0]), int(events["item_id"].iloc[0])
    with RecClient(base, api_key=API_KEY, timeout_s=30) as client:
        answer = client.recommend(user, "feed", k=5)
        assert len(answer.items) == 5 and answer.model_version == built_pipeline.version and answer.degraded is None
        assert [i.score for i in answer.items] == sorted((i.score for i in answer.items), reverse=True)
        vectors = client.user_vectors(user, "feed")
        assert vectors.known_user and len(vectors.vectors) == config.model.interests_per_scenario
        best = max(float(np.dot(v, built_item_vector(config, built_pipeline.version, answer.items[0].item_id))) for v in vectors.vectors)
        assert best == pytest.approx(answer.items[0].score, abs=1e-4)
        receipt = client.event(user, item, "feed", "click")
        assert receipt.user_id == user and receipt.counts["feed"] >= 1
        with pytest.raises(ServiceError) as bad:
            client.recommend(user, "nowhere")
        assert bad.value.status == 400 and "scenario" in bad.value.message
    with RecClient(base, api_key="wrong", timeout_s=30) as stranger, pytest.raises(ServiceError) as refused:
        stranger.recommend(user, "feed")
    assert refused.value.status == 401 and "API key" in refused.value.message
    with RecClient(base, api_key=API_KEY, timeout_s=0.001) as hasty, pytest.raises(ServiceTimeout):
        hasty.recommend(user, "search", query="a query the encoder has never seen " * 4)


def built_item_vector(config, version: str, item_id: int) -> np.ndarray:
    """The item's vector in the served version's artifact (later tests may publish other versions to Feast)."""
    artifact = config.models_dir / version
    ids = np.load(artifact / "item_ids.npy").tolist()
    return np.load(artifact / "item_vectors.npy")[ids.index(item_id)].astype(np.float32)
