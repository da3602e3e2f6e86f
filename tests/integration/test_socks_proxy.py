"""The SOCKS proxy, driven by real curl (SOCKS4, 4a, 5, 5 with host names, with credentials)
and a small raw client where the exact reply code matters, through the real daemon."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time

import pytest

from arcus.auth.secrets import hash_secret
from arcus.proto import socks
from arcus.testing.daemon import DaemonProcess, render_profile
from arcus.testing.wait import wait_until
from tests.integration.conftest import run_curl

_HASHES: dict[str, str] = {}


def secret(password: str) -> str:
    if password not in _HASHES:
        _HASHES[password] = hash_secret(password)
    return _HASHES[password]


def socks_profile(extra: str = "", timeouts: dict[str, str] | None = None, name: str = "socks") -> str:
    server = f"  - name: {name}\n    type: socks_proxy\n    listen: 127.0.0.1:0\n    escaper: direct\n" + extra
    return render_profile(timeouts).replace("servers:\n", "servers:\n" + server, 1)


@pytest.fixture
def sd(tmp_path):
    with DaemonProcess(tmp_path / "arcus", socks_profile(timeouts={"upstream_connect": "2s"})) as d:
        yield d


def addr(d, server: str = "socks") -> str:
    return d.listen(server)


# ---------------------------------------------------------------------------------- a raw client


def _recv_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError(f"closed after {len(out)} of {n} bytes")
        out += chunk
    return out


def _read_reply(s: socket.socket) -> tuple[socks.Socks5Reply, bytes]:
    """The reply and whatever came after it in the same reads."""
    buf = b""
    while True:
        parsed = socks.parse_socks5_reply(buf)
        if parsed is not None:
            return parsed[0], buf[parsed[1]:]
        chunk = s.recv(512)
        if not chunk:
            raise ConnectionError(f"closed before a whole reply: {buf!r}")
        buf += chunk


def socks5_open(proxy: str, host: str, port: int, *, cmd: int = socks.CONNECT, user: str | None = None,
                password: str = "", timeout: float = 15.0) -> tuple[socket.socket, socks.Socks5Reply]:
    """Greeting, optional RFC 1929, request; the socket and the server's reply."""
    h, p = proxy.rsplit(":", 1)
    s = socket.create_connection((h, int(p)), timeout=timeout)
    s.sendall(socks.socks5_client_greeting(user is not None))
    method = _recv_exact(s, 2)
    assert method[0] == 5
    if method[1] == socks.USERPASS:
        assert user is not None
        s.sendall(socks.socks5_client_userpass(user, password))
        status = _recv_exact(s, 2)
        if status[1] != 0:
            s.close()
            raise PermissionError("authentication refused")
    elif method[1] == socks.NO_ACCEPTABLE:
        s.close()
        raise PermissionError("no acceptable method")
    s.sendall(socks.socks5_client_request(cmd, host, port))
    reply, rest = _read_reply(s)
    assert rest == b""
    return s, reply


def rep_of(proxy: str, host: str, port: int, **kw) -> int:
    s, reply = socks5_open(proxy, host, port, **kw)
    s.close()
    return reply.rep


# ---------------------------------------------------------------------------------- curl, every version


@pytest.mark.parametrize("flag", ["--socks4", "--socks4a", "--socks5", "--socks5-hostname"])
def test_curl_through_every_socks_version(curl, sd, origin, flag):
    r = run_curl(curl, flag, addr(sd), f"http://localhost:{origin.port}/bytes/300000")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"b" * 300000
    stats = sd.ctl("stats")["servers"]["socks"]
    assert stats["requests"] == 1 and stats["bytes_down"] >= 300000
    assert stats["errors"] == {}
    # 4a and 5-hostname hand the name to the proxy: it resolved it (the origin saw us, not a name lookup by curl)
    assert origin.requests[-1].header("host") == f"localhost:{origin.port}"


def test_request_pipelined_with_the_greeting_and_the_payload(sd, origin):
    """A client that sends greeting, request and its first bytes in one packet is served."""
    h, p = addr(sd).rsplit(":", 1)
    with socket.create_connection((h, int(p)), timeout=10) as s:
        s.sendall(
            socks.socks5_client_greeting(False)
            + socks.socks5_client_request(socks.CONNECT, "127.0.0.1", origin.port)
            + b"GET /small HTTP/1.0\r\n\r\n"
        )
        assert _recv_exact(s, 2) == b"\x05\x00"
        reply, data = _read_reply(s)
        assert reply.rep == socks.SUCCEEDED and reply.host == "127.0.0.1" and reply.port > 0
        while not data.endswith(b"x" * 100) and (chunk := s.recv(65536)):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"x" * 100)


