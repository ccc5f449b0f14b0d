"""`train` says whether the model beats popularity on validation; `index` refuses a version that does not, unless forced."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recplugin import pipeline
from recplugin.registry.models import ModelRegistry
from recplugin.training.verdict import VERDICT
from tests.conftest import served_copy

pytestmark = pytest.mark.integration


def test_a_version_popularity_beats_is_not_indexed_unless_forced(built_pipeline, tmp_path):
    config = served_copy(built_pipeline, tmp_path / "work", "milvus.db")
    registry = ModelRegistry(config.registry_sqlalchemy_url)
    served = registry.latest(status="serving").version
    artifact = tmp_path / "losing"
    shutil.copytree(Path(built_pipeline.config.models_dir) / built_pipeline.version, artifact)
    (artifact / "meta.json").write_text(json.dumps({**json.loads((artifact / "meta.json").read_text()), "version": "v_losing"}))
    verdict = json.loads((artifact / VERDICT).read_text())
    assert verdict["model_ndcg"] > verdict["popularity_ndcg"]  # the built model beats popularity (train wrote this)
    (artifact / VERDICT).write_text(json.dumps({**verdict, "model_ndcg": verdict["popularity_ndcg"] / 2}))
    pipeline.register_artifact(config, artifact)

    cli = Path(sys.executable).with_name("recplugin")
    config_path = pipeline.save_config(config, tmp_path / "recplugin.yaml")
    refused = subprocess.run([str(cli), "index", "-c", str(config_path), "--version", "v_losing"], capture_output=True, text=True)
    assert refused.returncode != 0 and "does not beat popularity on validation" in refused.stderr
    assert registry.latest(status="serving").version == served  # nothing changed
    forced = subprocess.run([str(cli), "index", "-c", str(config_path), "--version", "v_losing", "--force"],
                            capture_output=True, text=True)
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert registry.latest(status="serving").version == "v_losing"
