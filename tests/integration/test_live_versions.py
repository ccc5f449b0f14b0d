"""Two BentoML workers on a real Milvus server: readiness, a live switch of model version under load with no restart,
no error, no mixed answer, and the replaced collection dropped only after the grace period; rollback, promote, and a
rollout of a candidate to a share of users."""
import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from recplugin import cli, pipeline
from recplugin.config import from_dict, to_dict, with_overrides
from recplugin.features.store import open_store
from recplugin.index import collections, milvus
from recplugin.models.artifact import ITEM_VECTORS, META
from recplugin.registry.models import ModelRegistry, Rollout
from recplugin.serving.rollout import gets_candidate
from tests.conftest import served_copy

pytestmark = pytest.mark.integration
RELOAD_S, GRACE_S = 2.0, 20.0


def _copy_artifact(source: Path, target: Path, version: str) -> Path:
    """The same towers under another version name, with the item vectors shuffled so that its answers differ."""
    shutil.copytree(source, target)
    meta = json.loads((target / META).read_text())
    (target / META).write_text(json.dumps({**meta, "version": version}))
    vectors = np.load(target / ITEM_VECTORS)
    np.save(target / ITEM_VECTORS, np.roll(vectors, 7, axis=0))
    return target


@pytest.fixture
def server_config(built_pipeline, milvus_server_uri, tmp_path):
    raw = to_dict(built_pipeline.config)
    prefix = f"live_{tmp_path.name[-12:].replace('-', '_')}_{int(time.time())}"
    raw["registry_url"] = f"sqlite:///{tmp_path / 'registry.db'}"
    raw["index"].update(uri=milvus_server_uri, collection_prefix=prefix, alias=f"{prefix}_current", keep_versions=1,
                        drop_grace_s=GRACE_S)
    raw["serving"].update(workers=2, reload_interval_s=RELOAD_S)
    config = from_dict(raw)
    yield config
    client = milvus.connect(milvus_server_uri, timeout=30)
    for name in client.list_collections():
        if name.startswith(prefix):
            collections.drop_collection(client, name)
    milvus.disconnect(client, milvus_server_uri)


