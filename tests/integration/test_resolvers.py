"""The c_ares resolver against a real DNS server on loopback (dnsmasq), alone and in the daemon.

dnsmasq runs with a private configuration: no upstream servers, no /etc/hosts, ``test.example``
local (a name it does not know is NXDOMAIN, not forwarded), names from a hosts file it re-reads
on SIGHUP (so a record can change between two lookups), and a log of every query it answers
(so a test can tell the cache from the server).
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from arcus.config.resolver.c_ares import CAresResolverConfig
from arcus.errors import EscapeError
from arcus.resolve import build_resolver
from arcus.testing.clock import ManualClock
from arcus.testing.daemon import DaemonProcess
from tests.conftest import require_program
from tests.integration.conftest import run_curl

LOCAL_TTL = 1  # seconds dnsmasq gives the hosts-file names


def free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (dnsmasq takes both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port for dnsmasq")


class Dnsmasq:
    def __init__(self, workdir: Path) -> None:
        self.program = require_program("dnsmasq")
        self.workdir = workdir
        self.hosts = workdir / "hosts"
        self.log = workdir / "dnsmasq.log"
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set_hosts(self, lines: dict[str, str]) -> None:
        """Replace the hosts file (name -> address) and make dnsmasq read it again."""
        self.hosts.write_text("".join(f"{addr} {name}\n" for name, addr in lines.items()))
        self.hosts.chmod(0o644)
        if self.proc is not None:
            before = self.log.read_text(errors="replace").count(f"read {self.hosts}")
            self.proc.send_signal(signal.SIGHUP)
            self._wait(lambda text: text.count(f"read {self.hosts}") > before, "re-read its hosts file")

    def queries(self, name: str, expect: int) -> int:
        """How many questions about ``name`` reached dnsmasq, once ``expect`` are logged (or 2s passed).

        dnsmasq writes its log behind its answers: wait for what should be there, then count
        everything, so one question too many is seen too.
        """
        deadline = time.monotonic() + 2.0
        while True:
            text = self.log.read_text(errors="replace")
            count = sum(1 for line in text.splitlines() if "query[" in line and f" {name} from " in line)
            if count >= expect or time.monotonic() > deadline:
                return count
            time.sleep(0.02)

    def start(self, hosts: dict[str, str]) -> Dnsmasq:
        self.workdir.chmod(0o755)  # dnsmasq drops to its user before reading the hosts file
        self.set_hosts(hosts)
        self.port = free_udp_tcp_port()
        self.proc = subprocess.Popen(
            [
                self.program, "-k", "--no-resolv", "--no-hosts", f"--port={self.port}",
                "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=",
                f"--user={pwd.getpwuid(os.getuid()).pw_name}",
                "--local=/test.example/",
                f"--addn-hosts={self.hosts}", f"--local-ttl={LOCAL_TTL}",
                "--host-record=long.test.example,127.0.0.1,3600",
                "--host-record=app.test.example,127.0.0.1",
                "--cname=alias.test.example,app.test.example",
                "--log-queries", f"--log-facility={self.log}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait(lambda text: "started" in text, "start")
        return self

    def _wait(self, ready, what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"dnsmasq exited: {self.proc.stderr.read().decode(errors='replace')}")
            text = self.log.read_text(errors="replace") if self.log.exists() else ""
            if ready(text):
                return
            time.sleep(0.02)
        raise RuntimeError(f"dnsmasq did not {what} within {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def dnsmasq(tmp_path):
    server = Dnsmasq(tmp_path / "dns")
    server.workdir.mkdir()
    server.start({"moving.test.example": "127.0.0.2"})
    try:
        yield server
    finally:
        server.stop()


def resolver(server: str, clock=time.monotonic, **kw):
    kw.setdefault("each_timeout", 0.5)
    kw.setdefault("tries", 2)
    kw.setdefault("timeout", 5.0)
    return build_resolver(CAresResolverConfig(name="dns", type="c_ares", servers=(server,), **kw), clock=clock)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


# --- the resolver alone ---------------------------------------------------------------------------


def test_short_ttl_record_that_changes_is_seen_once_the_ttl_expires(dnsmasq):
    clock = ManualClock()
    r = resolver(dnsmasq.address, clock, min_ttl=0.1)

    async def go():
        first = await r.lookup("moving.test.example")
        dnsmasq.set_hosts({"moving.test.example": "127.0.0.3"})
        within = await r.lookup("moving.test.example")
        clock.advance(first.ttl)
        after = await r.lookup("moving.test.example")
        await r.close()
        return first, within, after

    first, within, after = run(go())
    assert first.addresses == ("127.0.0.2",) and 0 < first.ttl <= LOCAL_TTL and not first.cached
    assert within.addresses == ("127.0.0.2",) and within.cached  # the TTL had not run out: the old answer
    assert after.addresses == ("127.0.0.3",) and not after.cached
    assert dnsmasq.queries("moving.test.example", 4) == 4  # A and AAAA, twice: the cached lookup asked nothing


def test_long_ttl_is_cut_to_max_ttl_and_the_server_asked_again(dnsmasq):
    clock = ManualClock()
    r = resolver(dnsmasq.address, clock, min_ttl=0.1, max_ttl=0.5)

    async def go():
        long = await r.lookup("long.test.example")
        clock.advance(0.5)
        again = await r.lookup("long.test.example")
        alias = await r.lookup("alias.test.example")
        await r.close()
        return long, again, alias

    long, again, alias = run(go())
    assert long.addresses == ("127.0.0.1",) and long.ttl == 0.5  # the record says 3600
    assert again.addresses == ("127.0.0.1",) and not again.cached
    assert dnsmasq.queries("long.test.example", 4) == 4  # asked again: neither cache held it past max_ttl
    assert alias.addresses == ("127.0.0.1",)  # a CNAME chain


def test_nxdomain_is_negatively_cached_for_negative_ttl(dnsmasq):
    clock = ManualClock()
    r = resolver(dnsmasq.address, clock, negative_ttl=1.5, min_ttl=0.1)

    async def go():
        with pytest.raises(EscapeError) as first:
            await r.resolve("later.test.example")
        dnsmasq.set_hosts({"moving.test.example": "127.0.0.2", "later.test.example": "127.0.0.4"})
        with pytest.raises(EscapeError) as cached:
            await r.resolve("later.test.example")
        asked = dnsmasq.queries("later.test.example", 2)
        clock.advance(1.5)
        found = await r.resolve("later.test.example")
        await r.close()
        return first.value, cached.value, asked, found

    first, cached, asked, found = run(go())
    expected = f"cannot resolve later.test.example: no such domain (NXDOMAIN from {dnsmasq.address}, resolver dns)"
    assert (first.status, first.code, first.message) == (502, "resolve_failed", expected)
    assert cached.message == expected
    assert asked == 2  # A and AAAA once: the second failure came from the negative cache
    assert found == ["127.0.0.4"]


def test_a_server_that_never_answers_times_out_within_the_tries(tmp_path):
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound and never read
    silent.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{silent.getsockname()[1]}"
    r = resolver(address, each_timeout=0.3, tries=2, timeout=10.0)

    async def go():
        started = time.monotonic()
        with pytest.raises(EscapeError) as info:
            await r.resolve("app.test.example")
        elapsed = time.monotonic() - started
        await r.close()
        return elapsed, info.value

    try:
        elapsed, exc = run(go())
    finally:
        silent.close()
    assert elapsed < 4.0
    assert (exc.status, exc.code) == (502, "resolve_timeout")
    assert exc.message == (f"cannot resolve app.test.example: no answer from {address} after 3 tries (each up to 0.3s or 5 "
                           "times the server's usual answer time, at least 0.25s, doubled on every retry) (resolver dns)")


# --- the daemon -----------------------------------------------------------------------------------

PROFILE = """\
servers:
  - name: http
    type: http_proxy
    listen: 127.0.0.1:0
    escaper: direct
  - name: quiet
    type: http_proxy
    listen: 127.0.0.1:0
    escaper: nowhere
