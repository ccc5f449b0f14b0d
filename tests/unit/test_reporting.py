"""What the stages print: line progress off a terminal, why training stopped and the verdict against popularity, a
bad mapping caught on the header, and the generated report in step with the result files."""
import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from recplugin.config import TrainingConfig
from recplugin.data.mapping import EventColumns
from recplugin.data.schema import SchemaError
from recplugin.data.tables import check_header
from recplugin.progress import LineProgress
from recplugin.training.verdict import Verdict, load_verdict, stop_reason

ROOT = Path(__file__).resolve().parents[2]


def test_line_progress_prints_one_line_per_tenth():
    stream = io.StringIO()
    bar = LineProgress(total=200, desc="train", unit="step", stream=stream)
    for _ in range(200):
        bar.update(1)
        bar.set_postfix(loss="1.0")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in stream.getvalue()
    assert lines[0].startswith("train: 10% (20/200 step") and lines[-1].startswith("train: 100% (200/200 step")
    assert lines[-1].endswith("loss=1.0)")


def test_line_progress_wraps_an_iterable_and_a_shrunk_total():
    stream = io.StringIO()
    bar = LineProgress(range(5), total=5, desc="chunks", stream=stream)
    assert list(bar) == [0, 1, 2, 3, 4] and len(stream.getvalue().splitlines()) == 5
    bar = LineProgress(total=1000, desc="train", stream=stream)
    bar.update(100)
    bar.total = 200  # a time budget refits the plan: the next line says so
    bar.update(1)
    assert stream.getvalue().splitlines()[-1].startswith("train: 50% (101/200")


@pytest.mark.parametrize("epochs_run, best, steps, planned, settings, reason", [
    (7, 4, 700, 3000, TrainingConfig(epochs=30, patience=3), "validation"),
    (9, 9, 900, 900, TrainingConfig(epochs=30, max_minutes=2), "the time budget"),
    (3, 3, 50, 50, TrainingConfig(epochs=30, max_steps=50), "the step cap"),
    (30, 29, 3000, 3000, TrainingConfig(epochs=30, patience=3), "the epoch cap"),
])
def test_stop_reason(epochs_run, best, steps, planned, settings, reason):
    assert stop_reason(settings, epochs_run, best, steps, planned).startswith(reason)


def test_the_verdict_warns_when_popularity_wins_and_is_kept_in_the_artifact(tmp_path):
    losing = Verdict(5, 2, "validation", model_ndcg=0.02, popularity_ndcg=0.03)
    assert not losing.beats_popularity
    assert losing.lines()[1].startswith("WARNING: the model does NOT beat popularity") and "--force" in losing.lines()[1]
    winning = Verdict(5, 5, "the time budget", model_ndcg=0.2, popularity_ndcg=0.01, curve_path="c.png")
    assert winning.beats_popularity and "(20.0x)" in winning.lines()[1] and "best epoch 5" in winning.lines()[0]
    winning.save(tmp_path)
    assert load_verdict(tmp_path) == winning and load_verdict(tmp_path / "absent") is None


def test_a_bad_mapping_fails_on_the_header_before_any_row_is_read(tmp_path):
    table = tmp_path / "events.csv"
    pd.DataFrame({"uid": [1], "sku": [2], "ts": ["2024-01-01"], "scenario": ["feed"], "action": ["click"]}).to_csv(table, index=False)
    with pytest.raises(SchemaError, match=r"column 'user_id' \(source.events.user\) is missing; the table has \['uid'"):
        check_header(str(table), EventColumns(), "events")
    check_header(str(table), EventColumns(user="uid", item="sku", timestamp="ts"), "events")  # no error


def test_the_committed_report_and_readme_table_match_the_result_files():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report.py"), "--check"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_result_file_is_cited_by_the_report_and_every_citation_exists():
    report = (ROOT / "benchmarks" / "REPORT.md").read_text()
    files = {path.name for path in (ROOT / "benchmarks" / "results").iterdir()}
    cited = {name for name in files if f"`results/{name}`" in report}
    assert files == cited, f"not cited by the report: {sorted(files - cited)}"
    for name in files:
        json.loads((ROOT / "benchmarks" / "results" / name).read_text())


def test_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
