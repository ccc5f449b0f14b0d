"""How each model version does online: its answers, and the events that clients attribute to them; and how /recommend
batches (size, time).

Every /recommend answer carries a `request_id` that names the version that made it; an /events call that sends it
back (with the item's `position` in the answer) counts for that version. Counters live on /metrics (BentoML merges
its workers' counters), labelled by version, scenario and action only: a request id that names no registered
version counts under "unknown", so the label set stays bounded.
"""
from __future__ import annotations

import re
import uuid

from prometheus_client import Counter, Histogram

TOP = 10  # click-through is counted within the top 10 positions of an answer
REQUEST_ID = re.compile(r"^(?P<version>[A-Za-z0-9_-]{1,64})\.[0-9a-f]{16}$")

ANSWERS = Counter("recplugin_answers", "/recommend answers by the model version that made them",
                  ["model_version", "scenario", "cold_start"])
BATCH_SIZES = Histogram("recplugin_recommend_batch_size", "/recommend requests answered together in one batch",
                        buckets=(1, 2, 4, 8, 16, 32, 64, 128))
BATCH_SECONDS = Histogram("recplugin_recommend_batch_seconds", "Time from a /recommend batch's start to its answers",
                          buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5))
BATCHES_ANSWERED = Counter("recplugin_recommend_batches", "/recommend batches by what answered them: the worker's batch "
                           "process, or the worker itself (the process is starting, gone or hung)", ["answered_by"])
ATTRIBUTED = Counter("recplugin_attributed_events", "/events that name the answer they came from (its request_id)",
                     ["model_version", "scenario", "action", "position"])


def new_request_id(model_version: str) -> str:
    """An answer's id: its model version, a dot, 16 hex digits."""
    return f"{model_version}.{uuid.uuid4().hex[:16]}"


def version_of(request_id: str, known_versions: set[str]) -> str:
    """The version a request id names, or "unknown" (malformed, or a version the registry does not hold)."""
    match = REQUEST_ID.match(request_id)
    return match.group("version") if match and match.group("version") in known_versions else "unknown"


def count_answer(model_version: str, scenario: str, cold_start: bool) -> None:
    ANSWERS.labels(model_version, scenario, str(cold_start).lower()).inc()


def count_attributed(model_version: str, scenario: str, action: str, position: int | None) -> None:
    """One event attributed to an answer; `position` buckets: top10, below (beyond the top 10), unknown."""
    bucket = "unknown" if position is None else "top10" if position < TOP else "below"
    ATTRIBUTED.labels(model_version, scenario, action, bucket).inc()
