"""The HTTP connection machine's states, its state table and the interface it acts through.

:mod:`arcus.serve.http_machine` is the machine (events in, actions out); this is what it may do:
the states a connection is in, ``TRANSITIONS`` -- every (state, event) and the states it may lead
to, which a unit test holds the machine to -- and ``Actions``, what the machine asks of its
adapter (``arcus.serve.http_proxy.HttpProxyConnection`` is the sink: no action objects).
"""

from __future__ import annotations

from typing import Protocol

from arcus.errors import ErrorCode, Refusal
from arcus.proto import http1
from arcus.serve.http_exchange import Exchange

# states
IDLE = 0  # waiting for (the rest of) a request head
CONNECTING = 1  # request parsed: admission, then the upstream being opened
BODY = 2  # forwarding the request body
RESPONSE = 3  # request sent, waiting for / relaying the response
TUNNEL = 4  # CONNECT or Upgrade: bytes both ways, relayed by the tunnel (not the machine)
CLOSED = 5
STATE_NAMES = ("idle", "connecting", "request_body", "response", "tunnel", "closed")

# (state, event) -> states it may lead to. "close" is any transition to CLOSED, which every
# state may take on every event (an error, a refusal without keep-alive, a timeout).
TRANSITIONS: dict[tuple[int, str], frozenset[int]] = {
    # a complete head: admission starts (CONNECTING); a refusal answered at once: IDLE again
    (IDLE, "client_data"): frozenset({IDLE, CONNECTING, BODY, RESPONSE}),
    (IDLE, "timeout"): frozenset(),  # an unfinished head gets 408, an idle connection closes
    (IDLE, "drain"): frozenset({IDLE}),
    # allowed: an upstream from the pool (the request goes: BODY or RESPONSE) or a connect
    # (CONNECTING); refused: answered (IDLE, or the next pipelined request)
    (CONNECTING, "admitted"): frozenset({IDLE, CONNECTING, BODY, RESPONSE}),
    (CONNECTING, "upstream_connected"): frozenset({BODY, RESPONSE, TUNNEL}),
    (CONNECTING, "upstream_failed"): frozenset({IDLE, CONNECTING, BODY, RESPONSE}),  # answered (502, 504, 403)
    (CONNECTING, "client_data"): frozenset({CONNECTING}),  # buffered (pipelined or early body)
    (CONNECTING, "upstream_data"): frozenset({IDLE, CONNECTING}),  # before the request went: refused (502)
    (BODY, "client_data"): frozenset({BODY, RESPONSE}),
    (BODY, "upstream_data"): frozenset({BODY, IDLE}),  # an early response (a 100, or a final answer)
    (BODY, "upstream_lost"): frozenset({IDLE, RESPONSE, CONNECTING}),
    (BODY, "upstream_eof"): frozenset({IDLE, RESPONSE, CONNECTING}),
    (BODY, "timeout"): frozenset({BODY}),  # our "100 Continue" (expect_continue); else 408, closed
    (RESPONSE, "upstream_data"): frozenset({RESPONSE, IDLE, CONNECTING, BODY, TUNNEL}),  # done: the next request
    (RESPONSE, "upstream_eof"): frozenset({IDLE, CONNECTING, BODY, RESPONSE}),  # a close-delimited body ends
    (RESPONSE, "upstream_lost"): frozenset({IDLE, CONNECTING, BODY, RESPONSE}),  # a retry on a fresh connection
    (RESPONSE, "client_data"): frozenset({RESPONSE}),  # pipelined: buffered until the response is done
    (RESPONSE, "timeout"): frozenset(),  # before the head: 504, then closed; within the body: cut
}


class Actions(Protocol):
    """What the machine asks of its adapter. The adapter is the sink: no action objects."""

    deadline: float  # when ``timeout`` is due (monotonic seconds; 0: none), set by the machine
    idle_window: float  # the deadline is an idle bound: moved on while bytes flow
    seen_unsent: int  # bytes held for the client when the bound last ran out (the sweeper's look; -1: none)

    def exchange(self, req: http1.RequestHead) -> Exchange: ...  # a new request: its exchange
    def admit(self, ex: Exchange) -> None: ...  # the verdict comes back as ``admitted``
    def open_upstream(self, tunnel: bool, reuse: bool) -> bool: ...  # True: a pooled one is attached now
    def send_head(self, ex: Exchange) -> None: ...  # the request head, upstream
    def forward_up(self, data: bytes, n: int) -> None: ...  # request body bytes, upstream
    def forward_down(self, data: bytes, n: int) -> None: ...  # response bytes (``n`` of body), to the client
    def write_client(self, data: bytes) -> None: ...  # our own bytes to the client
    def refuse(self, ex: Exchange, r: Refusal, keep_alive: bool) -> None: ...  # answer a refusal
    def release_upstream(self, reusable: bool) -> None: ...  # to the pool, or closed
    def abort_upstream(self) -> None: ...
    def pause_client(self) -> None: ...
    def resume_client(self) -> None: ...
    def enter_tunnel(self, early_up: bytes, early_down: bytes, client_eof: bool, up_eof: bool) -> None: ...
    def record(self, ex: Exchange) -> None: ...
    def count_error(self, code: ErrorCode) -> None: ...
    def head_refused(self, status: int, code: ErrorCode) -> str: ...  # a head refused before it was a request: its answer's id
    def linger(self, data: bytes) -> None: ...  # client bytes after the end
    def close_client(self, linger: bool) -> None: ...  # linger: gracefully (the client may still send)
