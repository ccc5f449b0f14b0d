"""`pip install .` (not editable) into a fresh venv, then every offline stage from a directory outside the checkout:
the Feast repo templates must come from the installed package. Every stage says what it did, in a line or two, and a
log file gets whole lines (no progress-bar carriage returns)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from recplugin.config import save_config
from tests.conftest import tiny_config

pytestmark = pytest.mark.integration
CHECKOUT = Path(__file__).resolve().parents[2]
TORCH_WHEELS = Path(os.environ.get("TORCH_WHEELS", "/opt/wheels"))  # as the Makefile: never a CUDA build from an index
STAGES = (["generate"], ["apply"], ["materialize"], ["build-training-set"], ["train"], ["index"], ["models"])


def run(command: list[str], cwd: Path, timeout: int = 600) -> str:
    """Run a command; its output, or a failure that shows it."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "VIRTUAL_ENV": ""})  # no PYTHONWARNINGS: the CLI must be quiet itself
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "\x1b[" not in done.stdout and "DeprecationWarning" not in done.stderr, done.stdout[-2000:] + done.stderr[-2000:]
    assert "\r" not in done.stdout + done.stderr  # not a terminal: line progress only
    return done.stdout


def test_a_non_editable_install_runs_every_stage_and_each_stage_reports_what_it_did(tmp_path):
    uv = Path(sys.executable).with_name("uv")
    venv = tmp_path / "venv"
    run([str(uv), "venv", "--quiet", "--python", sys.executable, str(venv)], tmp_path)
    links = ["--find-links", str(TORCH_WHEELS)] if TORCH_WHEELS.is_dir() else []
    run([str(uv), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), *links, "torch==2.13.0",
         str(CHECKOUT)], tmp_path)
    where = run([str(venv / "bin" / "python"), "-c", "import recplugin; print(recplugin.__file__)"], tmp_path)
    assert str(venv) in where and str(CHECKOUT) not in where  # the installed copy, not the checkout
    config = tiny_config(tmp_path / "work", generator={"num_users": 60, "num_items": 100, "events_per_user": 10, "seed": 2},
                         training={"epochs": 1})
    config_path = save_config(config, tmp_path / "recplugin.yaml")
    said = {stage[0]: run([str(venv / "bin" / "recplugin"), *stage, "-c", str(config_path)], tmp_path) for stage in STAGES}
    assert said["models"].split()[1] == "serving"  # `models` lists the trained version as the served one
    assert re.search(r"[\d,]+ events from 60 users on 100 items", said["generate"])
    assert re.search(r"events per scenario: search [\d,]+, feed [\d,]+, discovery [\d,]+", said["generate"])
    assert re.search(r"user-state source: [\d,]+ rows", said["apply"]) and "feast apply done in" in said["apply"]
    assert re.search(r"materialised [\d,]+ user-state rows and 100 items into the sqlite online store", said["materialize"],
                     re.IGNORECASE)
    assert re.search(r"labels: train [\d,]+, validation [\d,]+, test [\d,]+ \(test per scenario: search",
                     said["build-training-set"])
    last = said["train"].strip().splitlines()
    assert re.match(r"stopped by .* after \d+ epoch\(s\); best epoch \d+; training curve: .*training_curve.png", last[-3])
    assert "popularity on validation" in last[-2] and last[-1].startswith("train done in")
    assert not (tmp_path / "feature_repo").exists()
