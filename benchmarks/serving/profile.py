"""Where a /recommend request's time goes under load: py-spy samples of the service's processes, grouped by stage.

py-spy is not a dependency of recplugin: `pip install py-spy` (the benchmark skips the profile without it).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

# The innermost frame that matches decides a sample's stage (checked from the leaf outwards, first rule first).
STAGES = [("Feast online read (Feast, SQLite / Redis)", r"/(feast|redis|sqlite3|psycopg|sqlalchemy)/|features/online"),
          ("Milvus search (pymilvus, gRPC)", r"/(pymilvus|grpc|milvus_lite)/|index/milvus"),
          ("user tower (torch)", r"/torch/|recplugin/models/"),
          ("HTTP, validation, metrics (BentoML, Starlette, pydantic)",
           r"/(bentoml|_bentoml_impl|starlette|uvicorn|pydantic|pydantic_core|h11|httptools|prometheus_client|opentelemetry|anyio)/"),
          ("recplugin serving code (merging, ids, JSON)", r"recplugin/serving/"),
          ("event loop and threads", r"/(asyncio|selectors|threading|concurrent)/|uvloop")]
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(:\d+)?\)$")


def available() -> bool:
    """Whether py-spy is installed next to this Python or on PATH."""
    return shutil.which("py-spy") is not None


def record(pid: int, seconds: float, out: Path, rate: int = 100) -> subprocess.Popen:
    """Start sampling `pid` and its children (the BentoML workers) for `seconds`, raw collapsed stacks into `out`."""
    return subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--subprocesses", "--duration", str(int(seconds)),
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
