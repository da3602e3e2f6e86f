"""`arcus ctl`: each command against a real control server with fake daemon handlers, and without one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from arcus.cli.app import app
from arcus.control import protocol as p
from arcus.control.server import Handler
from arcus.errors import NotFound, OperatorError
from arcus.testing.control import ServerThread
from tests.unit.cli.harness import invoke

COUNTERS_EMPTY = {"conns_total": 0, "conns_active": 0, "requests": 0, "bytes_up": 0, "bytes_down": 0, "errors": {}}

HEALTH = {
    "status": "ok",
    "pid": 4242,
    "version": "0.1.0",
    "uptime": 3725.5,
    "profile": "<embedded:default>",
    "generation": 4,
    "servers": [{"name": "http", "type": "http_proxy", "listen": ["127.0.0.1:3128", "[::1]:3128"]}],
}

STATS = {
    "servers": {
        "http": {"conns_total": 120, "conns_active": 3, "requests": 987, "bytes_up": 1536, "bytes_down": 5 * 1024 * 1024,
                 "errors": {"upstream_connect": 2, "client_bad_request": 1, "denied": 0}},
        "socks": COUNTERS_EMPTY,
    },
    "tenants": {
        "acme": {"conns_total": 100, "conns_active": 2, "requests": 900, "bytes_up": 1024, "bytes_down": 4096,
                 "errors": {}},
        "default": COUNTERS_EMPTY,
    },
    "generation": 4,
    "uptime": 12.0,
}

CONNS = [
    {"id": 7, "server": "http", "tenant": "acme", "client": "10.20.1.5:51234", "target": "example.com:443",
     "age": 75.2, "bytes_up": 2048, "bytes_down": 1 << 20, "state": "tunnel"},
    {"id": 9, "server": "http", "tenant": "default", "client": "127.0.0.1:40000", "target": "",
     "age": 0.4, "bytes_up": 0, "bytes_down": 0, "state": "reading_request"},
]


class FakeDaemon:
    """The daemon's control commands with canned answers, recording what was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.conns: list[dict[str, Any]] = list(CONNS)
        self.reload_error: OperatorError | None = None

    def handlers(self) -> dict[str, Handler]:
        def record(cmd: str, result: Any) -> Handler:
            async def handler(args: dict[str, Any]) -> Any:
                self.calls.append((cmd, args))
                return result() if callable(result) else result

            return handler

        async def reload(args: dict[str, Any]) -> Any:
            self.calls.append(("reload", args))
            if self.reload_error is not None:
                raise self.reload_error
            return {"generation": 5}

        async def kill(args: dict[str, Any]) -> Any:
            self.calls.append(("kill", args))
            conn_id = p.arg(args, "id", int)
            if not any(c["id"] == conn_id for c in self.conns):
                raise NotFound(f"no live connection {conn_id}", hint="see `arcus ctl conns`")
            return {"killed": conn_id}

        async def shutdown(args: dict[str, Any]) -> Any:
            self.calls.append(("shutdown", args))
            graceful = p.arg(args, "graceful", bool, False)
            return {"shutting_down": True, "graceful": graceful}

        return {
            "health": record("health", HEALTH),
            "stats": record("stats", STATS),
            "conns": record("conns", lambda: self.conns),
            "reload": reload,
            "kill": kill,
            "shutdown": shutdown,
        }


@pytest.fixture
def fake() -> FakeDaemon:
    return FakeDaemon()


@pytest.fixture
def daemon(sock: Path, fake: FakeDaemon) -> Iterator[FakeDaemon]:
    with ServerThread(sock, fake.handlers()):
        yield fake


def ctl(sock: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return invoke("ctl", *args, "--socket", str(sock), env=env)


# -- no daemon --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["health"], ["stats"], ["reload"], ["conns"], ["kill", "7"], ["shutdown"], ["shutdown", "--graceful"]],
)
def test_not_running_exits_3_with_one_line_and_hint(sock: Path, args: list[str]) -> None:
    result = ctl(sock, *args)
    assert result.exit_code == 3
    assert result.stderr.splitlines() == [
        f"error: arcus is not running: nothing answers on {sock}",
        "hint: start it with `arcus serve`, or point --socket / ARCUS_SOCKET at the running daemon's socket",
    ]
    assert result.stdout == ""


