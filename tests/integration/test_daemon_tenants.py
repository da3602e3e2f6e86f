"""Tenants as a user manages them: the real `arcus tenant` CLI against the running daemon, real
curl through the proxy, and the store written directly when no daemon runs."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from arcus.control.protocol import ControlError
from arcus.testing.daemon import DaemonProcess, render_profile
from tests.integration.conftest import run_curl

pytestmark = pytest.mark.integration

DUAL_STACK = render_profile().replace("listen: 127.0.0.1:0", 'listen: [127.0.0.1:0, "[::1]:0"]')


def fetch(curl: str, proxy: str, url: str, *extra: str) -> tuple[int, dict[str, str], bytes]:
    """One request through the proxy with curl: (status, headers lower-cased, body)."""
    r = run_curl(curl, "-i", "-x", f"http://{proxy}", *extra, url)
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def tenant_requests(daemon: DaemonProcess) -> dict[str, int]:
    return {name: c["requests"] for name, c in daemon.ctl("stats")["tenants"].items()}


def assert_one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 1, nothing on stdout, `error: ...` then `hint: ...` on stderr, no traceback."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith("error: "), r.stderr
    assert lines[1].startswith("hint: "), r.stderr
    assert "Traceback" not in r.stderr
    for needle in needles:
        assert needle in lines[0], r.stderr


# ---------------------------------------------------------------------------------- live


def test_tenant_add_counts_the_next_connection_under_it_without_restart(curl, daemon, origin):
    status, _, _ = fetch(curl, daemon.proxy, origin.url("/small"))
    assert status == 200
    assert tenant_requests(daemon) == {"default": 1}
    pid = daemon.ctl("health")["pid"]

    r = daemon.arcus(
        "tenant", "add", "acme", "--name", "Acme Corp", "--source", "127.0.0.0/8", "--source", "2001:db8::/48"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "added tenant acme (Acme Corp): 127.0.0.0/8, 2001:db8::/48\n"
    assert "directly" not in r.stderr  # it went through the daemon

    status, _, body = fetch(curl, daemon.proxy, origin.url("/small"))
    assert (status, body) == (200, b"x" * 100)
    stats = daemon.ctl("stats")
    assert stats["tenants"]["acme"]["requests"] == 1
    assert stats["tenants"]["acme"]["conns_total"] == 1
    assert stats["tenants"]["acme"]["bytes_down"] == 100
    assert stats["tenants"]["default"]["requests"] == 1  # unchanged: the first request stays where it was
    assert daemon.ctl("health")["pid"] == pid  # no restart


def test_ipv6_client_is_identified_by_its_v6_range(curl, tmp_path, origin):
    with DaemonProcess(tmp_path / "arcus", DUAL_STACK) as d:
        # the first health reply already lists both: the daemon answers only once it serves
        v6 = next(a for a in d.health["servers"][0]["listen"] if a.startswith("["))
        r = d.arcus("tenant", "add", "six", "--source", "::1/128")
        assert r.returncode == 0, r.stderr
        assert fetch(curl, v6, origin.url("/small"))[0] == 200
        assert fetch(curl, d.proxy, origin.url("/small"))[0] == 200  # IPv4 client: default
        assert tenant_requests(d) == {"six": 1, "default": 1}


def test_longest_prefix_wins(curl, daemon, origin):
    for args in (("wide", "--source", "127.0.0.0/8"), ("narrow", "--source", "127.0.0.1/32")):
        r = daemon.arcus("tenant", "add", *args)
        assert r.returncode == 0, r.stderr
    assert fetch(curl, daemon.proxy, origin.url("/small"))[0] == 200  # from 127.0.0.1
    assert fetch(curl, daemon.proxy, origin.url("/small"), "--interface", "127.0.0.2")[0] == 200
    assert fetch(curl, daemon.proxy, origin.url("/small"), "--interface", "127.0.0.3")[0] == 200
    assert tenant_requests(daemon) == {"narrow": 1, "wide": 2}


def test_suspend_refuses_with_403_resume_serves_rm_falls_back_to_default(curl, daemon, origin):
    assert daemon.arcus("tenant", "add", "acme", "--source", "127.0.0.1/32").returncode == 0

    r = daemon.arcus("tenant", "suspend", "acme")
    assert r.returncode == 0, r.stderr
    assert "suspended tenant acme" in r.stdout
    status, headers, body = fetch(curl, daemon.proxy, origin.url("/small"))
    assert status == 403
    assert headers["x-arcus-error"] == "tenant_suspended"
    assert b"tenant acme is suspended" in body
    assert headers["x-arcus-request-id"].encode() in body
    seen_by_origin = len(origin.requests)
    assert seen_by_origin == 0  # refused before anything left the box

    r = daemon.arcus("tenant", "resume", "acme")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "resumed tenant acme\n"
    assert fetch(curl, daemon.proxy, origin.url("/small"))[0] == 200

    r = daemon.arcus("tenant", "rm", "acme")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "removed tenant acme\n"
    assert fetch(curl, daemon.proxy, origin.url("/small"))[0] == 200

    stats = daemon.ctl("stats")["tenants"]
    assert stats["acme"]["requests"] == 2
    assert stats["acme"]["errors"] == {"tenant_suspended": 1}
    assert stats["default"]["requests"] == 1
    assert [t["name"] for t in daemon.ctl("tenant.list")] == ["default"]


def test_suspend_applies_to_new_connections_not_to_one_in_flight(curl, daemon, origin):
    """A connection keeps the Snapshot it was accepted with; the next one sees the change."""
    import threading

    assert daemon.arcus("tenant", "add", "acme", "--source", "127.0.0.0/8").returncode == 0
    result: dict[str, tuple] = {}
    slow = threading.Thread(target=lambda: result.setdefault("slow", fetch(curl, daemon.proxy, origin.url("/slow/1.5"))))
    slow.start()
    try:
        r = daemon.arcus("tenant", "suspend", "acme")
        assert r.returncode == 0, r.stderr
        assert fetch(curl, daemon.proxy, origin.url("/small"))[0] == 403
    finally:
        slow.join(30)
    assert result["slow"][0] == 200


def test_list_and_show_json_shapes(daemon, curl, origin):
    assert daemon.arcus("tenant", "add", "acme", "--name", "Acme Corp", "--source", "127.0.0.0/8").returncode == 0
    assert daemon.arcus("tenant", "add", "beta", "--source", "2001:DB8:0:0::/64").returncode == 0
    assert fetch(curl, daemon.proxy, origin.url("/small"))[0] == 200

    r = daemon.arcus("tenant", "list", "--json")
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert [t["name"] for t in listed] == ["acme", "beta", "default"]
    for t in listed:
        assert set(t) == {
            "name", "display_name", "sources", "suspended", "created_at",
            "auth", "auth_exempt", "realm", "default_action", "block_page",
            "max_conns", "rps", "bandwidth", "log_query", "proxy_hosts", "lock_sources",
            "icap_service", "icap_fail", "icap_sample", "icap_max_body", "icap_oversize", "intercept",
        }
        assert t["created_at"].endswith("Z")
    acme = listed[0]
    assert acme["display_name"] == "Acme Corp"
    assert acme["sources"] == ["127.0.0.0/8"]
    assert acme["suspended"] is False
    assert listed[1]["sources"] == ["2001:db8::/64"]  # normalised

    r = daemon.arcus("tenant", "show", "acme", "--json")
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    usage = shown.pop("usage")
    assert shown.pop("users", 0) == 0 and shown.pop("rules", 0) == 0
    assert shown == acme
    assert usage["requests"] == 1
    assert usage["conns_total"] == 1
    assert usage["conns_active"] == 0
    assert usage["bytes_down"] == 100
    assert usage["errors"] == {}

    r = daemon.arcus("tenant", "list")
    assert r.returncode == 0, r.stderr
    assert "3 tenants" in r.stdout
    for needle in ("acme", "Acme Corp", "127.0.0.0/8", "beta", "2001:db8::/64", "default"):
        assert needle in r.stdout
    r = daemon.arcus("tenant", "show", "acme")
    assert r.returncode == 0, r.stderr
    assert "Acme Corp" in r.stdout and "127.0.0.0/8" in r.stdout and "usage" in r.stdout


# ---------------------------------------------------------------------------------- errors


ERROR_CASES = [
    (("tenant", "add", "acme", "--source", "10.9.0.0/16"), ("acme", "already exists")),
    (("tenant", "add", "other", "--source", "10.1.0.0/16"), ("10.1.0.0/16", "acme")),
    (("tenant", "add", "other", "--source", "10.1.0.0/16", "--source", "10.1.0.0/16"), ("10.1.0.0/16",)),
    (("tenant", "add", "x", "--source", "10.0.0.300/8"), ("10.0.0.300/8",)),
    (("tenant", "add", "x", "--source", "not-a-range"), ("not-a-range",)),
    (("tenant", "add", "bad name!"), ("bad name!",)),
    (("tenant", "add", "x" * 64), ("x" * 64,)),
    (("tenant", "show", "nope"), ("nope", "does not exist")),
    (("tenant", "rm", "nope"), ("nope", "does not exist")),
    (("tenant", "suspend", "nope"), ("nope", "does not exist")),
    (("tenant", "resume", "nope"), ("nope", "does not exist")),
    (("tenant", "rm", "default"), ("default",)),
]


def test_operator_errors_are_one_line_with_a_hint_and_change_nothing(daemon):
    assert daemon.arcus("tenant", "add", "acme", "--source", "10.1.0.0/16").returncode == 0
    before = daemon.ctl("tenant.list")
    generation = daemon.ctl("health")["generation"]
    with ThreadPoolExecutor(max_workers=3) as pool:  # independent, and the CLI is slow to start
        results = list(pool.map(lambda case: daemon.arcus(*case[0]), ERROR_CASES))
    for (_, needles), r in zip(ERROR_CASES, results):
        assert_one_line_error(r, *needles)
    # the daemon kept serving and neither the store nor the Snapshot changed
    assert daemon.ctl("tenant.list") == before
    assert daemon.ctl("health")["generation"] == generation


DAEMON_SIDE_BAD_ARGS = [
    {"name": "x", "sources": ["10.0.0.300/8"]},
    {"name": "x", "sources": "10.0.0.0/8"},
    {"name": "x", "sources": [1]},
    {"name": "bad name"},
    {"name": 7},
    {},
    {"name": "x", "display_name": 3},
]


def test_daemon_validates_tenant_add_itself(daemon):
    """Clients other than our CLI (the TUI, scripts with socat) get the same checks."""
    for args in DAEMON_SIDE_BAD_ARGS:
        with pytest.raises(ControlError) as info:
            daemon.ctl("tenant.add", args)
        assert info.value.code in ("invalid", "bad_request"), (args, info.value)
    for cmd in ("tenant.show", "tenant.rm", "tenant.suspend", "tenant.resume"):
        with pytest.raises(ControlError) as info:
            daemon.ctl(cmd, {"name": "nope"})
        assert info.value.code == "not_found", (cmd, info.value)
    assert [t["name"] for t in daemon.ctl("tenant.list")] == ["default"]


# ---------------------------------------------------------------------------------- no daemon


def test_without_a_daemon_the_cli_writes_the_store_and_a_daemon_started_later_uses_it(curl, tmp_path, origin):
    d = DaemonProcess(tmp_path / "arcus")  # not started: nothing listens on its socket
    r = d.arcus("tenant", "add", "acme", "--name", "Acme Corp", "--source", "127.0.0.0/8")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "added tenant acme (Acme Corp): 127.0.0.0/8\n"
    assert r.stderr.startswith("note: no daemon running at ")
    assert f"changed the store at {d.data_dir / 'arcus.db'} directly" in r.stderr
    assert (d.data_dir / "arcus.db").stat().st_mode & 0o777 == 0o600

    r = d.arcus("tenant", "list", "--json")
    assert r.returncode == 0, r.stderr
    assert [t["name"] for t in json.loads(r.stdout)] == ["acme", "default"]  # stdout stays pure JSON
    assert "read the store" in r.stderr

    assert d.arcus("tenant", "add", "beta", "--source", "10.2.0.0/16").returncode == 0
    assert d.arcus("tenant", "suspend", "beta").returncode == 0
    assert json.loads(d.arcus("tenant", "show", "beta", "--json").stdout)["suspended"] is True
    r = d.arcus("tenant", "rm", "beta")
    assert r.returncode == 0, r.stderr
    assert "directly" in r.stderr

    r = d.arcus("tenant", "add", "acme")
    assert_one_line_error(r, "acme", "already exists")
    r = d.arcus("tenant", "show", "nope")
    assert_one_line_error(r, "nope")

    with d:
        assert fetch(curl, d.proxy, origin.url("/small"))[0] == 200
        assert tenant_requests(d) == {"acme": 1}
        shown = d.ctl("tenant.show", {"name": "acme"})
        assert shown["display_name"] == "Acme Corp"


def test_a_data_dir_other_than_the_daemons_store_is_named_not_silently_ignored(daemon, tmp_path):
    """`--data-dir` names one store while a daemon with another answers on the socket: the
    command goes to that daemon (as always), and stderr says whose store it changed."""
    other = tmp_path / "elsewhere"
    r = daemon.arcus("tenant", "add", "acme", "--data-dir", str(other))
    assert r.returncode == 0, r.stderr
    assert f"keeps its store at {daemon.data_dir}" in r.stderr and str(other) in r.stderr
    assert not other.exists()  # nothing was written there
    assert "acme" in daemon.arcus("tenant", "list").stdout
    r = daemon.arcus("tenant", "add", "globex", "--data-dir", str(daemon.data_dir))  # the daemon's own: no note
    assert r.returncode == 0 and r.stderr == "", r.stderr
