"""`socks_proxy`: SOCKS4, SOCKS4a and SOCKS5 (RFC 1928) CONNECT and UDP ASSOCIATE.

The handshake only: everything after it (admission, the escaper, the relay) is
``arcus.serve.relay``. The wire format is ``arcus.proto.socks`` (sans-io).

Authentication follows the tenant the client's address belongs to (or the server's
``tenant:``): username/password (RFC 1929) is chosen when the client offers it and some tenant
has users or this one requires credentials; "no authentication" when the tenant does not
require them (or the client's address is exempt). A user may name another tenant as
``user@tenant``. SOCKS4 has no password: its USERID is ignored, and a tenant that requires
credentials refuses SOCKS4 clients.

Every refusal gets its reply code (``ErrorCode.socks5``, ``arcus.errors``): policy -> NOT_ALLOWED, connection
or rate limits -> GENERAL_FAILURE, name resolution -> HOST_UNREACHABLE, refused connect ->
CONNECTION_REFUSED, connect timeout -> TTL_EXPIRED; SOCKS4 has one failure reply (91).

UDP ASSOCIATE: see ``UdpAssociation``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time

from arcus.config.server.socks_proxy import SocksProxyServerConfig
from arcus.errors import ErrorCode, EscapeError, ProtocolError, Refusal
from arcus.escape.direct_fixed import DirectFixedEscaper
from arcus.limit import max_pause
from arcus.proto import socks
from arcus.tenancy.admission import Admitted, Destination
from arcus.tenancy.admission import admit as admit_request
from arcus.serve.relay import CUSTOM, HANDSHAKE, RelayConnection, relay_factory

log = logging.getLogger("arcus.serve")

# handshake phases
P_START = 0  # nothing read yet
P_GREETING = 1  # SOCKS5: VER NMETHODS METHODS
P_USERPASS = 2  # SOCKS5: RFC 1929 sub-negotiation
P_AUTHING = 3  # SOCKS5: credentials being checked
P_REQUEST = 4  # SOCKS5: the request
P_SOCKS4 = 5  # SOCKS4/4a: the request
P_DONE = 6  # request read

UDP = CUSTOM  # the TCP connection holds a UDP association

MAX_PENDING_RESOLVES = 32  # datagrams to names waiting for the resolver, per association
MAX_DESTINATIONS = 1024  # policy verdicts and contacted peers kept per association


def _norm_ip(ip: str) -> str:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


_COMMANDS = {socks.CONNECT: "CONNECT", socks.BIND: "BIND", socks.UDP_ASSOCIATE: "UDP ASSOCIATE"}


class SocksConnection(RelayConnection):
    config_type = SocksProxyServerConfig  # intelli_proxy's is one too
    conf: SocksProxyServerConfig

    def __init__(self, shared, server: str) -> None:
        super().__init__(shared, server)
        self.version = 0
        self.phase = P_START
        self.cmd = 0
        self.is_4a = False
        self.assoc: UdpAssociation | None = None
        self.deferred: Refusal | None = None  # refused at accept, answered at the request

    def accept_refused(self, failure: Refusal) -> None:
        # A SOCKS refusal is a reply to the request: read up to it (bounded by client_header), so
        # that a client over a connection limit hears GENERAL_FAILURE instead of a reset.
        self.deferred = failure
        self.deadline = time.monotonic() + self.conf.timeouts.client_header

    # ------------------------------------------------------------------ handshake

    def handshake_data(self) -> None:
        try:
            while self.state == HANDSHAKE and self.buf:
                phase = self.phase
                if phase == P_START:
                    self._start()
                elif phase == P_GREETING:
                    if not self._greeting():
                        return
                elif phase == P_USERPASS:
                    self._userpass()
                    return
                elif phase == P_REQUEST:
                    self._request5()
                    return
                elif phase == P_SOCKS4:
                    self._request4()
                    return
                else:
                    return  # waiting (credentials being checked): bytes stay buffered
        except ProtocolError as exc:
            self._protocol_error(exc)

    def _protocol_error(self, exc: ProtocolError) -> None:
        phase = self.phase
        if phase == P_REQUEST and exc.status <= socks.ADDRESS_TYPE_NOT_SUPPORTED:
            self.transport.write(socks.socks5_reply(exc.status))
        elif phase == P_GREETING:
            self.transport.write(socks.socks5_method_selection(socks.NO_ACCEPTABLE))
        elif phase == P_USERPASS:
            self.transport.write(socks.socks5_auth_status(False))
        elif phase == P_SOCKS4:
            self.transport.write(socks.socks4_reply(False))
        self.fail(ErrorCode.CLIENT_BAD_REQUEST, exc.message)

    def _start(self) -> None:
        version = socks.detect_version(self.buf)
        if version is None or version not in self.conf.versions:
            if version == 5:
                self.transport.write(socks.socks5_method_selection(socks.NO_ACCEPTABLE))
            else:
                self.transport.write(socks.socks4_reply(False))
            self.fail(ErrorCode.UNSUPPORTED, f"SOCKS{version} is not accepted by server {self.server}")
            return
        self.version = version
        self.phase = P_GREETING if version == 5 else P_SOCKS4

    def _greeting(self) -> bool:
        parsed = socks.parse_socks5_greeting(self.buf)
        if parsed is None:
            return False
        methods, used = parsed
        del self.buf[:used]
        tv = self.tview
        need = tv.auth == "required" and not tv.is_exempt(self.client_ip)
        if self.deferred is not None:
            need = False  # refused anyway: no credentials are checked for it
        if socks.USERPASS in methods and (
            (self.deferred is None and (need or self.snap.tenancy.any_users))
            or (self.deferred is not None and socks.NO_AUTH not in methods)
        ):
            self.transport.write(socks.socks5_method_selection(socks.USERPASS))
            self.phase = P_USERPASS
        elif socks.NO_AUTH in methods and not need:
            self.transport.write(socks.socks5_method_selection(socks.NO_AUTH))
            self.phase = P_REQUEST
        else:
            self.transport.write(socks.socks5_method_selection(socks.NO_ACCEPTABLE))
            self.status = 407
            self.fail(ErrorCode.AUTH_REQUIRED, "the client offered no acceptable authentication method")
            return False
        return True

    def _userpass(self) -> None:
        parsed = socks.parse_userpass(self.buf)
        if parsed is None:
            return
        user, password, used = parsed
        del self.buf[:used]
        self.phase = P_AUTHING
        if self.deferred is not None:  # refused at accept: the credentials are not checked
            self._authenticated_5(self.deferred)
            return
        self.authenticate(user or None, password, self._authenticated_5)

    def _authenticated_5(self, failure: Refusal | None) -> None:
        if failure is not None and failure.code is ErrorCode.AUTH_REQUIRED:
            self.refuse(failure)  # wrong credentials: refused() answers the sub-negotiation (P_AUTHING)
            return
        # Good credentials of a user who may not pass now (blocked, expired, at a connection
        # limit) or a throttled address: the request gets the reply code that says why.
        self.deferred = failure
        self.transport.write(socks.socks5_auth_status(True))
        self.phase = P_REQUEST
        if self.buf:
            self.handshake_data()  # the request may have been pipelined behind the credentials

    def _request5(self) -> None:
        parsed = socks.parse_socks5_request(self.buf)
        if parsed is None:
            return
        req, used = parsed
        del self.buf[:used]
        self.cmd = req.cmd
        if self.deferred is not None:
            self.phase = P_DONE
            self.refuse(self.deferred)
        elif req.cmd == socks.CONNECT:
            self.phase = P_DONE
            self.open(req.host, req.port)
        elif req.cmd == socks.UDP_ASSOCIATE and self.conf.udp:
            self.phase = P_DONE
            self._udp_associate(req)
        else:
            self.transport.write(socks.socks5_reply(socks.COMMAND_NOT_SUPPORTED))
            what = "BIND" if req.cmd == socks.BIND else "UDP ASSOCIATE"
            self.fail(ErrorCode.UNSUPPORTED, f"SOCKS5 {what} is not supported by server {self.server}")

    def _request4(self) -> None:
        parsed = socks.parse_socks4_request(self.buf)
        if parsed is None:
            return
        req, used = parsed
        del self.buf[:used]
        self.cmd = req.cmd
        self.is_4a = req.is_4a
        self.phase = P_DONE
        if self.deferred is not None:
            self.refuse(self.deferred)
        elif req.cmd != socks.CONNECT:
            self.transport.write(socks.socks4_reply(False))
            self.fail(ErrorCode.UNSUPPORTED, "SOCKS4 BIND is not supported")
        else:
            self.open(req.host, req.port)  # SOCKS4 carries no password: identified by address only

    def handshake_timeout(self) -> None:
        if self.deferred is not None:
            self.count_error(self.deferred.code)

    # ------------------------------------------------------------------ relay hooks

    def upstream_ready(self) -> None:
        host, port = self.up_local[0], self.up_local[1]
        if self.version == 5:
            self.transport.write(socks.socks5_reply(socks.SUCCEEDED, host, port))
        else:
            self.transport.write(socks.socks4_reply(True, host if ":" not in host else "0.0.0.0", port))

    def refused(self, failure: Refusal) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.version == 4:
            self.transport.write(socks.socks4_reply(False))
        elif self.phase == P_AUTHING:
            self.transport.write(socks.socks5_auth_status(False))
        elif self.phase in (P_REQUEST, P_DONE):
            self.transport.write(socks.socks5_reply(failure.socks5_reply))
        # before the version is known (the server is full) there is no reply to give

    def audit_method(self) -> str | None:
        """What the client asked for; "SOCKS5" alone when it never sent a command."""
        if not self.version:
            return None
        name = "SOCKS4a" if self.version == 4 and self.is_4a else f"SOCKS{self.version}"
        command = _COMMANDS.get(self.cmd)
        return f"{name} {command}" if command else name

    # ------------------------------------------------------------------ UDP ASSOCIATE

    def _udp_associate(self, req: socks.Socks5Request) -> None:
        self.target = "udp"
        self.srv_stats.requests += 1
        self.deadline = 0.0

        def identified(failure: Refusal | None) -> None:
            if failure is not None:
                self.refuse(failure)
                return
            if self.tview.suspended:
                self.refuse(Refusal(ErrorCode.TENANT_SUSPENDED, f"tenant {self.tenant} is suspended"))
                return
            self.ten_stats.requests += 1
            self.state = UDP
            self.task = asyncio.get_running_loop().create_task(self._udp_open(req), name=f"arcus-udp-{self.id}")

        if self.identified:
            identified(None)
        else:
            self.authenticate(None, None, identified)

    async def _udp_open(self, req: socks.Socks5Request) -> None:
        escaper = self.snap.escapers[self.conf.escaper]
        if not isinstance(escaper, DirectFixedEscaper):  # direct_float is one too
            self.task = None
            self.refuse(Refusal(
                ErrorCode.UNSUPPORTED, f"escaper {escaper.name} ({escaper.type_name}) cannot relay UDP: only direct escapers can"
            ))
            return
        bind_host = self.conf.udp_bind
        if bind_host is None:
            local = self.transport.get_extra_info("sockname")
            bind_host = str(local[0]).split("%", 1)[0] if local else "0.0.0.0"
        # DST.PORT, when given, is the port the client will send from; its DST.ADDR is not used
        # (behind a NAT the client does not know its own address): the TCP peer's IP is.
        assoc = UdpAssociation(self, escaper.resolver, escaper.guard, escaper.config.bind, req.port or None)
        try:
            host, port = await assoc.open(bind_host)
        except OSError as exc:
            self.task = None
            assoc.close()
            if self.state == UDP:
                self.refuse(Refusal(ErrorCode.INTERNAL, f"cannot open a UDP relay socket: {exc.strerror or exc}"))
            return
        self.task = None
        if self.state != UDP:  # closed while the sockets were being opened
            assoc.close()
            return
        self.assoc = assoc
        self.status = 200
        self.decision = "allow"
        self.transport.write(socks.socks5_reply(socks.SUCCEEDED, host, port))
        idle = self.conf.udp_idle
        self.idle_window = idle
        self.seen_activity = self.bytes_up + self.bytes_down
        self.deadline = time.monotonic() + idle

    def closing(self) -> None:
        super().closing()
        assoc, self.assoc = self.assoc, None
        if assoc is not None:
            assoc.close()

    def state_name(self) -> str:
        return "udp_associate" if self.state == UDP else super().state_name()

    def drain(self) -> None:
        if self.state == UDP:
            self.close()  # an association has nothing to finish
        else:
            super().drain()


class _ClientSide(asyncio.DatagramProtocol):
    __slots__ = ("assoc",)

    def __init__(self, assoc: UdpAssociation) -> None:
        self.assoc = assoc

    def datagram_received(self, data: bytes, addr) -> None:
        self.assoc.from_client(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP from the client's side: nothing to do, the client may still send


class _RemoteSide(asyncio.DatagramProtocol):
    __slots__ = ("assoc",)

    def __init__(self, assoc: UdpAssociation) -> None:
        self.assoc = assoc

    def datagram_received(self, data: bytes, addr) -> None:
        self.assoc.from_remote(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable from a destination: UDP has no one to tell


class UdpAssociation:
    """The UDP relay of one SOCKS5 UDP ASSOCIATE (RFC 1928 7), alive as long as its TCP connection.

    - One relay socket per association, bound to the address the client's TCP connection
      reached (or ``udp_bind``), port chosen by the kernel: its address is the reply's BND.
    - Only the client may use it: datagrams from any other IP are dropped; the client's port is
      the one its request named (when it named one) or else the first it sends from.
    - Each destination is admitted once per association by the tenant's policy and rate
      (``arcus.tenancy.admission.admit``, method "UDP"), then each address it resolves to passes the
      per-address policy check and the escaper's egress guard (loopback, metadata and the box's
      own addresses stay closed). Datagrams leave through the escaper's direct path (its
      resolver and its ``bind`` address), from one socket per address family.
    - Only peers the client has sent to may answer (as a NAT would); answers are wrapped with
      their source address.
    - Bandwidth limits police UDP (a datagram over the limit is dropped) rather than shape it.
    - Fragmented datagrams (FRAG != 0) are dropped (no reassembly).
    - An association with no datagram either way for ``udp_idle`` ends, closing the TCP
      connection too (the sweeper's idle deadline of the connection).
    """

    def __init__(self, conn: SocksConnection, resolver, guard, bind: str | None, expected_port: int | None) -> None:
        self.conn = conn
        self.resolver = resolver
        self.guard = guard
        self.bind = bind
        self.client_ip = _norm_ip(conn.client_ip)
        self.client_addr: tuple | None = None  # where answers go, once known
        self.expected_port = expected_port
        self.shape_up: tuple = ()
        self.shape_down: tuple = ()
        self.relay: asyncio.DatagramTransport | None = None
        self.out: dict[int, asyncio.DatagramTransport] = {}  # family -> outbound socket
        self.verdicts: dict[tuple[str, int], Admitted | None] = {}
        self.peers: dict[tuple[str, int], None] = {}  # contacted (ip, port), oldest first
        self.pending = 0
        self.closed = False
        self.tasks: set[asyncio.Task] = set()

    async def open(self, host: str) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.relay, _ = await loop.create_datagram_endpoint(lambda: _ClientSide(self), local_addr=(host, 0), family=family)
        for fam, anyaddr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            local = anyaddr
            if self.bind is not None:
                if (":" in self.bind) != (fam == socket.AF_INET6):
                    continue
                local = self.bind
            try:
                t, _ = await loop.create_datagram_endpoint(lambda: _RemoteSide(self), local_addr=(local, 0), family=fam)
            except OSError:
                if fam == socket.AF_INET6:
                    continue  # no IPv6 on this box: IPv4 destinations still work
                raise
            self.out[fam] = t
        sock = self.relay.get_extra_info("sockname")
        return str(sock[0]).split("%", 1)[0], sock[1]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for t in self.tasks:
            t.cancel()
        if self.relay is not None:
            self.relay.close()
        for out in self.out.values():
            out.close()
        self.out.clear()

    def _drop(self, code: str) -> None:
        self.conn.srv_stats.errors[code] += 1

    # ------------------------------------------------------------------ client -> destination

    def from_client(self, data: bytes, addr) -> None:
        if self.closed:
            return
        ip = _norm_ip(str(addr[0]))
        if ip != self.client_ip:
            self._drop("udp_foreign_source")
            return
        if self.client_addr is None:
            if self.expected_port is not None and addr[1] != self.expected_port:
                self._drop("udp_foreign_source")
                return
            self.client_addr = addr
        elif addr[1] != self.client_addr[1]:
            self._drop("udp_foreign_source")
            return
        try:
            head, payload = socks.parse_udp_datagram(data)
        except ProtocolError:
            self._drop("udp_bad_datagram")
            return
        if head.port == 0:
            self._drop("udp_bad_datagram")
            return
        key = (head.host, head.port)
        if key in self.verdicts:
            verdict = self.verdicts[key]
        else:
            verdict = self._admit(head.host, head.port)
        if verdict is None:
            self._drop("denied")
            return
        if head.atyp != socks.ATYP_DOMAIN:
            self._send(head.host, head.port, payload, verdict)
            return
        if self.pending >= MAX_PENDING_RESOLVES:
            self._drop("udp_resolve_backlog")
            return
        self.pending += 1
        task = asyncio.get_running_loop().create_task(
            self._resolve_and_send(head.host, head.port, bytes(payload), verdict), name=f"arcus-udp-resolve-{self.conn.id}"
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _admit(self, host: str, port: int) -> Admitted | None:
        conn = self.conn
        verdict = admit_request(conn.shared, conn.snap, conn.tview, conn.user, Destination(host, port, "UDP", None, True), conn.client_ip)
        admitted = verdict if isinstance(verdict, Admitted) else None
        if admitted is not None:
            self.shape_up, self.shape_down = admitted.shape_up, admitted.shape_down
        if isinstance(verdict, Refusal) and verdict.code is ErrorCode.RATE_LIMITED:
            return None  # rate limited: not remembered, the next datagram asks again
        if len(self.verdicts) >= MAX_DESTINATIONS:
            self.verdicts.clear()
        self.verdicts[(host, port)] = admitted
        return admitted

    async def _resolve_and_send(self, host: str, port: int, payload: bytes, verdict: Admitted) -> None:
        try:
            try:
                addrs = await asyncio.wait_for(self.resolver.resolve(host), self.conn.conf.timeouts.upstream_connect)
            except (EscapeError, OSError, TimeoutError):
                self._drop("resolve_failed")
                return
            v4 = [a for a in addrs if ":" not in a]
            v6 = [a for a in addrs if ":" in a]
            for addr in v4 + v6:
                if self._allowed(addr, verdict):
                    self._send(addr, port, payload, verdict, checked=True)
                    return
            self._drop("denied")
        finally:
            self.pending -= 1

    def _allowed(self, ip: str, verdict: Admitted) -> bool:
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        if family not in self.out:
            return False
        check = verdict.check
        answer = check(ip) if check is not None else None
        if answer is True:
            return True
        if isinstance(answer, str):
            return False
        return self.guard.check(self.conn.client_ip, ip) is None

    def _send(self, ip: str, port: int, payload, verdict: Admitted, checked: bool = False) -> None:
        if self.closed:
            return
        if not checked and not self._allowed(ip, verdict):
            self._drop("denied")
            return
        n = len(payload)
        if self.shape_up and max_pause(time.monotonic(), n, *self.shape_up) > 0:
            self._drop("udp_over_bandwidth")
            return
        out = self.out[socket.AF_INET6 if ":" in ip else socket.AF_INET]
        peer = (ip, port)
        if peer not in self.peers:
            if len(self.peers) >= MAX_DESTINATIONS:
                self.peers.pop(next(iter(self.peers)))
            self.peers[peer] = None
        out.sendto(payload, peer)
        conn = self.conn
        conn.bytes_up += n
        conn.srv_stats.bytes_up += n
        conn.ten_stats.bytes_up += n

    # ------------------------------------------------------------------ destination -> client

    def from_remote(self, data: bytes, addr) -> None:
        if self.closed or self.client_addr is None:
            return
        ip = _norm_ip(str(addr[0]))
        port = addr[1]
        peer = (ip, port)
        if peer not in self.peers:
            self._drop("udp_foreign_source")
            return
        n = len(data)
        conn = self.conn
        if self.shape_down and max_pause(time.monotonic(), n, *self.shape_down) > 0:
            self._drop("udp_over_bandwidth")
            return
        relay = self.relay
        assert relay is not None  # opened before any destination socket
        relay.sendto(socks.build_udp_datagram(ip, port, data), self.client_addr)
        conn.bytes_down += n
        conn.srv_stats.bytes_down += n
        conn.ten_stats.bytes_down += n


socks_proxy_factory = relay_factory(SocksConnection)