def test_health_json_when_not_running_says_so_on_stdout(sock: Path) -> None:
    result = ctl(sock, "health", "--json")
    assert result.exit_code == 3
    out = json.loads(result.stdout)  # --json with no daemon: test_ctl_json.py
    assert (out["status"], out["socket"], out["error"]["code"]) == ("not_running", str(sock), "unavailable")
    assert "not running" in result.stderr


def test_stale_socket_file_is_not_running(sock: Path) -> None:
    import socket as socketlib

    dead = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    dead.bind(str(sock))
    dead.close()
    assert ctl(sock, "health").exit_code == 3


def test_entry_point_boundary_also_exits_3(sock: Path) -> None:
    """The installed `arcus` goes through app.main(), not CliRunner: same one line, same code."""
    proc = subprocess.run(
        [sys.executable, "-m", "arcus", "ctl", "health", "--socket", str(sock)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "ARCUS_DEBUG": ""},
    )
    assert proc.returncode == 3
    assert proc.stderr.splitlines()[0] == f"error: arcus is not running: nothing answers on {sock}"
    assert "Traceback" not in proc.stderr


# -- health -----------------------------------------------------------------------------


def test_health(daemon: FakeDaemon, sock: Path) -> None:
    result = ctl(sock, "health")
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first == "arcus 0.1.0 is running: pid 4242, up 1h02m, profile <embedded:default>, generation 4"
    assert "http_proxy" in result.stdout and "127.0.0.1:3128, [::1]:3128" in result.stdout
    assert result.stderr == ""


