"""One process per Milvus Lite file, enforced. milvus-lite 2.5's own lock file is deleted by any process that fails to
open the file (its server object unlinks it when collected), so that process's next attempt opens a second server on the
same file and the two diverge. recplugin takes a lock of its own beside the file, never deleted, before milvus-lite is
asked to open it, and holds it for as long as this process serves the file."""
from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from pymilvus import MilvusException

_held: dict[str, int] = {}  # guard file -> its descriptor, for the files this process serves
_lock = threading.Lock()


def guard_path(db_file: str) -> Path:
    """`.<file>.recplugin-lock` beside the Milvus Lite file."""
    path = Path(db_file).absolute().resolve()
    return path.parent / f".{path.name}.recplugin-lock"


def hold(db_file: str) -> bool:
    """Take the file for this process (False: it had it already); a MilvusException naming the holder when another has it."""
    path = str(guard_path(db_file))
    with _lock:
        if path in _held:
            return False
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise MilvusException(message=f"Milvus Lite file {db_file} is open in another process (pid {holder}); Milvus Lite "
                                          "serves one process per file: stop that process, or serve the file to every "
                                          "process with `recplugin milvus-server` (index.uri: http://host:port)") from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(os.getpid()).encode(), 0)
        _held[path] = descriptor
        return True


def release(db_file: str) -> None:
    """Let other processes open the file (once this process's Milvus Lite server for it has stopped)."""
    with _lock:
        descriptor = _held.pop(str(guard_path(db_file)), None)
    if descriptor is not None:
        os.close(descriptor)
