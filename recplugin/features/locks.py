"""Per-user locks shared by every worker process, kept where the online state lives: a Redis lock for the Redis online
store, a file lock beside the SQLite database for the SQLite one (which only processes of one machine can share)."""
from __future__ import annotations

import fcntl
import os
import time
import uuid
import zlib
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK_STRIPES = 4096


class LockTimeout(TimeoutError):
    """The user's lock was not free within the wait limit."""


class RedisUserLocks:
    """`SET key token NX PX lease` to take, a compare-and-delete script to release (a lease, so a dead worker's lock expires)."""

    RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"

    def __init__(self, connection: str, namespace: str, timeout_s: float, lease_s: float = 10.0):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        host_port, *options = connection.split(",")
        host, port = host_port.rsplit(":", 1)
        params = dict(option.split("=", 1) for option in options if "=" in option)
        self.client = redis.Redis(host=host, port=int(port), db=int(params.get("db", 0)), password=params.get("password"),
                                  socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                  retry=Retry(NoBackoff(), 0))  # a hung Redis fails the event in one timeout
        self.namespace, self.timeout_s, self.lease_ms = namespace, timeout_s, int(lease_s * 1000)
        self._redis_errors = redis.RedisError
        self._orphans: deque[tuple[str, str]] = deque()  # (key, token) of SETs with no answer: Redis may apply them later

    def _release_orphans(self) -> None:
        """Release the locks that unanswered SETs may have taken once Redis answered again (compare-and-delete: never
        another holder's lock); without this a hung Redis left the user locked for the whole lease after it recovered."""
        while self._orphans:
            try:
                key, token = self._orphans.popleft()
            except IndexError:  # another thread took the last one
                return
            try:
                self.client.eval(self.RELEASE, 1, key, token)
            except self._redis_errors:
                self._orphans.appendleft((key, token))
                raise

    @contextmanager
    def hold(self, user_id: int) -> Iterator[None]:
        key, token = f"{self.namespace}:user-lock:{int(user_id)}", uuid.uuid4().hex
        deadline = time.monotonic() + self.timeout_s
        self._release_orphans()
        try:
            while not self.client.set(key, token, nx=True, px=self.lease_ms):
                if time.monotonic() > deadline:
                    raise LockTimeout(f"user {user_id} is locked by another writer (waited {self.timeout_s:.1f} s)")
                time.sleep(0.002)
        except self._redis_errors:
            self._orphans.append((key, token))
            raise
        try:
            yield
        finally:
            self.client.eval(self.RELEASE, 1, key, token)


class FileUserLocks:
    """`flock` on one of LOCK_STRIPES files (the user id hashed), waiting up to the timeout."""

    def __init__(self, folder: Path, timeout_s: float):
        self.folder, self.timeout_s = Path(folder), timeout_s
        self.folder.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def hold(self, user_id: int) -> Iterator[None]:
        stripe = zlib.crc32(str(int(user_id)).encode()) % LOCK_STRIPES
        descriptor = os.open(self.folder / f"{stripe:04d}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + self.timeout_s
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LockTimeout(f"user {user_id} is locked by another writer (waited {self.timeout_s:.1f} s)") from None
                    time.sleep(0.002)
            yield
        finally:
            os.close(descriptor)  # closing the descriptor releases the lock
