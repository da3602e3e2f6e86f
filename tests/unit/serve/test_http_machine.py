"""The HTTP connection's state machine without sockets: event sequences in, actions out.

A recording sink stands in for the asyncio adapter (``arcus.serve.http_proxy``); every event
goes through ``Run.ev``, which also checks that the transition the machine took is one its
state table (``TRANSITIONS``) lists.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from arcus.errors import ErrorCode, Refusal
from arcus.proto import http1
from arcus.serve.http_exchange import Exchange
from arcus.serve.http_machine import MAX_PENDING, HttpMachine
from arcus.serve.http_states import BODY, CLOSED, CONNECTING, IDLE, RESPONSE, STATE_NAMES, TRANSITIONS, TUNNEL

LIMITS = http1.Limits(8192, 65536, 100)
NOW = 1000.0
TIMEOUTS = SimpleNamespace(client_header=10.0, client_body=20.0, client_idle=30.0, upstream_response=40.0, upstream_body=50.0,
                           expect_continue=1.5)

GET = b"GET http://a.test/%s HTTP/1.1\r\nHost: a.test\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


class Sink:
    """Records every action as a tuple; answers the few questions the machine asks."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.m: HttpMachine | None = None
        self.pooled = True  # open_upstream finds a pooled connection
        self.auto_admit = True  # admission answers at once (allow)
        self.ids = 0
        self._deadline = 0.0
        self.idle_window = 0.0
        self.seen_unsent = -1

    def exchange(self, req: http1.RequestHead) -> Exchange:
        self.ids += 1
        return Exchange(req, f"r{self.ids}", LIMITS, 0, 0)

    def admit(self, ex: Exchange) -> None:
        self.log.append(("admit", ex.req.path))
        if self.auto_admit:
            assert self.m is not None
            self.m.admitted(None)

    def open_upstream(self, tunnel: bool, reuse: bool) -> bool:
        found = reuse and self.pooled
        self.log.append(("open_upstream", tunnel, reuse))
        return found

    def send_head(self, ex: Exchange) -> None:
        self.log.append(("send_head", ex.req.method, ex.req.path))

    def forward_up(self, data: bytes, n: int) -> None:
        self.log.append(("up", bytes(data)))

    def forward_down(self, data: bytes, n: int) -> None:
        self.log.append(("down", bytes(data), n))

    def write_client(self, data: bytes) -> None:
        self.log.append(("write", bytes(data)))

    def refuse(self, ex: Exchange, r: Refusal, keep_alive: bool) -> None:
        ex.status = r.status
        self.log.append(("refuse", r.code, r.rule, keep_alive))

    def release_upstream(self, reusable: bool) -> None:
        self.log.append(("release", reusable))

    def abort_upstream(self) -> None:
        self.log.append(("abort_upstream",))

    def pause_client(self) -> None:
        self.log.append(("pause",))

    def resume_client(self) -> None:
        self.log.append(("resume",))

    def enter_tunnel(self, early_up: bytes, early_down: bytes, client_eof: bool, up_eof: bool) -> None:
        self.log.append(("tunnel", early_up, early_down))

    def record(self, ex: Exchange) -> None:
        self.log.append(("record", ex.req.path, ex.status, ex.error))

    # deadlines are data the machine sets (from its injected clock, at NOW): logged as seconds ahead
    @property
    def deadline(self) -> float:
        return self._deadline

    @deadline.setter
    def deadline(self, when: float) -> None:
        self._deadline = when
        self.log.append(("deadline", when - NOW if when else 0.0))

    def count_error(self, code: ErrorCode) -> None:
        self.log.append(("error", code))

    def head_refused(self, status: int, code: ErrorCode) -> str:
        self.log.append(("head_refused", status, code))
        return "rid"

    def linger(self, data: bytes) -> None:
        self.log.append(("linger", len(data)))

    def close_client(self, linger: bool) -> None:
        self.log.append(("close", linger))
        assert self.m is not None
        ex = self.m.closed()  # what the adapter's teardown does
        if ex is not None:
            self.record(ex)


