"""The whole path over HTTP: a real `bentoml serve` subprocess on the pipeline's Feast stores and Milvus Lite index."""
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import requests

from recplugin import pipeline
from recplugin.data.live_events import read_events
from recplugin.features.online import OnlineFeatures
from recplugin.features.store import prepare_sources
from tests.conftest import feast_states, state_tuple, tiny_config

pytestmark = pytest.mark.integration
EVENTS_SENT = 16


@pytest.fixture(scope="module")
def service_log(tmp_path_factory):
    return tmp_path_factory.mktemp("service") / "service.log"


@pytest.fixture(scope="module")
def service(built_pipeline, service_log):
    port = pipeline.free_port()
    base = f"http://127.0.0.1:{port}"
    log = service_log
    process = pipeline.start_service(built_pipeline.config, port, log_path=log)
    try:
        pipeline.wait_ready(base, process)
    except Exception:
        pipeline.stop_service(process)
        raise AssertionError(f"service did not become ready; log:\n{log.read_text()[-4000:]}")
    yield base
    pipeline.stop_service(process)


def _post(base, path, body):
    return requests.post(f"{base}{path}", json=body, timeout=60)


def _seen(config, user_id):
    state = OnlineFeatures(config).user_states([user_id])[0]
    return {int(i) for h in state.histories.values() for i in h.item_ids}


@pytest.fixture(scope="module")
def active_user(built_pipeline):
    events = pd.read_parquet(built_pipeline.config.events_path)
    return int(events["user_id"].value_counts().index[0])


def test_the_online_read_equals_feasts_get_online_features(built_pipeline):
    online = OnlineFeatures(built_pipeline.config)
    events = pd.read_parquet(built_pipeline.config.events_path)
    users = [int(u) for u in events["user_id"].drop_duplicates().iloc[:12]] + [10**9, 0]
    states = online.user_states(users)
    assert states[-2] is None and sum(s is not None for s in states) >= 12
    assert [state_tuple(s) for s in states] == [state_tuple(s) for s in feast_states(online, users)]


def test_recommend_every_scenario(service, built_pipeline, active_user):
    config = built_pipeline.config
    seen = _seen(config, active_user)
    eligible = pd.read_parquet(config.catalog_path).set_index("item_id")["scenarios"]
    for scenario in config.scenarios:
        body = {"user_id": active_user, "scenario": scenario, "k": 7}
        if scenario == "search":
            body["query"] = "spicy noodle recipe"
        answer = _post(service, "/recommend", body)
        assert answer.status_code == 200, answer.text
        data = answer.json()
        ids = [item["item_id"] for item in data["items"]]
        assert len(ids) == 7 and len(set(ids)) == 7
        assert not seen & set(ids), "recommended an item the user already interacted with"
        assert all(scenario in eligible[i] for i in ids)
        assert data["model_version"] == built_pipeline.version and data["cold_start"] is False
        scores = [item["score"] for item in data["items"]]
        assert scores == sorted(scores, reverse=True)


def test_an_event_changes_the_next_answer(service, built_pipeline, active_user):
    config = built_pipeline.config
    before = _post(service, "/recommend", {"user_id": active_user, "scenario": "feed", "k": 10}).json()
    top = before["items"][0]["item_id"]
    counts_before = OnlineFeatures(config).user_states([active_user])[0].histories["feed"].count
    event = _post(service, "/events", {"user_id": active_user, "item_id": top, "scenario": "feed", "action": "like"})
    assert event.status_code == 200, event.text
    assert event.json()["counts"]["feed"] == counts_before + 1
    after = _post(service, "/recommend", {"user_id": active_user, "scenario": "feed", "k": 10}).json()
    assert top not in [item["item_id"] for item in after["items"]]
    assert after["items"] != before["items"]
    state = OnlineFeatures(config).user_states([active_user])[0]
    assert list(state.histories["feed"].item_ids)[-1] == top
    assert state.histories["feed"].count == counts_before + 1


def test_an_event_is_logged_and_reaches_the_offline_source_at_the_next_apply(service, built_pipeline):
    config = built_pipeline.config
    user = 777_000
    assert _post(service, "/events", {"user_id": user, "item_id": 3, "scenario": "discovery", "action": "purchase"}).status_code == 200
    logged = read_events(config.live_events_path)
    assert logged[logged.user_id == user][["item_id", "scenario", "action"]].values.tolist() == [[3, "discovery", "purchase"]]
    prepare_sources(config, progress=False)  # what `recplugin apply` does first
    offline = pd.read_parquet(config.data_dir / "user_state.parquet")
    rows = offline[offline.user_id == user]
    assert len(rows) == 1 and list(rows.iloc[-1].discovery_item_ids) == [3]


def test_unknown_user_gets_popular_items(service, built_pipeline):
    data = _post(service, "/recommend", {"user_id": 10**12, "scenario": "discovery", "k": 5}).json()
    assert data["cold_start"] is True and len(data["items"]) == 5
    scores = [item["score"] for item in data["items"]]
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0 and 0 < scores[-1] <= 1  # share of the top item


