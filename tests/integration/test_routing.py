"""Route escapers in the real daemon, driven by curl: by host, by client, by country (an MMDB the
test writes), failover when the primary upstream (tinyproxy) is killed mid-test, and a pool whose
health checks take a killed upstream out and bring it back when it returns.

``PeerEcho`` answers every request with the address the request came from, so a test sees which
way (which bound source address) a connection left by.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

from arcus.testing.wait import wait_until
from tests.integration.conftest import run_curl
from tests.integration.test_escapers import arcus, profile, tinyproxy


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = self.client_address[0].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")  # no pooled upstream: every request leaves anew
        self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class PeerEcho:
    """An HTTP origin on ``host`` answering with the peer's address."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.server = ThreadingHTTPServer((host, 0), _Echo)
        self.server.daemon_threads = True
        self.host = host
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def __enter__(self) -> PeerEcho:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def bound(name: str, address: str) -> str:
    return f"  - name: {name}\n    type: direct_fixed\n    bind: {address}\n"


def test_route_upstream_and_route_client_end_to_end(tmp_path, curl):
    escapers = (
        bound("via_a", "127.0.0.81")
        + bound("via_b", "127.0.0.82")
        + """\
  - name: deny
    type: dummy_deny
  - name: by_host
    type: route_upstream
    rules:
      - hosts: [localhost]
        escaper: via_a
      - hosts: ["~blocked[0-9]+\\\\.test"]
        escaper: deny
      - nets: [127.0.0.0/8]
        escaper: via_b
    fallback: direct
  - name: by_client
    type: route_client
    rules:
      - clients: [127.0.0.5/32]
        escaper: via_a
    fallback: by_host
"""
    )
    with PeerEcho() as echo, arcus(tmp_path / "arcus", profile(escapers, "by_client")) as d:
        def via(host: str, *extra: str) -> tuple[int, str]:
            r = run_curl(curl, "-s", "-o", "-", "-w", "\n%{http_code}", "-x", f"http://{d.proxy}",
                         *extra, f"http://{host}:{echo.port}/")
            body, _, code = r.stdout.decode().rpartition("\n")
            return int(code), body

        assert via("localhost") == (200, "127.0.0.81")  # host rule; via_a resolves and binds
        assert via("127.0.0.1") == (200, "127.0.0.82")  # subnet rule
        code, body = via("blocked7.test")
        assert code == 403 and "dummy_deny" in body
        # the same destination from another client address goes by the client rule
        assert via("127.0.0.1", "--interface", "127.0.0.5") == (200, "127.0.0.81")


def write_mmdb(path: Path) -> Path:
    """127.0.0.2 is in Germany (EU), 127.0.0.3 in Japan (AS); other loopback addresses unknown."""
    writer = MMDBWriter(ip_version=6, database_type="GeoLite2-Country", ipv4_compatible=True)
    writer.insert_network(IPSet(["127.0.0.2/32"]), {"country": {"iso_code": "DE"}, "continent": {"code": "EU"}})
    writer.insert_network(IPSet(["127.0.0.3/32"]), {"country": {"iso_code": "JP"}, "continent": {"code": "AS"}})
    writer.to_db_file(str(path))
    return path


def test_route_geoip_with_a_test_mmdb(tmp_path, curl):
    mmdb = write_mmdb(tmp_path / "geo.mmdb")
    escapers = (
        bound("eu_egress", "127.0.0.91")
        + bound("asia_egress", "127.0.0.92")
        + f"""\
  - name: geo
    type: route_geoip
    mmdb: {mmdb}
    rules:
      - countries: [JP]
        escaper: asia_egress
      - continents: [EU]
        escaper: eu_egress
    default: direct
"""
    )
    with PeerEcho("127.0.0.2") as de, PeerEcho("127.0.0.3") as jp, PeerEcho("127.0.0.1") as home:
        with arcus(tmp_path / "arcus", profile(escapers, "geo")) as d:
            got = {}
            for label, echo in (("de", de), ("jp", jp), ("home", home)):
                r = run_curl(curl, "-x", f"http://{d.proxy}", echo.url)
                assert r.returncode == 0, r.stderr + d.log().encode()
                got[label] = r.stdout.decode()
    assert got == {"de": "127.0.0.91", "jp": "127.0.0.92", "home": "127.0.0.1"}


def test_failover_when_the_primary_upstream_is_killed_mid_test(tmp_path, curl, origin):
    with tinyproxy(tmp_path / "tp") as tp:
        escapers = f"""\
  - name: primary
    type: proxy_http
    proxy: 127.0.0.1:{tp.port}
  - name: standby
    type: direct_fixed
    bind: 127.0.0.101
  - name: fo
    type: route_failover
    primary: primary
    standby: standby
    fallback_delay: 500ms
"""
        with PeerEcho() as echo, arcus(tmp_path / "arcus", profile(escapers, "fo")) as d:
            r = run_curl(curl, "-x", f"http://{d.proxy}", echo.url)
            assert r.returncode == 0, r.stderr
            assert r.stdout == b"127.0.0.1"  # through tinyproxy (it connects from 127.0.0.1)
            assert f"CONNECT 127.0.0.1:{echo.port}" in tp.log()
            tp.stop()  # killed in the middle of the test
            started = time.monotonic()
            r = run_curl(curl, "-x", f"http://{d.proxy}", echo.url)
            took = time.monotonic() - started
            assert r.returncode == 0, r.stderr
            assert r.stdout == b"127.0.0.101"  # the standby
            assert took < 2.0  # refused at once: no wait for the fallback delay
            tp.start()  # back: the primary is used again
            r = run_curl(curl, "-x", f"http://{d.proxy}", echo.url)
            assert r.stdout == b"127.0.0.1"


def test_pool_health_checks_take_a_killed_upstream_out_and_bring_it_back(tmp_path, curl):
    with tinyproxy(tmp_path / "tp1") as tp1, tinyproxy(tmp_path / "tp2") as tp2:
        escapers = f"""\
  - name: up1
    type: proxy_http
    proxy: 127.0.0.1:{tp1.port}
  - name: up2
    type: proxy_http
    proxy: 127.0.0.1:{tp2.port}
  - name: pool
    type: route_select
    next:
      - escaper: up1
      - escaper: up2
    pick: round_robin
    health_interval: 300ms
    health_timeout: 200ms
    max_failures: 2
    retry_after: 600ms
"""
        with PeerEcho() as echo, arcus(tmp_path / "arcus", profile(escapers, "pool")) as d:
            def send(n: int) -> None:
                for _ in range(n):
                    r = run_curl(curl, "-x", f"http://{d.proxy}", echo.url)
                    assert r.returncode == 0 and r.stdout == b"127.0.0.1", r.stderr + d.log().encode()

            def connects(tp) -> int:
                return tp.log().count(f"CONNECT 127.0.0.1:{echo.port}")

            def up1_state() -> str:
                return d.ctl("escaper.show", {"escaper": "pool"})["members"][0]["state"]

            send(4)
            assert (connects(tp1), connects(tp2)) == (2, 2)  # round robin
            tp1.stop()
            # max_failures health checks (300 ms apart) fail: up1 is out
            wait_until(lambda: up1_state() == "down", what="the pool to take up1 out")
            send(4)  # every request goes to up2, none fails
            assert connects(tp2) == 6
            tp1.start()  # back on the same port
            # retry_after passes, the next check lets it in again
            wait_until(lambda: up1_state() == "up", what="the pool to bring up1 back")
            before = connects(tp1)
            send(4)
            assert connects(tp1) - before == 2 and connects(tp2) == 8  # round robin again
