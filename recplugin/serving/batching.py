"""Batching of concurrent calls in one worker: a batch starts as soon as a slot is free and takes every request waiting.

There is no latency model: a lone request starts at once, and under load the requests that arrive while a batch runs
form the next one. One short, bounded gather follows a batch of n > 1 requests: for at most `gather_ms` after it ends,
the next batch waits until n/2 requests are queued. Without it the first of the n clients to come back would start a
batch of 1 while the other n - 1 queue behind it (batches of 1, n-1, 1, n-1: half the batches carry one request).
Only a request that arrives within `gather_ms` of a multi-request batch's end waits, so latency at low load never
depends on the load more than `gather_ms` before it.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Generic, TypeVar

Request = TypeVar("Request")
Answer = TypeVar("Answer")


class Overloaded(Exception):
    """The request was refused: the queue was full, or it waited longer than the bound before its batch started."""


@dataclass(eq=False)
class _Waiting(Generic[Request]):
    request: Request
    future: asyncio.Future
    since: float = field(default_factory=time.monotonic)


class Batcher(Generic[Request, Answer]):
    """Calls `handle(requests)` in a thread; `handle` returns one answer, or one exception instance, per request."""

    def __init__(self, handle: Callable[[list[Request]], list], max_batch_size: int, max_wait_ms: float, slots: int = 1,
                 max_queue: int = 4096, gather_ms: float = 0.0) -> None:
        self._handle = handle
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_ms / 1000
        self._max_queue = max_queue
        self._free_slots = slots
        self._queue: deque[_Waiting] = deque()
        self._gather_s = gather_ms / 1000
        self._gather_until, self._gather_size = 0.0, 0  # after a batch of n > 1: until when to wait for n/2 requests
        self._gather_timer: asyncio.TimerHandle | None = None
        self._executor = ThreadPoolExecutor(slots, thread_name_prefix="recplugin-batch")
        self.batches = 0  # batches started, for tests and metrics
        self.largest_batch = 0

    async def __call__(self, request: Request) -> Answer:
        """The answer to one request, raised if it is an exception; Overloaded past the queue or wait bounds."""
        if len(self._queue) >= self._max_queue:
            raise Overloaded(f"{len(self._queue)} requests already queued in this worker")
        waiting = _Waiting(request, asyncio.get_running_loop().create_future())
        self._queue.append(waiting)
        self._start_batches()
        try:
            return await asyncio.wait_for(asyncio.shield(waiting.future), self._max_wait_s)
        except asyncio.TimeoutError:
            if waiting in self._queue:  # never started: give up on it
                self._queue.remove(waiting)
                raise Overloaded(f"the request waited {self._max_wait_s:g} s for a free batch slot") from None
            return await waiting.future  # started: its batch is bounded by the dependencies' own timeouts

    def _start_batches(self) -> None:
        """Start a batch in every free slot while requests wait."""
        loop = asyncio.get_running_loop()
        while self._free_slots and self._queue:
            if len(self._queue) < self._gather_size and time.monotonic() < self._gather_until:
                if self._gather_timer is None:
                    self._gather_timer = loop.call_at(loop.time() + self._gather_until - time.monotonic(), self._gathered)
                return
            if self._gather_timer is not None:
                self._gather_timer.cancel()
            self._gather_timer, self._gather_until = None, 0.0
            batch = [self._queue.popleft() for _ in range(min(self._max_batch_size, len(self._queue)))]
            self._free_slots -= 1
            self.batches += 1
            self.largest_batch = max(self.largest_batch, len(batch))
            task = loop.run_in_executor(self._executor, self._handle, [waiting.request for waiting in batch])
            task.add_done_callback(lambda done, batch=batch: self._finish(batch, done))

    def _gathered(self) -> None:
        """The gather after a batch is over: start what waits."""
        self._gather_timer, self._gather_until = None, 0.0
        self._start_batches()

    def _finish(self, batch: list[_Waiting], done: asyncio.Future) -> None:
        """Hand each request its answer (or the batch's failure), free the slot, gather the next batch (bounded), start it."""
        self._free_slots += 1
        if len(batch) > 1 and self._gather_s > 0:
            self._gather_until, self._gather_size = time.monotonic() + self._gather_s, len(batch) // 2
        error = done.exception()
        answers = [error] * len(batch) if error is not None else done.result()
        if len(answers) != len(batch):
            answers = [RuntimeError(f"the batch handler gave {len(answers)} answers to {len(batch)} requests")] * len(batch)
        for waiting, answer in zip(batch, answers):
            if waiting.future.done():
                continue
            if isinstance(answer, BaseException):
                waiting.future.set_exception(answer)
            else:
                waiting.future.set_result(answer)
        self._start_batches()
