"""Per-host live event logs (serving.event_log_per_host): replicas on one shared volume each append to their own file,
and the next `apply` reads the shared log and every host's."""
import pandas as pd

from recplugin.data import live_events
from recplugin.data.live_events import append_event, log_to_append, read_all_events


def test_each_host_appends_to_its_own_log_and_all_are_read(tmp_path, monkeypatch):
    shared = tmp_path / "live_events.jsonl"
    now = pd.Timestamp("2026-11-01", tz="UTC")
    append_event(shared, 1, 10, "feed", "click", now)
    for host, user in (("pod-a", 2), ("pod-b", 3), ("pod-a", 4)):
        monkeypatch.setattr(live_events.socket, "gethostname", lambda host=host: host)
        append_event(log_to_append(shared, per_host=True), user, 20 + user, "search", "like", now)
    assert sorted(p.name for p in (tmp_path / "live_events").iterdir()) == ["pod-a.jsonl", "pod-b.jsonl"]
    assert log_to_append(shared, per_host=False) == shared
    events = read_all_events(shared)
    assert sorted(events["user_id"]) == [1, 2, 3, 4] and list(events.columns) == list(live_events.EVENT_SCHEMA.names)


def test_no_log_at_all_reads_as_an_empty_table(tmp_path):
    events = read_all_events(tmp_path / "live_events.jsonl")
    assert len(events) == 0 and list(events.columns) == list(live_events.EVENT_SCHEMA.names)


def test_an_event_id_logged_twice_is_read_once_across_logs_and_lines_without_ids_all_count(tmp_path, monkeypatch):
    """A retry after a failure part-way appends its line again, maybe on another host: readers keep the first line."""
    shared = tmp_path / "live_events.jsonl"
    first, retry = pd.Timestamp("2026-11-01 10:00", tz="UTC"), pd.Timestamp("2026-11-01 10:05", tz="UTC")
    append_event(shared, 1, 10, "feed", "click", first, "e-1")
    append_event(shared, 1, 11, "feed", "click", first)  # an old line: no id
    append_event(shared, 1, 11, "feed", "click", first)
    monkeypatch.setattr(live_events.socket, "gethostname", lambda: "pod-b")
    append_event(log_to_append(shared, per_host=True), 1, 10, "feed", "click", retry, "e-1")
    append_event(log_to_append(shared, per_host=True), 1, 12, "feed", "click", retry, "e-2")
    events = read_all_events(shared)
    assert sorted(events["item_id"]) == [10, 11, 11, 12]
    assert events[events.item_id == 10]["event_timestamp"].tolist() == [first]
    assert list(events.columns) == list(live_events.EVENT_SCHEMA.names)
    assert len(live_events.read_events(shared)) == 3
