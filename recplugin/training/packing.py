"""Every-position training: a user's labels packed as prediction points into one sequence, point-in-time exact."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recplugin.models.inputs import CutBatch, SequenceBatch
from recplugin.training.dataset import LabelledSplit


@dataclass
class PackedSplit:
    """Packed sequences (rows of `events`) and their prediction points, one per training label."""

    events: SequenceBatch
    cut_row: np.ndarray  # packed row of each point
    cut_length: np.ndarray  # events the point sees: the first `cut_length` of its row
    cut_scenario: np.ndarray
    cut_query: np.ndarray
    label: np.ndarray  # the point's row in the per-label split
    exact: np.ndarray  # the point sees exactly the label's own history (False: a shorter, left-truncated one)

    def rows_per_point(self) -> float:
        """Packed rows per label: the forwards a label costs (1.0 in per-label training)."""
        return len(self.events) / max(1, len(self.label))


def _user_keys(split: LabelledSplit, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[R, 4, L] (time, scenario, item, action) of the rows' events (right-aligned) and [R] their counts."""
    inputs = split.inputs
    keys = np.stack([inputs.timestamps[rows], inputs.scenarios[rows], inputs.item_rows[rows], inputs.actions[rows]], axis=1)
    return keys, inputs.mask[rows].sum(axis=1)


def _cut_in(anchor: np.ndarray, history: np.ndarray) -> int:
    """How many of the anchor's first events a label sees, [4, n] each: up to its history's last event, provided the
    events before it match the label's own (-1: the history is not a prefix of the anchor's)."""
    if not history.shape[1]:
        return 0
    found = np.flatnonzero((anchor == history[:, -1:]).all(axis=0))
    if not len(found):
        return -1
    cut = int(found[-1]) + 1
    seen = min(cut, history.shape[1])
    return cut if np.array_equal(anchor[:, cut - seen:cut], history[:, history.shape[1] - seen:]) else -1


def pack_split(split: LabelledSplit, min_context: int) -> PackedSplit:
    """Pack each user's labels (rows sorted by user, then time) into as few sequences as keep them point-in-time correct.

    A sequence is the latest unpacked label's history; an earlier label becomes a prediction point in it when its own
    history is the sequence's first events (exact), or when it would see at least `min_context` of them (its history
    was longer than the sequence window: it loses the oldest events, as SASRec-style training does). Otherwise it
    starts the next sequence.
    """
    anchors: list[int] = []
    cut_row, cut_length, label, exact = [], [], [], []
    boundaries = np.flatnonzero(np.diff(split.user_ids)) + 1
    length = split.inputs.mask.shape[1]
    for user_rows in np.split(np.arange(len(split)), boundaries):
        keys, counts = _user_keys(split, user_rows)
        remaining = len(user_rows)
        while remaining:
            anchor = keys[remaining - 1, :, length - counts[remaining - 1]:]
            row = len(anchors)
            anchors.append(int(user_rows[remaining - 1]))
            taken = 0
            for position in range(remaining - 1, -1, -1):
                cut = _cut_in(anchor, keys[position, :, length - counts[position]:])
                same = cut == counts[position]
                if taken and not (same or cut >= min_context):
                    break
                cut_row.append(row), cut_length.append(cut), label.append(int(user_rows[position])), exact.append(same)
                taken += 1
            remaining -= taken
    labels = np.asarray(label, dtype=np.int64)
    inputs = split.inputs.take(np.asarray(anchors, dtype=np.int64))
    return PackedSplit(inputs, np.asarray(cut_row, dtype=np.int64), np.asarray(cut_length, dtype=np.int64),
                       split.inputs.target_scenario[labels], split.inputs.query_rows[labels], labels,
                       np.asarray(exact, dtype=bool))


def scenario_balanced_rows(point_scenario: np.ndarray, point_row: np.ndarray, num_rows: int,
                           generator: np.random.Generator) -> np.ndarray:
    """`num_rows` rows drawn with replacement so that every scenario's labels are equally many in expectation: a row's
    chance is the mean over its labels (prediction points) of 1 / (the labels of that label's scenario)."""
    scenario_labels = np.bincount(point_scenario)
    weight = np.bincount(point_row, weights=1.0 / scenario_labels[point_scenario], minlength=num_rows)
    weight /= np.maximum(np.bincount(point_row, minlength=num_rows), 1)
    return generator.choice(num_rows, size=num_rows, p=weight / weight.sum())


def packed_batches(packed: PackedSplit, points_per_batch: int, generator: np.random.Generator,
                   pool_batches: int = 32, rows: np.ndarray | None = None) -> list[np.ndarray]:
    """Shuffled packed rows grouped so each batch holds about `points_per_batch` prediction points (a row is never split).

    Rows of similar length share a batch, so its padding stays small (short sequences would otherwise be padded to the
    longest in a random batch): the shuffled rows are sorted by length within pools of about `pool_batches` batches,
    as Hugging Face's group_by_length does, and the batches' order is shuffled (`pool_batches` 0: no grouping).
    `rows`: the epoch's rows in random order (default: every row once).
    """
    counts = np.bincount(packed.cut_row, minlength=len(packed.events))
    lengths = packed.events.mask.sum(axis=1)
    order = generator.permutation(len(packed.events)) if rows is None else rows.copy()
    pool = max(1, int(pool_batches * points_per_batch / max(1.0, counts.mean())))
    for start in range(0, len(order), pool):
        chunk = order[start:start + pool]
        order[start:start + pool] = chunk[np.argsort(lengths[chunk], kind="stable")]
    batches, current, filled = [], [], 0
    for row in order:
        current.append(row)
        filled += counts[row]
        if filled >= points_per_batch:
            batches.append(np.asarray(current, dtype=np.int64))
            current, filled = [], 0
    if current:
        batches.append(np.asarray(current, dtype=np.int64))
    return [batches[index] for index in generator.permutation(len(batches))]


def batch_of(packed: PackedSplit, rows: np.ndarray) -> tuple[SequenceBatch, CutBatch, np.ndarray]:
    """The rows' sequences, their prediction points [B, G] (G = most points in one row), and each point's label in the
    row-major order that boolean indexing of a [B, G] tensor returns."""
    counts = np.bincount(packed.cut_row, minlength=len(packed.events))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])  # a row's points are contiguous (built row by row)
    points = np.concatenate([np.arange(starts[row], starts[row] + counts[row]) for row in rows])
    owner = np.repeat(np.arange(len(rows)), counts[rows])
    slot = np.concatenate([np.arange(counts[row]) for row in rows])
    shape = (len(rows), int(counts[rows].max()))
    lengths, scenarios = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
    query_rows, valid = np.full(shape, -1, dtype=np.int64), np.zeros(shape, dtype=bool)
    valid[owner, slot] = True
    lengths[owner, slot] = packed.cut_length[points]
    scenarios[owner, slot] = packed.cut_scenario[points]
    query_rows[owner, slot] = packed.cut_query[points]
    return packed.events.take(rows), CutBatch(lengths, valid, scenarios, query_rows), packed.label[points]
