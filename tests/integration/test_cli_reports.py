"""Every stage says what it did, in a line or two, and a log file gets whole lines (no progress-bar carriage returns)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from recplugin.config import save_config
from tests.conftest import tiny_config

pytestmark = pytest.mark.integration


def test_each_stage_reports_rows_users_items_and_time_and_train_ends_with_a_verdict(tmp_path):
    config = tiny_config(tmp_path / "work", generator={"num_users": 60, "num_items": 90, "events_per_user": 12, "seed": 2},
                         training={"epochs": 2})
    path = save_config(config, tmp_path / "recplugin.yaml")
    cli = str(Path(sys.executable).with_name("recplugin"))
    said = {}
    for stage in ("generate", "apply", "materialize", "build-training-set", "train"):
        run = subprocess.run([cli, stage, "-c", str(path)], capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        assert "\r" not in run.stdout + run.stderr  # not a terminal: line progress only
        said[stage] = run.stdout
    assert re.search(r"[\d,]+ events from 60 users on 90 items", said["generate"])
    assert re.search(r"events per scenario: search [\d,]+, feed [\d,]+, discovery [\d,]+", said["generate"])
    assert re.search(r"user-state source: [\d,]+ rows", said["apply"]) and "feast apply done in" in said["apply"]
    assert re.search(r"materialised [\d,]+ user-state rows and 90 items into the sqlite online store", said["materialize"],
                     re.IGNORECASE)
    assert re.search(r"labels: train [\d,]+, validation [\d,]+, test [\d,]+ \(test per scenario: search", said["build-training-set"])
    last = said["train"].strip().splitlines()
    assert re.match(r"stopped by .* after \d+ epoch\(s\); best epoch \d+; training curve: .*training_curve.png", last[-3])
    assert "popularity on validation" in last[-2] and last[-1].startswith("train done in")
