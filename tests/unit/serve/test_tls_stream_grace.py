"""tls_stream's grace after the client's EOF (a TLS upstream cannot be half-closed): EOF_GRACE
seconds of the upstream's silence, counted from the EOF, not from the bytes before it."""

from __future__ import annotations

from types import SimpleNamespace

from arcus.serve.context import Shared
from arcus.serve.relay import RELAY
from arcus.serve.tls_stream import EOF_GRACE, TlsStreamConnection


class Conn(SimpleNamespace):
    def on_timeout(self) -> None:
        self.timed_out = True

    def unsent(self) -> int:
        return 0  # the client has taken all it was sent


def test_the_grace_ends_after_eof_grace_of_silence_not_a_window_later() -> None:
    upt = SimpleNamespace(can_write_eof=lambda: False)  # TLS: no half-close to pass on
    conn = Conn(state=RELAY, tunnel=SimpleNamespace(upt=upt), idle_window=300.0, deadline=0.0,
                bytes_up=1000, bytes_down=0, seen_activity=0, seen_unsent=-1, timed_out=False, id=1)
    TlsStreamConnection._eof_grace(conn)  # the client's EOF after 1000 bytes up
    assert conn.idle_window == EOF_GRACE and conn.seen_activity == 1000
    shared = SimpleNamespace(connections={1: conn}, pool=SimpleNamespace(expire=lambda now: None))
    Shared.sweep(shared, conn.deadline + 0.01)  # silence since the EOF: the grace is over
    assert conn.timed_out
    # an answer within the grace moves it on
    conn.timed_out, conn.bytes_down = False, 500
    TlsStreamConnection._eof_grace(conn)
    conn.bytes_down = 900
    Shared.sweep(shared, conn.deadline + 0.01)
    assert not conn.timed_out
