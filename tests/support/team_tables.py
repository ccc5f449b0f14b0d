"""A team's own event and item tables made from generated data: other column names, string ids, local times in another
zone, other scenario names; and the `source:` config section that maps them."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

SURFACES = {"search": "search_page", "feed": "home", "discovery": "explore"}
SOURCE = {
    "string_ids": True,
    "events": {"user": "uid", "item": "iid", "timestamp": "ts", "scenario": "surface", "action": "event_type",
               "query": "search_text", "timestamp_format": "%d/%m/%Y %H:%M:%S.%f", "timezone": "America/New_York",
               "scenario_values": {team: ours for ours, team in SURFACES.items()}},
    "items": {"item": "sku", "title": "name", "text": "body", "category": "dept", "scenarios": "where"},
}


def write_team_tables(events: pd.DataFrame, items: pd.DataFrame, folder: Path) -> tuple[Path, Path]:
    """events.csv and items.parquet as the team exports them."""
    team_events = pd.DataFrame({"uid": "u" + events["user_id"].astype(str), "iid": "sku-" + events["item_id"].astype(str),
                                "ts": events["event_timestamp"].dt.tz_convert("America/New_York").dt.strftime("%d/%m/%Y %H:%M:%S.%f"),
                                "surface": events["scenario"].map(SURFACES), "event_type": events["action"],
                                "search_text": events["query"]})
    team_events.to_csv(folder / "events.csv", index=False)
    team_items = pd.DataFrame({"sku": "sku-" + items["item_id"].astype(str), "name": items["title"], "body": items["text"],
                               "dept": items["category"], "where": [",".join(s) for s in items["scenarios"]]})
    team_items.to_parquet(folder / "items.parquet", index=False)
    return folder / "events.csv", folder / "items.parquet"
