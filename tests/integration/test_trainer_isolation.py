"""The trainer runs where feast, pymilvus, milvus_lite and bentoml cannot be imported (a bare GPU box)."""
import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

BLOCKED = ("feast", "pymilvus", "milvus_lite", "bentoml", "sqlalchemy", "pydantic")


def test_train_without_feast_milvus_bentoml(built_pipeline, tmp_path):
    config = built_pipeline.config
    script = textwrap.dedent(f"""
        import importlib.abc, json, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in {BLOCKED!r}:
                    raise ImportError("blocked on the training box: " + name)
        sys.meta_path.insert(0, Block())
        from pathlib import Path
        from recplugin.config import load_config
        from recplugin.training.train import train
        config = load_config({str(config.path('recplugin.yaml'))!r})
        config.training.max_steps = 3
        config.training.epochs = 1
        result = train(config, config.snapshot_path, config.catalog_path, Path({str(tmp_path)!r}), progress=False)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
        print(json.dumps({{"version": result.version, "loaded": loaded}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["loaded"] == []
    assert (tmp_path / report["version"] / "model.pt").exists()
