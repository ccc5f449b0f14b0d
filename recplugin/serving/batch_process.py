"""/recommend batches in a child process of each worker, so that the batch work does not share the HTTP event loop's
interpreter lock.

In one process the batch thread (Feast decode, user tower, Milvus search) and the event loop (HTTP, validation) take
turns on one lock: at c=32 on 2 cores a batch ran ~2.7x slower in the worker than alone. The child holds a Recommender
of its own (the same served version, followed the same way as another worker's) and answers whole batches over one pipe
per batch slot. Until it is ready, and whenever it dies, hangs or cannot start, the worker answers the batch itself and
a new child is started (at most one start per `RESTART_EVERY_S`).
"""
from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from queue import Empty, SimpleQueue

from recplugin.config import RecConfig
from recplugin.serving.messages import RecommendRequest

logger = logging.getLogger("recplugin.serving")
STARTING, READY, FAILED = "starting", "ready", "failed"
RESTART_EVERY_S = 10.0


class BatchProcessUnavailable(Exception):
    """The child did not answer the batch: it is starting, gone, or past the bound. The worker answers it instead."""


def _serve(config: RecConfig, status: Connection, pipes: list[Connection], torch_threads: int) -> None:
    """The child's main: build the Recommender, say so on the status pipe, then answer each pipe's batches in a thread."""
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
    except OSError:  # the worker is gone already
        recommender.close()
        return
    threads = [threading.Thread(target=_answer_batches, args=(recommender, pipe), name="recplugin-child-batch")
               for pipe in pipes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recommender.close()


def _answer_batches(recommender, pipe: Connection) -> None:
    """Answer batches on one pipe until the worker closes it (or exits)."""
    while True:
        try:
            requests = pipe.recv()
        except (EOFError, OSError):
            return
        try:
            answers = recommender.recommend_many(requests)
        except Exception as error:  # a batch-wide failure (Milvus): the worker raises it for every request
            answers = error
        try:
            pipe.send(answers)
        except (EOFError, OSError):
            return
        except Exception as error:  # an answer that does not pickle
            pipe.send(RuntimeError(f"the batch's answer could not be sent: {type(error).__name__}: {error}"))


@dataclass(eq=False)
class _Child:
    """One started child: its process, the worker's end of its status pipe and of each batch pipe, and its state."""

    process: multiprocessing.process.BaseProcess
    status: Connection
    pipes: list[Connection]
    free: SimpleQueue = field(default_factory=SimpleQueue)
    state: str = STARTING

    def stop(self) -> None:
        """Kill it now (a hung child gets no grace) and close the pipes."""
        self.state = FAILED
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)  # reaped: no zombie left behind
        for pipe in (self.status, *self.pipes):
            pipe.close()


class BatchProcess:
    """The worker's side: `recommend_many` sends a batch to the child, or raises BatchProcessUnavailable."""

    def __init__(self, config: RecConfig, milvus_uri: str, slots: int, torch_threads: int, timeout_s: float) -> None:
        self._config = replace(config, index=replace(config.index, uri=milvus_uri))
        self._slots, self._torch_threads, self._timeout_s = slots, torch_threads, timeout_s
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._started_at = -RESTART_EVERY_S
        self._first_settled = False
        self._start_if_gone()

    @property
    def pid(self) -> int | None:
        """The child's process id (None before the first start)."""
        return None if self._child is None else self._child.process.pid

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
            ends = [context.Pipe() for _ in range(self._slots)]
            process = context.Process(target=_serve, name="recplugin-batches", daemon=True,
                                      args=(self._config, child_status, [end for _, end in ends], self._torch_threads))
            process.start()
            for end in (child_status, *(end for _, end in ends)):
                end.close()  # the child's ends live in the child only: its exit is an EOF here
            self._child = _Child(process, status, [mine for mine, _ in ends])
            for slot in range(self._slots):
                self._child.free.put(slot)
            self._started_at = time.monotonic()
            return self._child

    def _state(self, child: _Child) -> str:
        """The child's state, with its status message read if one came (without waiting); a failed start is logged."""
        with self._lock:
            if child.state == STARTING and child.status.poll(0):
                try:
                    state, message = child.status.recv()
                except (EOFError, OSError):
                    state, message = FAILED, "it exited while starting"
                if state == FAILED:
                    logger.warning("the batch process could not start (%s); this worker answers batches itself", message)
                    child.stop()
                child.state = state
            return child.state

    def recommend_many(self, requests: list[RecommendRequest]) -> list:
        """The child's answers to a batch (an exception instance per failed request), or its batch-wide failure raised."""
        child = self._start_if_gone()
        if child is None or self._state(child) != READY:
            raise BatchProcessUnavailable("the batch process is starting")
        try:
            slot = child.free.get_nowait()
        except Empty:
            raise BatchProcessUnavailable("every pipe to the batch process is busy") from None
        answers = self._exchange(child, slot, requests)
        child.free.put(slot)
        if isinstance(answers, BaseException):
            raise answers
        return answers

    def _exchange(self, child: _Child, slot: int, requests: list[RecommendRequest]):
        """Send the batch on the slot's pipe and wait for its answer, bounded; a child that fails here is stopped."""
        pipe = child.pipes[slot]
        try:
            pipe.send(requests)
            if pipe.poll(self._timeout_s):
                return pipe.recv()
            reason = f"did not answer within {self._timeout_s:g} s"
        except (EOFError, OSError, ValueError) as error:  # ValueError: another batch closed this pipe (its child failed)
            reason = f"is gone ({type(error).__name__})"
        logger.warning("the batch process %s; this worker answers batches itself until a new one is ready", reason)
        child.stop()
        raise BatchProcessUnavailable(f"the batch process {reason}")

    def close(self) -> None:
        """Stop the child, and start no other."""
        with self._lock:
            if self._child is not None:
                self._child.stop()
            self._started_at = float("inf")
