"""`tcp_stream` and `tls_stream`: curl to the real daemon, relayed to fixed upstreams: balancing,
failover on a failed connect, verified TLS to the upstream, admission."""

from __future__ import annotations

import json

import pytest

from arcus.testing.daemon import DaemonProcess
from arcus.testing.origin import Origin
from arcus.testing.wait import wait_until
from tests.integration.conftest import free_port, run_curl
from tests.integration.tls_peers import LocalCA, TlsOrigin

PROFILE = """\
servers:
  - name: stream
    type: {type}
    listen: 127.0.0.1:0
    escaper: direct
    upstreams: {upstreams}
{extra}
escapers:
  - name: direct
    type: direct_fixed
    resolver: system
resolvers:
  - name: system
    type: system
timeouts:
  upstream_connect: 3s
"""


def start(tmp_path, upstreams: list[str], *, type: str = "tcp_stream", extra: str = "") -> DaemonProcess:
    text = PROFILE.format(type=type, upstreams=json.dumps(upstreams), extra=extra)
    return DaemonProcess(tmp_path / "arcus", text).start()


def get(curl: str, d: DaemonProcess, path: str = "/small"):
    return run_curl(curl, f"http://{d.listen('stream')}{path}")


@pytest.fixture
def two_origins():
    with Origin() as a, Origin() as b:
        yield a, b


def test_round_robin_over_upstreams(curl, tmp_path, two_origins):
    a, b = two_origins
    d = start(tmp_path, [f"127.0.0.1:{a.port}", f"localhost:{b.port}"])
    try:
        for _ in range(4):
            r = get(curl, d)
            assert r.returncode == 0, r.stderr
            assert r.stdout == b"x" * 100
        assert len(a.requests) == 2 and len(b.requests) == 2
        r = get(curl, d, "/bytes/300000")
        assert r.stdout == b"b" * 300000
        stats = d.ctl("stats")["servers"]["stream"]
        assert stats["conns_total"] == 5
        assert stats["bytes_down"] > 300000
    finally:
        d.stop()


