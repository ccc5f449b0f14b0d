"""The container's start-up without Docker: `bentoml build` the Bento, then run the image's own entrypoint script on the
built Bento with the image's environment (from bentofile.yaml), and serve a request through it."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recplugin import pipeline
from recplugin.client import RecClient
from recplugin.config import save_config

pytestmark = pytest.mark.integration
CHECKOUT = Path(__file__).resolve().parents[2]


def test_the_built_bento_starts_with_the_image_entrypoint_and_env(built_pipeline, tmp_path):
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "True",
           "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    build = subprocess.run([f"{bin_dir}/bentoml", "build", "-f", "bentos/bentofile.yaml", "."], cwd=CHECKOUT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    bento = next((tmp_path / "bentoml" / "bentos" / "recplugin").glob("*/bento.yaml")).parent
    assert sorted(p.name for p in (bento / "src" / "recplugin" / "feature_repo").glob("*.yaml")) == [
        "feature_store.production.yaml", "feature_store.spark.yaml", "feature_store.yaml"]
    image_env = yaml.safe_load((CHECKOUT / "bentos" / "bentofile.yaml").read_text())["docker"]["env"]
    config_path = save_config(built_pipeline.config, tmp_path / "recplugin.yaml")  # where the image mounts its config
    port = pipeline.free_port()
    env.update({**image_env, "RECPLUGIN_CONFIG": str(config_path), "BENTO_PATH": str(bento), "PORT": str(port),
                "BENTOML_HOST": "127.0.0.1"})
    log = open(tmp_path / "service.log", "w")
    process = subprocess.Popen(["bash", str(bento / "env" / "docker" / "entrypoint.sh")], cwd=tmp_path, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        pipeline.wait_ready(f"http://127.0.0.1:{port}", process)
        with RecClient(f"http://127.0.0.1:{port}", timeout_s=30) as client:
            answer = client.recommend(1, "feed", k=3)
        assert len(answer.items) == 3 and answer.model_version == built_pipeline.version
    finally:
        pipeline.stop_service(process)
        log.close()
    assert "Traceback" not in (tmp_path / "service.log").read_text()
