"""Items added while serving (`POST /items`, `recplugin items load`): the service appends them to a JSON Lines log, and
`recplugin apply` folds the log into the item catalogue, so the next training knows them as ordinary items."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from recplugin.data.schema import ITEM_SCHEMA, write_items
from recplugin.data.tables import ITEM_KEYS

LIVE_ITEMS = "live_items.jsonl"


@dataclass(frozen=True)
class NewItem:
    """One catalogue item added while serving; `text` is what the item tower reads, `key` the team's own string id."""

    item_id: int
    title: str
    text: str
    category: str = ""
    scenarios: list[str] = field(default_factory=list)
    created_s: float = 0.0
    key: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, line: str | bytes) -> NewItem:
        return cls(**json.loads(line))


def append_items(path: Path, items: list[NewItem]) -> None:
    """All lines in one O_APPEND write (safe across the workers of a host); a short write is an error."""
    data = "".join(item.to_json() + "\n" for item in items).encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(descriptor, data)
        if written != len(data):
            raise OSError(f"wrote {written} of {len(data)} bytes of new items to {path}")
    finally:
        os.close(descriptor)


def read_live_items(path: Path) -> list[NewItem]:
    """The logged items, the last line of each item id; torn lines (a crash mid-write) are skipped."""
    if not path.exists():
        return []
    latest: dict[int, NewItem] = {}
    for line in path.read_bytes().splitlines():
        try:
            item = NewItem.from_json(line)
        except (ValueError, TypeError):
            continue
        latest[item.item_id] = item
    return list(latest.values())


def fold_live_items(data_dir: Path, catalog_path: Path) -> int:
    """Add the logged items that the catalogue lacks to it (and their own ids to the item key map); the count added."""
    catalog = pd.read_parquet(catalog_path)
    known = set(catalog["item_id"].tolist())
    new = [item for item in read_live_items(data_dir / LIVE_ITEMS) if item.item_id not in known]
    if not new:
        return 0
    added = pd.DataFrame({
        "item_id": [item.item_id for item in new], "title": [item.title for item in new],
        "text": [item.text for item in new], "category": [item.category for item in new],
        "scenarios": [list(item.scenarios) for item in new],
        "created_timestamp": pd.to_datetime([item.created_s for item in new], unit="s", utc=True)})
    partial = catalog_path.with_name(f".{catalog_path.name}.partial")
    write_items(pd.concat([catalog, added], ignore_index=True)[ITEM_SCHEMA.names], partial)
    os.replace(partial, catalog_path)
    keys = [(item.item_id, item.key) for item in new if item.key is not None]
    if keys:
        path = data_dir / ITEM_KEYS
        earlier = pd.read_parquet(path) if path.exists() else pd.DataFrame({"item_id": [], "key": []})
        pd.concat([earlier, pd.DataFrame(keys, columns=["item_id", "key"])], ignore_index=True).astype({"item_id": "int64"}).to_parquet(path, index=False)
    return len(new)