def test_random_balance_reaches_every_upstream(curl, tmp_path, two_origins):
    a, b = two_origins
    d = start(tmp_path, [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"], extra="    balance: random\n")
    try:
        for _ in range(20):
            assert get(curl, d).returncode == 0
        assert len(a.requests) + len(b.requests) == 20
        assert a.requests and b.requests  # each missed with probability 2**-20
    finally:
        d.stop()


def test_failover_to_the_next_upstream_on_connect_failure(curl, tmp_path, two_origins):
    a, _ = two_origins
    dead = free_port()  # nothing listens there: connection refused
    d = start(tmp_path, [f"127.0.0.1:{dead}", "nx.invalid:80", f"127.0.0.1:{a.port}"])
    try:
        for _ in range(3):  # each connection starts at another upstream; all end at the live one
            r = get(curl, d)
            assert r.returncode == 0, r.stderr
            assert r.stdout == b"x" * 100
        assert len(a.requests) == 3
        stats = d.ctl("stats")
        errors = stats["servers"]["stream"]["errors"]
        assert errors["upstream_failover"] == 3  # dead+nx, nx, none... in some rotation: three failures in all
        # a failover is the same request: three connections, three requests, not six
        assert stats["servers"]["stream"]["requests"] == 3 and stats["tenants"]["default"]["requests"] == 3
        # and it does not spend the tenant's rate again: a burst of 2 admits two connections
        assert d.arcus("tenant", "set", "default", "--rps", "2").returncode == 0
        wait_until(lambda: d.ctl("stats")["generation"] > stats["generation"], what="the rate limit in force")
        results = [get(curl, d) for _ in range(2)]
        assert all(r.returncode == 0 and r.stdout == b"x" * 100 for r in results), [r.stderr for r in results]
    finally:
        d.stop()


def test_no_upstream_answers_closes_the_connection(curl, tmp_path):
    d = start(tmp_path, [f"127.0.0.1:{free_port()}"])
    try:
        r = get(curl, d)
        assert r.returncode in (52, 56), r  # empty reply / connection reset: there is no protocol to answer in
        errors = d.ctl("stats")["servers"]["stream"]["errors"]
        assert errors["upstream_connect"] == 1
    finally:
        d.stop()


def test_policy_applies_to_the_upstream(curl, tmp_path, two_origins):
    a, _ = two_origins
    d = start(tmp_path, [f"127.0.0.1:{a.port}"], extra="    tenant: acme\n")
    try:
        for args in (("tenant", "add", "acme"), ("policy", "add", "acme", "no-loop", "--deny", "--dest", "127.0.0.0/8")):
            res = d.arcus(*args)
            assert res.returncode == 0, res.stderr
        r = get(curl, d)
        assert r.returncode in (52, 56), r
        assert not a.requests
        assert d.ctl("stats")["tenants"]["acme"]["errors"]["denied"] == 1
    finally:
        d.stop()


def test_tls_stream_verifies_the_upstream_with_the_configured_ca_and_name(curl, tmp_path):
    ca = LocalCA(tmp_path / "ca")
    with TlsOrigin(ca, "backend.internal") as origin:
        extra = f"    tls_ca: {ca.cert_path}\n    tls_name: backend.internal\n"
        d = start(tmp_path, [f"127.0.0.1:{origin.port}"], type="tls_stream", extra=extra)
        try:
            r = get(curl, d, "/bytes/200000")  # plain HTTP from curl, TLS from Arcus to the origin
            assert r.returncode == 0, r.stderr
            assert r.stdout == b"b" * 200000
            assert origin.server_names == ["backend.internal"]
        finally:
            d.stop()


def test_tls_stream_refuses_an_unverified_upstream_and_fails_over(curl, tmp_path):
    ca = LocalCA(tmp_path / "ca")
    rogue_ca = LocalCA(tmp_path / "rogue")
    with TlsOrigin(rogue_ca, "localhost") as rogue, TlsOrigin(ca, "localhost") as good:
        # no tls_name: each upstream's host (localhost) is the name verified
        d = start(tmp_path, [f"localhost:{rogue.port}"], type="tls_stream", extra=f"    tls_ca: {ca.cert_path}\n")
        try:
            r = get(curl, d)
            assert r.returncode in (52, 56), r
            assert not rogue.requests  # the handshake failed: no byte of the client reached it
        finally:
            d.stop()
        d = start(
            tmp_path, [f"localhost:{rogue.port}", f"localhost:{good.port}"], type="tls_stream", extra=f"    tls_ca: {ca.cert_path}\n"
        )
        try:
            for _ in range(2):
                r = get(curl, d)
                assert r.returncode == 0, r.stderr
                assert r.stdout == b"x" * 100
            assert len(good.requests) == 2 and not rogue.requests
        finally:
            d.stop()


# --- profile errors, one bad file each -------------------------------------------------------


def profile_issues(tmp_path, server: str) -> list[str]:
    from arcus.config import check_profile

    path = tmp_path / "p.yaml"
    path.write_text(f"servers:\n{server}escapers:\n  - name: direct\n    type: direct_fixed\n"
                    "resolvers:\n  - name: system\n    type: system\n")
    return [str(i).replace(str(path), "P", 1) for i in check_profile(str(path))]


STREAM_HEAD = "  - name: s\n    type: {type}\n    listen: 127.0.0.1:0\n    escaper: direct\n"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ("    upstreams: [db.internal]\n",
         'P:6: server "s": upstreams: invalid upstream "db.internal"; write "host:port" with a host name or an IP address, '
         'e.g. "backend.internal:8080" or "[::1]:443"'),
        ("    upstreams: [\"bad host:80\"]\n",
         'P:6: server "s": upstreams: "bad host" is neither an IP address nor a host name; write "host:port" with a host name '
         'or an IP address, e.g. "backend.internal:8080" or "[::1]:443"'),
        ("    upstreams: [a.internal:0]\n",
         'P:6: server "s": upstreams: invalid port "0" in "a.internal:0"; write a number 1-65535'),
        ("    upstreams: a.internal:80\n    balance: least_conn\n",
         'P:7: server "s": balance: expected one of round_robin, random, got "least_conn"'),
        ("", 'P:2: server "s": missing key "upstreams"'),
    ],
)
def test_tcp_stream_profile_errors(tmp_path, lines, expected):
    found = profile_issues(tmp_path, STREAM_HEAD.format(type="tcp_stream") + lines)
    assert found == [expected]


def test_tls_stream_profile_errors(tmp_path):
    found = profile_issues(
        tmp_path, STREAM_HEAD.format(type="tls_stream") + "    upstreams: a.internal:443\n    tls_ca: /nonexistent/ca.pem\n"
        "    tls_name: 10.0.0.1:443\n"
    )
    assert found == [
        'P:7: server "s": tls_ca: /nonexistent/ca.pem is not a readable file',
        'P:8: server "s": tls_name: "10.0.0.1:443" is not a host name (letters, digits, "-" and "_" in dot-separated labels)',
    ]


