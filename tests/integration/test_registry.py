"""Model registry on SQLite (default) and on the local PostgreSQL (production path)."""
import uuid

import pytest
import sqlalchemy

from recplugin.registry.models import ModelRegistry, UnknownVersion

pytestmark = pytest.mark.integration
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres_url():
    try:
        sqlalchemy.create_engine(POSTGRES).connect().close()
    except Exception as error:  # the production path is tested wherever PostgreSQL runs (this machine and CI)
        pytest.fail(f"PostgreSQL at {POSTGRES} is not reachable: {error}")
    return POSTGRES


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request, tmp_path):
    url = f"sqlite:///{tmp_path}/registry.db" if request.param == "sqlite" else _postgres_url()
    return ModelRegistry(url)


def test_register_index_serve(registry):
    tag = uuid.uuid4().hex[:8]
    first, second = f"v_{tag}_1", f"v_{tag}_2"
    registry.register(first, {"model": {"embedding_dim": 64}}, {"two-tower": {"overall": {"NDCG@10": 0.2}}}, "/models/a")
    registry.register(second, {}, {}, "/models/b")
    registry.mark_indexed(first, f"items_{first}")
    registry.mark_serving(first)
    assert registry.by_collection(f"items_{first}").version == first
    assert registry.get(first).metrics["two-tower"]["overall"]["NDCG@10"] == 0.2
    registry.mark_indexed(second, f"items_{second}")
    registry.mark_serving(second)
    assert registry.get(first).status == "indexed" and registry.get(second).status == "serving"
    assert registry.latest(status="serving").version == second
    assert {first, second} <= {v.version for v in registry.list()}


def test_unknown_version_is_a_clear_error(registry):
    with pytest.raises(UnknownVersion, match="not in the registry"):
        registry.get("v_does_not_exist")
    with pytest.raises(UnknownVersion, match="no model version is indexed"):
        registry.by_collection("nope")


def test_a_lock_has_one_holder_at_a_time_and_expires(registry):
    from concurrent.futures import ThreadPoolExecutor

    name = f"refresh_{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(8) as pool:  # eight takers at once: one wins, the others are told who holds it
        answers = list(pool.map(lambda n: registry.try_lock(name, f"taker-{n}", 3600), range(8)))
    assert answers.count(None) == 1 and all("until" in a for a in answers if a is not None)
    winner = f"taker-{answers.index(None)}"
    registry.unlock(name, "someone-else")  # only the holder releases it
    assert registry.try_lock(name, "late", 3600) is not None
    registry.unlock(name, winner)
    assert registry.try_lock(name, "stale", 0) is None  # taken, and expired at once (its holder "died")
    assert registry.try_lock(name, "next", 3600) is None and registry.try_lock(name, "third", 3600).startswith("next")
    registry.unlock(name, "next")
