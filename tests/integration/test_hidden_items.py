"""Hidden items (out of stock, a takedown) leave every answer from the next request on, on every worker, before
anything changes in Milvus; unhiding brings them back. Embedded (SQLite, Milvus Lite, 1 worker) and production (Redis,
PostgreSQL, a Milvus server, 2 workers)."""
import pandas as pd
import pytest
import requests

from recplugin import cli, pipeline
from recplugin.features.store import open_store
from tests.conftest import served_copy

pytestmark = pytest.mark.integration
UNKNOWN_USER = 987_654_321


@pytest.mark.parametrize("production", [False, True], ids=["embedded", "production"])
def test_hidden_items_leave_every_answer_on_every_worker_and_come_back(built_pipeline, milvus_server_uri, tmp_path,
                                                                       production, capsys):
    config = served_copy(built_pipeline, tmp_path / "work", milvus_server_uri if production else "milvus.db",
                         production=production, serving={"workers": 2 if production else 1})
    config_path = pipeline.save_config(config, tmp_path / "recplugin.yaml")
    port = pipeline.free_port()
    process = pipeline.start_service(config, port, log_path=tmp_path / "service.log")
    base = f"http://127.0.0.1:{port}"

    def answer(user: int) -> list[int]:
        reply = requests.post(f"{base}/recommend", json={"user_id": user, "scenario": "feed", "k": 10}, timeout=30)
        assert reply.status_code == 200, reply.text
        return [item["item_id"] for item in reply.json()["items"]]

    try:
        pipeline.wait_ready(base, process)
        user = int(pd.read_parquet(config.events_path)["user_id"].iloc[0])
        top, popular = answer(user)[:3], answer(UNKNOWN_USER)[:1]
        reply = requests.post(f"{base}/items/hide", json={"item_ids": top + popular}, timeout=30)
        assert reply.status_code == 200 and reply.json() == {"hidden": 4, "changed": 4}, reply.text
        for _ in range(12):  # several connections: both workers answer some of them
            assert not set(answer(user)) & set(top) and popular[0] not in answer(UNKNOWN_USER)
        assert len(answer(user)) == 10  # still full answers

        cli.main(["items", "hidden", "-c", str(config_path)])
        assert "4 items hidden" in capsys.readouterr().out
        cli.main(["items", "unhide", str(top[0]), "-c", str(config_path)])
        assert "3 items hidden" in capsys.readouterr().out
        assert top[0] in answer(user) and not set(answer(user)) & set(top[1:])

        empty = requests.post(f"{base}/items/hide", json={"item_ids": []}, timeout=30)
        assert empty.status_code == 400 and "item_ids" in empty.text
    finally:
        pipeline.stop_service(process)
        if production:
            store = open_store(config)
            store._get_provider().teardown_infra(config.feast.project, store.list_feature_views(), store.list_entities())
