"""Quality suites: every suite file parses into commands of the scripts beside it, with the options those scripts take."""
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.quality.suite import command  # noqa: E402

SUITES = sorted((Path(__file__).resolve().parents[2] / "benchmarks" / "quality" / "suites").glob("*.yaml"))


@pytest.mark.parametrize("suite", SUITES, ids=lambda path: path.stem)
def test_each_run_of_a_suite_becomes_a_command_its_script_accepts(suite):
    import subprocess

    runs = yaml.safe_load(suite.read_text())["runs"]
    assert runs and len({run["name"] for run in runs}) == len(runs)
    for run in runs:
        line = command(run)
        assert line[1].endswith(run["script"])
    script = command(runs[0])[1]
    accepted = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True).stdout
    for option in runs[0]["args"]:
        assert f"--{option.replace('_', '-')}" in accepted


def test_a_list_becomes_several_values_and_true_a_bare_flag():
    run = {"name": "x", "script": "defaults.py", "args": {"seeds": [0, 1], "minutes": 2.0, "label": "x", "dry": True}}
    assert command(run)[2:] == ["--seeds", "0", "1", "--minutes", "2.0", "--label", "x", "--dry"]
    with pytest.raises(SystemExit, match="script must be one of"):
        command({"name": "y", "script": "rm.py"})
