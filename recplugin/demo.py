"""`recplugin demo`: every stage on generated data, then real HTTP calls against the running BentoML service."""
from __future__ import annotations

import dataclasses
import json
import shutil
import time

import pandas as pd
import requests

from recplugin import pipeline
from recplugin.config import RecConfig, with_overrides
from recplugin.stage_report import describe_data, describe_materialized, describe_snapshot

SUMMARY = "demo_summary.json"  # stage times and test NDCG@10, for benchmarks/demo/run.py
SEARCH_QUERIES = {"cooking": "spicy noodle recipe", "travel": "beach hotel", "fitness": "yoga workout"}


class _Stages:
    """Prints each stage's heading and records its wall time."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []
        self._title, self._start = "", 0.0

    def __call__(self, title: str) -> None:
        self.close()
        print(f"\n=== {title} ===", flush=True)
        self._title, self._start = title, time.monotonic()

    def close(self) -> None:
        if self._title:
            self.times.append((self._title.split(" (")[0], time.monotonic() - self._start))
            self._title = ""

    def table(self) -> str:
        rows = [f"| {title} | {seconds:.1f} |" for title, seconds in self.times]
        return "\n".join(["| stage | seconds |", "|---|---|", *rows])


def _print_items(titles: pd.Series, answer: dict) -> None:
    for rank, item in enumerate(answer["items"], 1):
        print(f"  {rank:2d}. item {item['item_id']:>6}  score {item['score']:.3f}  {titles.get(item['item_id'], '?')}")


def run_demo(config: RecConfig, fresh: bool = True) -> None:
    """Run the whole pipeline on the embedded defaults and show what the service answers; training gets
    `demo.training_minutes` unless the config sets `training.max_minutes`."""
    started = time.monotonic()
    if not config.training.max_minutes and config.demo.training_minutes:
        config = with_overrides(config, training={"max_minutes": config.demo.training_minutes})
    _stage = _Stages()
    if fresh and config.path(".").exists():
        shutil.rmtree(config.path("."))
    config.path(".").mkdir(parents=True, exist_ok=True)
    _stage(f"1. generate {config.generator.num_users} users x ~{config.generator.events_per_user} events over {config.generator.num_items} items")
    pipeline.generate(config)
    print(describe_data(config))
    _stage("2. feast apply (user-state source, entities, feature views, push source, feature services)")
    print(f"user-state rows: {pipeline.apply(config):,}")
    _stage("3. feast materialize -> SQLite online store")
    pipeline.materialize(config)
    print(describe_materialized(config, "sqlite"))
    _stage("4. point-in-time training set (get_historical_features)")
    print(f"snapshot: {pipeline.build_training_set(config)}\n{describe_snapshot(config)}")
    _stage(f"5. train item + user towers ({config.training.max_minutes:g} min budget, early stopping on validation)")
    result = pipeline.train(config)
    print(f"model version {result.version}", *result.verdict.lines(), sep="\n")
    _stage("6. index items in Milvus Lite and make them the served collection")
    print(f"collection: {pipeline.index(config)}")
    _stage("7. BentoML service over HTTP")
    port = pipeline.free_port()
    base = f"http://{config.serving.host}:{port}"
    process = pipeline.start_service(config, port, log_path=config.path("service.log"))
    try:
        pipeline.wait_ready(base, process, report_every_s=10)
        print(f"service ready at {base} (log: {config.path('service.log')})")
        _query_service(config, base)
    finally:
        pipeline.stop_service(process)
    _stage.close()
    print("\n=== offline metrics: test split, leave-last-out, full ranking, seen items excluded ===")
    print(result.table)
    wall = time.monotonic() - started
    print(f"\n=== wall time per stage ===\n{_stage.table()}\n\ndemo finished in {wall:.0f} s")
    overall = {model: result.metrics[model]["overall"]["NDCG@10"] for model in ("two-tower", "popularity")}
    summary = {"wall_s": round(wall, 1), "stages_s": {title: round(seconds, 1) for title, seconds in _stage.times},
               "test_ndcg10": overall, "verdict": dataclasses.asdict(result.verdict), "model_version": result.version}
    config.path(SUMMARY).write_text(json.dumps(summary, indent=2))


def _query_service(config: RecConfig, base: str) -> None:
    """Recommendations for one user in every scenario, a live event, and a cold-start user."""
    items = pd.read_parquet(config.catalog_path, columns=["item_id", "title", "category"]).set_index("item_id")
    titles = items["title"] + "  [" + items["category"] + "]"
    events = pd.read_parquet(config.events_path, columns=["user_id", "item_id", "scenario"])
    user = int(events["user_id"].iloc[0])
    favourite = items.loc[events[events.user_id == user].item_id, "category"].mode().iloc[0]
    print(f"user {user}: most frequent category so far: {favourite}")
    for scenario in config.scenarios:
        body = {"user_id": user, "scenario": scenario, "k": 5}
        if scenario == "search":
            body["query"] = SEARCH_QUERIES.get(favourite, f"{favourite} guide")
        answer = requests.post(f"{base}/recommend", json=body, timeout=60).json()
        print(f"\nPOST /recommend {body} -> model {answer['model_version']}")
        _print_items(titles, answer)
    first = requests.post(f"{base}/recommend", json={"user_id": user, "scenario": "feed", "k": 5}, timeout=60).json()
    clicked = first["items"][0]["item_id"]
    event = {"user_id": user, "item_id": clicked, "scenario": "feed", "action": "like"}
    print(f"\nPOST /events {event} -> {requests.post(f'{base}/events', json=event, timeout=60).json()}")
    after = requests.post(f"{base}/recommend", json={"user_id": user, "scenario": "feed", "k": 5}, timeout=60).json()
    print("feed after the event (the liked item is now excluded as seen):")
    _print_items(titles, after)
    cold = requests.post(f"{base}/recommend", json={"user_id": 10**9, "scenario": "discovery", "k": 3}, timeout=60).json()
    print(f"\nunknown user 1000000000, discovery -> cold_start={cold['cold_start']} (popular items)")
    _print_items(titles, cold)
    bad = requests.post(f"{base}/recommend", json={"user_id": user, "scenario": "shopping", "k": 5}, timeout=60)
    print(f"\nbad scenario -> HTTP {bad.status_code}: {bad.json()['error']}")
