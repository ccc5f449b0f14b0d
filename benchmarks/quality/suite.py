"""Run a suite of quality runs declared in a YAML file (benchmarks/quality/suites/*.yaml), one after another.

    python benchmarks/quality/suite.py benchmarks/quality/suites/defaults.yaml            # every run
    python benchmarks/quality/suite.py benchmarks/quality/suites/defaults.yaml --only text-ids-ml-1m-seed1
    python benchmarks/quality/suite.py benchmarks/quality/suites/defaults.yaml --list

A suite is `runs:`, each with a `name`, the `script` (defaults.py or run.py beside this file) and its `args`: a
mapping of option -> value (a list becomes several values, true a bare flag). Each run writes its own result file.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SCRIPTS = ("defaults.py", "run.py")


def command(run: dict) -> list[str]:
    """The command line of one run."""
    if run.get("script") not in SCRIPTS:
        raise SystemExit(f"run {run.get('name')!r}: script must be one of {list(SCRIPTS)}")
    line = [sys.executable, str(HERE / run["script"])]
    for option, value in (run.get("args") or {}).items():
        flag = f"--{option.replace('_', '-')}"
        if value is True:
            line.append(flag)
        elif isinstance(value, list):
            line += [flag, *map(str, value)]
        elif value is not False and value is not None:
            line += [flag, str(value)]
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", help="a YAML suite file")
    parser.add_argument("--only", nargs="+", help="run only these runs (by name)")
    parser.add_argument("--list", action="store_true", help="print each run's command and stop")
    args = parser.parse_args()
    runs = yaml.safe_load(Path(args.suite).read_text())["runs"]
    unknown = set(args.only or []) - {run["name"] for run in runs}
    if unknown:
        raise SystemExit(f"no run named {sorted(unknown)} in {args.suite}")
    chosen = [run for run in runs if not args.only or run["name"] in args.only]
    for number, run in enumerate(chosen, 1):
        line = command(run)
        print(f"[{number}/{len(chosen)}] {run['name']}: {shlex.join(line[1:])}", flush=True)
        if not args.list:
            subprocess.run(line, check=True)


if __name__ == "__main__":
    main()
