"""POST /events behind the API: one behaviour into the user's online state and the live log, exactly once per event id.

Under the user's lock (shared by every worker): the ledger marks the id pending with the event's time, the state is
read, appended to and pushed, the event is logged, and the ledger marks the id done. A retry of a done id changes
nothing; a retry of a pending one (the first attempt failed part-way) finishes the missing steps, keeping the first
attempt's time, and does not append to the history an event that is already there.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager

import pandas as pd

from recplugin.config import RecConfig
from recplugin.data.live_events import append_event
from recplugin.features.history import UserState, epoch_micros
from recplugin.features.ledger import LedgerEntry, derived_event_id
from recplugin.features.online import OnlineFeatures


@dataclass(frozen=True)
class LiveEvent:
    """One validated /events call."""

    user_id: int
    item_id: int
    scenario: str
    action: str
    event_id: str | None = None  # the client's; else derived from the content and timestamp_s, else a new one
    timestamp_s: float | None = None  # when it happened (unix seconds); else when it arrived


def record_once(config: RecConfig, online: OnlineFeatures, online_store: Callable[[], ContextManager], event_log: Path,
                event: LiveEvent) -> dict:
    """Store the event (online state, seen set, live log) unless its id is stored already; the receipt."""
    arrived = pd.Timestamp.now(tz="UTC")
    event_id = event.event_id or (
        derived_event_id(event.user_id, event.item_id, event.scenario, event.action, event.timestamp_s)
        if event.timestamp_s is not None else f"s-{uuid.uuid4().hex}")
    ledger, user = online.ledger, event.user_id
    retriable = event.event_id is not None or event.timestamp_s is not None  # a new server-made id is never sent again
    with online.locks.hold(user):  # across workers: read-modify-write of one user's state is atomic
        earlier = ledger.get(user, event_id) if retriable else None  # an attempt that succeeded, or failed part-way
        micros = int(event.timestamp_s * 1e6) if event.timestamp_s is not None else epoch_micros(arrived)
        entry = earlier or LedgerEntry(micros, done=False)
        if earlier is None and retriable:
            ledger.put(user, event_id, entry)
        with online_store():
            state = online.user_states([user])[0] or UserState(config.scenarios, config.feast.history_length)
            if not entry.done:
                history, code, seconds = state.histories[event.scenario], config.actions.index(event.action), entry.micros // 10**6
                held = zip(history.item_ids, history.actions, history.timestamps)
                if earlier is None or (event.item_id, code, seconds) not in held:  # a failed attempt may have pushed it
                    history.append(event.item_id, code, seconds)
                state.seen.add(event.item_id)
                # stamped now, inside the lock: the stores keep the newest write per user, so a time taken before the lock
                # could lose this write to the previous holder's later stamp
                online.push_state(user, state, pd.Timestamp.now(tz="UTC"))
        if not entry.done:
            append_event(event_log, user, event.item_id, event.scenario, event.action,
                         pd.Timestamp(entry.micros * 1000, tz="UTC"), event_id)
            if retriable:
                ledger.put(user, event_id, LedgerEntry(entry.micros, done=True))
    counts = {name: history.count for name, history in state.histories.items()}
    return {"accepted": True, "user_id": user, "counts": counts, "event_id": event_id, "duplicate": entry.done}
