"""The report's building blocks: read a result file, name where it came from, draw a markdown table."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def load(name: str) -> dict:
    """One result file."""
    return json.loads((RESULTS / f"{name}.json").read_text())


def meta(data: dict) -> dict:
    """The provenance block, whatever the script called it."""
    return data.get("meta") or data.get("provenance") or data


def source(*names: str) -> str:
    """A line per file: its name, command, commit, machine and date."""
    lines = []
    for name in names:
        info = meta(load(name))
        lines.append(f"- `results/{name}.json`: `{info.get('command', '?')}` (commit {str(info.get('git_commit', 'not recorded'))[:12]}, "
                     f"{info.get('machine', info.get('device', '?'))}, {info.get('date', '?')})")
    return "\n".join(lines)


def table(header: list[str], rows: list[list[object]]) -> str:
    """A markdown table."""
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)])


def mean_std(values: list[float]) -> str:
    """'mean ± std' (population std over seeds) or the single value."""
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"
