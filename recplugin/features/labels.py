"""Which events become training, validation and test labels: leave-last-out per scenario, a global time cutoff, or a
dataset's (or team's) own held-out users."""
from __future__ import annotations

import numpy as np
import pandas as pd


def label_events(events: pd.DataFrame, max_per_user: int = 0, holdout: pd.DataFrame | None = None,
                 negative_actions: tuple[str, ...] | list[str] = (), split: str = "last", fraction: float = 0.1) -> pd.DataFrame:
    """Every event after a user's first becomes a label, except those with a negative action (which stay in the
    histories). `split: last` (leave-last-out): in each scenario, a user's last positive event is a test label and the
    one before a validation label, so every scenario is evaluated whatever scenario users end in. `split: time`: one
    cutoff for everybody, as a deployed model meets the future: labels in the newest `fraction` of time are test labels,
    the `fraction` before them validation labels.

    With `max_per_user` > 0 only the user's last that many labels are kept (validation and test among them).
    With a `holdout` table (user_id, split[, from_end: 0 = last event, 1 = the one before]), only its events are held
    out, as its split says (`excluded`: neither a training nor an evaluation label); every other label is a training
    label (a dataset's own protocol: Amazon's separate validation and test users, gSASRec's 512 validation users).
    Held-out labels carry `rated_item_ids`: every item of the user's events before it in time order (same-time events
    earlier in the table included), which evaluation filters out as gSASRec does; training labels carry none.
    """
    events = events.sort_values(["user_id", "event_timestamp"], kind="stable").reset_index(drop=True)
    positive = ~events["action"].isin(negative_actions) if len(negative_actions) else pd.Series(True, index=events.index)
    from_end = events[positive].groupby("user_id").cumcount(ascending=False).reindex(events.index, fill_value=-1)
    keep = (events.groupby("user_id").cumcount() > 0) & positive
    if max_per_user > 0:
        keep &= from_end < max(max_per_user, 2)
    labels = events[keep].copy()
    if holdout is not None:
        table = holdout if "from_end" in holdout else holdout.assign(from_end=0)
        lookup = table.set_index(["user_id", "from_end"])["split"]
        key = pd.MultiIndex.from_arrays([labels["user_id"], from_end.loc[labels.index]])
        assigned = pd.Series(lookup.reindex(key).to_numpy(), index=labels.index).fillna("train")
    elif split == "time":
        times = labels["event_timestamp"]
        test_from, validation_from = times.quantile(1 - fraction), times.quantile(1 - 2 * fraction)
        assigned = pd.Series(np.select([times > test_from, times > validation_from], ["test", "validation"], "train"),
                             index=labels.index)
    else:
        per = ["user_id", "scenario"] if "scenario" in events else ["user_id"]
        in_scenario = events[keep].groupby(per).cumcount(ascending=False)
        assigned = in_scenario.map({0: "test", 1: "validation"}).fillna("train")
    labels["split"] = assigned.to_numpy()
    labels = labels[labels["split"] != "excluded"]
    labels["rated_item_ids"] = rated_before(events, labels.index, labels["split"].to_numpy() != "train")
    return labels.rename(columns={"item_id": "target_item_id", "event_timestamp": "label_timestamp"})


def rated_before(events: pd.DataFrame, rows: pd.Index, wanted) -> list[list[int]]:
    """For each of `rows` (positions in `events`, sorted by user and time): the user's earlier item ids where `wanted`."""
    items = events["item_id"].to_numpy()
    first_of_user = events.groupby("user_id").cumcount().to_numpy()
    return [items[row - first_of_user[row]:row].tolist() if flag else [] for row, flag in zip(rows, wanted)]
