"""`recplugin serve` as an operator runs it: logs reach its own output (or --log-file), and SIGTERM stops the service
and every worker, leaving nothing orphaned that still answers."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from recplugin import pipeline
from tests.conftest import served_copy

pytestmark = pytest.mark.integration


def test_sigterm_stops_the_service_and_its_workers(built_pipeline, milvus_server_uri, tmp_path):
    config = served_copy(built_pipeline, tmp_path / "work", milvus_server_uri, serving={"workers": 2})
    config_path = pipeline.save_config(config, tmp_path / "recplugin.yaml")
    port, log = pipeline.free_port(), tmp_path / "service.log"
    cli = shutil.which("recplugin", path=str(Path(sys.executable).parent))
    process = subprocess.Popen([cli, "serve", "-c", str(config_path), "--port", str(port), "--log-file", str(log)])
    try:
        pipeline.wait_ready(f"http://127.0.0.1:{port}", process)
        children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
        assert children, "recplugin serve runs bentoml serve as its child"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(Path(f"/proc/{pid}").exists() for pid in children), "bentoml serve outlived recplugin serve"
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    text = log.read_text()
    assert "[entry_service:recplugin:1]" in text and "[entry_service:recplugin:2]" in text, text[-2000:]
