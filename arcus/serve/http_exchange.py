"""One HTTP exchange: a request, its response, their framing, the decision, the request id and
the request's record. The connection (``arcus.serve.http_machine``, through its adapter
``arcus.serve.http_proxy``) makes one per request; an exchange does no I/O: it says how many bytes of a body belong to it, builds the
heads that go to the client, and writes its record once.
"""

from __future__ import annotations

import math
import time
from typing import Any

from arcus.errors import ErrorCode, ProtocolError, Refusal
from arcus.icap import stage as icap_stage
from arcus.proto import http1
from arcus.proto.http1 import CHUNKED, LENGTH, NO_BODY, UNTIL_CLOSE, ChunkedScanner, Limits
from arcus.serve import blockpage, records
from arcus.serve.http_routing import VIA, VIA_10

MAX_INTERIM = 32
"""Interim (1xx) responses one request may get before its final one: more is an upstream error."""

# hop-by-hop fields a 101's head must not pass on
_NOT_ON_101 = (b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer")


def build_answer(
    status: int,
    code: ErrorCode,
    message: str,
    request_id: str,
    version: bytes,
    keep_alive: bool,
    head_only: bool,
    *,
    body: bytes | None = None,
    content_type: bytes = b"text/plain; charset=utf-8",
    extra: list[tuple[bytes, bytes]] | None = None,
    error: bool = True,
) -> bytes:
    if body is None:
        body = f"{status} {http1.REASONS.get(status, b'Error').decode()}\n{message}\nrequest id: {request_id}\n".encode()
    headers = [(b"Content-Type", content_type), (b"Content-Length", str(len(body)).encode())]
    if error:
        headers.append((b"X-Arcus-Error", code.encode()))
    headers.append((b"X-Arcus-Request-Id", request_id.encode()))
    headers.append((b"Via", VIA))
    if extra:
        headers.extend(extra)
    if version == b"1.0":
        headers.append((b"Connection", b"keep-alive" if keep_alive else b"close"))
    elif not keep_alive:
        headers.append((b"Connection", b"close"))
    out = http1.build_response_head(status, http1.REASONS.get(status, b"Error"), headers)  # HTTP/1.1 to any client
    return out if head_only else out + body


def answer_without_request(status: int, code: ErrorCode, message: str, request_id: str) -> bytes:
    """An error answer before any request could be read (a malformed or unfinished head): closes."""
    return build_answer(status, code, message, request_id, b"1.1", False, False)


class Exchange:
    __slots__ = (
        "req", "resp", "id", "started", "status", "error", "decision", "rule", "reports", "head_sent",
        "retry_ok", "unread", "req_left", "req_scanner", "resp_left", "resp_scanner", "up0", "down0", "recorded",
        "resp_scanned", "icap", "detail", "asked", "continue_due", "interims",
    )

    def __init__(self, req: http1.RequestHead, request_id: str, limits: Limits, bytes_up: int, bytes_down: int) -> None:
        self.req = req
        self.resp: http1.ResponseHead | None = None
        self.id = request_id
        self.started = time.monotonic()
        self.status = 0  # what the client was (or is being) answered
        self.error: ErrorCode | str = ""
        self.decision = ""  # allow, deny, redirect (report: allow with report rules)
        self.rule: str | None = None
        self.reports: tuple = ()
        self.head_sent = False  # the request head went upstream
        self.retry_ok = False  # sent on a reused pooled connection, no body: one retry allowed
        self.unread = req.framing != NO_BODY  # the body was not (all) read: close gracefully
        self.req_left = req.content_length if req.framing == LENGTH else 0
        self.req_scanner = ChunkedScanner(limits) if req.framing == CHUNKED else None
        self.resp_left = 0
        self.resp_scanner: ChunkedScanner | None = None
        self.up0 = bytes_up  # the connection's counters when the exchange began
        self.down0 = bytes_down
        self.recorded = False
        self.resp_scanned = 0  # bytes of an incomplete response head already checked
        self.icap: icap_stage.Stage | None = None  # the ICAP stage its upstream goes through (arcus.icap)
        self.detail: str | None = None  # what else the record says (TLS interception: a refused upstream certificate)
        # the host and port the client asked for, when the request leaves for another (a reverse
        # proxy's site upstream): what the record names, as the policy saw it
        self.asked: tuple[str, int] | None = None
        # the client waits for "100 Continue" before its body: ours goes after expect_continue
        # unless the upstream's (or its final answer, or the body) comes first
        self.continue_due = False
        self.interims = 0  # 1xx responses seen (bounded: MAX_INTERIM)

    @property
    def tunnel(self) -> bool:
        return self.req.form == "authority"

    # -- bodies (raise ProtocolError for a malformed chunked body)

    def request_body(self, data: bytes) -> tuple[int, bool]:
        """(bytes of ``data`` that belong to the request body, whether it is complete)."""
        if self.req.framing == LENGTH:
            n = min(self.req_left, len(data))
            self.req_left -= n
            done = self.req_left == 0
        else:
            assert self.req_scanner is not None
            n = self.req_scanner.feed(data)
            done = self.req_scanner.done
        if done:
            self.unread = False
        return n, done

    def response_body(self, data: bytes) -> tuple[int, bool]:
        """(bytes of ``data`` that belong to the response body, whether it is complete)."""
        assert self.resp is not None
        framing = self.resp.framing
        if framing == LENGTH:
            n = min(self.resp_left, len(data))
            self.resp_left -= n
            return n, self.resp_left == 0
        if framing == CHUNKED:
            assert self.resp_scanner is not None
            n = self.resp_scanner.feed(data)
            return n, self.resp_scanner.done
        if framing == UNTIL_CLOSE:
            return len(data), False
        return 0, True

    # -- the upstream's answer

    def next_response(self, buf: bytearray, limits: Limits) -> tuple[str, Any, bytes] | None:
        """The next response head in ``buf`` (consumed): ("final", head, the bytes after it),
        ("switch", a 101 to an upgrade request, b""), ("interim", head, what the client gets of
        it); None while incomplete. Raises ProtocolError for a malformed head."""
        req = self.req
        parsed = http1.parse_response_head(buf, limits, req.method, scanned=self.resp_scanned)
        if parsed is None:
            self.resp_scanned = len(buf)
            return None
        resp, used = parsed
        self.resp_scanned = 0
        if resp.status >= 200:
            rest = bytes(buf[used:])
            buf.clear()
            return "final", resp, rest
        del buf[:used]
        if resp.status == 101 and req.upgrade:
            return "switch", resp, b""
        self.interims += 1
        if self.interims > MAX_INTERIM:  # an origin that only ever says "wait": bounded, not relayed forever
            raise ProtocolError(f"more than {MAX_INTERIM} interim (1xx) responses", side="upstream", status=502)
        if req.version == b"1.1" and resp.status != 101:
            return "interim", resp, http1.build_response_head(resp.status, resp.reason, http1.forward_headers(resp.headers, resp.connection_tokens))
        return "interim", resp, b""

    # -- heads to the client

    def response_head(self, resp: http1.ResponseHead, limits: Limits, keep_alive: bool) -> bytes:
        """Take the upstream's final response; the head the client gets."""
        req = self.req
        self.resp = resp
        self.status = resp.status
        self.resp_left = resp.content_length
        self.resp_scanner = ChunkedScanner(limits, side="upstream", status=502) if resp.framing == CHUNKED else None
        headers = http1.forward_headers(resp.headers, resp.connection_tokens)
        if resp.framing == CHUNKED:
            headers = [(n, v) for n, v in headers if n.lower() != b"content-length"]
            headers.append((b"Transfer-Encoding", b"chunked"))
        headers.append((b"Via", VIA_10 if resp.version == b"1.0" else VIA))  # the version we received (RFC 9110 7.6.3)
        if req.version == b"1.0":
            headers.append((b"Connection", b"keep-alive" if keep_alive else b"close"))
        elif not keep_alive:
            headers.append((b"Connection", b"close"))
        # HTTP/1.1, whatever the client spoke (RFC 9110 2.5: the highest version we conform to);
        # an HTTP/1.0 client's framing is kept to what it reads (no chunking, Connection said)
        return http1.build_response_head(resp.status, resp.reason, headers)

    def switching_head(self, resp: http1.ResponseHead) -> bytes:
        """Take the upstream's 101; the head the client gets (the exchange becomes a tunnel)."""
        self.status = 101
        self.resp = resp
        headers = [(n, v) for n, v in resp.headers if n.lower() not in _NOT_ON_101]
        headers.append((b"Via", VIA))
        return http1.build_response_head(101, resp.reason, headers)

    def answer(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        keep_alive: bool,
        *,
        body: bytes | None = None,
        content_type: bytes = b"text/plain; charset=utf-8",
        extra: list[tuple[bytes, bytes]] | None = None,
        error: bool = True,
    ) -> bytes:
        """An answer of our own (a refusal, an error, a redirect): head and body."""
        self.status = status
        if error:
            self.error = code
        req = self.req
        return build_answer(
            status, code, message, self.id, req.version, keep_alive, req.method == b"HEAD",
            body=body, content_type=content_type, extra=extra, error=error,
        )

    def refusal(self, r: Refusal, keep_alive: bool, block_page: str | None, tenant: str, host: str) -> bytes:
        """The answer to a refusal (admission, policy, an upstream failure), in HTTP."""
        code = r.code
        if code is ErrorCode.DENIED:  # a policy (or the egress guard): the block page, naming the rule
            self.decision = "deny"
            rule = self.rule = r.rule or "default"
            body = blockpage.render_block_page(block_page, tenant=tenant, rule=rule, reason=r.message, request_id=self.id, host=host)
            return self.answer(
                403, code, r.message, keep_alive, body=body, content_type=b"text/html; charset=utf-8",
                extra=[(b"X-Arcus-Rule", rule.encode())],
            )
        if code is ErrorCode.REDIRECTED:
            self.decision = "redirect"
            self.rule = r.rule
            location = r.redirect_to or "/"
            moved = [(b"Location", location.encode())]
            if r.rule:
                moved.append((b"X-Arcus-Rule", r.rule.encode()))  # as a deny names its rule
            return self.answer(r.status, code, f"moved to {location}", keep_alive, extra=moved, error=False)
        status = r.status
        extra = None
        if status == 407:
            extra = [(b"Proxy-Authenticate", r.realm)]
        elif status == 429:
            extra = [(b"Retry-After", str(max(1, math.ceil(r.retry_after))).encode())]
        if status in (403, 407):
            self.decision = "deny"
        return self.answer(status, code, r.message, keep_alive, extra=extra)

    # -- ICAP

    def plan_icap(self, session: Any) -> None:
        """An admitted request of a tenant with an ICAP service: its stage, unless not sampled
        (``arcus.icap.stage``; the adapter puts it in place of the upstream connection)."""
        tv = session.tview
        policy = tv.icap
        host = session.target

        def render(reason: str, rule: str) -> bytes:
            return blockpage.render_block_page(tv.block_page, tenant=tv.name, rule=rule, reason=reason, request_id=self.id, host=host)

        self.icap = icap_stage.plan(policy, self, render, session.conf.timeouts)

    # -- the record

    def record(self, session: Any, bytes_up: int, bytes_down: int, sni: str | None) -> None:
        """The exchange's record (once): usage, access-log line, audit event."""
        if self.recorded:
            return
        self.recorded = True
        if session.user is None and not session.shared.records.enabled:
            return  # nobody reads it: no usage to count, no log, no subscriber (see records.record)
        req = self.req
        path = None
        if req.form != "authority" and req.path:  # not a tunnel
            raw = req.path.decode("latin-1")
            tv = session.tview
            path = raw if tv is not None and tv.log_query else raw.split("?", 1)[0]
        allowed_report = self.reports and self.decision == "allow"
        host, port = self.asked or (req.host or "", req.port or 0)
        records.record(  # positional up to sni: see records.record
            session, "request", host, port, req.method.decode("latin-1"), path, self.status,
            bytes_up - self.up0, bytes_down - self.down0, time.monotonic() - self.started,
            "report" if allowed_report else self.decision, ",".join(self.reports) if allowed_report else self.rule,
            self.error, self.id,
            sni=sni,
            inspection=session.inspection if self.tunnel else None,
            icap=self.icap.verdict or None if self.icap is not None else None,
            detail=self.detail,
        )