class Run:
    def __init__(self, **sink: Any) -> None:
        self.sink = Sink()
        for k, v in sink.items():
            setattr(self.sink, k, v)
        self.m = HttpMachine(self.sink, LIMITS, TIMEOUTS, clock=lambda: NOW)
        self.sink.m = self.m

    def ev(self, event: str, *args: Any) -> list[tuple[Any, ...]]:
        """Feed one event; the actions it produced (deadlines left out unless asked for)."""
        before = self.m.state
        start = len(self.sink.log)
        out = getattr(self.m, event)(*args)
        after = self.m.state
        allowed = TRANSITIONS.get((before, event), frozenset())
        assert after in allowed or after in (before, CLOSED), (
            f"{STATE_NAMES[before]} --{event}--> {STATE_NAMES[after]} is not in the state table"
        )
        self.result = out
        return self.sink.log[start:]

    def acts(self, event: str, *args: Any) -> list[tuple[Any, ...]]:
        return [a for a in self.ev(event, *args) if a[0] != "deadline"]


def kinds(actions: list[tuple[Any, ...]]) -> list[str]:
    return [a[0] for a in actions]


# ---------------------------------------------------------------------------------- keep-alive


def test_an_upstream_told_close_for_an_http10_request_is_not_pooled() -> None:
    """The head that went upstream said "Connection: close": an origin that keeps the
    connection open anyway must not get the next client's request on it."""
    r = Run()
    r.ev("client_data", b"GET http://a.test/a HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n")
    acts = r.ev("upstream_data", OK)
    assert ("release", False) in acts and ("release", True) not in acts


def test_a_keep_alive_request_is_forwarded_answered_recorded_and_its_upstream_pooled() -> None:
    r = Run()
    acts = r.ev("client_data", GET % b"a")
    assert [a for a in acts if a[0] != "deadline"] == [
        ("admit", b"/a"), ("open_upstream", False, True), ("send_head", b"GET", b"/a"),
    ]
    assert ("deadline", TIMEOUTS.client_header) in acts and acts[-1] == ("deadline", TIMEOUTS.upstream_response)
    assert r.m.state == RESPONSE
    acts = r.ev("upstream_data", OK)
    down = [a for a in acts if a[0] == "down"]
    assert len(down) == 1 and down[0][1].startswith(b"HTTP/1.1 200 OK\r\n") and down[0][1].endswith(b"\r\n\r\nhello")
    assert down[0][2] == 5  # body bytes counted, not the head
    assert kinds([a for a in acts if a[0] != "deadline"]) == ["down", "release", "record"]
    assert ("release", True) in acts and acts[-1] == ("deadline", TIMEOUTS.client_idle)
    assert r.m.state == IDLE and r.m.ex is None
    # the next request on the same connection starts afresh
    assert r.acts("client_data", GET % b"b")[-1] == ("send_head", b"GET", b"/b")


def test_the_hot_path_asks_for_few_actions_and_none_per_byte() -> None:
    r = Run()
    r.ev("client_data", GET % b"a")
    r.ev("upstream_data", OK)
    start = len(r.sink.log)
    r.ev("client_data", GET % b"b")
    r.ev("upstream_data", OK)
    # deadline, admit, open, head, deadline, down (head and body in one write), release, record, deadline
    assert len(r.sink.log) - start == 9


def test_a_fresh_upstream_is_opened_when_the_pool_has_none_and_the_request_goes_once_it_is_up() -> None:
    r = Run(pooled=False)
    acts = r.ev("client_data", GET % b"a")
    assert ("send_head", b"GET", b"/a") not in acts and acts[-1] == ("deadline", 0.0)
    assert r.m.state == CONNECTING and r.m.ex is not None and r.m.ex.decision == ""
    assert r.acts("upstream_connected") == [("send_head", b"GET", b"/a")]
    assert r.m.state == RESPONSE


def test_a_request_waits_for_an_admission_verdict_given_later() -> None:
    r = Run(auto_admit=False)
    r.ev("client_data", GET % b"a")
    assert r.m.state == CONNECTING
    assert r.acts("client_data", GET % b"b") == []  # pipelined: buffered, not parsed yet
    assert r.acts("admitted", None)[-1] == ("send_head", b"GET", b"/a")


# ---------------------------------------------------------------------------------- pipelining


def test_pipelined_requests_are_answered_in_order_one_at_a_time() -> None:
    r = Run()
    acts = r.acts("client_data", GET % b"1" + GET % b"2" + GET % b"3")
    assert [a for a in acts if a[0] == "send_head"] == [("send_head", b"GET", b"/1")]
    acts = r.acts("upstream_data", OK)
    assert kinds(acts) == ["down", "release", "record", "admit", "open_upstream", "send_head"]
    assert acts[2][1] == b"/1" and acts[-1] == ("send_head", b"GET", b"/2")
    acts = r.acts("upstream_data", OK)
    assert acts[2][1] == b"/2" and acts[-1] == ("send_head", b"GET", b"/3")
    r.acts("upstream_data", OK)
    assert r.m.state == IDLE and not r.m.buf


