"""One Milvus Lite server per file, enforced. milvus-lite 2.5's own lock file is deleted by any process that fails to
open the file (its server object unlinks it when collected), so that process's next attempt opened a second server on
the same file and the two diverged. recplugin takes a lock of its own beside the file, never deleted, before milvus-lite
is asked to open it, holds it for as long as this process serves the file, and writes there the socket its server
listens on, so that another process can use that server instead of opening the file."""
from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from pymilvus import MilvusException

_held: dict[str, int] = {}  # guard file -> its descriptor, for the files this process serves
_lock = threading.Lock()


class HeldElsewhere(MilvusException):
    """Another process serves the file: its pid and, once its server is up, the URI of that server's socket."""

    def __init__(self, db_file: str, pid: str, socket: str | None):
        super().__init__(message=f"Milvus Lite file {db_file} is open in another process (pid {pid}); Milvus Lite serves "
                                 "one process per file: stop that process, or serve the file to every process with "
                                 "`recplugin milvus-server` (index.uri: http://host:port)")
        self.pid, self.socket = pid, socket


def guard_path(db_file: str) -> Path:
    """`.<file>.recplugin-lock` beside the Milvus Lite file."""
    path = Path(db_file).absolute().resolve()
    return path.parent / f".{path.name}.recplugin-lock"


def hold(db_file: str) -> bool:
    """Take the file for this process (False: it had it already); HeldElsewhere when another process has it."""
    path = str(guard_path(db_file))
    with _lock:
        if path in _held:
            return False
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, _, socket = os.pread(descriptor, 4096, 0).decode(errors="replace").strip().partition(" ")
            os.close(descriptor)
            raise HeldElsewhere(db_file, pid or "unknown", socket or None) from None
        _write(descriptor, str(os.getpid()))
        _held[path] = descriptor
        return True


def advertise(db_file: str, socket: str) -> None:
    """Say where this process's server for the file listens (the file must be held here)."""
    with _lock:
        _write(_held[str(guard_path(db_file))], f"{os.getpid()} {socket}")


def holds(db_file: str) -> bool:
    """Whether this process serves the file."""
    return str(guard_path(db_file)) in _held


def release(db_file: str) -> None:
    """Let other processes open the file (once this process's Milvus Lite server for it has stopped)."""
    with _lock:
        descriptor = _held.pop(str(guard_path(db_file)), None)
    if descriptor is not None:
        os.close(descriptor)


def _write(descriptor: int, text: str) -> None:
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, text.encode(), 0)
