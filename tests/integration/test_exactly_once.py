"""/events exactly once: a retried event (same event_id, or the same content and timestamp) is stored once in the online
state and once in the log as read, after a failure at any step of the first attempt (a refusal or a timeout), on the
embedded stack (SQLite) and on the production one (Redis, PostgreSQL, a Milvus server)."""
import threading

import pandas as pd
import pytest

from recplugin import pipeline
from recplugin.client import RecClient
from recplugin.data.live_events import read_all_events
from recplugin.features.store import open_store
from recplugin.serving import events as events_module
from recplugin.serving.recommender import Recommender, Unprocessable
from tests.conftest import served_copy
from tests.support.proxy import HangingProxy

pytestmark = pytest.mark.integration
USER = 4242


def _fails_once(real, error: Exception, after: bool):
    """`real`, except that its first call fails with `error`: before doing anything (a refusal, after a short stall like
    a hung dependency's timeout), or `after` doing its work (the answer was lost)."""
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(args)
        if len(calls) > 1:
            return real(*args, **kwargs)
        if after:
            real(*args, **kwargs)
        else:
            threading.Event().wait(0.3)
        raise error

    return wrapped


def _once(config, recommender: Recommender, item: int) -> None:
    """The user's state holds the item once, and the log as read holds its event once."""
    state = recommender.user_state(USER)
    assert sum(1 for h in state.histories.values() for i in h.item_ids if i == item) == 1
    logged = read_all_events(config.live_events_path)
    assert len(logged[(logged.user_id == USER) & (logged.item_id == item)]) == 1


@pytest.mark.parametrize("production", [False, True], ids=["embedded", "production"])
def test_a_retried_event_is_stored_once_whatever_step_failed(built_pipeline, milvus_server_uri, tmp_path, monkeypatch,
                                                             production):
    config = served_copy(built_pipeline, tmp_path / "work", milvus_server_uri if production else "milvus.db",
                         production=production)
    items = [int(i) for i in pd.read_parquet(config.catalog_path)["item_id"]]
    scenario, action = config.scenarios[1], config.actions[0]
    recommender = Recommender(config)
    try:
        online = recommender.online
        faults = {  # where the first attempt fails; the steps before it took effect
            "ledger write": (online.ledger, "put", TimeoutError("ledger write timed out"), False),  # nothing pushed yet
            "online push": (online, "push_state", TimeoutError("online store hung after the write"), True),
            "log append": (events_module, "append_event", OSError("disk full"), False),  # state already pushed
            "ledger done": (online.ledger, "put", ConnectionError("redis went away"), False),  # all but the last step
        }
        for position, (name, (owner, attribute, error, after)) in enumerate(faults.items()):
            item, event_id = items[position], f"retry-{position}"
            state = recommender.user_state(USER)
            count = state.histories[scenario].count if state else 0
            real = getattr(owner, attribute)
            if name == "ledger done":  # the first put (pending) works, the second (done) fails
                puts = []

                def flaky(*args, real=real, puts=puts):
                    puts.append(args)
                    if len(puts) == 2:
                        raise error
                    return real(*args)
                monkeypatch.setattr(owner, attribute, flaky)
            else:
                monkeypatch.setattr(owner, attribute, _fails_once(real, error, after))
            with pytest.raises(type(error)):
                recommender.record_event(USER, item, scenario, action, event_id)
            retried = recommender.record_event(USER, item, scenario, action, event_id)
            monkeypatch.setattr(owner, attribute, real)
            assert retried["event_id"] == event_id and not retried["duplicate"], name
            assert retried["counts"][scenario] == count + 1, f"{name}: the retry counted the event twice"
            again = recommender.record_event(USER, item, scenario, action, event_id)
            assert again["duplicate"] and again["counts"] == retried["counts"], name
            _once(config, recommender, item)

        # no event_id: the client's timestamp names the event; another timestamp is another event
        item = items[10]
        first = recommender.record_event(USER, item, scenario, action, timestamp_s=1_700_000_000.5)
        retry = recommender.record_event(USER, item, scenario, action, timestamp_s=1_700_000_000.5)
        later = recommender.record_event(USER, item, scenario, action, timestamp_s=1_700_000_060.0)
        assert retry["duplicate"] and retry["event_id"] == first["event_id"] and not later["duplicate"]
        assert later["counts"][scenario] == first["counts"][scenario] + 1
        logged = read_all_events(config.live_events_path)
        times = sorted(logged[(logged.user_id == USER) & (logged.item_id == item)]["event_timestamp"])
        assert times == [pd.Timestamp(1_700_000_000.5, unit="s", tz="UTC"), pd.Timestamp(1_700_000_060, unit="s", tz="UTC")]
        with pytest.raises(Unprocessable, match="timestamp .* in the future; allowed"):
            recommender.record_event(USER, item, scenario, action, timestamp_s=4_000_000_000.0)
        # without either, every call is a new event (at least once), and the receipt says which id it got
        plain = [recommender.record_event(USER, item, scenario, action) for _ in range(2)]
        assert plain[0]["event_id"] != plain[1]["event_id"] and not any(p["duplicate"] for p in plain)
    finally:
        recommender.close()
        if production:
            store = open_store(config)
            store._get_provider().teardown_infra(config.feast.project, store.list_feature_views(), store.list_entities())


def test_a_client_whose_answer_was_lost_retries_and_the_event_counts_once(built_pipeline, tmp_path):
    """Over HTTP: the service stores the event, its answer is lost on the way (the client times out), RecClient retries
    with the same event id and gets `duplicate`; the state and the log hold the event once."""
    config = served_copy(built_pipeline, tmp_path / "work", "milvus.db")
    port = pipeline.free_port()
    process = pipeline.start_service(config, port, log_path=tmp_path / "service.log")
    proxy = HangingProxy("127.0.0.1", port)
    try:
        pipeline.wait_ready(f"http://127.0.0.1:{port}", process)
        item = int(pd.read_parquet(config.catalog_path)["item_id"].iloc[3])
        with RecClient(f"http://127.0.0.1:{proxy.port}", timeout_s=3) as client:
            before = client.event(USER, item, "feed", "click")
            proxy.lose_answers(1)
            receipt = client.event(USER, item, "feed", "click", event_id="lost-answer-1")
        assert receipt.duplicate and receipt.event_id == "lost-answer-1"
        assert receipt.counts["feed"] == before.counts["feed"] + 1
        logged = read_all_events(config.live_events_path)
        assert len(logged[(logged.user_id == USER) & (logged.item_id == item)]) == 2  # the first event and this one
    finally:
        proxy.close()
        pipeline.stop_service(process)