def test_too_much_pipelined_input_pauses_the_client_until_it_is_consumed() -> None:
    r = Run()
    r.ev("client_data", GET % b"1")
    assert ("pause",) in r.acts("client_data", b"x" * (MAX_PENDING + 1))
    assert ("resume",) in r.acts("upstream_data", OK)


# ---------------------------------------------------------------------------------- bodies


def test_100_continue_reaches_the_client_and_the_body_follows() -> None:
    r = Run()
    post = b"POST http://a.test/u HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    acts = r.ev("client_data", post)
    assert ("deadline", TIMEOUTS.expect_continue) in acts and r.m.state == BODY  # ours, if the origin keeps quiet
    acts = r.ev("upstream_data", b"HTTP/1.1 100 Continue\r\n\r\n")
    assert kinds(acts) == ["write", "deadline"] and acts[0][1].startswith(b"HTTP/1.1 100 Continue\r\n")
    assert acts[1] == ("deadline", TIMEOUTS.client_body)  # the origin's came first: the body's bound
    assert r.m.state == BODY
    assert r.acts("client_data", b"hello") == [("up", b"hello")]
    assert r.m.state == RESPONSE
    acts = r.acts("upstream_data", OK)
    assert ("release", True) in acts and r.m.state == IDLE


def test_a_body_is_forwarded_as_it_comes_and_the_next_request_is_not_body() -> None:
    r = Run()
    post = b"POST http://a.test/u HTTP/1.1\r\nHost: a.test\r\nContent-Length: 6\r\n\r\nabc"
    acts = r.acts("client_data", post)
    assert acts[-1] == ("up", b"abc")
    assert r.acts("client_data", b"def" + GET % b"next") == [("up", b"def")]
    assert r.m.state == RESPONSE and bytes(r.m.buf) == GET % b"next"


