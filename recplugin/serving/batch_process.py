"""/recommend batches in a child process of each worker, so that the batch work does not share the HTTP event loop's
interpreter lock.

In one process a batch thread (Feast decode, user tower, Milvus search) and the event loop (HTTP, validation) take
turns on one lock: at c=32 on 2 cores a batch ran ~2.7x slower in the worker than alone. Each of the worker's batch
slots has a child of its own, which holds a Recommender (the same served version, followed the same way as another
worker's) and answers whole batches over a pipe; the worker's event loop waits for the answer on the pipe itself. Until
it is ready (at most START_BOUND_S), and whenever it dies, hangs or cannot start, the worker answers the batch itself
and a new child is started (at most one start per RESTART_EVERY_S).
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import pickle
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from queue import Empty, SimpleQueue

from recplugin.config import RecConfig
from recplugin.serving.messages import RecommendRequest

logger = logging.getLogger("recplugin.serving")
STARTING, READY, FAILED = "starting", "ready", "failed"
RESTART_EVERY_S = 10.0
PIPELINED = 2  # batches a child holds at once: the one it runs and the next, waiting in its pipe
START_BOUND_S = 180.0  # a child still loading after this is taken for hung: killed, and /readyz no longer waits for it


class BatchProcessUnavailable(Exception):
    """The child did not answer the batch: it is starting, gone, or past the bound. The worker answers it instead."""


def _serve(config: RecConfig, status: Connection, pipe: Connection, torch_threads: int) -> None:
    """The child's main: build the Recommender, say so on the status pipe, then answer batches until the worker closes
    the pipe (or exits)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the worker stops its child itself
    import torch

    torch.set_num_threads(torch_threads)
    from recplugin.serving.recommender import Recommender

    try:
        recommender = Recommender(config)
    except Exception as error:  # the worker logs it and answers batches itself
        status.send((FAILED, f"{type(error).__name__}: {error}"))
        return
    try:
        status.send((READY, ""))
        while True:
            requests = pipe.recv()
            try:
                answers = recommender.recommend_many(requests)
            except Exception as error:  # a batch-wide failure (Milvus): the worker raises it for every request
                answers = error
            try:
                pipe.send(answers)
            except (pickle.PicklingError, TypeError, AttributeError) as error:  # an answer that does not pickle
                pipe.send(RuntimeError(f"the batch's answer could not be sent: {type(error).__name__}: {error}"))
    except (EOFError, OSError):  # the worker is gone
        pass
    finally:
        recommender.close()


@dataclass(eq=False)
class _Child:
    """One started child: its process, the worker's end of its status and batch pipes, and its state."""

    process: multiprocessing.process.BaseProcess
    status: Connection
    pipe: Connection
    state: str = STARTING
    pending: deque = field(default_factory=deque)  # one future per batch sent and not answered yet, oldest first

    def stop(self, reason: str = "was stopped") -> None:
        """Kill it now (a hung child gets no grace), reap it, close the pipes; its pending batches go to the worker."""
        self.state = FAILED
        if self.pending:
            try:
                asyncio.get_running_loop().remove_reader(self.pipe.fileno())
            except RuntimeError:  # stopped off the event loop (the worker's shutdown)
                self.pending.clear()
        while self.pending:
            waiter = self.pending.popleft()
            if not waiter.done():
                waiter.set_exception(BatchProcessUnavailable(f"the batch process {reason}"))
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.status.close()
        self.pipe.close()