def _first_answer(url: str, timeout: float = 120.0) -> requests.Response:
    """The first HTTP answer from a starting service."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(url, timeout=30)
        except (requests.ConnectionError, requests.Timeout):  # the socket is open before the workers have started
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _answers(base: str, bodies: list[dict]) -> list[dict]:
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda body: requests.post(f"{base}/recommend", json=body, timeout=30), bodies))
    assert [r.status_code for r in responses] == [200] * len(bodies), [r.text for r in responses if r.status_code != 200][:3]
    return [r.json() for r in responses]


def _settle(rows: list, version: str, since: float, timeout_s: float = 60.0) -> None:
    """Wait until every answer more than two reload intervals after `since` names `version` (rows: time, status, version)."""
    deadline = time.monotonic() + timeout_s
    while True:
        late = [v for at, _, v in rows if at > since + 2 * RELOAD_S + 1]
        if len(late) > 20 and set(late) == {version}:
            return
        assert time.monotonic() < deadline, f"workers did not all switch to {version}: {len(late)} answers since, {set(late)}"
        time.sleep(0.5)


def test_two_workers_switch_live_then_roll_back_and_promote_on_a_milvus_server(built_pipeline, server_config, tmp_path):
    """One service: a live switch by `index` (exact answers of one version each, the old collection dropped after the
    grace period), then rollback and promote under load; no request fails."""
    config = server_config
    source = Path(built_pipeline.config.models_dir) / built_pipeline.version
    first = pipeline.register_artifact(config, source)
    second = pipeline.register_artifact(config, _copy_artifact(source, tmp_path / "second", "v_second"))
    port = pipeline.free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "service.log"
    process = pipeline.start_service(config, port, log_path=log)
    rows, stop = [], threading.Event()
    try:
        assert _first_answer(f"{base}/readyz").status_code == 503  # no alias yet: up, not ready, and it says so
        first_collection = pipeline.index(config, first, progress=False)
        pipeline.wait_ready(base, process)
        users = pd.read_parquet(config.events_path, columns=["user_id"])["user_id"].drop_duplicates().head(10).tolist()
        bodies = [{"user_id": int(u), "scenario": config.scenarios[i % len(config.scenarios)], "k": 5}
                  for i, u in enumerate(users)]
        before = _answers(base, bodies)
        assert {a["model_version"] for a in before} == {first}

        log_rows = []

        def load() -> None:
            while not stop.is_set():
                for index, body in enumerate(bodies):
                    response = requests.post(f"{base}/recommend", json=body, timeout=30)
                    log_rows.append((time.monotonic(), index, response.status_code, response.json()))
                    rows.append((time.monotonic(), response.status_code, response.json().get("model_version")))

        workers = [threading.Thread(target=load) for _ in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(2)
        switched_at = time.monotonic()
        pipeline.index(config, second, progress=False)  # alias moved, then GRACE_S later the first collection dropped
        time.sleep(2)
        switch_rows = list(log_rows)
        after = _answers(base, bodies)

        # rollback and promote, with the previous version's collection kept
        kept = with_overrides(config, index={"keep_versions": 2, "drop_grace_s": 0.0})
        config_path = pipeline.save_config(kept, tmp_path / "recplugin.yaml")
        third = pipeline.register_artifact(kept, _copy_artifact(source, tmp_path / "third", "v_third"))
        pipeline.index(kept, third, progress=False)  # serving: third; second's collection is kept for a rollback
        _settle(rows, third, time.monotonic())  # from the alias's move on, which ends the call
        for command, expected in ((["rollback"], second), (["promote", third], third)):
            started = time.monotonic()
            cli.main([*command, "-c", str(config_path)])
            _settle(rows, expected, started)
        stop.set()
        for worker in workers:
            worker.join()
        answered = [line for line in requests.get(f"{base}/metrics", timeout=30).text.splitlines()
                    if line.startswith('recplugin_recommend_batches_total{answered_by="batch_process"}')]
        assert answered and float(answered[0].split()[-1]) > 0, "no batch process answered on the Milvus server stack"
    finally:
        stop.set()
        pipeline.stop_service(process)
    assert {a["model_version"] for a in after} == {second}
    assert [a["items"] for a in after] != [a["items"] for a in before]
    assert {status for _, status, _ in rows} == {200}, "a request failed during a switch, a rollback or a promote"
    expected = {first: before, second: after}
    for _, index, _, answer in switch_rows:  # every answer is exactly one version's answer, the version it names
        reference = expected[answer["model_version"]][index]["items"]
        assert [i["item_id"] for i in answer["items"]] == [i["item_id"] for i in reference], answer["model_version"]
        assert [i["score"] for i in answer["items"]] == pytest.approx([i["score"] for i in reference], abs=1e-4)
    late = [answer["model_version"] for at, _, _, answer in switch_rows if at > switched_at + GRACE_S]
    assert late and set(late) == {second}, "a worker still served the old version after the grace period"
    first_switch = min(at for at, _, _, answer in switch_rows if answer["model_version"] == second)
    last_old = max(at for at, _, _, answer in switch_rows if answer["model_version"] == first)
    print(f"first new answer {first_switch - switched_at:.1f} s, last old answer {last_old - switched_at:.1f} s after the index call")
    client = milvus.connect(config.milvus_uri, timeout=30)
    try:
        assert not client.has_collection(first_collection), "the replaced collection was not dropped after the grace period"
    finally:
        milvus.disconnect(client, config.milvus_uri)
    assert ModelRegistry(config.registry_sqlalchemy_url).serving_history()[:3] == [third, second, third]
    with pytest.raises(SystemExit, match="no Milvus collection|not in the registry"):
        cli.main(["promote", "v_never_indexed", "-c", str(config_path)])
    started_log = log.read_text()
    assert "[entry_service:recplugin:1]" in started_log and "[entry_service:recplugin:2]" in started_log


def test_a_rollout_answers_a_stable_share_of_users_on_every_worker_and_ends_with_promote(built_pipeline, milvus_server_uri,
                                                                                       tmp_path):
    """On the production stack: Redis, Feast's registry on PostgreSQL, a Milvus server, 2 workers."""
    config = served_copy(built_pipeline, tmp_path / "work", milvus_server_uri, production=True,
                         serving={"workers": 2, "reload_interval_s": RELOAD_S})
    config_path = pipeline.save_config(config, tmp_path / "recplugin.yaml")
    control = ModelRegistry(config.registry_sqlalchemy_url).latest(status="serving").version
    candidate = pipeline.register_artifact(config, _copy_artifact(Path(built_pipeline.config.models_dir) / built_pipeline.version,
                                                                  tmp_path / "candidate", "v_candidate"))
    pipeline.index(config, candidate, progress=False, serve=False)  # its collection only: the control keeps serving
    with pytest.raises(SystemExit, match="no Milvus collection|not in the registry"):
        cli.main(["rollout", "v_never_indexed", "--share", "10", "-c", str(config_path)])
    port = pipeline.free_port()
    base = f"http://127.0.0.1:{port}"
    process = pipeline.start_service(config, port, log_path=tmp_path / "service.log")
    users = list(range(0, 400, 2))  # most unknown: popular answers name their version too
    statuses, stop = [], threading.Event()

    def load() -> None:
        while not stop.is_set():
            statuses.append(requests.post(f"{base}/recommend", json={"user_id": 1, "scenario": "feed", "k": 5}, timeout=30).status_code)

    def versions() -> dict[int, set[str]]:
        answers = _answers(base, [{"user_id": u, "scenario": "feed", "k": 5} for u in users * 3])  # both workers answer
        seen: dict[int, set[str]] = {}
        for body, user in zip(answers, users * 3):
            seen.setdefault(user, set()).add(body["model_version"])
        return seen

    def expected(share: float) -> dict[int, set[str]]:
        rollout = Rollout(candidate, share)
        return {u: {candidate if gets_candidate(rollout, u) else control} for u in users}

    try:
        pipeline.wait_ready(base, process)
        thread = threading.Thread(target=load)
        thread.start()
        assert versions() == {u: {control} for u in users}
        for share in (30.0, 60.0):
            cli.main(["rollout", candidate, "--share", f"{share:g}", "-c", str(config_path)])
            time.sleep(2 * RELOAD_S + 1)  # every worker has looked again
            assert versions() == expected(share)  # every worker agrees, request after request
            assert abs(sum(v == {candidate} for v in expected(share).values()) / len(users) - share / 100) < 0.1
        in_30 = {u for u, v in expected(30.0).items() if v == {candidate}}
        assert in_30 <= {u for u, v in expected(60.0).items() if v == {candidate}}  # a larger share only adds users
        cli.main(["promote", candidate, "-c", str(config_path)])  # the candidate won: the rollout is over
        time.sleep(2 * RELOAD_S + 1)
        assert versions() == {u: {candidate} for u in users}
        assert ModelRegistry(config.registry_sqlalchemy_url).rollout() is None
    finally:
        stop.set()
        pipeline.stop_service(process)
        store = open_store(config)
        store._get_provider().teardown_infra(config.feast.project, store.list_feature_views(), store.list_entities())
    assert set(statuses) == {200}
