"""The example team repo at the top level (feature_repo/): plain `feast apply` in it registers recplugin's objects, and
recplugin's stages then run against that repo without registering anything themselves."""
import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from feast import FeatureStore

from recplugin import pipeline
from recplugin.config import load_config, with_overrides

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "feature_repo"


def test_plain_feast_apply_in_the_example_repo_registers_what_recplugin_needs(tmp_path):
    repo = tmp_path / "feature_repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("*.db", "__pycache__"))
    feast = Path(sys.executable).with_name("feast")
    env = {key: value for key, value in os.environ.items() if not key.startswith("RECPLUGIN_")}
    run = subprocess.run([str(feast), "apply"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Created feature view rec_user_history" in run.stdout

    with contextlib.chdir(tmp_path):  # recplugin runs from the repository root, as docs/adopting.md says
        config = with_overrides(load_config("feature_repo/recplugin.yaml"),
                                generator={"num_users": 60, "num_items": 80, "events_per_user": 10, "seed": 2})
        assert config.feast.register_objects is False and Path(config.workdir) == tmp_path / ".recplugin" / "team"
        pipeline.generate(config, progress=False)
        pipeline.apply(config, progress=False)  # only checks that `feast apply` registered every object
        pipeline.materialize(config)
    store = FeatureStore(repo_path=str(repo))
    names = {view.name for view in store.list_feature_views()}
    assert {"rec_user_history", "rec_user_counts", "rec_item_features"} <= names
    counts = store.get_online_features([f"rec_user_counts:{s}_count" for s in config.scenarios], [{"user_id": 0}]).to_dict()
    assert sum(counts[f"{s}_count"][0] or 0 for s in config.scenarios) > 0
