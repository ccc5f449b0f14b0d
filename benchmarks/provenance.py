"""What every result file records about its run: the exact command, the git commit, the machine, the date, wall time."""
from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    """The checked-out commit (a dirty tree is marked, so a result never claims a commit it did not run); a copy of the
    tree without git (a GPU box) names the one it was sent from in RECPLUGIN_GIT_COMMIT, and the result says so."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if not commit and os.environ.get("RECPLUGIN_GIT_COMMIT"):
        return os.environ["RECPLUGIN_GIT_COMMIT"] + " (a copy without git; RECPLUGIN_GIT_COMMIT)"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout
    return commit + ("-dirty" if dirty.strip() else "")


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
