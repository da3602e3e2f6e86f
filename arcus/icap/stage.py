"""The ICAP stage: what an HTTP exchange's upstream connection goes through when its tenant
sends bodies to an ICAP service.

The HTTP connection (``arcus.serve.http_machine``) does not know ICAP: for an exchange the
tenant's settings select (``plan``), the adapter attaches a ``Stage`` in place of the upstream
connection. The stage holds what would go upstream or come back, runs the REQMOD or RESPMOD
(``arcus.icap.client``) while the body streams in, and then lets the connection see either
the original bytes (a 204, a pass, fail-open) or an answer of its own (a 403 block page naming
the threat, fail-closed's 503, the ICAP server's modified message), exactly as if the upstream
had sent it. The machine's framing, deadlines, records and pooling stay as they are.

- REQMOD for a request with a body (an upload); RESPMOD for a response with a body. Requests
  and responses without a body pass untouched (a HEAD, a 304, a GET's request).
- What is held is bounded by the tenant's ``max_body``: a body announced or found larger is
  passed unscanned (``oversize: pass``: what was held goes on, the rest streams) or refused with
  a 403 (``oversize: refuse``).
- A chunked body is held decoded (the ICAP server gets the bytes); when it goes on, it is
  chunked again (trailers are dropped).
- ``verdict``: what the record notes (``clean``, ``blocked:THREAT``, ``error:...``,
  ``fail_open``, ``oversize:pass``, ``oversize:refused``, ``skipped:...``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

from arcus.config.schema import IcapServiceConfig
from arcus.errors import ErrorCode, ProtocolError
from arcus.icap.body import Held
from arcus.icap.client import Verdict, service_for
from arcus.proto import http1, icap
from arcus.proto.http1 import CHUNKED, LENGTH, NO_BODY, UNTIL_CLOSE

log = logging.getLogger("arcus.icap")

FAIL_MODES = ("open", "closed")
OVERSIZE = ("pass", "refuse")


@dataclass(frozen=True, slots=True)
class IcapPolicy:
    """A tenant's ICAP settings, resolved against the profile (built with the Snapshot)."""

    service_name: str
    service: IcapServiceConfig | None  # None: the profile has no such service (every exchange: an error)
    fail: str = "open"  # open: an unanswered exchange passes; closed: it is refused (503)
    sample: float = 1.0  # the share of exchanges sent (G3's application_audit_ratio)
    max_body: int = 8 << 20  # bytes held per body; beyond: ``oversize``
    oversize: str = "pass"  # pass: unscanned; refuse: 403


Render = Callable[[str, str], bytes]  # (reason, rule) -> the block page's HTML


def plan(policy: IcapPolicy, ex: Any, render: Render, timeouts: Any, rand: Callable[[], float] = random.random) -> Stage | None:
    """The stage for exchange ``ex``, or None (not sampled; a tunnel or an upgrade)."""
    req = ex.req
    if req.form == "authority" or req.upgrade:
        return None
    if policy.sample < 1.0 and rand() >= policy.sample:
        return None
    return Stage(policy, ex, render, timeouts)


def _extension(path: bytes) -> str:
    name = path.split(b"?", 1)[0].rsplit(b"/", 1)[-1]
    return name.rsplit(b".", 1)[1].decode("latin-1").lower() if b"." in name else ""


def _without(headers: list[tuple[bytes, bytes]], names: tuple[bytes, ...]) -> list[tuple[bytes, bytes]]:
    return [(n, v) for n, v in headers if n.lower() not in names]


_PASS, _HOLD, _RECHUNK, _DROP = 0, 1, 2, 3  # what happens to bytes that arrive


