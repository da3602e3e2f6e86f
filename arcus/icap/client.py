"""The ICAP client: services with several servers in failover order, each with its OPTIONS
cached per Options-TTL and a bounded pool of persistent connections.

``service_for(config)`` gives the one live ``IcapService`` of a profile's service (kept across
reloads while its configuration is unchanged, so pools and OPTIONS survive them).
``IcapService.modify`` runs one REQMOD or RESPMOD and returns a ``Verdict``; it never raises
for a server's failure: a server that cannot be reached, times out, breaks the protocol or
answers an error is skipped for ``retry_after`` and the next one is tried; when none answers
the verdict is ``error`` (the caller applies the tenant's fail mode).

The body comes from a ``Held`` (``arcus.icap.body``): the bytes the stage keeps while the
origin or the client sends them, read by a cursor, so a retry on the next server sends them
again from the start. A body that fits in the server's preview (``Preview`` from OPTIONS,
``Transfer-*`` by file extension) goes as the preview with ``ieof``; a larger one goes whole,
without a preview: the stage holds it anyway, and c-icap's antivirus answers a body it gets
after a preview and a ``100 Continue`` early, then cuts it when it finds a virus (a 200 with the
original head, its Content-Length and no body, no ``X-Infection-Found``). An answer whose body is
shorter than its own head's Content-Length is taken as such a cut: blocked, never passed on.
``Allow: 204`` is always sent: the stage holds the whole body (up to the tenant's bound), so it
can replay it unchanged.

The pool: at most ``min(max_connections, Max-Connections)`` connections per server, busy or
idle; a caller beyond that waits (bounded by ``timeout``) for one to be released.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import time
from dataclasses import dataclass

from arcus.config.schema import IcapServer, IcapServiceConfig
from arcus.errors import ProtocolError
from arcus.icap.body import Cursor, Held
from arcus.proto import icap

log = logging.getLogger("arcus.icap")

USER_AGENT = b"arcus"


class ServerFailed(Exception):
    """One server could not give an answer (the next one is tried)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the ICAP service said. ``action``:

    - ``pass``: unchanged (a 204);
    - ``skip``: not scanned (``detail`` says why: the service does not offer the method, the
      server's Transfer-Ignore lists the file's extension);
    - ``block``: the server found ``threat`` (X-Infection-Found / X-Violations-Found);
    - ``respond``: answer the client with ``head`` (an HTTP response head) and ``body``;
    - ``rewrite``: (REQMOD) send ``head`` (an HTTP request head) and ``body`` upstream instead;
    - ``error``: no server answered (``detail``); the tenant's fail mode decides.
    """

    action: str
    threat: str | None = None
    head: bytes = b""
    body: bytes = b""
    has_body: bool = False
    detail: str = ""
    server: str = ""


def _head(event: icap.Event) -> icap.Head:
    if not isinstance(event, icap.Head):  # the parser gives a head first; anything else is a bug of ours
        raise ServerFailed(f"expected an ICAP response head, got {type(event).__name__}")
    return event


class _Conn:
    __slots__ = ("reader", "writer", "parser", "events", "used")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = icap.ResponseParser()
        self.events: collections.deque[icap.Event] = collections.deque()
        self.used = time.monotonic()

    async def event(self, timeout: float) -> icap.Event:
        while not self.events:
            async with asyncio.timeout(timeout):  # not wait_for: it would wrap each read in a task
                data = await self.reader.read(65536)
            if not data:
                raise ServerFailed("the ICAP server closed the connection")
            self.events.extend(self.parser.feed(data))
        return self.events.popleft()

    async def send(self, data: bytes, timeout: float) -> None:
        self.writer.write(data)
        if self.writer.transport.get_write_buffer_size() > 256 * 1024:
            async with asyncio.timeout(timeout):
                await self.writer.drain()

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing() and not self.events and not self.parser.pending

    def close(self) -> None:
        self.writer.transport.abort()


class IcapServerClient:
    """One server of a service: its OPTIONS, its pool, whether it failed lately."""

    def __init__(self, config: IcapServiceConfig, server: IcapServer) -> None:
        self.config = config
        self.server = server
        self.uri = server.url.encode()
        self.host = (f"[{server.host}]" if ":" in server.host else server.host).encode()
        self.idle: list[_Conn] = []
        self.busy = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.options: icap.Options | None = None
        self.options_until = 0.0
        self.options_pending: asyncio.Task[icap.Options] | None = None
        self.down_until = 0.0

    @property
    def limit(self) -> int:
        opts = self.options
        if opts is not None and opts.max_connections is not None:
            return max(1, min(self.config.max_connections, opts.max_connections))
        return self.config.max_connections

    async def acquire(self) -> _Conn:
        cfg = self.config
        deadline = time.monotonic() + cfg.timeout
        while True:
            now = time.monotonic()
            while self.idle:
                conn = self.idle.pop()
                if conn.usable() and now - conn.used < cfg.idle_timeout:
                    self.busy += 1
                    return conn
                conn.close()
            if self.busy < self.limit:
                self.busy += 1
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(self.server.host, self.server.port), cfg.connect_timeout
                    )
                except (OSError, asyncio.TimeoutError) as exc:
                    self._freed()
                    raise ServerFailed(f"cannot connect to {self.server.url}: {exc or 'timed out'}") from None
                except BaseException:
                    self._freed()
                    raise
                return _Conn(reader, writer)
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - now))
            except asyncio.TimeoutError:
                raise ServerFailed(f"all {self.limit} connections to {self.server.url} stayed busy") from None
            finally:
                if waiter in self.waiters:
                    self.waiters.remove(waiter)

    def release(self, conn: _Conn, reusable: bool) -> None:
        if reusable and conn.usable():
            conn.used = time.monotonic()
            self.idle.append(conn)
        else:
            conn.close()
        self._freed()

    def _freed(self) -> None:
        self.busy -= 1
        while self.waiters:
            w = self.waiters.popleft()
            if not w.done():
                w.set_result(None)
                break

    async def get_options(self) -> icap.Options:
        """The server's OPTIONS, asked once per TTL: callers meanwhile wait for the one request."""
        if self.options is not None and time.monotonic() < self.options_until:
            return self.options
        pending = self.options_pending
        if pending is None or pending.done():
            pending = self.options_pending = asyncio.get_running_loop().create_task(
                self._ask_options(), name=f"arcus-icap-options-{self.server.url}"
            )
        return await asyncio.shield(pending)

    async def _ask_options(self) -> icap.Options:
        now = time.monotonic()
        conn = await self.acquire()
        ok = False
        try:
            conn.writer.write(icap.build_request(b"OPTIONS", self.uri, [(b"Host", self.host), (b"User-Agent", USER_AGENT)]))
            head = _head(await conn.event(self.config.timeout))
            while not isinstance(await conn.event(self.config.timeout), icap.End):
                pass
            opts = icap.parse_options(head)
            ok = head.keep_alive
        finally:
            self.release(conn, ok)
        self.options = opts
        self.options_until = now + (opts.ttl if opts.ttl is not None else self.config.options_ttl)
        return opts

    # -- one REQMOD or RESPMOD on this server

    async def modify(
        self, method: bytes, req_hdr: bytes | None, res_hdr: bytes | None, held: Held | None, extension: str, limit: int
    ) -> Verdict:
        opts = await self.get_options()
        if method.decode() not in opts.methods:
            return Verdict("skip", detail=f"{self.server.url} does not offer {method.decode()}", server=self.server.url)
        mode = opts.transfer(extension) if held is not None else "complete"
        if mode == "ignore":
            return Verdict("skip", detail=f"Transfer-Ignore: {extension}", server=self.server.url)
        conn = await self.acquire()
        reusable = False
        try:
            verdict, reusable = await self._exchange(conn, opts, method, req_hdr, res_hdr, held, mode, limit)
            return verdict
        finally:
            self.release(conn, reusable)

    async def _exchange(
        self, conn: _Conn, opts: icap.Options, method: bytes, req_hdr: bytes | None, res_hdr: bytes | None,
        held: Held | None, mode: str, limit: int,
    ) -> tuple[Verdict, bool]:
        t = self.config.timeout
        preview = opts.preview if mode == "preview" and held is not None else None
        if preview is not None and held is not None and not await _fits(held, preview):
            preview = None  # a larger body goes whole (see the module docstring)
        headers = [(b"Host", self.host), (b"User-Agent", USER_AGENT), (b"Allow", b"204")]
        if preview is not None:
            headers.append((b"Preview", str(preview).encode()))
        body = None if held is None else (b"res-body" if method == b"RESPMOD" else b"req-body")
        await conn.send(icap.build_request(method, self.uri, headers, req_hdr=req_hdr, res_hdr=res_hdr, body=body), t)
        if held is None:
            return await self._answer(conn, method, limit, None)
        cursor = Cursor(held)
        if preview is not None:
            data = await cursor.take(preview, fill=True)
            ieof = await cursor.at_end()
            await conn.send(icap.chunk(data) + icap.last_chunk(ieof), t)
            if ieof:
                return await self._answer(conn, method, limit, None)
            head = _head(await conn.event(t))
            if head.status != 100:
                return await self._answer(conn, method, limit, head)
            if not isinstance(await conn.event(t), icap.End):
                raise ServerFailed("a 100 Continue with a body")
        while True:
            data = await cursor.take(1 << 20)
            if not data:
                break
            await conn.send(icap.chunk(data), t)
        await conn.send(icap.last_chunk(), t)
        return await self._answer(conn, method, limit, None)

    async def _answer(self, conn: _Conn, method: bytes, limit: int, head: icap.Head | None) -> tuple[Verdict, bool]:
        t = self.config.timeout
        if head is None:
            head = _head(await conn.event(t))
            while head.status == 100:  # a late 100: the answer follows
                await conn.event(t)
                head = _head(await conn.event(t))
        url = self.server.url
        if head.status == 204:
            await conn.event(t)  # its End
            return Verdict("pass", server=url), head.keep_alive
        if head.status != 200:
            raise ServerFailed(f"{url} answered ICAP {head.status} {head.reason.decode('latin-1')}")
        threat = icap.threat(head)
        heads: dict[bytes, bytes] = {}
        pieces = bytearray()  # one buffer, not a list joined at the end (a copy of the whole body)
        size = 0
        has_body = head.parts[-1][0] != b"null-body"
        while True:
            ev = await conn.event(t)
            if isinstance(ev, icap.End):
                break
            if isinstance(ev, icap.Encapsulated):
                heads[ev.name] = ev.data
            elif isinstance(ev, icap.Body):
                size += len(ev.data)
                if size > limit:
                    if threat is not None:  # the server's own block page: not ours to show
                        return Verdict("block", threat=threat, server=url), False
                    raise ServerFailed(f"{url} answered a body larger than the bound ({limit} bytes)")
                if threat is None:
                    pieces += ev.data
        if threat is not None:
            return Verdict("block", threat=threat, server=url), head.keep_alive
        body = bytes(pieces)
        del pieces
        encapsulated = heads.get(b"res-hdr") or heads.get(b"req-hdr")
        declared = _content_length(encapsulated) if encapsulated is not None else None
        if declared is not None and len(body) < declared:
            # the server began answering, then cut the body: what it found is not said, and
            # neither the cut message nor the original may go on
            return Verdict("block", threat=CUT, server=url), head.keep_alive
        if b"res-hdr" in heads:
            return Verdict("respond", head=heads[b"res-hdr"], body=body, has_body=has_body, server=url), head.keep_alive
        if method == b"REQMOD" and b"req-hdr" in heads:
            return Verdict("rewrite", head=heads[b"req-hdr"], body=body, has_body=has_body, server=url), head.keep_alive
        raise ServerFailed(f"{url} answered 200 without the HTTP head it modified")


