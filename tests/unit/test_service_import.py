"""`bentoml serve` imports the service module in its parent process before it starts the workers: that import stays
light (no torch, Feast, pymilvus or pandas), so a start or a rolling restart does not pay their ~10 s import twice."""
import os
import subprocess
import sys

from recplugin.config import load_config, save_config


def test_importing_the_service_module_loads_no_heavy_dependency(tmp_path):
    path = save_config(load_config(workdir=str(tmp_path)), tmp_path / "recplugin.yaml")
    probe = ("import sys, recplugin.serving.service as s; assert s.RecPlugin is not None; "
             "print(sorted(m for m in ('torch', 'feast', 'pymilvus', 'pandas', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "RECPLUGIN_CONFIG": str(path)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
