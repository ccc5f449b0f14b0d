"""The service's own OpenAPI document against the live service: a bounded schemathesis run (every check) must find nothing."""
import os
import subprocess
import sys
from pathlib import Path

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


def test_schemathesis_finds_no_failure(keyed_service):
    """Coverage, fuzzing and stateful phases with every check, bounded in examples and time, fixed seed."""
    base, log = keyed_service
    st = Path(sys.executable).with_name("st")
    run = subprocess.run([str(st), "--config-file", str(SCHEMATHESIS_CONFIG), "run", f"{base}/docs.json",
                          "-H", f"X-API-Key: {API_KEY}", "--checks", "all", "--max-examples", "25", "--seed", "7",
                          "--request-timeout", "30", "--no-color"],
                         capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout
    assert "Traceback" not in log.read_text()  # no request made the service fail