@pytest.mark.parametrize("body, field", [
    ({"user_id": 1, "scenario": "shopping", "k": 5}, "scenario"),
    ({"user_id": 1, "scenario": "feed", "k": 0}, "k"),
    ({"user_id": 1, "scenario": "feed", "k": 10_000}, "k"),
    ({"user_id": -1, "scenario": "feed"}, "user_id"),
    ({"user_id": "abc", "scenario": "feed"}, "user_id"),
    ({"user_id": True, "scenario": "feed"}, "user_id"),
    ({"user_id": 1.5, "scenario": "feed"}, "user_id"),
    ({"scenario": "feed"}, "user_id"),
    ({"user_id": 1, "scenario": "search", "query": "x" * 5000}, "query"),
])
def test_bad_recommend_input_is_a_400_naming_the_field(service, body, field):
    answer = _post(service, "/recommend", body)
    assert answer.status_code == 400, answer.text
    assert field in answer.text


def test_an_event_for_an_item_outside_the_catalogue_is_a_422_and_not_logged(service, built_pipeline):
    before = len(read_events(built_pipeline.config.live_events_path))
    answer = _post(service, "/events", {"user_id": 1, "item_id": 10**15, "scenario": "feed", "action": "click"})
    assert answer.status_code == 422 and "not in the catalogue" in answer.json()["error"]
    assert len(read_events(built_pipeline.config.live_events_path)) == before


def test_non_json_bodies_are_415(service):
    answer = requests.post(f"{service}/events", data="user_id=1", headers={"content-type": "application/x-www-form-urlencoded"},
                           timeout=30)
    assert answer.status_code == 415 and "application/json" in answer.json()["error"]


def test_bad_event_and_malformed_json_are_400(service):
    answer = _post(service, "/events", {"user_id": 1, "item_id": 2, "scenario": "feed", "action": "teleport"})
    assert answer.status_code == 400 and "action" in answer.json()["error"] and "'click'" in answer.json()["error"]
    raw = requests.post(f"{service}/recommend", data=b'{"user_id": 1, "scen', headers={"content-type": "application/json"}, timeout=30)
    assert raw.status_code == 400


def test_not_ready_until_an_index_exists(tmp_path):
    """A service with no model, no features and no index stays up but is not ready, and says why."""
    config = tiny_config(tmp_path)
    config.path(".").mkdir(parents=True, exist_ok=True)
    pipeline.save_config(config, pipeline.workdir_config_path(config))
    port = pipeline.free_port()
    process = pipeline.start_service(config, port, log_path=tmp_path / "service.log")
    base = f"http://127.0.0.1:{port}"
    try:
        ready = None
        for _ in range(120):
            try:
                ready = requests.get(f"{base}/readyz", timeout=10)
                break
            except requests.RequestException:
                time.sleep(1)
        assert ready is not None and ready.status_code == 503
        answer = _post(base, "/recommend", {"user_id": 1, "scenario": "feed"})
        assert answer.status_code == 503 and "not ready" in answer.text
    finally:
        pipeline.stop_service(process)


def test_oversized_body_is_413_and_normal_answers_are_not_degraded(service, built_pipeline):
    body = ('{"user_id": 1, "scenario": "search", "query": "' + "x" * (built_pipeline.config.serving.max_body_bytes + 10) + '"}').encode()
    raw = requests.post(f"{service}/recommend", data=body, headers={"content-type": "application/json"}, timeout=30)
    assert raw.status_code == 413 and "bytes" in raw.json()["error"]
    assert _post(service, "/recommend", {"user_id": 1, "scenario": "feed", "k": 3}).json()["degraded"] is None


def test_concurrent_events_are_all_kept(service, built_pipeline):
    config = built_pipeline.config
    user = 555_000

    def send(index):
        body = {"user_id": user, "item_id": index, "scenario": config.scenarios[index % len(config.scenarios)], "action": "click"}
        return requests.post(f"{service}/events", json=body, timeout=120).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(send, range(EVENTS_SENT)))
    assert statuses == [200] * EVENTS_SENT
    state = OnlineFeatures(config).user_states([user])[0]
    assert sum(h.count for h in state.histories.values()) == EVENTS_SENT
    assert sorted(int(i) for h in state.histories.values() for i in h.item_ids) == list(range(EVENTS_SENT))
    logged = read_events(config.live_events_path)
    mine = logged[logged.user_id == user]
    assert sorted(mine["item_id"]) == list(range(EVENTS_SENT))  # every event logged exactly once
    prepare_sources(config, progress=False)
    offline = pd.read_parquet(config.data_dir / "user_state.parquet")
    last = offline[offline.user_id == user].sort_values("event_timestamp").iloc[-1]
    assert sum(int(last[f"{s}_count"]) for s in config.scenarios) == EVENTS_SENT


