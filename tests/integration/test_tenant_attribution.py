"""Issue 10 #3 and #5 through the real daemon: a connection that changes tenant takes a slot
there, and every record names the tenant and user it belongs to (refusals included)."""

from __future__ import annotations

import base64
import json
import socket
import time

import pytest

from arcus.testing.daemon import DaemonProcess, render_profile
from tests.integration.test_tenancy import add_tenant, add_user

pytestmark = pytest.mark.integration

TRUSTED = "127.0.0.2"


def _daemon(tmp_path) -> DaemonProcess:
    profile = render_profile().replace("    escaper: direct\n", f"    escaper: direct\n    trusted_proxies: [{TRUSTED}/32]\n", 1)
    return DaemonProcess(tmp_path / "arcus", profile)


def _request(origin, *headers: str) -> bytes:
    lines = [f"GET {origin.url('/small')} HTTP/1.1", f"Host: {origin.host}:{origin.port}", *headers, "", ""]
    return "\r\n".join(lines).encode()


def _basic(user: str, password: str) -> str:
    return "Proxy-Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class KeptAlive:
    """A client connection that stays open between requests (one response read per request)."""

    def __init__(self, proxy: str, source: str = "127.0.0.1") -> None:
        host, port = proxy.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0))
        self.buf = b""

    def ask(self, payload: bytes) -> tuple[int, bytes]:
        self.sock.sendall(payload)
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return 0, self.buf
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        length = next((int(v) for k, _, v in (h.partition(b": ") for h in head.split(b"\r\n")) if k.lower() == b"content-length"), 0)
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        self.buf = rest[length:]
        return int(head.split(b" ", 2)[1]), head

    def close(self) -> None:
        self.sock.close()


def _records(d: DaemonProcess, tenant: str, want: int) -> list[dict]:
    deadline = time.monotonic() + 10
    rows: list[dict] = []
    while time.monotonic() < deadline:
        r = d.arcus("audit", "search", "--tenant", tenant, "--json")
        rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        rows = [x for x in rows if x.get("kind") == "request"]
        if len(rows) >= want:
            break
        time.sleep(0.2)
    return rows


def test_a_tenant_chosen_by_credentials_or_x_tenant_id_takes_a_connection_slot_there(tmp_path, origin):
    """Issue 10 #3: on main, globex's max_conns held only for clients from globex's range."""
    with _daemon(tmp_path) as d:
        add_tenant(d, "acme", "127.0.0.1/32")
        add_tenant(d, "globex", "10.2.0.0/16", auth="optional", max_conns=2)
        add_user(d, "globex", "bob", "bob-pass")
        by_creds = [KeptAlive(d.proxy) for _ in range(3)]
        codes = [c.ask(_request(origin, _basic("bob@globex", "bob-pass"))) for c in by_creds]
        assert [s for s, _ in codes] == [200, 200, 503], codes
        assert b"X-Arcus-Error: tenant_conn_limit" in codes[2][1]
        # the third connection is still acme's: without credentials it is served
        assert by_creds[2].ask(_request(origin))[0] == 200
        # the slot moves back when the connection's requests do
        assert by_creds[0].ask(_request(origin))[0] == 200
        by_header = KeptAlive(d.proxy, TRUSTED)
        assert by_header.ask(_request(origin, "X-Tenant-ID: globex"))[0] == 200
        extra = KeptAlive(d.proxy, TRUSTED)
        status, head = extra.ask(_request(origin, "X-Tenant-ID: globex"))
        assert status == 503 and b"tenant_conn_limit" in head
        for c in (*by_creds, by_header, extra):
            c.close()


def test_records_name_the_tenant_and_user_of_each_refused_request(tmp_path, origin):
    """Issue 10 #5: on main, a 407 after bob's request was recorded as user bob, and a 407 for
    a tenant named by X-Tenant-ID as tenant default."""
    with _daemon(tmp_path) as d:
        add_tenant(d, "acme", "127.0.0.1/32", auth="required")
        add_tenant(d, "globex", "10.2.0.0/16", auth="optional")
        add_tenant(d, "initech", "10.3.0.0/16", auth="required")
        add_user(d, "globex", "bob", "bob-pass")
        c = KeptAlive(d.proxy)
        assert c.ask(_request(origin, _basic("bob@globex", "bob-pass")))[0] == 200
        assert c.ask(_request(origin))[0] == 407
        c.close()
        rows = _records(d, "acme", 1)
        assert [(r["status"], r["user"]) for r in rows] == [(407, None)], rows
        t = KeptAlive(d.proxy, TRUSTED)
        assert t.ask(_request(origin, "X-Tenant-ID: initech"))[0] == 407
        t.close()
        rows = _records(d, "initech", 1)
        assert [(r["status"], r["error_code"]) for r in rows] == [(407, "auth_required")], rows