# ---------------------------------------------------------------------------------- reply codes


def test_refusals_get_their_socks5_reply_codes(sd, origin):
    proxy = addr(sd)
    # connection refused: a port nothing listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    assert rep_of(proxy, "127.0.0.1", dead) == socks.CONNECTION_REFUSED
    # a name that does not resolve
    assert rep_of(proxy, "no-such-host.invalid", 80) == socks.HOST_UNREACHABLE
    # names no resolver can ask for (the IDNA codec refuses them): a failed lookup, not a bug
    for bad in ("a..b", "a" * 64 + ".example"):
        assert rep_of(proxy, bad, 80) == socks.HOST_UNREACHABLE
    # the egress guard (cloud metadata) and a tenant's policy: not allowed
    assert rep_of(proxy, "169.254.169.254", 80) == socks.NOT_ALLOWED
    sd.ctl("tenant.add", {"name": "acme", "sources": ["127.0.0.0/8"]})
    sd.ctl("policy.add", {"tenant": "acme", "rule": {"id": "no-9", "action": "deny", "ports": ["9"]}})
    assert rep_of(proxy, "127.0.0.1", 9) == socks.NOT_ALLOWED
    # a connect that times out (a listener whose accept queue is full drops SYNs): TTL expired
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(0)
        filler = socket.create_connection(hole.getsockname(), timeout=2)
        try:
            started = time.monotonic()
            assert rep_of(proxy, "127.0.0.1", hole.getsockname()[1]) == socks.TTL_EXPIRED
            assert 1.5 < time.monotonic() - started < 6  # upstream_connect: 2s
        finally:
            filler.close()
    # BIND is not supported
    assert rep_of(proxy, "127.0.0.1", origin.port, cmd=socks.BIND) == socks.COMMAND_NOT_SUPPORTED
    errors = sd.ctl("stats")["servers"]["socks"]["errors"]
    assert errors["upstream_connect"] == 1 and errors["resolve_failed"] == 3
    assert errors["denied"] == 2 and errors["upstream_timeout"] == 1 and errors["unsupported"] == 1
    assert errors.get("internal", 0) == 0 and "Traceback" not in sd.log()

    def metadata_events() -> list:
        out = sd.arcus("audit", "search", "--host", "169.254.169.254", "--json")
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines()]

    (event,) = wait_until(metadata_events, interval=0.3, what="the metadata refusal's audit record")
    assert (event["decision"], event["rule"], event["error_code"]) == ("deny", "builtin:special-destination", "denied")
    # the refused BIND is recorded as what it was, not as a CONNECT
    def binds() -> list:
        out = sd.arcus("audit", "search", "--json")
        return [e for e in map(json.loads, out.stdout.splitlines()) if e["method"] == "SOCKS5 BIND"]

    (bind,) = wait_until(binds, interval=0.3, what="the BIND's audit record")
    assert bind["error_code"] == "unsupported"


def test_limits_answer_general_failure(curl, sd, origin):
    proxy = addr(sd)
    sd.ctl("tenant.add", {"name": "acme", "sources": ["127.0.0.0/8"]})
    sd.ctl("tenant.set", {"name": "acme", "rps": 1})
    reps = [rep_of(proxy, "127.0.0.1", origin.port) for _ in range(4)]
    assert reps[0] == socks.SUCCEEDED and socks.GENERAL_FAILURE in reps[1:]  # 429 -> general failure
    sd.ctl("tenant.set", {"name": "acme", "rps": 1000, "max_conns": 1})
    h, p = proxy.rsplit(":", 1)
    held = socket.create_connection((h, int(p)), timeout=5)
    try:
        wait_until(lambda: sd.ctl("stats")["tenants"].get("acme", {}).get("conns_active") == 1, what="acme's held connection")
        # over the connection limit: the request is read, then answered GENERAL_FAILURE
        assert rep_of(proxy, "127.0.0.1", origin.port) == socks.GENERAL_FAILURE
        r = run_curl(curl, "--socks4", proxy, origin.url("/small"))
        assert r.returncode != 0
        # a client that offers only USERPASS hears the same (its credentials are not checked),
        # not "no acceptable method"
        with socket.create_connection((h, int(p)), timeout=5) as s:
            s.sendall(b"\x05\x01\x02")
            assert _recv_exact(s, 2) == b"\x05\x02"
            s.sendall(socks.socks5_client_userpass("nobody", "wrong")
                      + socks.socks5_client_request(socks.CONNECT, "127.0.0.1", origin.port))
            assert _recv_exact(s, 2) == b"\x01\x00"
            assert _read_reply(s)[0].rep == socks.GENERAL_FAILURE
    finally:
        held.close()
    errors = sd.ctl("stats")["servers"]["socks"]["errors"]
    assert errors["rate_limited"] >= 1 and errors["tenant_conn_limit"] == 3
    assert "auth_required" not in errors


