"""One table of admission cases, run through every server type (issue 7).

One daemon serves every type at once, each on its own port: http_proxy (plain requests and
CONNECT), http_proxy over TLS, socks_proxy (SOCKS4 and SOCKS5), sni_proxy, tcp_stream,
tls_stream, http_rproxy and intelli_proxy. Every client is 127.0.0.1, tenant ``acme``. Each
case changes the store (or the profile) over the control socket, runs one client exchange
through every server, and checks that it was served or refused, with the error code wherever
the protocol can carry one (X-Arcus-Error, the SOCKS5 reply), and the audit record of the
exchange (destination, decision, rule). tcp_tproxy needs network namespaces and is covered by
test_tproxy.py.

The locked-range case runs the same drivers against the data plane in-process, with the
Snapshot built by ``arcus.runtime.snapshot.build_snapshot`` from store rows that carry
``lock_sources`` (the store column is ops-layer's; until it lands, the rows are given here the
way the store will give them).
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import time
from dataclasses import dataclass

import pytest

from arcus.proto import socks
from arcus.testing.daemon import DaemonProcess, render_profile
from arcus.testing.origin import Origin
from tests.integration.tls_peers import LocalCA, TlsOrigin

pytestmark = pytest.mark.integration

BODY = b"x" * 100  # what the origin's /small answers


@dataclass
class Outcome:
    ok: bool  # the origin's answer reached the client
    code: str | None = None  # the error code the protocol carried, when it can carry one
    status: int = 0


@dataclass
class Env:
    origin: Origin
    tls_origin: TlsOrigin
    ca: LocalCA


def _recv_all(s: socket.socket, limit: float = 5.0) -> bytes:
    s.settimeout(limit)
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    return data


def _http_outcome(data: bytes) -> Outcome:
    if not data.startswith(b"HTTP/"):
        return Outcome(False)
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    code = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b": ")
        if name.lower() == b"x-arcus-error":
            code = value.decode()
    return Outcome(status == 200 and body.endswith(BODY), code, status)


def _get(origin_port: int, absolute: bool, host: str = "127.0.0.1") -> bytes:
    target = f"http://{host}:{origin_port}/small" if absolute else "/small"
    return f"GET {target} HTTP/1.1\r\nHost: {host}:{origin_port}\r\nConnection: close\r\n\r\n".encode()


def _connect(addr: str) -> socket.socket:
    h, p = addr.rsplit(":", 1)
    return socket.create_connection((h, int(p)), timeout=5)


# ------------------------------------------------------------------------ one driver per server


def drive_http(addr: str, env: Env) -> Outcome:
    with _connect(addr) as s:
        s.sendall(_get(env.origin.port, True))
        return _http_outcome(_recv_all(s))


def drive_connect(addr: str, env: Env) -> Outcome:
    with _connect(addr) as s:
        s.sendall(f"CONNECT 127.0.0.1:{env.origin.port} HTTP/1.1\r\nHost: 127.0.0.1:{env.origin.port}\r\n\r\n".encode())
        s.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(65536)
            if not chunk:
                break
            head += chunk
        answer = _http_outcome(head)
        if answer.status != 200:
            return answer
        s.sendall(_get(env.origin.port, False))
        return _http_outcome(_recv_all(s))


def drive_https(addr: str, env: Env) -> Outcome:
    ctx = ssl.create_default_context(cafile=str(env.ca.cert_path))
    with _connect(addr) as raw, ctx.wrap_socket(raw, server_hostname="proxy.test") as s:
        s.sendall(_get(env.origin.port, True))
        return _http_outcome(_recv_all(s))


def drive_socks5(addr: str, env: Env) -> Outcome:
    with _connect(addr) as s:
        s.sendall(socks.socks5_client_greeting(False) + socks.socks5_client_request(socks.CONNECT, "127.0.0.1", env.origin.port))
        data = b""
        s.settimeout(5)
        while len(data) < 12:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        if len(data) < 4:
            return Outcome(False)
        rep = data[3]
        if rep != socks.SUCCEEDED:
            return Outcome(False, f"socks5:{rep}")
        s.sendall(_get(env.origin.port, False))
        return _http_outcome(data[12:] + _recv_all(s))


def drive_socks4(addr: str, env: Env) -> Outcome:
    with _connect(addr) as s:
        s.sendall(b"\x04\x01" + struct.pack(">H", env.origin.port) + socket.inet_aton("127.0.0.1") + b"me\x00")
        data = b""
        s.settimeout(5)
        while len(data) < 8:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        if len(data) < 8 or data[1] != 90:
            return Outcome(False)
        s.sendall(_get(env.origin.port, False))
        return _http_outcome(data[8:] + _recv_all(s))


def drive_sni(addr: str, env: Env) -> Outcome:
    # a plain HTTP client on the SNI proxy goes to its Host (the port it names)
    with _connect(addr) as s:
        s.sendall(_get(env.origin.port, False))
        return _http_outcome(_recv_all(s))


def drive_stream(addr: str, env: Env) -> Outcome:
    with _connect(addr) as s:
        s.sendall(_get(env.origin.port, False))
        return _http_outcome(_recv_all(s))


def drive_rproxy(addr: str, env: Env) -> Outcome:
    with _connect(addr) as s:
        s.sendall(b"GET /small HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
        return _http_outcome(_recv_all(s))


# kind -> (server name, driver, whether the protocol carries our error code)
SERVERS = {
    "http": ("http", drive_http, True),
    "connect": ("http", drive_connect, True),
    "https": ("https", drive_https, True),
    "socks4": ("socks", drive_socks4, False),
    "socks5": ("socks", drive_socks5, True),
    "sni": ("sni", drive_sni, False),
    "stream": ("stream", drive_stream, False),
    "tlsstream": ("tlsstream", drive_stream, False),
    "rproxy": ("web", drive_rproxy, True),
    "intelli_http": ("intelli", drive_http, True),
    "intelli_socks5": ("intelli", drive_socks5, True),
}
HTTP_KEPT_ALIVE = ("http", "https", "rproxy", "intelli_http")

# SOCKS5 replies for the codes (the one table: arcus.errors.ErrorCode.socks5)
SOCKS5_CODE = {"tenant_suspended": 2, "denied": 2, "tenant_conn_limit": 1, "box_conn_limit": 1, "rate_limited": 1}


def expected_code(kind: str, code: str) -> str | None:
    if not SERVERS[kind][2]:
        return None
    if kind in ("socks5", "intelli_socks5"):
        return f"socks5:{SOCKS5_CODE[code]}"
    return code


def _profile(env: Env, tmp_path) -> str:
    cert, key = env.ca.issue("proxy.test", stem="proxy")
    servers = f"""\
  - name: https
    type: http_proxy
    listen: 127.0.0.1:0
    escaper: direct
    tls:
      certificate: {cert}
      private_key: {key}
  - name: socks
    type: socks_proxy
    listen: 127.0.0.1:0
    escaper: direct
  - name: sni
    type: sni_proxy
    listen: 127.0.0.1:0
    escaper: direct
    tls_port: 443
    http_port: 80
  - name: stream
    type: tcp_stream
    listen: 127.0.0.1:0
    escaper: direct
    upstreams: ["127.0.0.1:{env.origin.port}"]
  - name: tlsstream
    type: tls_stream
    listen: 127.0.0.1:0
    escaper: direct
    upstreams: ["127.0.0.1:{env.tls_origin.port}"]
    tls_ca: {env.ca.cert_path}
    tls_name: backend.test
  - name: web
    type: http_rproxy
    listen: 127.0.0.1:0
    escaper: direct
    hosts:
      - names: ["*"]
        upstream: 127.0.0.1:{env.origin.port}
  - name: intelli
    type: intelli_proxy
    listen: 127.0.0.1:0
    escaper: direct
