"""Rollout buckets: stable per (candidate, user), the share's fraction of users, a larger share only adds users, and
the registry's rollout row (one at a time; a share of 0 ends it)."""
import pytest

from recplugin.registry.models import ModelRegistry, Rollout, UnknownVersion
from recplugin.serving.rollout import bucket, gets_candidate


def test_buckets_are_stable_proportional_and_nested():
    users = range(20_000)
    for share in (0.0, 1.0, 10.0, 50.0, 100.0):
        chosen = sum(gets_candidate(Rollout("v2", share), u) for u in users) / len(users)
        assert abs(chosen - share / 100) < 0.01
    ten = {u for u in users if gets_candidate(Rollout("v2", 10.0), u)}
    assert ten < {u for u in users if gets_candidate(Rollout("v2", 25.0), u)}
    other = {u for u in users if gets_candidate(Rollout("v3", 10.0), u)}
    assert len(ten & other) < 0.2 * len(ten)  # each candidate draws its own users
    assert bucket("v2", 12345) == bucket("v2", 12345) and not gets_candidate(None, 1)


def test_the_registry_keeps_one_rollout(tmp_path):
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'registry.db'}")
    assert registry.rollout() is None
    with pytest.raises(UnknownVersion):
        registry.set_rollout("v_missing", 10.0)
    for version in ("v1", "v2"):
        registry.register(version, {}, {}, str(tmp_path / version))
    registry.set_rollout("v1", 10.0)
    registry.set_rollout("v2", 25.0)
    assert registry.rollout() == Rollout("v2", 25.0)
    registry.set_rollout("v2", 0.0)
    assert registry.rollout() is None
