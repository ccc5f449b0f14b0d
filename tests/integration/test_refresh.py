"""`recplugin refresh`: folds live events, retrains from the serving version's weights, judges both versions on the same
newest test split, serves the candidate only when it passes the gate, and never runs twice at once (registry lock)."""
import pandas as pd
import pytest

from recplugin import cli, pipeline
from recplugin.config import with_overrides
from recplugin.data.live_events import append_event
from recplugin.refresh import LOCK, RefreshBusy, refresh
from recplugin.registry.models import ModelRegistry
from tests.conftest import served_copy

pytestmark = pytest.mark.integration


def test_refresh_promotes_only_past_the_gate_and_one_at_a_time(built_pipeline, tmp_path, capsys):
    config = served_copy(built_pipeline, tmp_path / "work", "milvus.db", training={"epochs": 2})
    registry = ModelRegistry(config.registry_sqlalchemy_url)
    first = registry.latest(status="serving").version
    events = pd.read_parquet(config.events_path)
    newest = events["event_timestamp"].max() + pd.Timedelta(seconds=1)
    append_event(config.live_events_path, int(events["user_id"].iloc[0]), int(events["item_id"].iloc[-1]), "feed",
                 config.actions[0], newest, "live-1")  # a live event: the refresh's snapshot holds it

    strict = with_overrides(config, training={"refresh_tolerance": -10.0})  # the candidate must be 11x better: never
    refused = refresh(strict, progress=True)
    assert "warm start from" in capsys.readouterr().out
    assert not refused.promoted and "still serving" in refused.reason and refused.serving == first
    assert refused.serving_ndcg > 0 and registry.latest(status="serving").version == first
    snapshot = pd.read_parquet(config.snapshot_path, columns=["label_timestamp"])
    assert snapshot["label_timestamp"].max() >= newest

    holder = "another-host:1"
    assert registry.try_lock(LOCK, holder, 3600) is None
    with pytest.raises(RefreshBusy, match="another-host"):
        refresh(config)
    config_path = pipeline.save_config(config, tmp_path / "recplugin.yaml")
    with pytest.raises(SystemExit, match="another refresh is running"):
        cli.main(["refresh", "-c", str(config_path)])
    registry.unlock(LOCK, holder)

    cli.main(["refresh", "-c", str(config_path)])  # tolerance 0.02: a warm-started candidate at least as good passes
    out = capsys.readouterr().out
    newest_version = registry.latest().version
    served = registry.latest(status="serving").version
    assert (served == newest_version) == out.strip().splitlines()[-1].startswith("promoted"), out
    assert registry.try_lock(LOCK, "after", 60) is None  # released after each run
