"""What every result file records about its run: the exact command, the git commit, the machine, the date, wall time."""
from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    """The checked-out commit (a dirty tree is marked, so a result never claims a commit it did not run); a copied tree
    (a GPU box, whose git may be absent or older) names the commit it was sent from in RECPLUGIN_GIT_COMMIT, beside its git's."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout
    commit += "-dirty" if commit and dirty.strip() else ""
    if os.environ.get("RECPLUGIN_GIT_COMMIT"):
        return f"{os.environ['RECPLUGIN_GIT_COMMIT']} (RECPLUGIN_GIT_COMMIT: the tree was copied from it; its git: {commit or 'none'})"
    return commit


def machine() -> str:
    """CPU model and core count (and the GPU, when torch sees one)."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or platform.machine()) if Path("/proc/cpuinfo").exists() else platform.machine()
    described = f"{model}, {os.cpu_count()} cores"
    try:
        import torch

        if torch.cuda.is_available():
            described += f", {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return described


def provenance(command: str, began: float, commit: str) -> dict:
    """The run's record; `began` is the time.monotonic() and `commit` the git_commit() taken at its start."""
    return {"command": command, "git_commit": commit, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
            "wall_s": round(time.monotonic() - began, 1)}
