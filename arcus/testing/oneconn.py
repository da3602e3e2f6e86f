"""A loopback TCP peer that serves one connection in a thread: the skeleton of the hand-written
origins the integration tests need (one that answers only after its client's EOF, one that greets
first, one that upgrades), each of which only says what it does with the connection."""

from __future__ import annotations

import socket
import threading

TIMEOUT = 10.0
"""Seconds the accept and every read on the connection may wait."""


class OneConnection:
    """Accepts one connection on 127.0.0.1 and runs ``serve(conn)`` with it (a subclass's), in a
    daemon thread; ``finished`` is set once that is over (or the accept failed). A subclass sets
    its own attributes before calling ``super().__init__()``: the thread starts there."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(TIMEOUT)
        self.port = self.sock.getsockname()[1]
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed before a client came, or none within TIMEOUT
                return
            with conn:
                conn.settimeout(TIMEOUT)
                self.serve(conn)
        finally:
            self.finished.set()

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.sock.close()
        self.thread.join(TIMEOUT)
