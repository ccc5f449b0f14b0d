"""Loaders that turn the public datasets in ../shared/data into recplugin's event and item schemas.

Neither dataset has usable timestamps in these files: event times are derived from each user's line order
(one minute apart, users offset by a day), which keeps every sequence's order and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

BASE_TIME = pd.Timestamp("2020-01-01", tz="UTC")
AMAZON_DOMAINS = {"A_Grocery_and_Gourmet_Food": "food", "B_Home_and_Kitchen": "kitchen"}
AMAZON_FILES = ("train_A.txt", "train_B.txt", "train_overlap.txt", "valid.txt", "test.txt")


@dataclass
class LoadedDataset:
    """Events and items in the canonical schemas, and the scenario names they use."""

    events: pd.DataFrame
    items: pd.DataFrame
    scenarios: list[str]
    holdout: pd.DataFrame | None = None  # user_id, split: the dataset's own validation/test users, when it has them


def _times(user_positions: pd.Series, users: pd.Series) -> pd.Series:
    """Monotone per-user event times from line order."""
    return BASE_TIME + pd.to_timedelta(users.astype("int64"), unit="D") + pd.to_timedelta(user_positions, unit="min")


def load_movielens(folder: Path, scenario: str = "feed") -> LoadedDataset:
    """MovieLens-1M (SASRec preprocessing): one scenario; item text = title + genres."""
    pairs = pd.read_csv(folder / "ml-1m.txt", sep=" ", names=["user_id", "item_id"], dtype="int64")
    events = pairs.assign(scenario=scenario, action="click", query=None)
    events["event_timestamp"] = _times(events.groupby("user_id").cumcount(), events["user_id"])
    titles = pd.read_csv(folder / "sas_item_titles.tsv", sep="\t")
    items = pd.DataFrame({
        "item_id": titles["sas_item_id"].astype("int64"),
        "title": titles["title"],
        "text": "title: " + titles["title"] + " genres: " + titles["genres"].str.replace("|", ", ", regex=False),
        "category": titles["genres"].str.split("|").str[0],
        "scenarios": [[scenario]] * len(titles),
        "created_timestamp": BASE_TIME - pd.Timedelta(days=1),
    })
    return LoadedDataset(events, items, [scenario])


def load_amazon_food_kitchen(folder: Path) -> LoadedDataset:
    """Amazon Food x Kitchen: each domain is a scenario; user ids restart per file, so each file gets its own id range."""
    catalogue = pd.read_csv(folder / "items_with_titles.tsv", sep="\t")
    domain_of = catalogue.set_index("file_item_id")["domain"].map(AMAZON_DOMAINS)
    frames, offset = [], 0
    for name in AMAZON_FILES:
        rows = pd.read_csv(folder / name, sep="\t", names=["uid", "items"], dtype={"uid": "int64", "items": str})
        exploded = rows.assign(item_id=rows["items"].str.split(",")).explode("item_id")
        exploded["user_id"] = exploded["uid"] + offset
        exploded["source_file"] = name
        offset = int(exploded["user_id"].max()) + 1
        frames.append(exploded[["user_id", "item_id", "source_file"]])
    held = {"valid.txt": "validation", "test.txt": "test"}
    events = pd.concat(frames, ignore_index=True)
    events["item_id"] = events["item_id"].astype("int64")
    events["scenario"] = events["item_id"].map(domain_of)
    events["action"] = "click"
    events["query"] = None
    events["event_timestamp"] = _times(events.groupby("user_id").cumcount(), events["user_id"])
    items = pd.DataFrame({
        "item_id": catalogue["file_item_id"].astype("int64"),
        "title": catalogue["title"].fillna(""),
        "text": catalogue["title"].fillna(""),
        "category": catalogue["domain"].map(AMAZON_DOMAINS),
        "scenarios": catalogue["domain"].map(lambda d: [AMAZON_DOMAINS[d]]),
        "created_timestamp": BASE_TIME - pd.Timedelta(days=1),
    })
    users = events.drop_duplicates("user_id")
    users = users[users["source_file"].isin(list(held))]
    holdout = pd.DataFrame({"user_id": users["user_id"].to_numpy(), "split": users["source_file"].map(held).to_numpy()})
    return LoadedDataset(events, items, ["food", "kitchen"], holdout)