def test_config_show_of_every_stream_type_loads_back_the_same(tmp_path):
    """``arcus config show`` output (profile_to_dict) of the stream-like types is a profile that
    loads to the same objects."""
    import yaml

    from arcus.config import parse_profile
    from arcus.config.dump import profile_to_dict

    ca = LocalCA(tmp_path / "ca")
    cert, key = ca.issue("a.test")
    text = f"""\
servers:
  - name: s
    type: tcp_stream
    listen: 127.0.0.1:0
    escaper: direct
    upstreams: [Db.Internal:5432, "[::1]:5433"]
    balance: random
  - name: t
    type: tls_stream
    listen: 127.0.0.1:0
    escaper: direct
    upstreams: 10.0.0.1:443
    tls_ca: {ca.cert_path}
    tls_name: api.internal
  - name: n
    type: sni_proxy
    listen: 127.0.0.1:0
    escaper: direct
    tls_port: 8443
  - name: tp
    type: tcp_tproxy
    listen: 127.0.0.1:0
    escaper: direct
  - name: r
    type: http_rproxy
    listen: 127.0.0.1:0
    escaper: direct
    tls: true
    hosts:
      - names: [a.test, "*"]
        upstream: backend:8080
        upstream_tls: true
        certificate: {cert}
        private_key: {key}
escapers:
  - name: direct
    type: direct_fixed
resolvers:
  - name: system
    type: system
"""
    first = parse_profile(text, str(tmp_path / "p.yaml"))
    assert first.servers[0].upstreams == ("db.internal:5432", "[::1]:5433")
    shown = yaml.safe_dump(profile_to_dict(first))
    again = parse_profile(shown, str(tmp_path / "shown.yaml"))
    assert [_without_lines(s) for s in again.servers] == [_without_lines(s) for s in first.servers]


def _without_lines(server):
    import dataclasses

    changes = {"line": None}
    if hasattr(server, "hosts"):
        changes["hosts"] = tuple(dataclasses.replace(h, line=None) for h in server.hosts)
    return dataclasses.replace(server, **changes)


def test_a_client_over_the_connection_limit_reads_an_end_not_a_reset(tmp_path, two_origins):
    """A stream has no handshake to answer: a client over max_connections that already sends
    gets an orderly close (its bytes were read and dropped), recorded as server_busy."""
    import socket

    a, _ = two_origins
    d = start(tmp_path, [f"127.0.0.1:{a.port}"], extra="    max_connections: 1\n")
    try:
        host, port = d.listen("stream").rsplit(":", 1)
        held = socket.create_connection((host, int(port)), timeout=5)
        try:
            wait_until(lambda: d.ctl("stats")["servers"]["stream"]["conns_active"] == 1, what="the held connection")
            for _ in range(3):
                with socket.create_connection((host, int(port)), timeout=10) as s:
                    s.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
                    assert s.recv(100) == b""  # the proxy's end of sending
                    # it still reads what the client sends (and drops it) before it closes: a
                    # socket closed with bytes unread would answer these with a reset
                    s.sendall(b"more")
                    assert s.recv(100) == b""
        finally:
            held.close()
        assert d.ctl("stats")["servers"]["stream"]["errors"]["server_busy"] == 3
    finally:
        d.stop()


def test_a_stream_through_the_same_daemon_is_a_chain_and_one_to_itself_ends(curl, tmp_path):
    """Connections into the daemon's own listeners are counted, not refused: a stream in front of
    the daemon's HTTP proxy works (two passes); a stream whose upstream is its own listener (no
    client byte needed) stops at MAX_HOPS passes instead of connecting to itself until the
    descriptors run out."""
    from arcus.escape.hops import MAX_HOPS

    front, proxy, self_port = free_port(), free_port(), free_port()
    text = f"""\
servers:
  - name: front
    type: tcp_stream
    listen: 127.0.0.1:{front}
    escaper: direct
    upstreams: ["127.0.0.1:{proxy}"]
  - name: proxy
    type: http_proxy
    listen: 127.0.0.1:{proxy}
    escaper: direct
  - name: itself
    type: tcp_stream
    listen: 127.0.0.1:{self_port}
    escaper: direct
    upstreams: ["127.0.0.1:{self_port}"]
escapers:
  - name: direct
    type: direct_fixed
    resolver: system
    allow_special: [127.0.0.0/8]
resolvers:
  - name: system
    type: system
timeouts:
  upstream_connect: 3s
"""
    with Origin() as origin, DaemonProcess(tmp_path / "arcus", text) as d:
        r = run_curl(curl, "-x", f"http://127.0.0.1:{front}", f"http://127.0.0.1:{origin.port}/small")
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"x" * 100 and len(origin.requests) == 1
        r = run_curl(curl, f"http://127.0.0.1:{self_port}/")
        assert r.returncode != 0  # nothing answers at the end of the loop: the stream has no HTTP to say it in
        s = wait_until(lambda: (x := d.ctl("stats")["servers"]["itself"])["conns_active"] == 0 and x,
                       timeout=10, interval=0.05, what="the passes to close")
        assert s["conns_total"] == MAX_HOPS + 1
        assert s["errors"].get("loop_detected") == 1