def test_protocol_garbage_is_refused_without_a_hang(sd):
    h, p = addr(sd).rsplit(":", 1)
    for payload, expect in [
        (b"GET / HTTP/1.1\r\n\r\n", b""),  # not SOCKS: closed
        (b"\x05\x00", b""),  # no method offered
        (b"\x05\x01\x00\x05\x09\x00\x01", b"\x05\x00\x05\x07"),  # unknown command -> COMMAND_NOT_SUPPORTED
        (b"\x04\x01\x00\x50\x00\x00\x00\x01" + b"u" * 300, b"\x00\x5b"),  # SOCKS4a user id without NUL
    ]:
        with socket.create_connection((h, int(p)), timeout=5) as s:
            s.sendall(payload)
            got = b""
            while chunk := s.recv(100):
                got += chunk
            assert got.startswith(expect), (payload, got)
    errors = sd.ctl("stats")["servers"]["socks"]["errors"]
    assert errors["client_bad_request"] == 4


def test_an_abandoned_handshake_is_named_in_stats_and_the_record(sd):
    """A client that begins a handshake and goes away is counted and recorded as client_aborted
    (with an access-log line); one that connects and sends nothing is no error."""
    h, p = addr(sd).rsplit(":", 1)
    socket.create_connection((h, int(p)), timeout=5).close()
    with socket.create_connection((h, int(p)), timeout=5) as s:
        s.sendall(b"\x05\x01\x00")
        assert _recv_exact(s, 2) == b"\x05\x00"
    wait_until(lambda: sd.ctl("stats")["servers"]["socks"]["errors"].get("client_aborted") == 1, what="the abandoned handshake")

    def aborted() -> list:
        out = sd.arcus("audit", "search", "--json")
        return [e for e in map(json.loads, out.stdout.splitlines()) if e["error_code"] == "client_aborted"]

    (event,) = wait_until(aborted, interval=0.3, what="its record")
    assert (event["error_side"], event["status"]) == ("client", 400)
    wait_until(lambda: "client_aborted" in sd.log(), what="its access-log line")
    assert set(sd.ctl("stats")["servers"]["socks"]["errors"]) <= {"client_aborted"}


# ---------------------------------------------------------------------------------- users


