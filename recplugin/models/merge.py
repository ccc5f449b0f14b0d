"""Merging the candidate lists of several interests into one answer (shared by offline evaluation and serving)."""
from __future__ import annotations

MERGES = ("max", "interleave")


def interleaved(lists: list[list[int]], k: int) -> list[tuple[int, int]]:
    """Each list in turn gives its best item not yet taken, until k are taken or every list is used up: the items in
    order, each with the index of the list that gave it."""
    taken: dict[int, int] = {}
    cursors = [0] * len(lists)
    while len(taken) < k:
        progressed = False
        for index, items in enumerate(lists):
            while cursors[index] < len(items) and items[cursors[index]] in taken:
                cursors[index] += 1
            if cursors[index] < len(items) and len(taken) < k:
                taken[items[cursors[index]]] = index
                progressed = True
        if not progressed:
            break
    return list(taken.items())