escapers:
  - name: direct
    type: direct_fixed
    resolver: dns
  - name: nowhere
    type: direct_fixed
    resolver: silent
resolvers:
  - name: dns
    type: c_ares
    servers: ["{dns}"]
    each_timeout: 500ms
    tries: 2
    min_ttl: 30s
  - name: silent
    type: c_ares
    servers: ["{silent}"]
    each_timeout: 300ms
    tries: 1
    timeout: 2s
timeouts:
  upstream_connect: 5s
  upstream_response: 10s
"""


def test_daemon_with_c_ares_serves_a_name_only_dnsmasq_knows(tmp_path, curl, origin, dnsmasq):
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    profile = PROFILE.replace("{dns}", dnsmasq.address).replace("{silent}", f"127.0.0.1:{silent.getsockname()[1]}")
    try:
        with DaemonProcess(tmp_path / "arcus", profile) as d:
            proxy = f"http://{d.proxy}"
            # curl cannot resolve app.test.example itself: only the proxy's resolver knows it
            r = run_curl(curl, "-x", proxy, f"http://app.test.example:{origin.port}/small")
            assert r.returncode == 0, r.stderr
            assert r.stdout == b"x" * 100
            assert origin.requests[-1].header("host") == f"app.test.example:{origin.port}"

            # the name is cached now: ctl resolve says so, and dnsmasq was asked once (A + AAAA)
            out = d.arcus("ctl", "resolve", "dns", "app.test.example")
            assert out.returncode == 0, out.stderr
            assert out.stdout.startswith("app.test.example via dns: 127.0.0.1 (from the cache, cached for ")
            shown = json.loads(d.arcus("ctl", "resolve", "dns", "app.test.example", "--json").stdout)
            assert shown["addresses"] == ["127.0.0.1"] and shown["cached"] is True and 20 < shown["ttl"] <= 30
            assert shown["type"] == "c_ares" and shown["stats"]["queries"] == 1
            assert dnsmasq.queries("app.test.example", 2) == 2

            # a name dnsmasq does not know: 502 with the reason, to curl and to ctl
            r = run_curl(curl, "-i", "-x", proxy, f"http://nx.test.example:{origin.port}/")
            head, _, body = r.stdout.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 502"), r.stdout
            assert b"X-Arcus-Error: resolve_failed" in head
            assert b"no such domain (NXDOMAIN" in body
            out = d.arcus("ctl", "resolve", "dns", "nx.test.example")
            assert out.returncode == 1
            assert "cannot resolve nx.test.example: no such domain (NXDOMAIN from 127.0.0.1:" in out.stderr

            # a resolver whose server never answers: a prompt 502, never a hang
            quiet = f"http://{d.listen('quiet')}"
            started = time.monotonic()
            r = run_curl(curl, "-i", "-x", quiet, f"http://app.test.example:{origin.port}/small")
            assert time.monotonic() - started < 5
            assert r.stdout.startswith(b"HTTP/1.1 502"), r.stdout
            assert b"X-Arcus-Error: resolve_timeout" in r.stdout

            # unknown resolver: not found, with the defined ones named
            out = d.arcus("ctl", "resolve", "nope", "app.test.example")
            assert out.returncode == 1 and 'no resolver "nope"' in out.stderr and "dns, silent" in out.stderr
    finally:
        silent.close()