def test_username_password_through_the_tenant(curl, sd, origin):
    proxy = addr(sd)
    sd.ctl("tenant.add", {"name": "acme", "sources": ["127.0.0.0/8"]})
    sd.ctl("tenant.set", {"name": "acme", "auth": "required"})
    sd.ctl("user.add", {"tenant": "acme", "name": "alice", "secret": secret("wonderland")})
    sd.ctl("tenant.add", {"name": "globex", "sources": ["10.99.0.0/16"]})
    sd.ctl("tenant.set", {"name": "globex", "auth": "required"})
    sd.ctl("user.add", {"tenant": "globex", "name": "sam", "secret": secret("globex-pass")})
    url = f"http://localhost:{origin.port}/small"
    assert run_curl(curl, "--socks5-hostname", proxy, url).returncode != 0  # no credentials offered
    assert run_curl(curl, "--socks5-hostname", proxy, "-U", "alice:wrong", url).returncode != 0
    r = run_curl(curl, "--socks5-hostname", proxy, "-U", "alice:wonderland", url)
    assert r.returncode == 0 and r.stdout == b"x" * 100, r.stderr
    r = run_curl(curl, "--socks5", proxy, "-U", "alice:wonderland", url)  # cached verdict
    assert r.returncode == 0, r.stderr
    # another tenant's user names it: user@tenant; the connection counts in globex's total only
    totals = {t: c["conns_total"] for t, c in sd.ctl("stats")["tenants"].items()}
    r = run_curl(curl, "--socks5-hostname", proxy, "-U", "sam@globex:globex-pass", url)
    assert r.returncode == 0, r.stderr
    after = {t: c["conns_total"] for t, c in sd.ctl("stats")["tenants"].items()}
    assert after["globex"] == totals.get("globex", 0) + 1 and after["acme"] == totals["acme"], (totals, after)
    assert run_curl(curl, "--socks5-hostname", proxy, "-U", "sam@globex:wonderland", url).returncode != 0
    # SOCKS4 has no password: refused by a tenant that requires one
    r = run_curl(curl, "--socks4a", proxy, url)
    assert r.returncode != 0
    tenants = sd.ctl("stats")["tenants"]
    assert tenants["globex"]["requests"] == 1 and tenants["acme"]["requests"] == 2
    # the user's usage counts its connections: one open now, two before it
    s, reply = socks5_open(proxy, "127.0.0.1", origin.port, user="alice", password="wonderland")
    with s:
        assert reply.rep == socks.SUCCEEDED
        usage = sd.ctl("user.show", {"tenant": "acme", "name": "alice"})["usage"]
        assert (usage["conns_active"], usage["conns_total"]) == (1, 3)
    wait_until(lambda: sd.ctl("user.show", {"tenant": "acme", "name": "alice"})["usage"]["conns_active"] == 0,
               what="the user's connection closed")


def test_users_who_may_not_pass_hear_why_at_their_request(sd, origin):
    proxy = addr(sd)
    sd.ctl("tenant.add", {"name": "acme", "sources": ["127.0.0.0/8"]})
    sd.ctl("tenant.set", {"name": "acme", "auth": "required"})
    sd.ctl("user.add", {"tenant": "acme", "name": "bob", "secret": secret("builder")})
    sd.ctl("user.set", {"tenant": "acme", "name": "bob", "max_conns": 1})
    held, reply = socks5_open(proxy, "127.0.0.1", origin.port, user="bob", password="builder")
    try:
        assert reply.rep == socks.SUCCEEDED
        # a second connection of bob's is over his limit: GENERAL_FAILURE, not an auth failure
        assert rep_of(proxy, "127.0.0.1", origin.port, user="bob", password="builder") == socks.GENERAL_FAILURE
    finally:
        held.close()
    sd.ctl("user.block", {"tenant": "acme", "name": "bob"})
    assert rep_of(proxy, "127.0.0.1", origin.port, user="bob", password="builder") == socks.NOT_ALLOWED
    with pytest.raises(PermissionError):  # wrong credentials: the RFC 1929 failure status
        rep_of(proxy, "127.0.0.1", origin.port, user="bob", password="nope")
    errors = sd.ctl("stats")["servers"]["socks"]["errors"]
    assert errors["user_conn_limit"] == 1 and errors["user_blocked"] == 1 and errors["auth_required"] == 1


def test_optional_auth_and_none(sd, origin):
    proxy = addr(sd)
    sd.ctl("tenant.add", {"name": "acme", "sources": ["127.0.0.0/8"]})
    sd.ctl("tenant.set", {"name": "acme", "auth": "optional"})
    sd.ctl("user.add", {"tenant": "acme", "name": "carol", "secret": secret("pw-carol")})
    assert rep_of(proxy, "127.0.0.1", origin.port) == socks.SUCCEEDED  # no credentials: fine
    assert rep_of(proxy, "127.0.0.1", origin.port, user="carol", password="pw-carol") == socks.SUCCEEDED
    with pytest.raises(PermissionError):
        rep_of(proxy, "127.0.0.1", origin.port, user="carol", password="bad")


# ---------------------------------------------------------------------------------- versions


def test_versions_choice(tmp_path, curl, origin):
    with DaemonProcess(tmp_path / "a", socks_profile("    versions: [5]\n")) as d:
        url = origin.url("/small")
        assert run_curl(curl, "--socks5", d.listen("socks"), url).returncode == 0
        assert run_curl(curl, "--socks4", d.listen("socks"), url).returncode != 0
        assert d.ctl("stats")["servers"]["socks"]["errors"] == {"unsupported": 1}
    with DaemonProcess(tmp_path / "b", socks_profile("    versions: [4]\n    udp: false\n")) as d:
        assert run_curl(curl, "--socks4a", d.listen("socks"), url).returncode == 0
        assert run_curl(curl, "--socks5", d.listen("socks"), url).returncode != 0