"""
    return render_profile().replace("servers:\n", "servers:\n" + servers, 1)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("matrix")
    ca = LocalCA(tmp / "ca")
    with Origin() as origin, TlsOrigin(ca, "backend.test") as tls_origin:
        env = Env(origin, tls_origin, ca)
        profile = _profile(env, tmp)
        with DaemonProcess(tmp / "arcus", profile) as d:
            d.ctl("tenant.add", {"name": "acme", "sources": ["127.0.0.0/8"]})
            addrs = {name: d.listen(name) for name in ("http", "https", "socks", "sni", "stream", "tlsstream", "web", "intelli")}
            yield d, env, addrs, profile


def run_all(matrix, kinds=tuple(SERVERS)) -> dict[str, Outcome]:
    d, env, addrs, _ = matrix
    return {kind: SERVERS[kind][1](addrs[SERVERS[kind][0]], env) for kind in kinds}


def audit_rows(d: DaemonProcess, since: float) -> list[dict]:
    r = d.arcus("audit", "search", "--json")
    assert r.returncode == 0, r.stderr
    return [row for row in map(json.loads, r.stdout.splitlines()) if row["time"] >= since]


def wait_rows(d: DaemonProcess, since: float, want) -> list[dict]:
    deadline = time.monotonic() + 10
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = audit_rows(d, since)
        if want(rows):
            return rows
        time.sleep(0.3)
    return rows


# ---------------------------------------------------------------------------------- the cases


def test_every_server_serves_and_records_destination_and_decision(matrix):
    d = matrix[0]
    since = time.time() - 0.5
    outcomes = run_all(matrix)
    assert all(o.ok for o in outcomes.values()), outcomes
    servers = {SERVERS[k][0] for k in SERVERS}

    def complete(rows):
        return servers <= {r["server"] for r in rows if r["host"] and r["decision"] == "allow"}

    rows = wait_rows(d, since, complete)
    recorded = {r["server"] for r in rows if r["host"] and r["port"] and r["decision"] == "allow"}
    assert servers <= recorded, rows  # on main, an allowed CONNECT left host "" and no decision
    connect = [r for r in rows if r["server"] == "http" and r["method"] == "CONNECT"]
    assert connect and connect[0]["bytes_down"] > len(BODY) and connect[0]["status"] == 200


def test_a_deny_rule_refuses_on_every_server_and_is_recorded_with_its_rule(matrix):
    d = matrix[0]
    d.ctl("policy.add", {"tenant": "acme", "rule": {"id": "block-all", "action": "deny"}})
    since = time.time() - 0.5
    try:
        outcomes = run_all(matrix)
    finally:
        d.ctl("policy.rm", {"tenant": "acme", "id": "block-all"})
    for kind, o in outcomes.items():
        assert not o.ok, kind
        if expected_code(kind, "denied") is not None:
            assert o.code == expected_code(kind, "denied"), (kind, o)
    rows = wait_rows(d, since, lambda rows: len([r for r in rows if r["decision"] == "deny"]) >= len(SERVERS))
    denied = {r["server"] for r in rows if r["decision"] == "deny" and r["rule"] == "block-all"}
    assert {SERVERS[k][0] for k in SERVERS} <= denied, rows


def test_a_suspended_tenant_is_refused_everywhere(matrix):
    d = matrix[0]
    d.ctl("tenant.suspend", {"name": "acme"})
    try:
        outcomes = run_all(matrix)
    finally:
        d.ctl("tenant.resume", {"name": "acme"})
    for kind, o in outcomes.items():
        assert not o.ok, kind
        if expected_code(kind, "tenant_suspended") is not None:
            assert o.code == expected_code(kind, "tenant_suspended"), (kind, o)
    assert all(o.ok for o in run_all(matrix).values())


def test_the_tenant_connection_limit_holds_on_every_server(matrix):
    d, env, addrs, _ = matrix
    d.ctl("tenant.set", {"name": "acme", "max_conns": 1})
    try:
        for kind, (server, drive, _) in SERVERS.items():
            held = _hold(kind, addrs[server], env)  # one connection, idle: it holds acme's only slot
            try:
                o = _until(lambda drive=drive, server=server: drive(addrs[server], env), lambda o: not o.ok)
                assert not o.ok, kind
                if expected_code(kind, "tenant_conn_limit") is not None:
                    assert o.code == expected_code(kind, "tenant_conn_limit"), (kind, o)
            finally:
                held.close()
            assert _until(lambda drive=drive, server=server: drive(addrs[server], env), lambda o: o.ok).ok, kind
    finally:
        d.ctl("tenant.set", {"name": "acme", "max_conns": None})


def _hold(kind: str, addr: str, env: Env) -> socket.socket:
    """An idle client connection, accepted (over TLS: the handshake done, as the server sees it)."""
    s = _connect(addr)
    if kind == "https":
        return ssl.create_default_context(cafile=str(env.ca.cert_path)).wrap_socket(s, server_hostname="proxy.test")
    return s


def _until(call, good, bound: float = 5.0):
    """Call until ``good(result)`` (a held connection is accepted asynchronously), bounded."""
    deadline = time.monotonic() + bound
    result = call()
    while not good(result) and time.monotonic() < deadline:
        time.sleep(0.05)
        result = call()
    return result


def test_the_box_connection_limit_holds_on_every_server(matrix):
    d, env, addrs, profile = matrix
    d.profile_path.write_text(profile.replace("runtime:\n", "runtime:\n  max_connections: 1\n", 1))
    d.ctl("reload")
    try:
        for kind, (server, drive, _) in SERVERS.items():
            held = _connect(addrs["http"])  # a connection on any server holds the box's only slot
            try:
                o = _until(lambda drive=drive, server=server: drive(addrs[server], env), lambda o: not o.ok)
                assert not o.ok, kind
                if expected_code(kind, "box_conn_limit") is not None:
                    assert o.code == expected_code(kind, "box_conn_limit"), (kind, o)
            finally:
                held.close()
    finally:
        d.profile_path.write_text(profile)
        d.ctl("reload")
    outcomes = _until(lambda: run_all(matrix), lambda r: all(o.ok for o in r.values()))
    assert all(o.ok for o in outcomes.values()), outcomes


def test_the_rate_limit_holds_on_every_server(matrix):
    d, env, addrs, _ = matrix
    d.ctl("tenant.set", {"name": "acme", "rps": 0.05})  # one request, then one every 20 s
    try:
        for kind, (server, drive, _) in SERVERS.items():
            first = drive(addrs[server], env)
            second = drive(addrs[server], env)
            assert not second.ok, (kind, first, second)
            if expected_code(kind, "rate_limited") is not None:
                assert second.code == expected_code(kind, "rate_limited"), (kind, second)
    finally:
        d.ctl("tenant.set", {"name": "acme", "rps": None})


def test_a_store_change_reaches_kept_alive_http_connections(matrix):
    """Tunnels keep the Snapshot they started with (by design); every HTTP request takes the
    current one, on http_proxy, over TLS, on http_rproxy and on intelli_proxy alike."""
    d, env, addrs, _ = matrix
    ctx = ssl.create_default_context(cafile=str(env.ca.cert_path))
    conns = {}
    for kind in HTTP_KEPT_ALIVE:
        s = _connect(addrs[SERVERS[kind][0]])
        conns[kind] = ctx.wrap_socket(s, server_hostname="proxy.test") if kind == "https" else s

    def ask(kind: str) -> int:
        s = conns[kind]
        if kind == "rproxy":
            s.sendall(b"GET /small HTTP/1.1\r\nHost: site.test\r\n\r\n")
        else:
            s.sendall(f"GET http://127.0.0.1:{env.origin.port}/small HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        while len(rest) < length:
            rest += s.recv(65536)
        return int(head.split(b" ", 2)[1])

    try:
        assert {k: ask(k) for k in HTTP_KEPT_ALIVE} == {k: 200 for k in HTTP_KEPT_ALIVE}
        d.ctl("policy.add", {"tenant": "acme", "rule": {"id": "block-all", "action": "deny"}})
        try:
            assert {k: ask(k) for k in HTTP_KEPT_ALIVE} == {k: 403 for k in HTTP_KEPT_ALIVE}
        finally:
            d.ctl("policy.rm", {"tenant": "acme", "id": "block-all"})
    finally:
        for s in conns.values():
            s.close()


def test_a_denial_decided_on_the_resolved_address_is_a_denial_with_its_rule(matrix):
    """``localhost`` under a rule denying 127.0.0.0/8: the rule is only decidable on the address
    the name resolves to. HTTP gets the block page with the rule header, SOCKS5 NOT_ALLOWED, and
    both are recorded as denied by that rule (main: a plain-text 403 and decision allow)."""
    d, env, addrs, _ = matrix
    d.ctl("policy.add", {"tenant": "acme", "rule": {"id": "no-loopback", "action": "deny", "dest_cidrs": ["127.0.0.0/8"]}})
    since = time.time() - 0.5
    try:
        with _connect(addrs["http"]) as s:
            s.sendall(_get(env.origin.port, True, host="localhost"))
            data = _recv_all(s)
        head = data.split(b"\r\n\r\n", 1)[0]
        assert head.startswith(b"HTTP/1.1 403"), data[:300]
        assert b"X-Arcus-Rule: no-loopback" in head and b"Content-Type: text/html" in head
        assert data.count(b"denied by rule") == 1, data  # the reason said once, not "denied by rule x: denied by rule 'x'"
        with _connect(addrs["socks"]) as s:
            s.sendall(socks.socks5_client_greeting(False) + socks.socks5_client_request(socks.CONNECT, "localhost", env.origin.port))
            reply = _recv_all(s)
        assert reply[:2] == b"\x05\x00" and reply[3] == socks.NOT_ALLOWED, reply
    finally:
        d.ctl("policy.rm", {"tenant": "acme", "id": "no-loopback"})
    rows = wait_rows(d, since, lambda rows: len([r for r in rows if r["host"] == "localhost"]) >= 2)
    seen = {(r["server"], r["decision"], r["rule"]) for r in rows if r["host"] == "localhost"}
    assert {("http", "deny", "no-loopback"), ("socks", "deny", "no-loopback")} <= seen, rows


# ------------------------------------------------------------------------- locked source ranges


def test_a_locked_range_admits_only_its_own_tenants_users(tmp_path):
    """From acme's locked range, globex's ``bob@globex`` is refused (403 tenant_locked; SOCKS5
    NOT_ALLOWED) on every server that takes credentials; acme's own ``al@acme`` is served."""
    import asyncio
    import base64
    import dataclasses
    import threading
    from types import SimpleNamespace

    from arcus.auth.secrets import hash_secret
    from arcus.config.loader import parse_profile
    from arcus.runtime.snapshot import StoreView, build_snapshot
    from arcus.serve.context import Shared
    from arcus.serve.registry import SERVER_TYPES
    from arcus.store.tenants import Tenant
    from arcus.store.users import User

    profile = parse_profile(
        render_profile().replace(
            "servers:\n",
            "servers:\n  - name: socks\n    type: socks_proxy\n    listen: 127.0.0.1:0\n    escaper: direct\n"
            "  - name: intelli\n    type: intelli_proxy\n    listen: 127.0.0.1:0\n    escaper: direct\n",
            1,
        ),
        "matrix.yaml",
    )
    now = "2026-01-01T00:00:00Z"

    def tenant(name: str, source: str, **kw) -> Tenant:
        return Tenant(name=name, display_name=name, sources=(source,), suspended=False, created_at=now, auth="optional", **kw)

    def user(t: str, name: str, pw: str) -> User:
        return User(t, name, hash_secret(pw), False, None, None, None, None, now)

    # the store's rows as ops-layer's migration will give them: lock_sources on the tenant row
    acme = tenant("acme", "127.0.0.0/8")
    if "lock_sources" in {f.name for f in dataclasses.fields(Tenant)}:
        acme = dataclasses.replace(acme, lock_sources=True)
    else:  # until the column lands: the same row with the field build_tenancy reads
        acme = SimpleNamespace(**{f.name: getattr(acme, f.name) for f in dataclasses.fields(Tenant)}, lock_sources=True)
    data = StoreView([acme, tenant("globex", "10.2.0.0/16")], {"acme": [user("acme", "al", "al-pw")], "globex": [user("globex", "bob", "bob-pw")]}, {})
    shared = Shared(build_snapshot(1, profile, data, frozenset()))
    assert shared.snapshot.tenancy.tenants["acme"].lock_sources

    loop = asyncio.new_event_loop()
    servers: dict[str, str] = {}
    ready = threading.Event()

    async def start() -> None:
        for conf in profile.servers:
            kind = SERVER_TYPES[conf.type]
            srv = await kind.listen(loop, kind.factory(shared, conf.name), "127.0.0.1", 0, conf)
            await srv.start_serving()
            servers[conf.name] = "127.0.0.1:%d" % srv.sockets[0].getsockname()[1]
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        with Origin() as origin:

            def http(addr: str, creds: str) -> Outcome:
                auth = base64.b64encode(creds.encode()).decode()
                with _connect(addr) as s:
                    s.sendall(
                        f"GET http://127.0.0.1:{origin.port}/small HTTP/1.1\r\nHost: x\r\n"
                        f"Proxy-Authorization: Basic {auth}\r\nConnection: close\r\n\r\n".encode()
                    )
                    return _http_outcome(_recv_all(s))

            def socks5(addr: str, creds: str) -> Outcome:
                name, _, pw = creds.partition(":")
                with _connect(addr) as s:
                    s.sendall(socks.socks5_client_greeting(True))
                    assert _recv_n(s, 2) == b"\x05\x02"
                    s.sendall(bytes([1, len(name)]) + name.encode() + bytes([len(pw)]) + pw.encode())
                    _recv_n(s, 2)
                    s.sendall(socks.socks5_client_request(socks.CONNECT, "127.0.0.1", origin.port))
                    reply = _recv_n(s, 10)
                    if reply[1] != socks.SUCCEEDED:
                        return Outcome(False, f"socks5:{reply[1]}")
                    s.sendall(_get(origin.port, False))
                    return _http_outcome(_recv_all(s))

            for name, drive in (("http", http), ("socks", socks5), ("intelli", http), ("intelli", socks5)):
                refused = drive(servers[name], "bob@globex:bob-pw")
                expected = "tenant_locked" if drive is http else f"socks5:{socks.NOT_ALLOWED}"
                assert (refused.ok, refused.code) == (False, expected), (name, refused)
                assert drive(servers[name], "al@acme:al-pw").ok, name
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def _recv_n(s: socket.socket, n: int) -> bytes:
    s.settimeout(5)
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data
