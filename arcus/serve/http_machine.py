"""The HTTP connection's logic, sans-io: events in, actions out.

``HttpMachine`` decides everything an HTTP/1.1 proxy connection does (forward or reverse: the
routing strategy lives in the adapter), and does no I/O: no socket, no loop (its clock is
injected: deadlines are data, written on the sink for the runtime's sweeper). The
adapter (``arcus.serve.http_proxy.HttpProxyConnection``) turns transport callbacks into the
events below and performs the actions it is asked for through the ``Actions`` interface; the
adapter *is* the sink, so the hot path allocates no action objects. Unit tests feed event
sequences and pass a recording sink (``tests/unit/serve/test_http_machine.py``).

Events (methods of the machine):

    client_data(bytes)      request heads (parsed here), request body bytes, pipelined requests
    client_ended()          the client half-closed; returns whether to keep the transport open
    admitted(refusal|None)  the admission verdict on the current request (sync or async)
    upstream_connected()    the connect the machine asked for succeeded
    upstream_failed(r)      ... or failed
    upstream_data(bytes)    response heads (1xx, final, 101) and body bytes
    upstream_eof()          the upstream half-closed (ends a close-delimited body)
    upstream_lost(exc)      the upstream connection is gone
    timeout()               the deadline the machine last set has passed
    reject_connection(r)    refused at accept: answer the first request with ``r``, then close
    drain()                 the daemon is shutting down: no more keep-alive
    closed()                torn down from outside (connection lost, killed); returns the
                            exchange in flight, for its record

Actions (``Actions``, implemented by the adapter): write to the client, write upstream (head,
body), open an upstream (pooled or fresh), release it (to the pool or closed), abort it,
pause/resume reading the client, start the tunnel, record the exchange, refuse (answer a
refusal), count an error, close (gracefully or now); and it sets the sink's ``deadline`` and
``idle_window`` (``arcus.serve.context.Tracked``: the sweeper calls ``timeout`` once it passes).

The states, the state table (``TRANSITIONS``: every transition the machine makes, and the event
that makes it; a unit test checks that the machine never takes one not listed there) and the
``Actions`` interface are in :mod:`arcus.serve.http_states`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable

from arcus.errors import ErrorCode, ProtocolError, Refusal
from arcus.proto import http1
from arcus.proto.http1 import CHUNKED, LENGTH, NO_BODY, UNTIL_CLOSE, Limits
from arcus.serve.http_exchange import Exchange, answer_without_request
from arcus.serve.http_states import BODY, CLOSED, CONNECTING, IDLE, RESPONSE, TUNNEL, Actions

log = logging.getLogger("arcus.serve")

MAX_PENDING = 256 * 1024  # client bytes buffered while the upstream is not ready

class HttpMachine:
    __slots__ = (
        "sink", "limits", "timeouts", "state", "buf", "ubuf", "ex", "client_eof", "up_eof", "keep_alive",
        "reject", "scanned", "draining", "attached", "reused", "paused", "clock",
    )

    def __init__(
        self, sink: Actions, limits: Limits | None = None, timeouts: Any = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.sink = sink
        self.clock = clock
        self.limits = limits if limits is not None else Limits()  # the server's, set by the adapter at accept
        self.timeouts = timeouts  # the server's timeouts config (refreshed per request by the adapter)
        self.state = IDLE
        self.buf = bytearray()  # client bytes not yet consumed
        self.ubuf = bytearray()  # upstream bytes of an unfinished response head
        self.ex: Exchange | None = None  # the request in flight
        self.client_eof = False
        self.up_eof = False
        self.keep_alive = True
        self.reject: Refusal | None = None
        self.scanned = 0  # bytes of an incomplete request head already checked
        self.draining = False
        self.attached = False  # an upstream is attached to the current request
        self.reused = False  # ... and it came from the pool
        self.paused = False  # the client's reading is paused: too much buffered

    # ------------------------------------------------------------------ client events

    def client_data(self, data: bytes) -> None:
        state = self.state
        if state == BODY and not self.buf:
            if self.ex is not None and self.ex.continue_due:
                self._continue_settled()  # the client did not wait
            self._forward_body(data)
            return
        if state == CLOSED:
            self.sink.linger(data)
            return
        if state == IDLE and not self.buf:
            # first bytes of a request: the whole head must follow within client_header
            sink = self.sink
            sink.deadline = self.clock() + self.timeouts.client_header
            sink.idle_window = 0.0
        self.buf += data
        if state == IDLE:
            self._process()
        elif state == BODY:
            self._forward_body(b"")
        elif len(self.buf) > MAX_PENDING:
            self._pause()

    def client_ended(self, held: bool = False) -> bool:
        """The client's EOF. True: keep the transport open (a response is still on its way).

        ``held``: the response is being held back (a bandwidth shaper's pause). Its next bytes
        may be far off, and until something is written nobody learns whether the client only
        half-closed or went away: it is taken as gone (as nginx and squid take any close), so a
        departed client does not hold its connection and upstream for the whole pause."""
        self.client_eof = True
        state = self.state
        if state in (IDLE, CLOSED):
            return False  # nothing in flight: close
        if state == BODY or (held and state == RESPONSE):
            # the client gave up in the middle of its request body, or of a held-back response
            self._count_error(ErrorCode.CLIENT_ABORTED)
            self._close(False)
            return False
        return True  # request complete (or a tunnel): answer it, then close

    def reject_connection(self, refusal: Refusal) -> None:
        """Over a connection limit: answer the first request with ``refusal`` (reading it first,
        so the client's request is not met by a reset), then close."""
        self.keep_alive = False
        self.reject = refusal
        self._deadline(min(5.0, self.timeouts.client_header), 0.0)

    def drain(self) -> None:
        self.keep_alive = False
        self.draining = True
        if self.state == IDLE and not self.buf:
            self._close(False)

    def closed(self) -> Exchange | None:
        """Torn down: nothing more happens. The exchange in flight, to be recorded."""
        self.state = CLOSED
        self.attached = False
        ex, self.ex = self.ex, None
        return ex

    # ------------------------------------------------------------------ requests

    def _process(self) -> None:
        """Parse and start the request(s) waiting in the buffer."""
        while self.state == IDLE and self.buf:
            try:
                parsed = http1.parse_request_head(self.buf, self.limits, scanned=self.scanned)
            except ProtocolError as exc:
                self._count_error(ErrorCode.CLIENT_BAD_REQUEST)
                self.keep_alive = False
                status = exc.status
                code = ErrorCode.for_client_status(status)
                self.sink.write_client(answer_without_request(status, code, exc.message, self.sink.head_refused(status, code)))
                self._close(True)
                return
            if parsed is None:
                self.scanned = len(self.buf)  # a head sent byte by byte costs linear work, not quadratic
                if self.paused:
                    self._resume()
                return
            req, used = parsed
            self.scanned = 0
            del self.buf[:used]
            # a request starts: its exchange, then admission (or the refusal held since accept)
            ex = self.ex = self.sink.exchange(req)
            self.keep_alive = req.keep_alive and not self.draining and self.reject is None
            if self.reject is not None:
                self._refuse(self.reject)
                return
            self.state = CONNECTING
            self.sink.admit(ex)

    def admitted(self, refusal: Refusal | None) -> None:
        """The admission verdict on the current request (its decision is on the exchange)."""
        if self.state == CLOSED:
            return
        if refusal is not None:
            self._refuse(refusal)
            return
        assert self.ex is not None
        if self.ex.req.form == "authority":
            self.state = CONNECTING
            self._deadline(0.0, 0.0)  # the escaper bounds the connect itself
            self.sink.open_upstream(True, False)
            return
        self.state = CONNECTING
        if self.sink.open_upstream(False, True):
            self.reused = True
            self.attached = True  # what _attach does, inline on the hot path
            self.ubuf.clear()
            self.ex.resp_scanned = 0
            self.up_eof = False
            self._send_request()
        else:
            self._deadline(0.0, 0.0)

    def answered(self, build: Callable[[bool], bytes]) -> None:
        """The adapter answered the request itself (the CA onboarding page): ``build(keep_alive)``."""
        ex = self.ex
        if self.state != CLOSED and ex is not None:
            self.keep_alive = self.keep_alive and ex.req.framing == NO_BODY
            self.sink.write_client(build(self.keep_alive))
            self._request_done()

    def _refuse(self, r: Refusal) -> None:
        """Answer the current request ourselves (a refusal, an upstream failure). A request with
        a body closes the connection after the answer (its body is not read: closed gracefully),
        and so does a CONNECT: what its client sends after the head is tunnel data (a client may
        send it before the answer), never a request to parse."""
        ex = self.ex
        assert ex is not None
        if r.code is not ErrorCode.REDIRECTED:
            self._count_error(r.code)
        if ex.req.framing != NO_BODY or ex.req.form == "authority":
            self.keep_alive = False
        self.sink.refuse(ex, r, self.keep_alive)
        self._request_done()

    # ------------------------------------------------------------------ upstream events

    def upstream_connected(self) -> None:
        """The connect asked for by ``open_upstream`` succeeded (the adapter attached it)."""
        if self.state == CLOSED:
            return
        self.reused = False
        self._attach()
        assert self.ex is not None
        if self.ex.req.form == "authority":
            self.ex.status = 200
            self.sink.write_client(b"HTTP/1.1 200 Connection established\r\nVia: 1.1 arcus\r\n\r\n")
            self._enter_tunnel(b"")
        else:
            self._send_request()

    def upstream_failed(self, r: Refusal) -> None:
        if self.state != CLOSED:
            self._upstream_failed(r)

    def _attach(self) -> None:
        self.attached = True
        self.ubuf.clear()
        assert self.ex is not None
        self.ex.resp_scanned = 0
        self.up_eof = False

    def _send_request(self) -> None:
        ex = self.ex
        assert ex is not None
        req = ex.req
        self.sink.send_head(ex)
        ex.head_sent = True
        ex.retry_ok = self.reused and req.framing == NO_BODY
        self.reused = False
        if req.framing == NO_BODY:  # what _request_sent does, inline on the hot path
            self.state = RESPONSE
            sink = self.sink
            sink.deadline = self.clock() + self.timeouts.upstream_response
            sink.idle_window = 0.0
        else:
            self.state = BODY
            if req.expect_continue and not self.buf:
                # RFC 9110 10.1.1: the head went on; an origin that does not say "100 Continue"
                # within expect_continue is said it for (timeout), so the client sends its body
                ex.continue_due = True
                self._deadline(self.timeouts.expect_continue, 0.0)
            else:
                t = self.timeouts.client_body
                self._deadline(t, t)
            self._forward_body(b"")
            if self.state == BODY and self.paused:
                self._resume()

    def _forward_body(self, data: bytes) -> None:
        """Send request body bytes upstream: first what is buffered, then ``data``."""
        if self.buf:
            if data:
                self.buf += data
            data = bytes(self.buf)
            self.buf.clear()
        if not data:
            return
        ex = self.ex
        assert ex is not None
        try:
            n, done = ex.request_body(data)
        except ProtocolError as exc:
            self._count_error(ErrorCode.CLIENT_BAD_REQUEST)
            self.keep_alive = False
            if not ex.head_sent or ex.status == 0:
                self.sink.write_client(ex.answer(400, ErrorCode.BAD_REQUEST, exc.message, False))
            self._close(True)
            return
        if n:
            self.sink.forward_up(data if n == len(data) else data[:n], n)
        if n < len(data):
            self.buf += data[n:]
        if done:
            self._request_sent()
            if len(self.buf) > MAX_PENDING:
                self._pause()

    def _request_sent(self) -> None:
        if self.state == CLOSED:
            return
        ex = self.ex
        assert ex is not None
        self.state = RESPONSE
        if ex.resp is not None and ex.status >= 200:
            return  # the response began before the body was complete: its deadline runs
        sink = self.sink
        sink.deadline = self.clock() + self.timeouts.upstream_response
        sink.idle_window = 0.0

    def upstream_data(self, data: bytes) -> None:
        ex = self.ex
        if ex is None:
            return
        if ex.resp is not None and ex.status >= 200:
            self._relay_body(data)
            return
        if not ex.head_sent and not ex.tunnel:
            # nothing was asked yet (an upstream proxy's bytes right after its CONNECT 200): they
            # answer no request of ours, and taking them for the answer would misattribute it
            self._upstream_failed(Refusal(
                ErrorCode.UPSTREAM_PROTOCOL, f"the upstream sent {len(data)} bytes before it was sent a request"))
            return
        self.ubuf += data
        self._parse_response()

    def _parse_response(self) -> None:
        ex = self.ex
        assert ex is not None
        while self.ubuf:
            try:
                event = ex.next_response(self.ubuf, self.limits)
            except ProtocolError as exc:
                self._upstream_failed(Refusal(ErrorCode.UPSTREAM_BAD_RESPONSE, f"invalid response from upstream: {exc.message}"))
                return
            if event is None:
                return
            kind, resp, data = event
            if kind == "final":
                self._response_head(resp, data)
                return
            if kind == "switch":
                self.sink.write_client(ex.switching_head(resp))
                rest = bytes(self.ubuf)
                self.ubuf.clear()
                self._enter_tunnel(rest)
                return
            if data:
                self.sink.write_client(data)  # an interim response (1xx) the client may see
                if ex.continue_due:
                    self._continue_settled()

    def _continue_settled(self) -> None:
        """No "100 Continue" of ours is due any more: the body's own bound applies."""
        assert self.ex is not None
        self.ex.continue_due = False
        if self.state == BODY:
            t = self.timeouts.client_body
            self._deadline(t, t)

    def _response_head(self, resp: http1.ResponseHead, rest: bytes) -> None:
        ex = self.ex
        assert ex is not None
        ex.continue_due = False  # a final answer: a 100 after it would be a protocol error
        if resp.framing == CHUNKED and ex.req.version == b"1.0":
            # we asked in HTTP/1.0, so the origin must not chunk; an HTTP/1.0 client could not decode it
            self._upstream_failed(
                Refusal(ErrorCode.UPSTREAM_BAD_RESPONSE, "the upstream answered an HTTP/1.0 request with a chunked body")
            )
            return
        if resp.framing == UNTIL_CLOSE or self.state == BODY:
            self.keep_alive = False
        head = ex.response_head(resp, self.limits, self.keep_alive)
        if resp.framing == NO_BODY or (resp.framing == LENGTH and resp.content_length == 0):
            self.sink.write_client(head)
            self._response_done(rest)
        elif rest:
            self._relay_body(rest, head)  # head and first body bytes in one write
        else:
            self.sink.write_client(head)
            t = self.timeouts.upstream_body
            self._deadline(t, t)

    def _relay_body(self, data: bytes, head: bytes = b"") -> None:
        ex = self.ex
        assert ex is not None
        try:
            n, done = ex.response_body(data)
        except ProtocolError as exc:
            log.info("invalid chunked body from %s: %s", ex.req.host, exc.message)
            if head:  # nothing sent to the client yet: it can still get a proper 502
                ex.resp = None
                ex.status = 0
                self._upstream_failed(Refusal(ErrorCode.UPSTREAM_BAD_RESPONSE, f"invalid response from upstream: {exc.message}"))
                return
            self._count_error(ErrorCode.UPSTREAM_BAD_RESPONSE)
            self._close(False)
            return
        if n:
            body = data if n == len(data) else data[:n]
            self.sink.forward_down(head + body if head else body, n)
        elif head:
            self.sink.write_client(head)
        if done:
            self._response_done(data[n:])
        elif head:  # the body follows: each read must come within upstream_body
            t = self.timeouts.upstream_body
            self._deadline(t, t)

    def _response_done(self, extra: bytes) -> None:
        ex = self.ex
        assert ex is not None and ex.resp is not None
        if self.attached:
            self.attached = False
            # an HTTP/1.0 request went upstream with "Connection: close" (both routings' heads):
            # no further request may follow it on that connection (RFC 9112 9.6), whatever the origin says
            reusable = (ex.resp.keep_alive and not extra and not self.ubuf and self.state == RESPONSE
                        and not self.up_eof and ex.req.version != b"1.0")
            self.sink.release_upstream(reusable)
        if self.state == BODY:
            # the origin answered before the request body was complete: the rest cannot be framed
            self.keep_alive = False
        self._request_done()

    def _request_done(self) -> None:
        """The current exchange is over: record it, then wait for the next request or close."""
        ex, self.ex = self.ex, None
        sink = self.sink
        if ex is not None:
            sink.record(ex)
        if not self.keep_alive or self.client_eof or self.state == CLOSED:
            self._close((ex is not None and ex.unread) or bool(self.buf))
            return
        self.state = IDLE
        if self.paused:
            self._resume()
        sink.idle_window = 0.0
        if self.buf:
            sink.deadline = self.clock() + self.timeouts.client_header
            self._process()
        else:
            sink.deadline = self.clock() + self.timeouts.client_idle

    def upstream_eof(self) -> None:
        self.up_eof = True
        ex = self.ex
        if ex is None:
            return
        resp = ex.resp
        if resp is not None and ex.status >= 200 and resp.framing == UNTIL_CLOSE:
            self._response_done(b"")
            return
        # EOF before the response ended: the response was cut (or, on a reused connection, the
        # origin had closed it)
        if self.attached:
            self.attached = False
            self.sink.release_upstream(False)
        self.upstream_lost(None)

    def upstream_lost(self, exc: Exception | None) -> None:
        self.attached = False
        if self.state in (CLOSED, IDLE):
            return
        ex = self.ex
        assert ex is not None
        resp = ex.resp
        if resp is not None and ex.status >= 200:
            if resp.framing == UNTIL_CLOSE:
                self._response_done(b"")
            else:
                self._count_error(ErrorCode.UPSTREAM_CLOSED)
                self._close(False)  # cut in the middle of a body: the client must see it was cut
            return
        if ex.retry_ok:
            # a pooled connection the origin had closed under us: try once on a fresh one
            ex.retry_ok = False
            self.state = CONNECTING
            self._deadline(0.0, 0.0)
            self.sink.open_upstream(False, False)
            return
        reason = f": {exc}" if exc else ""
        self._upstream_failed(Refusal(ErrorCode.UPSTREAM_CLOSED, f"the upstream closed the connection before answering{reason}"))

    def _upstream_failed(self, r: Refusal) -> None:
        if self.attached:
            self.attached = False
            self.sink.abort_upstream()
        ex = self.ex
        assert ex is not None
        if ex.resp is not None and ex.status >= 200:
            self._count_error(r.code)
            self._close(False)
            return
        self.state = RESPONSE
        if r.code is ErrorCode.DENIED and r.rule is None:
            # refused on the way out by the escaper's egress guard (the box's own addresses...)
            r = dataclasses.replace(r, rule="egress")
        self._refuse(r)

    # ------------------------------------------------------------------ tunnels

    def _enter_tunnel(self, early_down: bytes) -> None:
        """CONNECT answered 200, or an upgrade answered 101: the tunnel relays from now on. The
        request's record is written when the tunnel ends (``closed``)."""
        self.state = TUNNEL
        self.attached = False
        if self.paused:
            self._resume()
        early_up, self.buf = bytes(self.buf), bytearray()
        self.sink.enter_tunnel(early_up, early_down, self.client_eof, self.up_eof)

    # ------------------------------------------------------------------ timeouts

    def timeout(self) -> None:
        state = self.state
        ex = self.ex
        if state == IDLE:
            if self.buf:
                self._count_error(ErrorCode.CLIENT_TIMEOUT)
                self.keep_alive = False
                rid = self.sink.head_refused(408, ErrorCode.CLIENT_TIMEOUT)
                self.sink.write_client(answer_without_request(408, ErrorCode.CLIENT_TIMEOUT, "the request head did not arrive in time", rid))
            self._close(False)
        elif state == BODY and ex is not None and ex.continue_due:
            self.sink.write_client(b"HTTP/1.1 100 Continue\r\n\r\n")  # the origin kept quiet
            self._continue_settled()
        elif state == BODY:
            assert ex is not None
            self._count_error(ErrorCode.CLIENT_TIMEOUT)
            self.keep_alive = False
            if ex.status == 0:
                self.sink.write_client(ex.answer(408, ErrorCode.CLIENT_TIMEOUT, "the request body stalled", False))
            self._close(False)
        elif state == RESPONSE:
            assert ex is not None
            if ex.status >= 200:
                # midway through the body: the sweeper found bytes held for the client that it took
                # none of for a whole window (a stalled reader, not a silent upstream), or none held
                stalled = self.sink.seen_unsent > 0
                self._count_error(ErrorCode.CLIENT_TIMEOUT if stalled else ErrorCode.UPSTREAM_TIMEOUT)
                self._close(False)
            else:
                self.keep_alive = False
                self._upstream_failed(Refusal(ErrorCode.UPSTREAM_TIMEOUT, "the upstream did not answer in time"))
        elif state == TUNNEL:
            self._count_error(ErrorCode.TUNNEL_IDLE)
            self._close(False)
        else:
            self._close(False)

    # ------------------------------------------------------------------ plumbing

    def _deadline(self, seconds: float, idle: float) -> None:
        sink = self.sink
        sink.deadline = self.clock() + seconds if seconds else 0.0
        sink.idle_window = idle

    def _pause(self) -> None:
        if not self.paused:
            self.paused = True
            self.sink.pause_client()

    def _resume(self) -> None:
        self.paused = False
        self.sink.resume_client()

    def _count_error(self, code: ErrorCode) -> None:
        if self.ex is not None:
            self.ex.error = code
        self.sink.count_error(code)

    def _close(self, linger: bool) -> None:
        """Close after what was written has been sent (``linger``: gracefully; pointless once
        the client has sent its EOF). The adapter's teardown comes back as ``closed``."""
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self.sink.close_client(linger and not self.client_eof)