# ---------------------------------------------------------------------------------- UDP ASSOCIATE


class UdpEcho:
    """A UDP echo server on loopback, answering ``b"echo:" + payload``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.seen: list[tuple[bytes, tuple]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.seen.append((data, peer))
            self.sock.sendto(b"echo:" + data, peer)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def udp_echo():
    e = UdpEcho()
    yield e
    e.close()


def _udp_client(relay: tuple[str, int]) -> socket.socket:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    u.settimeout(3)
    return u


def test_udp_associate_relays_to_an_echo_server(tmp_path, udp_echo):
    profile = socks_profile("    udp_idle: 2s\n")
    with DaemonProcess(tmp_path / "a", profile) as d:
        proxy = d.listen("socks")
        u = _udp_client(("127.0.0.1", 0))
        ctl, reply = socks5_open(proxy, "0.0.0.0", u.getsockname()[1], cmd=socks.UDP_ASSOCIATE)
        try:
            assert reply.rep == socks.SUCCEEDED and reply.host == "127.0.0.1" and reply.port > 0
            relay = (reply.host, reply.port)
            for host, payload in [("127.0.0.1", b"one"), ("localhost", b"two by name"), ("127.0.0.1", b"\x00" * 1400)]:
                u.sendto(socks.build_udp_datagram(host, udp_echo.port, payload), relay)
                data, src = u.recvfrom(65536)
                assert src == relay
                head, body = socks.parse_udp_datagram(data, side="upstream")
                assert (head.host, head.port) == ("127.0.0.1", udp_echo.port)
                assert bytes(body) == b"echo:" + payload
            # every datagram left from one outbound socket, never from the client's own address
            sources = {peer for _, peer in udp_echo.seen}
            assert len(sources) == 1 and sources != {u.getsockname()}
            # only the client may use the relay: another socket of the same host is ignored
            intruder = _udp_client(relay)
            intruder.settimeout(0.5)
            intruder.sendto(socks.build_udp_datagram("127.0.0.1", udp_echo.port, b"intruder"), relay)
            with pytest.raises(socket.timeout):
                intruder.recvfrom(100)
            intruder.close()
            assert all(data != b"intruder" for data, _ in udp_echo.seen)
            # the egress guard holds for UDP too: nothing goes to the metadata address
            u.sendto(socks.build_udp_datagram("169.254.169.254", 53, b"meta"), relay)
            # a fragment is dropped (no reassembly)
            u.sendto(b"\x00\x00\x01" + socks.build_udp_datagram("127.0.0.1", udp_echo.port, b"frag")[3:], relay)
            stats = wait_until(
                lambda: (s := d.ctl("stats")["servers"]["socks"])["errors"].get("udp_bad_datagram") and s,
                what="the fragment counted",
            )
            assert stats["errors"]["udp_foreign_source"] == 1
            assert stats["errors"]["denied"] == 1 and stats["errors"]["udp_bad_datagram"] == 1
            assert stats["bytes_up"] == 3 + 11 + 1400
            conns = [c for c in d.ctl("conns") if c["server"] == "socks"]
            assert [c["state"] for c in conns] == ["udp_associate"]
            # idle: the association ends after udp_idle without datagrams, and so does its TCP connection
            ctl.settimeout(6)
            started = time.monotonic()
            assert ctl.recv(10) == b""
            assert time.monotonic() - started < 5
            u.sendto(socks.build_udp_datagram("127.0.0.1", udp_echo.port, b"late"), relay)
            u.settimeout(0.5)
            with pytest.raises(socket.timeout):
                u.recvfrom(100)
        finally:
            ctl.close()
            u.close()


def test_udp_association_ends_with_its_tcp_connection(sd, udp_echo):
    u = _udp_client(("127.0.0.1", 0))
    ctl, reply = socks5_open(addr(sd), "0.0.0.0", 0, cmd=socks.UDP_ASSOCIATE)
    relay = (reply.host, reply.port)
    u.sendto(socks.build_udp_datagram("127.0.0.1", udp_echo.port, b"hi"), relay)
    assert u.recvfrom(100)[0].endswith(b"echo:hi")
    ctl.close()
    wait_until(lambda: not [c for c in sd.ctl("conns") if c["server"] == "socks"], what="the association to end")
    u.settimeout(0.5)
    u.sendto(socks.build_udp_datagram("127.0.0.1", udp_echo.port, b"after"), relay)
    with pytest.raises(socket.timeout):
        u.recvfrom(100)
    u.close()


def test_udp_disabled_answers_command_not_supported(tmp_path):
    with DaemonProcess(tmp_path / "a", socks_profile("    udp: false\n")) as d:
        assert rep_of(d.listen("socks"), "0.0.0.0", 0, cmd=socks.UDP_ASSOCIATE) == socks.COMMAND_NOT_SUPPORTED


def test_udp_datagram_policy_per_destination(sd, udp_echo):
    sd.ctl("tenant.add", {"name": "acme", "sources": ["127.0.0.0/8"]})
    sd.ctl("policy.add", {"tenant": "acme", "rule": {"id": "no-udp-echo", "action": "deny", "ports": [str(udp_echo.port)]}})
    u = _udp_client(("127.0.0.1", 0))
    ctl, reply = socks5_open(addr(sd), "0.0.0.0", 0, cmd=socks.UDP_ASSOCIATE)
    try:
        relay = (reply.host, reply.port)
        u.settimeout(0.5)
        u.sendto(socks.build_udp_datagram("127.0.0.1", udp_echo.port, b"x"), relay)
        with pytest.raises(socket.timeout):
            u.recvfrom(100)
        assert udp_echo.seen == []
    finally:
        ctl.close()
        u.close()


# ---------------------------------------------------------------------------------- relay behaviour


def test_half_close_reaches_the_origin_and_the_answer_comes_back(sd):
    """The client shuts its sending side; the upstream sees EOF and can still answer."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    got: dict[str, bytes] = {}

    def serve() -> None:
        c, _ = lsock.accept()
        data = b""
        while chunk := c.recv(65536):
            data += chunk
        got["data"] = data
        c.sendall(b"after-eof:" + struct.pack(">I", len(data)))
        c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    s, reply = socks5_open(addr(sd), "127.0.0.1", lsock.getsockname()[1])
    assert reply.rep == socks.SUCCEEDED
    s.sendall(b"z" * 100000)
    s.shutdown(socket.SHUT_WR)
    answer = b""
    while chunk := s.recv(100):
        answer += chunk
    s.close()
    t.join(5)
    lsock.close()
    assert got["data"] == b"z" * 100000
    assert answer == b"after-eof:" + struct.pack(">I", 100000)


