"""Progress bars on a terminal; a plain line per ~10% when the output is a file or a pipe (no `\\r` floods in logs)."""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator

from tqdm import tqdm


class LineProgress:
    """tqdm's small surface (update, set_postfix, write, close, total) printing one line each time another tenth is done."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it",
                 initial: int = 0, disable: bool = False, stream=None) -> None:
        self.iterable, self.total, self.desc, self.unit, self.n = iterable, total, desc, unit, initial
        self.disable, self.stream = disable, stream or sys.stderr
        self._postfix, self._began, self._reported = "", time.monotonic(), self._tenth()

    def _tenth(self) -> int:
        return int(10 * self.n / self.total) if self.total else 0

    def __iter__(self) -> Iterator:
        for value in self.iterable:
            yield value
            self.update(1)

    def update(self, steps: int = 1) -> None:
        """Count steps; print a line when a new tenth of the total is reached."""
        self.n += steps
        if not self.disable and self.total and self._tenth() > self._reported:
            self._reported = self._tenth()
            self._print()

    def set_postfix(self, **values: object) -> None:
        """Values shown at the end of the next line."""
        self._postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def write(self, line: str) -> None:
        """Print a line of its own."""
        if not self.disable:
            print(line, file=self.stream, flush=True)

    def _print(self) -> None:
        share = f"{100 * self.n / self.total:.0f}% " if self.total else ""
        extra = f", {self._postfix}" if self._postfix else ""
        self.write(f"{self.desc}: {share}({self.n}/{self.total} {self.unit}, {time.monotonic() - self._began:.0f} s{extra})")

    def close(self) -> None:
        """Nothing to clear: every line is already whole."""


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             initial: int = 0, disable: bool = False) -> tqdm | LineProgress:
    """A tqdm bar on a terminal, a LineProgress otherwise."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable)
