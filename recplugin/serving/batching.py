"""Batching of concurrent calls in one worker: a batch starts as soon as a slot is free and takes every request waiting.

There is no latency model and no timer: a lone request starts at once, and under load the requests that arrive while
a batch runs form the next one. Latency at low load therefore never depends on the load before it.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Generic, TypeVar

Request = TypeVar("Request")
Answer = TypeVar("Answer")


class Overloaded(Exception):
    """The request was refused: the queue was full, or it waited longer than the bound before its batch started."""


@dataclass(eq=False)
class _Waiting(Generic[Request]):
    request: Request
    future: asyncio.Future
    since: float = field(default_factory=time.monotonic)
    timer: asyncio.TimerHandle | None = None  # refuses it if no batch took it within the bound


class Batcher(Generic[Request, Answer]):
    """Calls `handle(requests)`, a coroutine function on the event loop or a plain function in a thread; it returns one
    answer, or one exception instance, per request."""

    def __init__(self, handle: Callable[[list[Request]], list | Awaitable[list]], max_batch_size: int, max_wait_ms: float,
                 slots: int = 1, max_queue: int = 4096, min_behind: int = 1) -> None:
        self._handle = handle
        self._min_behind = min_behind  # a batch starts behind a running one only with at least this many requests
        self._slots = slots
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_ms / 1000
        self._max_queue = max_queue
        self._free_slots = slots
        self._queue: deque[_Waiting] = deque()
        self._executor = ThreadPoolExecutor(slots, thread_name_prefix="recplugin-batch")
        self.batches = 0  # batches started, for tests and metrics
        self.largest_batch = 0

    async def __call__(self, request: Request) -> Answer:
        """The answer to one request, raised if it is an exception; Overloaded past the queue or wait bounds."""
        if len(self._queue) >= self._max_queue:
            raise Overloaded(f"{len(self._queue)} requests already queued in this worker")
        loop = asyncio.get_running_loop()
        waiting = _Waiting(request, loop.create_future())
        self._queue.append(waiting)
        self._start_batches()
        if self._queue and self._queue[-1] is waiting:  # not taken by a batch yet (a started batch is bounded by its
            waiting.timer = loop.call_later(self._max_wait_s, self._refuse, waiting)  # dependencies' own timeouts)
        return await waiting.future

    def _refuse(self, waiting: _Waiting) -> None:
        """The bound passed before a batch took the request: it leaves the queue with Overloaded."""
        try:
            self._queue.remove(waiting)
        except ValueError:  # a batch took it meanwhile
            return
        if not waiting.future.done():
            waiting.future.set_exception(Overloaded(f"the request waited {self._max_wait_s:g} s for a free batch slot"))

    def _start_batches(self) -> None:
        """Start a batch in every free slot while requests wait."""
        loop = asyncio.get_running_loop()
        while self._free_slots and self._queue:
            if self._free_slots < self._slots and len(self._queue) < self._min_behind:
                return  # too few to be worth a batch behind the running one: they go when a batch ends
            taken = [self._queue.popleft() for _ in range(min(self._max_batch_size, len(self._queue)))]
            for waiting in taken:
                if waiting.timer is not None:
                    waiting.timer.cancel()
            batch = [waiting for waiting in taken if not waiting.future.done()]  # done: its caller went away
            if not batch:
                continue
            self._free_slots -= 1
            self.batches += 1
            self.largest_batch = max(self.largest_batch, len(batch))
            requests = [waiting.request for waiting in batch]
            task = asyncio.ensure_future(self._handle(requests)) if asyncio.iscoroutinefunction(self._handle) \
                else loop.run_in_executor(self._executor, self._handle, requests)
            task.add_done_callback(lambda done, batch=batch: self._finish(batch, done))

    def _finish(self, batch: list[_Waiting], done: asyncio.Future) -> None:
        """Hand each request its answer (or the batch's failure), free the slot, start the next batch."""
        self._free_slots += 1
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