class Stage:
    """One exchange's ICAP stage, in place of its upstream connection (same interface: ``write``,
    ``close``, ``abort``, ``transport``, ``owner``; the upstream's events come here first)."""

    def __init__(self, policy: IcapPolicy, ex: Any, render: Render, timeouts: Any) -> None:
        self.policy = policy
        self.ex = ex
        self.render = render
        self.timeouts = timeouts
        self.up: Any = None
        self.owner: Any = None
        self.verdict = ""
        self.task: asyncio.Task | None = None
        self.spoiled = False  # the upstream connection is in an unknown state: never pooled
        self.ended = False  # our own answer was given: nothing more reaches the owner
        # request side
        self.req_state = _PASS
        self.req_head = b""
        self.req_held: Held | None = None
        self.req_decoder: icap.ChunkDecoder | None = None
        self.req_chunked = False
        # response side
        self.res_state = -1  # -1: before the response head
        self.rbuf = bytearray()
        self.res_head = b""
        self.res_held: Held | None = None
        self.res_decoder: icap.ChunkDecoder | None = None
        self.res_framing = NO_BODY
        self.res_left = 0
        self.up_eof = False

    # ------------------------------------------------------------------ the adapter's side

    def attach(self, up: Any) -> Stage:
        self.up = up
        up.owner = self
        return self

    @property
    def transport(self) -> Any:
        return self.up.transport

    def unwrap(self) -> Any:
        """The upstream connection to pool, or None (closed) when the stage left it unusable."""
        self._cancel()
        up, self.up = self.up, None
        if up is None:
            return None
        if self.spoiled or self.res_state in (_HOLD, -1):
            up.close()
            return None
        up.owner = None
        return up

    def close(self) -> None:
        self._cancel()
        if self.up is not None:
            self.up.close()

    def abort(self) -> None:
        self._cancel()
        if self.up is not None:
            self.up.abort()

    def _cancel(self) -> None:
        task, self.task = self.task, None
        if task is not None and not task.done():
            task.cancel()

    # ------------------------------------------------------------------ request: the connection writes

    def write(self, data: bytes | bytearray | memoryview) -> None:
        state = self.req_state
        if state == _PASS and self.req_head:
            self.up.write(data)
        elif not self.req_head:
            self._request_head(bytes(data))
        elif state == _HOLD:
            self._hold_request(bytes(data))
        elif state == _RECHUNK:
            self._rechunk_request(bytes(data))
        # _DROP: our answer was given; the rest of the client's body goes nowhere

    def _request_head(self, head: bytes) -> None:
        req = self.ex.req
        if req.framing != NO_BODY and req.expect_continue:
            # the body is held until the scan says: the client is told to send it now, and the
            # origin, which gets it at once, is not asked
            head = _without_expect(head)
            self._interim(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.req_head = head
        if req.framing == NO_BODY:
            self.up.write(head)  # nothing to scan: REQMOD is for bodies (uploads)
            return
        if req.framing == LENGTH and req.content_length > self.policy.max_body:
            self._request_oversize()
            return
        self.req_state = _HOLD
        self.req_held = Held()
        self.req_chunked = req.framing == CHUNKED
        self.req_decoder = icap.ChunkDecoder(_client_error) if self.req_chunked else None
        self._start(b"REQMOD", head, None, self.req_held, self._request_verdict)

    def _decode(self, decoder: icap.ChunkDecoder | None, data: bytes) -> list[bytes]:
        if decoder is None:
            return [data]
        pieces, _ = decoder.feed(data)
        return pieces

    def _hold_request(self, data: bytes) -> None:
        held = self.req_held
        assert held is not None
        for piece in self._decode(self.req_decoder, data):
            held.add(piece)
        if held.size > self.policy.max_body:
            self._cancel()
            self._request_oversize()
            return
        if not self.ex.unread:  # the machine saw the body's end
            held.finish()

    def _request_oversize(self) -> None:
        if self.policy.oversize == "refuse":
            self._set_verdict("oversize:refused")
            self.req_state = _DROP
            self._block(ErrorCode.ICAP_TOO_LARGE, f"the request body is larger than {self.policy.max_body} bytes, the most this gateway scans", keep_up=True)
            return
        self._set_verdict("oversize:pass")
        self._release_request()

    def _release_request(self) -> None:
        """The request goes upstream as it came: what was held, then the rest as it arrives."""
        held = self.req_held
        self.req_held = None
        self.req_state = _RECHUNK if self.req_chunked and not (held and held.complete) else _PASS
        up = self.up
        for piece in _framed(self.req_head, held, self.req_chunked):  # piece by piece: no copy of the whole body
            up.write(piece)

    def _rechunk_request(self, data: bytes) -> None:
        decoder = self.req_decoder
        assert decoder is not None
        pieces = self._decode(decoder, data)
        out = b"".join(icap.chunk(p) for p in pieces)
        if decoder.done:
            out += icap.last_chunk()
            self.req_state = _PASS
        if out:
            self.up.write(out)

    def _request_verdict(self, v: Verdict) -> None:
        if _passes(v, self.policy):
            self._set_verdict(_note(v))
            self._release_request()
        elif v.action == "rewrite":
            self._set_verdict("modified")
            head, body = _reframe(v.head, v.body, v.has_body, request=True)
            self.up.write(head + body)
            self.req_state = _DROP
        else:
            self.req_state = _DROP
            self._answer_verdict(v)

    # ------------------------------------------------------------------ response: the upstream's events

    def upstream_data(self, data: bytes) -> None:
        state = self.res_state
        if state == _PASS:
            self.owner.upstream_data(data)
        elif state == -1:
            self.rbuf += data
            self._response_head()
        elif state == _HOLD:
            self._hold_response(data)
        elif state == _RECHUNK:
            self._rechunk_response(data)
        # _DROP: an answer of ours replaced the response

    def upstream_eof(self) -> None:
        self.up_eof = True
        state = self.res_state
        held = self.res_held
        if state == _PASS or (state == -1 and not self.rbuf):
            self.owner.upstream_eof()
        elif state == _HOLD and held is not None and (held.complete or self.res_framing == UNTIL_CLOSE):
            held.finish()  # the whole response is held: the verdict decides, the EOF follows a replay
            self.spoiled = True
        elif state in (-1, _HOLD, _RECHUNK):
            self._cancel()
            self.res_state = _PASS
            self.owner.upstream_eof()  # cut before the response ended: the machine says so

    def upstream_lost(self, exc: Exception | None) -> None:
        held = self.res_held
        if self.res_state == _HOLD and held is not None and held.complete:
            self.spoiled = True  # the response is all here: the verdict still decides
            self.up_eof = True
            return
        if self.res_state == _HOLD and held is not None and self.res_framing == UNTIL_CLOSE:
            # a close-delimited body ends with the connection, whether or not a TLS origin said
            # close_notify first (as the connection itself takes it without ICAP)
            self.upstream_eof()
            return
        self._cancel()
        if not self.ended or self.res_state == _PASS:
            owner = self.owner
            if owner is not None:
                owner.upstream_lost(exc)

    def upstream_pause(self) -> None:
        if self.owner is not None:
            self.owner.upstream_pause()

    def upstream_resume(self) -> None:
        if self.owner is not None:
            self.owner.upstream_resume()

    def _response_head(self) -> None:
        req = self.ex.req
        while True:
            try:
                parsed = http1.parse_response_head(self.rbuf, http1.Limits(), req.method)
            except ProtocolError:
                self._pass_response()  # the machine answers the malformed head itself
                return
            if parsed is None:
                return
            resp, used = parsed
            if resp.status >= 200 or resp.status == 101:
                break
            head = bytes(self.rbuf[:used])  # an interim response goes on at once
            del self.rbuf[:used]
            self.owner.upstream_data(head)
        framing = resp.framing
        if framing == NO_BODY or (framing == LENGTH and resp.content_length == 0) or resp.status == 101:
            self._pass_response()
            return
        self.res_head = bytes(self.rbuf[:used])
        rest = bytes(self.rbuf[used:])
        self.rbuf.clear()
        self.res_framing = framing
        if framing == LENGTH and resp.content_length > self.policy.max_body:
            self.rbuf += self.res_head + rest
            self._response_oversize()
            return
        self.res_left = resp.content_length
        self.res_held = Held()
        self.res_decoder = icap.ChunkDecoder() if framing == CHUNKED else None
        self.res_state = _HOLD
        held = self.res_held
        self._start(b"RESPMOD", self.req_head, self.res_head, held, self._response_verdict)
        if rest:
            self.upstream_data(rest)  # by state: held, or (a verdict already given) passed on or dropped
        elif self.up_eof and framing == UNTIL_CLOSE:
            held.finish()

    def _pass_response(self) -> None:
        self.res_state = _PASS
        data = bytes(self.rbuf)
        self.rbuf.clear()
        if data:
            self.owner.upstream_data(data)

    def _hold_response(self, data: bytes) -> None:
        held = self.res_held
        assert held is not None
        framing = self.res_framing
        if framing == LENGTH:
            n = min(self.res_left, len(data))
            held.add(data[:n])
            self.res_left -= n
            if n < len(data):
                self.spoiled = True  # bytes after the response: the machine must not reuse this connection
            if self.res_left == 0:
                held.finish()
        elif framing == CHUNKED:
            assert self.res_decoder is not None
            try:
                pieces, used = self.res_decoder.feed(data)
            except ProtocolError:
                self._cancel()
                self._replay(held, broken=data)
                return
            for p in pieces:
                held.add(p)
            if self.res_decoder.done:
                held.finish()
                if used < len(data):
                    self.spoiled = True
        else:
            held.add(data)
        self._touch()
        if held.size > self.policy.max_body:
            self._cancel()
            self._response_oversize()

    def _touch(self) -> None:
        """The origin is sending: the connection's deadline is an idle bound while we hold it."""
        owner = self.owner
        if owner is not None:
            owner.deadline = time.monotonic() + self.timeouts.upstream_body
            owner.idle_window = 0.0

    def _response_oversize(self) -> None:
        if self.policy.oversize == "refuse":
            self._set_verdict("oversize:refused")
            self.spoiled = True
            self.res_state = _DROP
            self._block(ErrorCode.ICAP_TOO_LARGE, f"the response is larger than {self.policy.max_body} bytes, the most this gateway scans")
            return
        self._set_verdict("oversize:pass")
        if self.res_held is None:  # announced too large: nothing held yet
            self._pass_response()
        else:
            self._replay(self.res_held)

    def _replay(self, held: Held, broken: bytes = b"") -> None:
        """The response goes to the connection as the origin sent it (a chunked one chunked again)."""
        chunked = self.res_framing == CHUNKED
        self.res_held = None
        if chunked and not held.complete and not broken:
            self.res_state = _RECHUNK
        else:
            self.res_state = _PASS
        for piece in _framed(self.res_head, held, chunked):  # piece by piece: no copy of the whole body
            if self.owner is None:  # the connection finished with it (or was torn down) meanwhile
                return
            self.owner.upstream_data(piece)
        if broken and self.owner is not None:
            self.owner.upstream_data(broken)
        if self.up_eof and self.res_state == _PASS and self.owner is not None:
            self.owner.upstream_eof()

    def _rechunk_response(self, data: bytes) -> None:
        decoder = self.res_decoder
        assert decoder is not None
        try:
            pieces, used = decoder.feed(data)
        except ProtocolError:
            self.res_state = _PASS
            self.owner.upstream_data(b"zz\r\n")  # the origin's chunking broke: the machine cuts the response
            return
        out = b"".join(icap.chunk(p) for p in pieces)
        if decoder.done:
            out += icap.last_chunk()
            self.res_state = _PASS
            if used < len(data):
                self.spoiled = True
        if out:
            self.owner.upstream_data(out)

    def _response_verdict(self, v: Verdict) -> None:
        held = self.res_held
        assert held is not None
        if _passes(v, self.policy) or (v.action == "respond" and held.complete and _unchanged(v, self.res_head, held)):
            self._set_verdict(_note(v))
            self._replay(held)
            return
        if not held.complete:
            self.spoiled = True
        self.res_state = _DROP
        self._answer_verdict(v)

    # ------------------------------------------------------------------ answers of our own

    def _start(self, method: bytes, req_hdr: bytes, res_hdr: bytes | None, held: Held, done: Callable[[Verdict], None]) -> None:
        service = self.policy.service
        if service is None:
            done(Verdict("error", detail=f'the profile has no icap service "{self.policy.service_name}"'))
            return
        ext = _extension(self.ex.req.path)

        async def run() -> None:
            try:
                verdict = await service_for(service).modify(method, req_hdr, res_hdr, held, ext, self.policy.max_body)
            except Exception as exc:  # a bug of ours: the tenant's fail mode decides, not a hung exchange
                log.exception("icap service %s", service.name)
                verdict = Verdict("error", detail=f"internal error: {type(exc).__name__}")
            if self.task is None or self.owner is None:
                return
            self.task = None
            try:
                done(verdict)
            except Exception:  # a bug of ours must not leave the exchange hanging
                log.exception("icap stage")
                self.close()

        self.task = asyncio.get_running_loop().create_task(run(), name=f"arcus-icap-{self.ex.id}")

    def _answer_verdict(self, v: Verdict) -> None:
        if v.action == "block":
            self._set_verdict(f"blocked:{v.threat}")
            self._block(ErrorCode.ICAP_BLOCKED, f"virus or policy violation found: {v.threat}", keep_up=self.res_state == -1)
        elif v.action == "respond":
            self._set_verdict("modified")
            head, body = _reframe(v.head, v.body, v.has_body, request=False)
            self._give(head + body)
        else:  # an error with fail closed
            self._set_verdict("error:" + v.detail[:200])
            self.ex.error = ErrorCode.ICAP_FAILED
            self.owner.count_error(ErrorCode.ICAP_FAILED)
            text = f"the content scanner could not check this request; it was refused ({v.detail[:200]})\nrequest id: {self.ex.id}\n"
            self._give(_response(503, b"text/plain; charset=utf-8", text.encode(), ErrorCode.ICAP_FAILED))

    def _set_verdict(self, verdict: str) -> None:
        """Note what the ICAP service said of the request or the response: the worse stays (``_RANK``)."""
        if _rank(verdict) >= _rank(self.verdict):
            self.verdict = verdict

    def _block(self, code: ErrorCode, reason: str, keep_up: bool = False) -> None:
        ex = self.ex
        ex.decision = "deny"
        ex.rule = rule = f"icap:{self.policy.service_name}"
        ex.error = code
        self.owner.count_error(code)
        self.spoiled = self.spoiled or not keep_up
        body = self.render(reason, rule)
        self._give(_response(403, b"text/html; charset=utf-8", body, code, [(b"X-Arcus-Rule", rule.encode())]))

    def _interim(self, response: bytes) -> None:
        def deliver() -> None:
            owner = self.owner
            if owner is not None and self.up is not None and not self.ended:
                owner.upstream_data(response)

        asyncio.get_running_loop().call_soon(deliver)

    def _give(self, response: bytes) -> None:
        """Our answer reaches the connection as if the upstream had sent it (on the next loop
        turn: never from inside a call the connection is making to us)."""
        self.ended = True
        self.res_state = _DROP
        if self.req_state == _HOLD:
            self.req_state = _DROP

        def deliver() -> None:
            owner = self.owner
            if owner is not None and self.up is not None:
                owner.upstream_data(response)

        asyncio.get_running_loop().call_soon(deliver)


def _framed(head: bytes, held: Held | None, chunked: bool):
    """The head, then what was held as it goes on the wire (chunked again if it came chunked;
    the last chunk once the body is complete)."""
    pieces = held.pieces if held is not None else []
    yield head + (icap.chunk(pieces[0]) if chunked else pieces[0]) if pieces else head
    for p in pieces[1:]:
        yield icap.chunk(p) if chunked else p
    if chunked and held is not None and held.complete:
        yield icap.last_chunk()


def _without_expect(head: bytes) -> bytes:
    lines = head.split(b"\r\n")
    return b"\r\n".join(line for line in lines if not line.lower().startswith(b"expect:"))


def _client_error(message: str) -> ProtocolError:
    return ProtocolError(message, side="client", status=400)


_RANK = ("clean", "skipped:", "modified", "oversize:pass", "fail_open:", "oversize:refused", "error:", "blocked:")
"""What a record's ``icap`` says when both the request and the response were looked at: the
worse of the two (an upload that went unscanned stays ``oversize:pass`` whatever the response)."""


def _rank(verdict: str) -> int:
    return max((i for i, kind in enumerate(_RANK) if verdict.startswith(kind)), default=-1)


def _note(v: Verdict) -> str:
    """What the record says of an exchange that went on."""
    if v.action == "error":
        return "fail_open:" + v.detail[:200]
    if v.action == "skip":
        return "skipped:" + v.detail[:200]
    return "clean"


def _unchanged(v: Verdict, head: bytes, held: Held) -> bool:
    """An answer that gives the response back as it was (a scanner echoing a clean body)."""
    if len(v.body) != held.size or not _same(v.body, held.pieces):
        return False
    status = head.split(b"\r\n", 1)[0].split(b" ")[1:2]
    return v.head.split(b"\r\n", 1)[0].split(b" ")[1:2] == status


def _same(body: bytes, pieces: list[bytes]) -> bool:
    """``body`` equals the pieces joined, compared piece by piece (no copy of a held body)."""
    view = memoryview(body)
    at = 0
    for piece in pieces:
        if view[at : at + len(piece)] != piece:
            return False
        at += len(piece)
    return at == len(body)


def _passes(v: Verdict, policy: IcapPolicy) -> bool:
    return v.action in ("pass", "skip") or (v.action == "error" and policy.fail == "open")


def _response(status: int, ctype: bytes, body: bytes, code: ErrorCode, extra: list[tuple[bytes, bytes]] | None = None) -> bytes:
    headers = [(b"Content-Type", ctype), (b"Content-Length", str(len(body)).encode()), (b"X-Arcus-Error", code.encode()),
               (b"Cache-Control", b"no-store")]
    headers.extend(extra or ())
    return http1.build_response_head(status, http1.REASONS.get(status, b"Error"), headers, b"1.1") + body


def _reframe(head: bytes, body: bytes, has_body: bool, *, request: bool) -> tuple[bytes, bytes]:
    """An HTTP head from the ICAP server, framed by Content-Length for the body that came with it."""
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    fields = icap.parse_fields(lines[1:]) if len(lines) > 1 else []
    fields = _without(fields, (b"content-length", b"transfer-encoding", b"connection", b"keep-alive"))
    if has_body or not request:
        fields.append((b"Content-Length", str(len(body)).encode()))
    out = [lines[0] + b"\r\n"]
    out.extend(n + b": " + v + b"\r\n" for n, v in fields)
    return b"".join(out) + b"\r\n", body
