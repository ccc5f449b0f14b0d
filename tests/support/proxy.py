"""A TCP proxy for fault tests and the fault benchmark: forwards to a real server until told to hang (accept, then never
forward a byte), to drop (cut every connection, close new ones at once: a server that is down) or to lose answers (the
server acts on a request, its answer never reaches the client)."""
from __future__ import annotations

import selectors
import socket
import threading


class HangingProxy:
    """127.0.0.1:<port> -> target; `hang()` stops forwarding in both directions (a hung dependency), `drop()` cuts and
    refuses connections (a dead one), `resume()` goes back to forwarding."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.forwarding = threading.Event()
        self.forwarding.set()
        self.dropping = threading.Event()
        self.closed = False
        self._answers_to_lose = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def hang(self) -> None:
        self.forwarding.clear()

    def drop(self) -> None:
        self.dropping.set()

    def lose_answers(self, count: int) -> None:
        """The next `count` connections that get an answer never see it (nor anything after it on that connection)."""
        with self._lock:
            self._answers_to_lose = count

    def _lose_this_answer(self) -> bool:
        with self._lock:
            self._answers_to_lose, lose = max(0, self._answers_to_lose - 1), self._answers_to_lose > 0
        return lose

    def resume(self) -> None:
        self.dropping.clear()
        self.forwarding.set()

    def close(self) -> None:
        self.closed = True
        self.forwarding.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.dropping.is_set():
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        losing = False
        try:
            while not self.closed and not self.dropping.is_set():
                for key, _ in selector.select(timeout=0.2):
                    self.forwarding.wait()  # hung: the bytes wait here, unread and unanswered
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    losing = losing or (key.fileobj is upstream and self._lose_this_answer())
                    if not (losing and key.fileobj is upstream):
                        key.data.sendall(data)
        except OSError:
            pass
        finally:
            selector.close()
            client.close()
            upstream.close()