INJECTIONS = ['feed" or item_id > 0 or "', "feed') || true; --", "'; DROP TABLE recplugin_model_versions; --", "feed\x00", "ｆｅｅｄ", "feed\n"]


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_strings_never_reach_a_filter(service, built_pipeline, text):
    answer = _post(service, "/recommend", {"user_id": 1, "scenario": text, "k": 3})
    assert answer.status_code == 400 and answer.json()["error"].startswith("scenario: Input should be")
    searched = _post(service, "/recommend", {"user_id": 1, "scenario": "discovery", "k": 5, "query": text})
    assert searched.status_code == 200
    eligible = pd.read_parquet(built_pipeline.config.catalog_path).set_index("item_id")["scenarios"]
    assert all("discovery" in eligible[item["item_id"]] for item in searched.json()["items"])


def test_random_bodies_never_cause_a_server_error(service):
    """Property: whatever JSON a caller sends to either endpoint, the answer is never a 5xx."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False),
                        st.text(max_size=80), st.sampled_from(["search", "feed", "discovery", "click", "like"]))
    values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars, max_size=2))
    keys = st.sampled_from(["user_id", "scenario", "k", "query", "item_id", "action", "extra"])

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(path=st.sampled_from(["/recommend", "/events"]), body=st.dictionaries(keys, values, max_size=6))
    def check(path, body):
        # json.dumps writes Infinity/-Infinity as bare words: not JSON, so those bodies also probe the malformed-JSON path
        answer = requests.post(f"{service}{path}", data=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=60)
        assert answer.status_code < 500, (path, body, answer.status_code, answer.text)

    check()


def test_unknown_paths_never_become_metrics_labels(service):
    statuses = {requests.get(f"{service}/nope-{i}", timeout=30).status_code for i in range(300)}
    assert statuses == {404}
    metrics = requests.get(f"{service}/metrics", timeout=30)
    assert metrics.status_code == 200 and "nope" not in metrics.text
    assert requests.get(f"{service}/docs.json", timeout=30).status_code == 200


def test_bad_requests_are_json_objects_and_one_info_line_each(service, service_log, built_pipeline):
    service_scenarios = built_pipeline.config.scenarios
    unknown = _post(service, "/recommend", {"user_id": 1, "scenario": "nope-scenario", "k": 5})
    invalid = _post(service, "/recommend", {"user_id": -5, "scenario": "feed"})
    assert unknown.status_code == invalid.status_code == 400
    assert isinstance(unknown.json(), dict) and unknown.json()["error"].startswith("scenario: ")
    assert all(f"'{name}'" in unknown.json()["error"] for name in service_scenarios)
    assert isinstance(invalid.json(), dict) and "error" in invalid.json()
    time.sleep(1)
    text = service_log.read_text()
    lines = [line for line in text.splitlines() if "nope-scenario" in line]
    assert lines and all("INFO" in line for line in lines), lines
    assert "Feast online read failed" not in text  # an unknown scenario is not an online-store failure
    assert "Traceback" not in text and "[ERROR]" not in text  # every 4xx of this module (random bodies too): one INFO line


def test_user_vectors_score_items_exactly_as_recommend_does(service, built_pipeline, active_user):
    import numpy as np

    config = built_pipeline.config
    artifact = config.models_dir / built_pipeline.version
    vectors_of = dict(zip(np.load(artifact / "item_ids.npy").tolist(), np.load(artifact / "item_vectors.npy")))
    body = {"user_id": active_user, "scenario": "feed"}
    answer = _post(service, "/user_vectors", body).json()
    assert answer["known_user"] and answer["model_version"] == built_pipeline.version and answer["scenario"] == "feed"
    interests = np.array(answer["vectors"], dtype=np.float32)
    assert interests.shape == (config.model.interests_per_scenario, config.model.embedding_dim)
    items = _post(service, "/recommend", {**body, "k": 5}).json()["items"]
    for item in items:  # Milvus's score is the best dot product over the interests
        assert abs(float((interests @ vectors_of[item["item_id"]]).max()) - item["score"]) < 1e-3
    unknown = _post(service, "/user_vectors", {"user_id": 10**12, "scenario": "feed"}).json()
    assert unknown["known_user"] is False and unknown["vectors"] == []
    assert _post(service, "/user_vectors", {"user_id": 1, "scenario": "nope"}).status_code == 400


def test_a_cli_command_while_the_service_runs_uses_the_services_milvus_lite_server(service, built_pipeline):
    """`recplugin promote` on the Milvus Lite file the service holds goes through the service's own Milvus Lite server:
    it neither opens a second server on the file (the two would diverge) nor takes the file from the service."""
    from recplugin import cli
    from recplugin.index import lite_guard

    config = built_pipeline.config
    holder = lite_guard.guard_path(config.milvus_uri).read_text().split()
    assert holder[0] != str(__import__("os").getpid()) and holder[1].startswith("unix://")
    path = pipeline.save_config(config, config.path("promote-while-serving.yaml"))
    cli.main(["promote", built_pipeline.version, "-c", str(path)])
    assert not lite_guard.holds(config.milvus_uri)
    assert lite_guard.guard_path(config.milvus_uri).read_text().split() == holder
    answer = _post(service, "/recommend", {"user_id": 1, "scenario": config.scenarios[0], "k": 5})
    assert answer.status_code == 200 and answer.json()["model_version"] == built_pipeline.version
