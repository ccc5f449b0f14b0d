"""The recplugin command line: every stage has a sub-command with --help and a config option."""
import subprocess
import sys

import pytest

from recplugin.cli import COMMANDS, build_parser, main

STAGES = ["generate", "load", "apply", "materialize", "build-training-set", "train", "index", "evaluate", "serve", "models", "demo"]


def test_every_stage_has_a_sub_command():
    assert set(STAGES) <= set(COMMANDS)


@pytest.mark.parametrize("name", STAGES)
def test_help_mentions_the_config_option(name, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args([name, "--help"])
    assert stop.value.code == 0
    assert "--config" in capsys.readouterr().out


def test_bad_config_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("training:\n  epochz: 3\n")
    with pytest.raises(SystemExit, match=r"bad config: training: unknown key\(s\) \['epochz'\]"):
        main(["models", "--config", str(path)])


@pytest.mark.parametrize("text, expected", [
    ("training: [epochs: 3\n", r"bad config: while parsing"),  # malformed YAML
    ("trainig:\n  epochs: 3\n", r"bad config: top level: unknown key\(s\) \['trainig'\]"),
])
def test_config_mistakes_are_one_line(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit, match=expected) as stop:
        main(["models", "--config", str(path)])
    assert "\n" not in str(stop.value.code)


def test_stage_mistakes_are_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"recplugin evaluate: model version 'v_nope' is not in the registry"):
        main(["evaluate", "--version", "v_nope", "-w", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"recplugin models: cannot open the model registry .* does the workdir"):
        main(["models", "-w", str(tmp_path / "missing" / "deeper")])
    with pytest.raises(SystemExit, match=r"recplugin apply: .*events.parquet"):
        main(["apply", "-w", str(tmp_path / "empty")])


def test_generate_through_the_installed_entry_point(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("generator:\n  num_users: 5\n  num_items: 40\n  events_per_user: 5\n")
    done = subprocess.run([sys.executable, "-m", "recplugin.cli", "generate", "-c", str(config), "-w", str(tmp_path / "w")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "w" / "data" / "events.parquet").exists()


def _fake_movielens(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ml-1m.txt").write_text("1 1\n1 2\n2 1\n")
    (folder / "sas_item_titles.tsv").write_text(
        "sas_item_id\tmovielens_movie_id\ttitle\tgenres\n1\t9\tA (1990)\tDrama\n2\t8\tB (1991)\tComedy|Drama\n")
    return folder


def test_load_refuses_mismatched_scenarios(tmp_path):
    with pytest.raises(SystemExit, match=r"set `scenarios: \['feed'\]`"):
        main(["load", "ml-1m", str(_fake_movielens(tmp_path / "ml")), "-w", str(tmp_path / "w")])


def test_load_writes_canonical_parquet(tmp_path):
    import pandas as pd

    config = tmp_path / "c.yaml"
    config.write_text("scenarios: [feed]\n")
    main(["load", "ml-1m", str(_fake_movielens(tmp_path / "ml")), "-c", str(config), "-w", str(tmp_path / "w")])
    events = pd.read_parquet(tmp_path / "w" / "data" / "events.parquet")
    assert events["item_id"].tolist() == [1, 2, 1] and set(events["scenario"]) == {"feed"}