def test_kill_ends_a_socks_tunnel(sd):
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    s, reply = socks5_open(addr(sd), "127.0.0.1", lsock.getsockname()[1])
    assert reply.rep == socks.SUCCEEDED
    (conn,) = [c for c in sd.ctl("conns") if c["server"] == "socks"]
    assert conn["state"] == "relay" and conn["target"] == f"127.0.0.1:{lsock.getsockname()[1]}"
    sd.ctl("kill", {"id": conn["id"]})
    s.settimeout(5)
    try:
        assert s.recv(10) == b""
    except ConnectionResetError:
        pass
    s.close()
    lsock.close()


def test_request_then_half_close_is_still_served_and_audited(sd, origin):
    """A client that sends its request and shuts its sending side at once still gets the answer."""
    h, p = addr(sd).rsplit(":", 1)
    with socket.create_connection((h, int(p)), timeout=10) as s:
        s.sendall(
            socks.socks5_client_greeting(False)
            + socks.socks5_client_request(socks.CONNECT, "127.0.0.1", origin.port)
            + b"GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.endswith(b"x" * 100)
    def socks_events() -> list:
        out = sd.arcus("audit", "search", "--json")
        assert out.returncode == 0, out.stderr
        return [e for e in map(json.loads, out.stdout.splitlines()) if e["server"] == "socks"]

    (event,) = wait_until(socks_events, interval=0.3, what="the SOCKS connection's audit record")
    assert event["kind"] == "connection" and event["method"] == "SOCKS5 CONNECT"
    assert (event["host"], event["port"], event["status"]) == ("127.0.0.1", origin.port, 200)
    assert event["bytes_down"] > 100 and event["decision"] == "allow"
