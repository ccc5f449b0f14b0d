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
    holdout: pd.DataFrame | None = None  # user_id, split[, from_end]: the dataset's own held-out events, when it has them


def _times(user_positions: pd.Series, users: pd.Series) -> pd.Series:
    """Monotone per-user event times from line order."""
    return BASE_TIME + pd.to_timedelta(users.astype("int64"), unit="D") + pd.to_timedelta(user_positions, unit="min")


def load_movielens(folder: Path, scenario: str = "feed") -> LoadedDataset:
    """MovieLens-1M (SASRec preprocessing): one scenario; item text = title + genres. With `gsasrec_split/` beside it,
    the gSASRec protocol's held-out events (gsasrec_holdout)."""
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
    split = folder / "gsasrec_split"
    holdout = gsasrec_holdout(split, pairs) if split.is_dir() else None
    return LoadedDataset(events, items, [scenario], holdout)


def gsasrec_holdout(split: Path, pairs: pd.DataFrame) -> pd.DataFrame:
    """gSASRec's split as held-out events: every user's last item is a test label; the second-to-last is a validation
    label for its 512 validation users and excluded (neither trained on nor evaluated) for the others, since its
    training sequences end two items before the last. Checked line by line against the sequences."""
    lines = lambda name: (split / name).read_text().splitlines()  # noqa: E731
    sequences = pairs.groupby("user_id", sort=True)["item_id"].agg(list)
    test_inputs, test_outputs = lines("test/input.txt"), lines("test/output.txt")
    if len(test_inputs) != len(sequences):
        raise ValueError(f"{split}: {len(test_inputs)} test users, ml-1m.txt has {len(sequences)}")
    by_sequence = {}
    for user, sequence, given, target in zip(sequences.index, sequences, test_inputs, test_outputs):
        if [int(i) for i in given.split()] + [int(target)] != sequence:
            raise ValueError(f"{split}: the test line of user {user} is not that user's sequence minus its last item")
        by_sequence[tuple(sequence[:-1])] = user
    validation_users = {by_sequence[tuple(int(i) for i in given.split()) + (int(target),)]
                        for given, target in zip(lines("val/input.txt"), lines("val/output.txt"))}
    users = sequences.index.to_numpy()
    second = ["validation" if user in validation_users else "excluded" for user in users]
    return pd.DataFrame({"user_id": list(users) * 2, "split": ["test"] * len(users) + second,
                         "from_end": [0] * len(users) + [1] * len(users)})


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
