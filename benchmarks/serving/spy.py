"""Where a /recommend request's time goes under load: py-spy samples of the service's processes, grouped by stage (not named
`profile`: this folder is first on sys.path when run.py runs, and the standard library has a `profile` module).

py-spy is not a dependency of recplugin: `pip install py-spy` (the benchmark skips the profile without it).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

# The innermost frame that matches decides a sample's stage (checked from the leaf outwards, first rule first).
STAGES = [("Feast online read (Feast, SQLite / Redis)", r"(^|/)(feast|redis|sqlite3|psycopg|sqlalchemy)/|recplugin/features/"),
          ("Milvus search (pymilvus, gRPC)", r"(^|/)(pymilvus|grpc|milvus_lite)/|recplugin/index/"),
          ("user tower (torch)", r"(^|/)torch/|recplugin/models/"),
          ("HTTP, validation, metrics (BentoML, Starlette, pydantic)",
           r"(^|/)(bentoml|_bentoml_impl|_bentoml_sdk|starlette|uvicorn|pydantic|pydantic_core|h11|httptools|prometheus_client|"
           r"opentelemetry|attributes|trace|metrics|anyio)/"),
          ("recplugin serving code (merging, ids, JSON)", r"recplugin/serving/"),
          ("event loop and threads", r"(^|/)(asyncio|selectors|concurrent)/|threading\.py|uvloop")]
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(:\d+)?\)$")


def executable() -> str | None:
    """py-spy next to this Python (a virtual environment's bin/), or on PATH."""
    return shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path, rate: int = 100) -> subprocess.Popen:
    """Start sampling `pid` and its children (the BentoML workers) for `seconds`, raw collapsed stacks into `out`."""
    return subprocess.Popen([executable(), "record", "--pid", str(pid), "--subprocesses", "--duration", str(int(seconds)),
                             "--rate", str(rate), "--format", "raw", "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stage_of(stack: str) -> str:
    """The stage one collapsed stack (frames root;...;leaf) belongs to."""
    for frame in reversed(stack.split(";")):
        match = FRAME.match(frame)
        path = match.group("file") if match else frame
        for stage, pattern in STAGES:
            if re.search(pattern, path):
                return stage
    return "other"


def breakdown(raw: Path) -> dict:
    """Share of the active samples per stage (py-spy leaves idle threads out), and the sample count."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[stage_of(stack)] += int(count)
    total = sum(counts.values())
    return {"samples": total, "share": {stage: count / total for stage, count in counts.most_common()}}


ROLES = [("HTTP worker", "worker.service"), ("batch process", "spawn_main"), ("Milvus Lite", "milvus_lite/lib/milvus"),
         ("BentoML arbiter", "bentoml serve")]


def cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU seconds so far of the load generator (this process) and of each role among the service's
    processes (the service process and its descendants, by command line)."""
    import psutil

    used = {"load generator": sum(psutil.Process().cpu_times()[:2])}
    try:
        tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return used
    for process in tree:
        try:
            command, seconds = " ".join(process.cmdline()), sum(process.cpu_times()[:2])
        except psutil.Error:  # gone meanwhile
            continue
        role = next((name for name, marker in ROLES if marker in command), "other")
        used[role] = used.get(role, 0.0) + seconds
    return used


def cpu_ms_per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """CPU milliseconds per request of each role between two `cpu_seconds` readings (a process started in between counts
    whole, one that ended is left out)."""
    return {role: round(1000 * (seconds - before.get(role, 0.0)) / max(requests, 1), 3) for role, seconds in after.items()}
