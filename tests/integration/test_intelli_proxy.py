"""intelli_proxy: HTTP and SOCKS on one port, told apart by the first byte, with real curl."""

from __future__ import annotations

import json
import socket
import time

from arcus.testing.daemon import DaemonProcess, render_profile
from arcus.testing.wait import wait_until
from tests.integration.conftest import run_curl

SERVER = "  - name: one\n    type: intelli_proxy\n    listen: 127.0.0.1:0\n    escaper: direct\n"


def test_one_port_serves_http_and_every_socks_version(tmp_path, curl, origin):
    profile = render_profile({"client_header": "1s"}).replace("servers:\n", "servers:\n" + SERVER, 1)
    with DaemonProcess(tmp_path / "a", profile) as d:
        port = d.listen("one")
        url = f"http://localhost:{origin.port}/bytes/100000"
        for args in (["-x", f"http://{port}"], ["-p", "-x", f"http://{port}"], ["--socks4", port],
                     ["--socks4a", port], ["--socks5", port], ["--socks5-hostname", port]):
            r = run_curl(curl, *args, url)
            assert r.returncode == 0, (args, r.stderr)
            assert r.stdout == b"b" * 100000, args
        stats = d.ctl("stats")["servers"]["one"]
        assert stats["requests"] == 6 and stats["conns_total"] == 6 and stats["errors"] == {}
        # the last client's close may still be on its way
        wait_until(lambda: d.ctl("stats")["servers"]["one"]["conns_active"] == 0, what="no active connection")
        # the HTTP side is the real http_proxy: its own error answers
        r = run_curl(curl, "-i", "-x", f"http://{port}", "http://127.0.0.1:1/")
        assert b"502" in r.stdout.split(b"\r\n", 1)[0]
        # a client that connects and says nothing is closed after client_header (1s)
        h, p = port.rsplit(":", 1)
        with socket.create_connection((h, int(p)), timeout=5) as s:
            timed_out = s.getsockname()[1]
            assert wait_until(lambda: [c["state"] for c in d.ctl("conns")], what="the connection") == ["sniffing"]
            started = time.monotonic()
            assert s.recv(10) == b""
            assert time.monotonic() - started < 3.5
        with socket.create_connection((h, int(p)), timeout=5) as s:  # and one that leaves without a word
            left = s.getsockname()[1]
        wait_until(lambda: d.ctl("conns") == [], what="no connection left")
        # both are accounted and recorded as any server's silent connections are: no error
        wait_until(lambda: d.ctl("stats")["servers"]["one"]["conns_total"] == 9, what="the silent connections counted")
        assert d.ctl("stats")["servers"]["one"]["errors"] == {"upstream_connect": 1}

        def records() -> dict:
            rows = map(json.loads, d.arcus("audit", "search", "--json").stdout.splitlines())
            return {e["client"]: e for e in rows if e["server"] == "one"}

        got = wait_until(lambda: (r := records()) and all(f"127.0.0.1:{cp}" in r for cp in (timed_out, left)) and r,
                         interval=0.3, what="a record of each silent connection")
        for cp in (timed_out, left):
            e = got[f"127.0.0.1:{cp}"]
            assert (e["kind"], e["host"], e["status"], e["error_code"], e["tenant"]) == ("connection", "", 0, None, "default"), e


def test_socks_keys_apply_on_the_socks_side(tmp_path, curl, origin):
    profile = render_profile().replace("servers:\n", "servers:\n" + SERVER + "    versions: [5]\n", 1)
    with DaemonProcess(tmp_path / "a", profile) as d:
        port = d.listen("one")
        assert run_curl(curl, "--socks4", port, origin.url("/small")).returncode != 0
        assert run_curl(curl, "--socks5", port, origin.url("/small")).stdout == b"x" * 100
        assert run_curl(curl, "-x", f"http://{port}", origin.url("/small")).stdout == b"x" * 100
        assert d.ctl("stats")["servers"]["one"]["errors"] == {"unsupported": 1}