def test_health_json(daemon: FakeDaemon, sock: Path) -> None:
    result = ctl(sock, "health", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == HEALTH


def test_socket_from_environment(daemon: FakeDaemon, sock: Path) -> None:
    result = CliRunner().invoke(app, ["ctl", "health", "--json"], env={"ARCUS_SOCKET": str(sock)})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["pid"] == 4242


# -- stats ------------------------------------------------------------------------------


def test_stats_json_is_the_daemon_reply(daemon: FakeDaemon, sock: Path) -> None:
    result = ctl(sock, "stats", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == STATS


def test_stats_tables(daemon: FakeDaemon, sock: Path) -> None:
    result = ctl(sock, "stats")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "generation 4, up 12s"
    row = next(line for line in lines if "│ http " in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells == ["http", "120", "3", "987", "1.5 KiB", "5.0 MiB", "client_bad_request=1 upstream_connect=2"]
    acme = next(line for line in lines if "│ acme " in line)
    assert [c.strip() for c in acme.strip("│ ").split("│")] == ["acme", "100", "2", "900", "1.0 KiB", "4.0 KiB", "-"]
    servers_at = lines.index(next(line for line in lines if line.strip() == "servers"))
    tenants_at = lines.index(next(line for line in lines if line.strip() == "tenants"))
    assert servers_at < lines.index(row) < tenants_at < lines.index(acme)


# -- reload -----------------------------------------------------------------------------


def test_reload(daemon: FakeDaemon, sock: Path) -> None:
    result = ctl(sock, "reload")
    assert result.exit_code == 0
    assert result.stdout == "reloaded: now serving generation 5\n"
    assert json.loads(ctl(sock, "reload", "--json").stdout) == {"generation": 5}


def test_reload_refused_prints_every_file_line(daemon: FakeDaemon, sock: Path) -> None:
    daemon.reload_error = OperatorError(
        "profile refused, still serving the previous one:\nedge.yaml:4: unknown key 'lisen'\nedge.yaml:9: bad port",
        code="invalid",
        hint="fix the profile and reload again",
    )
    result = ctl(sock, "reload")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: profile refused, still serving the previous one:",
        "  edge.yaml:4: unknown key 'lisen'",
        "  edge.yaml:9: bad port",
        "hint: fix the profile and reload again",
    ]


# -- conns and kill ---------------------------------------------------------------------


def test_conns_table(daemon: FakeDaemon, sock: Path) -> None:
    result = ctl(sock, "conns")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].strip() == "2 live connections"
    row = next(line for line in lines if "10.20.1.5:51234" in line)
    assert [c.strip() for c in row.strip("│ ").split("│")] == [
        "7", "http", "acme", "10.20.1.5:51234", "example.com:443", "1m15s", "2.0 KiB", "1.0 MiB", "tunnel"
    ]
    row = next(line for line in lines if "127.0.0.1:40000" in line)
    assert [c.strip() for c in row.strip("│ ").split("│")][4:6] == ["-", "0.4s"]


def test_conns_json_and_empty(daemon: FakeDaemon, sock: Path) -> None:
    assert json.loads(ctl(sock, "conns", "--json").stdout) == CONNS
    daemon.conns = []
    assert ctl(sock, "conns").stdout == "no live connections\n"
    assert json.loads(ctl(sock, "conns", "--json").stdout) == []


def test_kill(daemon: FakeDaemon, sock: Path) -> None:
    result = ctl(sock, "kill", "7")
    assert result.exit_code == 0
    assert result.stdout == "killed connection 7\n"
    assert daemon.calls[-1] == ("kill", {"id": 7})
    assert json.loads(ctl(sock, "kill", "9", "--json").stdout) == {"killed": 9}


def test_kill_unknown_connection(daemon: FakeDaemon, sock: Path) -> None:
    result = ctl(sock, "kill", "99")
    assert result.exit_code == 1
    assert result.stderr == "error: no live connection 99\nhint: see `arcus ctl conns`\n"
    assert result.stdout == ""


def test_kill_needs_a_number(daemon: FakeDaemon, sock: Path) -> None:
    result = ctl(sock, "kill", "seven")
    assert result.exit_code == 2  # usage error, before anything is sent
    assert [c for c, _ in daemon.calls] == []


# -- shutdown ---------------------------------------------------------------------------


def test_shutdown(daemon: FakeDaemon, sock: Path) -> None:
    result = ctl(sock, "shutdown")
    assert result.exit_code == 0
    assert result.stdout == "daemon is shutting down now\n"
    assert daemon.calls[-1] == ("shutdown", {"graceful": False})


def test_shutdown_graceful(daemon: FakeDaemon, sock: Path) -> None:
    result = ctl(sock, "shutdown", "--graceful", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"shutting_down": True, "graceful": True}
    assert daemon.calls[-1] == ("shutdown", {"graceful": True})
    assert ctl(sock, "shutdown", "--graceful").stdout == "daemon is shutting down gracefully: live connections may finish\n"


# -- refusals ---------------------------------------------------------------------------


def test_forbidden_peer(sock: Path, fake: FakeDaemon) -> None:
    with ServerThread(sock, fake.handlers(), allow_uids={os.getuid() + 4242}):
        result = ctl(sock, "health")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: uid {os.getuid()} may not control this daemon",
        "hint: run the command as the daemon's user or as root",
    ]
    assert fake.calls == []


def test_daemon_without_the_command(sock: Path) -> None:
    with ServerThread(sock, {}):
        result = ctl(sock, "conns")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: unknown command 'conns'",
        "hint: the `help` command lists them all",
    ]


def test_health_says_when_draining(sock: Path) -> None:
    async def health(args: dict[str, Any]) -> Any:
        return {**HEALTH, "status": "draining", "servers": []}

    with ServerThread(sock, {"health": health}):
        result = ctl(sock, "health")
    assert result.exit_code == 0
    assert result.stdout.startswith("arcus 0.1.0 is running (draining): pid 4242,")


def test_escaper_state_reads_as_text_not_python_reprs() -> None:
    from arcus.cli.ctl import _state_text

    members = [{"escaper": "a", "state": "up", "weight": 1, "failures": 0},
               {"escaper": "b", "state": "down", "weight": 1, "failures": 3, "last_error": "connection refused"}]
    text = _state_text(members)
    assert text == "a (state up weight 1), b (state down weight 1 failures 3 last_error connection refused)"
    assert "{" not in text and "'" not in text
    assert _state_text(["127.0.0.1", "::1"]) == "127.0.0.1, ::1" and _state_text([]) == "none" and _state_text(None) == "-"