@pytest.mark.parametrize(
    ("request_head", "response"),
    [
        (b"HEAD http://a.test/h HTTP/1.1\r\nHost: a.test\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
        (GET % b"n", b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"),
        (GET % b"m", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\n\r\n"),
    ],
    ids=["HEAD", "204", "304"],
)
def test_responses_without_a_body_end_at_their_head_whatever_their_length_says(request_head: bytes, response: bytes) -> None:
    r = Run()
    r.ev("client_data", request_head)
    acts = r.acts("upstream_data", response)
    assert kinds(acts) == ["write", "release", "record"] and acts[1] == ("release", True)
    assert b"Content-Length" in acts[0][1] or b"204" in acts[0][1]
    assert r.m.state == IDLE


def test_a_chunked_response_with_trailers_is_relayed_whole_across_reads() -> None:
    r = Run()
    r.ev("client_data", GET % b"c")
    acts = r.acts("upstream_data", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
    assert kinds(acts) == ["down"] and b"Transfer-Encoding: chunked" in acts[0][1]
    assert r.acts("upstream_data", b"lo\r\n0\r\nX-Sum: 1") == [("down", b"lo\r\n0\r\nX-Sum: 1", 15)]
    acts = r.acts("upstream_data", b"\r\n\r\n")
    assert acts == [("down", b"\r\n\r\n", 4), ("release", True), ("record", b"/c", 200, "")]


def test_a_close_delimited_response_ends_at_the_upstreams_eof_and_closes_the_client() -> None:
    r = Run()
    r.ev("client_data", GET % b"e")
    acts = r.acts("upstream_data", b"HTTP/1.1 200 OK\r\n\r\nsome")
    assert b"Connection: close" in acts[0][1]
    assert r.acts("upstream_data", b" more") == [("down", b" more", 5)]
    acts = r.acts("upstream_eof")
    assert acts == [("release", False), ("record", b"/e", 200, ""), ("close", False)]
    assert r.m.state == CLOSED


def test_a_response_cut_mid_body_closes_the_client_and_records_the_upstreams_fault() -> None:
    r = Run()
    r.ev("client_data", GET % b"cut")
    r.ev("upstream_data", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n1234")
    acts = r.acts("upstream_lost", None)
    assert acts == [("error", ErrorCode.UPSTREAM_CLOSED), ("close", False), ("record", b"/cut", 200, ErrorCode.UPSTREAM_CLOSED)]


def test_a_pooled_upstream_closed_under_a_request_is_retried_once_on_a_fresh_one() -> None:
    r = Run()
    r.ev("client_data", GET % b"r")
    assert r.acts("upstream_eof") == [("release", False), ("open_upstream", False, False)]
    assert r.m.state == CONNECTING
    assert r.acts("upstream_connected") == [("send_head", b"GET", b"/r")]
    acts = r.acts("upstream_lost", None)  # a second loss is answered
    assert ("refuse", ErrorCode.UPSTREAM_CLOSED, None, True) in acts and r.m.state == IDLE


# ---------------------------------------------------------------------------------- tunnels


def test_connect_opens_a_tunnel_upstream_and_hands_over_with_the_early_bytes() -> None:
    r = Run()
    acts = r.acts("client_data", b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n\x16\x03\x01")
    assert acts == [("admit", b""), ("open_upstream", True, False)]  # authority form: no path
    acts = r.acts("upstream_connected")
    assert acts[0] == ("write", b"HTTP/1.1 200 Connection established\r\nVia: 1.1 arcus\r\n\r\n")
    assert acts[1] == ("tunnel", b"\x16\x03\x01", b"") and r.m.state == TUNNEL
    assert r.acts("timeout") == [("error", ErrorCode.TUNNEL_IDLE), ("close", False), ("record", b"", 200, ErrorCode.TUNNEL_IDLE)]


def test_an_upgrade_answered_101_becomes_a_tunnel_with_the_upstreams_early_bytes() -> None:
    r = Run()
    up = b"GET http://a.test/ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
    r.ev("client_data", up)
    acts = r.acts("upstream_data", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi")
    assert kinds(acts) == ["write", "tunnel"] and acts[0][1].startswith(b"HTTP/1.1 101")
    assert acts[1] == ("tunnel", b"", b"\x81\x02hi") and r.m.state == TUNNEL


# ---------------------------------------------------------------------------------- refusals


def test_a_refused_request_without_a_body_is_answered_and_the_connection_kept() -> None:
    r = Run(auto_admit=False)
    r.ev("client_data", GET % b"x")
    acts = r.acts("admitted", Refusal(ErrorCode.DENIED, "no", rule="r1"))
    assert acts == [("error", ErrorCode.DENIED), ("refuse", ErrorCode.DENIED, "r1", True), ("record", b"/x", 403, ErrorCode.DENIED)]
    assert r.m.state == IDLE


def test_a_refused_request_with_an_unread_body_is_answered_then_closed_gracefully() -> None:
    r = Run(auto_admit=False)
    r.ev("client_data", b"POST http://a.test/p HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100000\r\n\r\nxx")
    acts = r.acts("admitted", Refusal(ErrorCode.AUTH_REQUIRED, "who?"))
    assert acts[1] == ("refuse", ErrorCode.AUTH_REQUIRED, None, False) and acts[-1] == ("close", True)
    assert r.acts("client_data", b"y" * 100) == [("linger", 100)]  # read and dropped


@pytest.mark.parametrize("how", ["admitted", "upstream_failed"])
def test_a_refused_connect_closes_and_never_reads_its_tunnel_bytes_as_a_request(how: str) -> None:
    """What follows a CONNECT head is tunnel data: after a refusal (policy, or the connect
    failing) it must not be parsed as the next request on the connection."""
    r = Run(auto_admit=how == "upstream_failed")
    r.ev("client_data", b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n" + GET % b"smuggled")
    acts = r.acts(how, Refusal(ErrorCode.UPSTREAM_CONNECT if how == "upstream_failed" else ErrorCode.DENIED, "no"))
    refused = [a for a in acts if a[0] == "refuse"]
    assert len(refused) == 1 and refused[0][3] is False  # answered with Connection: close
    assert acts[-1] == ("close", True) and r.m.state == CLOSED
    assert ("admit", b"/smuggled") not in r.sink.log
    assert r.acts("client_data", GET % b"late") == [("linger", len(GET % b"late"))]  # read and dropped


def test_a_connection_refused_at_accept_answers_its_first_request_then_closes() -> None:
    r = Run()
    assert r.ev("reject_connection", Refusal(ErrorCode.SERVER_BUSY, "busy")) == [("deadline", 5.0)]
    acts = r.acts("client_data", GET % b"a")
    assert ("refuse", ErrorCode.SERVER_BUSY, None, False) in acts and acts[-1] == ("close", False)
    assert "admit" not in kinds(acts)


def test_an_egress_guard_denial_at_connect_is_answered_with_the_egress_rule() -> None:
    r = Run(pooled=False)
    r.ev("client_data", GET % b"a")
    acts = r.acts("upstream_failed", Refusal(ErrorCode.DENIED, "the box itself"))
    assert ("refuse", ErrorCode.DENIED, "egress", True) in acts and r.m.state == IDLE


def test_a_malformed_head_is_answered_400_and_closed_gracefully() -> None:
    r = Run()
    acts = r.acts("client_data", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
    assert kinds(acts) == ["error", "head_refused", "write", "close"]
    assert acts[1] == ("head_refused", 400, ErrorCode.BAD_REQUEST)  # the connection's record says it
    assert acts[2][1].startswith(b"HTTP/1.1 400") and b"X-Arcus-Request-Id: rid" in acts[2][1] and acts[3] == ("close", True)


def test_the_client_giving_up_mid_body_is_its_fault_and_closes() -> None:
    r = Run()
    r.ev("client_data", b"POST http://a.test/p HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\nab")
    assert r.m.client_ended() is False
    assert ("error", ErrorCode.CLIENT_ABORTED) in r.sink.log and r.m.state == CLOSED


def test_a_client_eof_after_its_request_waits_for_the_answer_then_closes() -> None:
    r = Run()
    r.ev("client_data", GET % b"a")
    assert r.m.client_ended() is True
    assert r.acts("upstream_data", OK)[-1] == ("close", False)


def test_a_client_eof_while_its_response_is_held_back_is_an_abort() -> None:
    """A bandwidth shaper's pause may be long, and only a write would show the client gone: the
    EOF ends the exchange (recorded client_aborted) and frees the upstream at once."""
    r = Run()
    r.ev("client_data", GET % b"a")
    r.ev("upstream_data", b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
    assert r.m.state == RESPONSE
    assert r.m.client_ended(held=True) is False
    assert ("error", ErrorCode.CLIENT_ABORTED) in r.sink.log and r.m.state == CLOSED
    assert ("record", b"/a", 200, ErrorCode.CLIENT_ABORTED) in r.sink.log
    # not held back: the answer is still on its way to a client that may only have half-closed
    r = Run()
    r.ev("client_data", GET % b"a")
    r.ev("upstream_data", b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
    assert r.m.client_ended(held=False) is True and r.m.state == RESPONSE


EXPECT = b"POST http://a.test/p HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"


def test_an_origin_that_does_not_say_100_continue_is_said_it_for_after_expect_continue() -> None:
    r = Run()
    acts = r.ev("client_data", EXPECT)
    assert acts[-1] == ("deadline", TIMEOUTS.expect_continue) and r.m.state == BODY
    acts = r.ev("timeout")
    assert acts == [("write", b"HTTP/1.1 100 Continue\r\n\r\n"), ("deadline", TIMEOUTS.client_body)]
    assert r.m.state == BODY
    assert ("up", b"hello") in r.acts("client_data", b"hello")
    # a second timeout is the body's own: 408 (nothing was answered yet)
    r = Run()
    r.ev("client_data", EXPECT)
    r.ev("timeout")
    acts = r.acts("timeout")
    assert ("error", ErrorCode.CLIENT_TIMEOUT) in acts and r.m.state == CLOSED


def test_no_100_continue_of_ours_after_the_origins_nor_when_the_client_did_not_wait() -> None:
    r = Run()
    r.ev("client_data", EXPECT)
    acts = r.ev("upstream_data", b"HTTP/1.1 100 Continue\r\n\r\n")
    assert acts == [("write", b"HTTP/1.1 100 Continue\r\n\r\n"), ("deadline", TIMEOUTS.client_body)]
    assert not r.m.ex.continue_due
    r = Run()
    r.ev("client_data", EXPECT)
    acts = r.ev("client_data", b"hel")
    assert ("deadline", TIMEOUTS.client_body) in acts and not r.m.ex.continue_due
    r = Run()
    r.ev("client_data", EXPECT)
    r.ev("upstream_data", b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
    assert r.m.ex is None or not r.m.ex.continue_due


def test_interim_responses_are_relayed_up_to_a_bound_then_the_upstream_is_refused() -> None:
    r = Run()
    r.ev("client_data", GET % b"a")
    acts = r.acts("upstream_data", b"HTTP/1.1 102 Processing\r\n\r\n" * 32)
    assert kinds(acts) == ["write"] * 32
    acts = r.acts("upstream_data", b"HTTP/1.1 102 Processing\r\n\r\n")
    assert ("abort_upstream",) in acts and ("refuse", ErrorCode.UPSTREAM_BAD_RESPONSE, None, True) in acts
    assert ("record", b"/a", 502, ErrorCode.UPSTREAM_BAD_RESPONSE) in acts


def test_upstream_bytes_before_the_request_was_sent_are_an_upstream_protocol_error() -> None:
    """An upstream that speaks before it was asked (a proxy's bytes after its CONNECT 200): its
    bytes answer nothing, and must not be taken for the response to the request sent next."""
    r = Run(pooled=False)
    r.ev("client_data", GET % b"a")
    assert r.m.state == CONNECTING
    acts = r.acts("upstream_data", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    assert ("refuse", ErrorCode.UPSTREAM_PROTOCOL, None, True) in acts
    assert not any(a[0] == "down" for a in acts)  # nothing of it reached the client


def test_draining_closes_an_idle_connection_and_ends_keep_alive_on_a_busy_one() -> None:
    idle = Run()
    assert idle.acts("drain") == [("close", False)]
    busy = Run()
    busy.ev("client_data", GET % b"a")
    busy.acts("drain")
    acts = busy.acts("upstream_data", OK)
    assert b"Connection: close" in acts[0][1] and acts[-1] == ("close", False)


# ---------------------------------------------------------------------------------- timeouts


def test_timeout_while_idle_closes_quietly_and_in_an_unfinished_head_answers_408() -> None:
    r = Run()
    assert r.acts("timeout") == [("close", False)]
    r = Run()
    r.ev("client_data", b"GET http://a.test/ HTTP/1.1\r\nHo")
    acts = r.acts("timeout")
    assert kinds(acts) == ["error", "head_refused", "write", "close"] and acts[2][1].startswith(b"HTTP/1.1 408")
    assert acts[1] == ("head_refused", 408, ErrorCode.CLIENT_TIMEOUT)


def test_timeout_while_admitting_or_connecting_closes() -> None:
    r = Run(pooled=False)
    r.ev("client_data", GET % b"a")
    acts = r.acts("timeout")
    assert acts[0] == ("close", False) and acts[1][0] == "record"


def test_timeout_in_a_stalled_request_body_answers_408_and_closes() -> None:
    r = Run()
    r.ev("client_data", b"POST http://a.test/p HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\nab")
    acts = r.acts("timeout")
    assert acts[0] == ("error", ErrorCode.CLIENT_TIMEOUT) and acts[1][1].startswith(b"HTTP/1.1 408") and acts[2] == ("close", False)


def test_timeout_waiting_for_the_response_answers_504_and_midway_through_it_cuts() -> None:
    r = Run()
    r.ev("client_data", GET % b"a")
    acts = r.acts("timeout")
    assert acts[:3] == [("abort_upstream",), ("error", ErrorCode.UPSTREAM_TIMEOUT), ("refuse", ErrorCode.UPSTREAM_TIMEOUT, None, False)]
    assert acts[-1] == ("close", False)
    r = Run()
    r.ev("client_data", GET % b"a")
    r.ev("upstream_data", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12")
    assert r.acts("timeout")[:2] == [("error", ErrorCode.UPSTREAM_TIMEOUT), ("close", False)]


def test_a_reader_that_took_nothing_held_for_it_is_the_one_timed_out() -> None:
    """Midway through a body, bytes held for the client that it took none of for a window (the
    sweeper's look): the client stalled, not the upstream (whose reading it had stopped)."""
    r = Run()
    r.ev("client_data", GET % b"a")
    r.ev("upstream_data", b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n12")
    r.sink.seen_unsent = 4_000_000
    assert r.acts("timeout")[:2] == [("error", ErrorCode.CLIENT_TIMEOUT), ("close", False)]


def test_every_listed_transition_names_known_states() -> None:
    for (state, event), targets in TRANSITIONS.items():
        assert state in range(len(STATE_NAMES)) and hasattr(HttpMachine, event)
        assert targets <= set(range(len(STATE_NAMES)))