class BatchProcess:
    """One batch slot's child, from the worker's side (its event loop): `answer` has it answer a batch, or raises
    BatchProcessUnavailable; one batch at a time."""

    def __init__(self, config: RecConfig, torch_threads: int, timeout_s: float) -> None:
        self._config, self._torch_threads, self._timeout_s = config, torch_threads, timeout_s
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._started_at = -RESTART_EVERY_S
        self._first_settled = False
        self._start_if_gone()

    def settled(self) -> bool:
        """Whether the first child is past starting: it answers batches, or it could not start (the worker answers them)."""
        child = self._child
        if not self._first_settled and (child is None or self._state(child) != STARTING):
            self._first_settled = True
        return self._first_settled

    def _start_if_gone(self) -> _Child | None:
        """The live child; a new one is started when there is none, at most once per RESTART_EVERY_S."""
        with self._lock:
            child = self._child
            if child is not None and child.state != FAILED and child.process.is_alive():
                return child
            if time.monotonic() - self._started_at < RESTART_EVERY_S:
                return None
            if child is not None:
                child.stop()
            context = multiprocessing.get_context("spawn")
            status, child_status = context.Pipe(duplex=False)
            pipe, child_pipe = context.Pipe()
            process = context.Process(target=_serve, name="recplugin-batches", daemon=True,
                                      args=(self._config, child_status, child_pipe, self._torch_threads))
            process.start()
            child_status.close()  # the child's ends live in the child only: its exit is an EOF here
            child_pipe.close()
            self._child = _Child(process, status, pipe)
            self._started_at = time.monotonic()
            return self._child

    def _state(self, child: _Child) -> str:
        """The child's state, with its status message read if one came (without waiting); a failed start is logged."""
        with self._lock:
            if child.state != STARTING:
                return child.state
            loading_s = time.monotonic() - self._started_at
            if child.status.poll(0):
                try:
                    state, message = child.status.recv()
                except (EOFError, OSError):
                    state, message = FAILED, "it exited while starting"
            elif loading_s > START_BOUND_S:
                state, message = FAILED, f"it was still loading after {loading_s:.0f} s"
            else:
                return STARTING
            if state == FAILED:
                logger.warning("the batch process could not start (%s); this worker answers batches itself", message)
                child.stop()
            child.state = state
            return state

    async def answer(self, requests: list[RecommendRequest]) -> list:
        """The child's answers to a batch (an exception instance per failed request), or its batch-wide failure raised.
        Batches sent while one runs wait in the pipe and are answered in order: the child starts the next one as soon as
        it has sent an answer, without a round trip through the worker's event loop."""
        child = self._start_if_gone()
        if child is None or self._state(child) != READY:
            raise BatchProcessUnavailable("the batch process is starting")
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        try:
            child.pipe.send(requests)
        except OSError as error:
            self._stop(child, f"is gone ({type(error).__name__})")
            raise BatchProcessUnavailable("the batch process is gone") from None
        child.pending.append(waiter)
        if len(child.pending) == 1:
            loop.add_reader(child.pipe.fileno(), self._take_answer, child)
        try:  # a cancelled caller leaves the future in place: its answer is read, in order, and dropped
            answers = await asyncio.wait_for(asyncio.shield(waiter), self._timeout_s)
        except asyncio.TimeoutError:
            self._stop(child, f"did not answer within {self._timeout_s:g} s")
            raise BatchProcessUnavailable(f"the batch process did not answer within {self._timeout_s:g} s") from None
        if isinstance(answers, BaseException):
            raise answers
        return answers

    def _take_answer(self, child: _Child) -> None:
        """The pipe is readable: the oldest pending batch's answer, or the child's exit."""
        try:
            answers = child.pipe.recv()
        except (EOFError, OSError) as error:
            self._stop(child, f"is gone ({type(error).__name__})")
            return
        waiter = child.pending.popleft()
        if not waiter.done():
            waiter.set_result(answers)
        if not child.pending:
            asyncio.get_running_loop().remove_reader(child.pipe.fileno())

    @staticmethod
    def _stop(child: _Child, reason: str) -> None:
        """A child that failed a batch answers no more: the worker answers its batches until a new one is ready."""
        if child.state != FAILED:
            logger.warning("the batch process %s; this worker answers batches itself until a new one is ready", reason)
        child.stop(reason)

    def close(self) -> None:
        """Stop the child, and start no other."""
        with self._lock:
            if self._child is not None:
                self._child.stop()
            self._started_at = float("inf")


class BatchProcesses:
    """A worker's batch processes, one per batch slot: each batch goes to a free one."""

    def __init__(self, config: RecConfig, milvus_uri: str, slots: int, torch_threads: int, timeout_s: float) -> None:
        config = replace(config, index=replace(config.index, uri=milvus_uri))
        self._all = [BatchProcess(config, torch_threads, timeout_s) for _ in range(slots)]
        self._free: SimpleQueue[BatchProcess] = SimpleQueue()
        for process in self._all:
            for _ in range(PIPELINED):
                self._free.put(process)

    def settled(self) -> bool:
        """Whether every first child is past starting (/readyz waits for this)."""
        return all(process.settled() for process in self._all)

    async def answer(self, requests: list[RecommendRequest]) -> list:
        """A free child's answers to the batch; BatchProcessUnavailable when none is free or it cannot answer."""
        try:
            process = self._free.get_nowait()
        except Empty:
            raise BatchProcessUnavailable("every batch process is busy") from None
        try:
            return await process.answer(requests)
        finally:
            self._free.put(process)

    def close(self) -> None:
        """Stop every child."""
        for process in self._all:
            process.close()