CUT = "unnamed (the ICAP server cut the body it answered)"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d{1,18})[ \t]*\r\n", re.IGNORECASE)


def _content_length(head: bytes) -> int | None:
    """The Content-Length an encapsulated HTTP head declares (None: none, or not one number)."""
    found = _CONTENT_LENGTH.findall(head)
    return int(found[0]) if len(set(found)) == 1 else None


async def _fits(held: Held, n: int) -> bool:
    """Whether the whole body is at most ``n`` bytes (waits until that is known)."""
    while not held.complete and held.size <= n:
        await held.wait()
    return held.size <= n


class IcapService:
    """A profile's ICAP service: its servers in failover order."""

    def __init__(self, config: IcapServiceConfig) -> None:
        self.config = config
        self.servers = [IcapServerClient(config, s) for s in config.servers]

    def candidates(self) -> list[IcapServerClient]:
        """Servers to try, in order: those not failed lately first, then the others (all failed
        lately: try them anyway rather than answer without asking)."""
        now = time.monotonic()
        up = [s for s in self.servers if s.down_until <= now]
        return up + [s for s in self.servers if s.down_until > now]

    async def modify(
        self, method: bytes, req_hdr: bytes | None, res_hdr: bytes | None, held: Held | None, extension: str, limit: int
    ) -> Verdict:
        failures: list[str] = []
        for server in self.candidates():
            try:
                verdict = await server.modify(method, req_hdr, res_hdr, held, extension, limit)
            except (ServerFailed, OSError, ProtocolError, asyncio.TimeoutError) as exc:
                text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
                if isinstance(exc, asyncio.TimeoutError):
                    text = f"{server.server.url} did not answer within {self.config.timeout:g}s"
                failures.append(text)
                server.down_until = time.monotonic() + self.config.retry_after
                server.options_until = 0.0  # ask again once it is back
                log.warning("icap service %s: %s", self.config.name, text)
                continue
            if failures:
                return Verdict(verdict.action, verdict.threat, verdict.head, verdict.body, verdict.has_body,
                               f"after {len(failures)} failed: {failures[-1]}", verdict.server)
            return verdict
        return Verdict("error", detail="; ".join(failures) or "no server")


_SERVICES: dict[IcapServiceConfig, IcapService] = {}


def service_for(config: IcapServiceConfig) -> IcapService:
    """The live service of ``config`` (on the event loop). A reload that leaves a service's
    configuration unchanged keeps its pools and OPTIONS; a changed one starts afresh."""
    service = _SERVICES.get(config)
    if service is None:
        for old in [c for c in _SERVICES if c.name == config.name]:
            for s in _SERVICES.pop(old).servers:
                for conn in s.idle:
                    conn.close()
        service = _SERVICES[config] = IcapService(config)
    return service
