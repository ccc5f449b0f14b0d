"""Online A/B: a candidate version answers a stable share of the users beside the serving version. A user's bucket is a
hash of the candidate version and the user id, so every worker agrees without talking, a user keeps one version for
the whole rollout, and raising the share only adds users."""
from __future__ import annotations

import hashlib

from recplugin.registry.models import Rollout

BUCKETS = 10_000  # shares in steps of 0.01 %


def bucket(version: str, user_id: int) -> int:
    """The user's bucket for this candidate, 0..BUCKETS-1."""
    digest = hashlib.blake2b(f"{version}\x00{int(user_id)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def gets_candidate(rollout: Rollout | None, user_id: int) -> bool:
    """Whether the candidate answers this user."""
    return rollout is not None and bucket(rollout.version, user_id) < round(rollout.share * BUCKETS / 100)
