"""`arcus ctl ... --json` prints JSON on stdout whatever happens: every command with no daemon,
and an error reply from a daemon, as ``{"error": {"code", "message", "hint"?}}``."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from arcus.cli import ctl as ctl_cli
from arcus.cli.app import app
from arcus.errors import NotFound
from arcus.testing.control import ServerThread

# The arguments each ctl command needs besides --socket and --json; a new command must be added
# here (test_every_ctl_command_is_covered fails until it is).
ARGS = {
    "health": [],
    "stats": [],
    "events": [],
    "reload": [],
    "conns": [],
    "kill": ["7"],
    "shutdown": [],
    "resolve": ["system", "example.com"],
    "escapers": [],
    "float-set": ["egress", "192.0.2.1"],
}

NOT_RUNNING_HINT = "start it with `arcus serve`, or point --socket / ARCUS_SOCKET at the running daemon's socket"


@pytest.fixture
def sock() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="arcus-ctl-") as d:  # AF_UNIX paths are short
        yield Path(d) / "arcus.sock"


def test_every_ctl_command_is_covered() -> None:
    assert sorted(get_command(ctl_cli.app).commands) == sorted(ARGS)  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", sorted(ARGS))
def test_json_with_no_daemon_is_json_on_stdout_and_exit_3(sock: Path, command: str) -> None:
    result = CliRunner().invoke(app, ["ctl", command, *ARGS[command], "--socket", str(sock), "--json"])
    assert result.exit_code == 3, result.output
    out = json.loads(result.stdout)
    assert out["error"] == {
        "code": "unavailable",
        "message": f"arcus is not running: nothing answers on {sock}",
        "hint": NOT_RUNNING_HINT,
    }
    if command == "health":  # health keeps its own shape too
        assert out == {"status": "not_running", "socket": str(sock), "error": out["error"]}
    else:
        assert list(out) == ["error"]
    assert result.stderr.splitlines() == [f"error: arcus is not running: nothing answers on {sock}",
                                          f"hint: {NOT_RUNNING_HINT}"]


@pytest.mark.parametrize("command", sorted(ARGS))
def test_text_with_no_daemon_prints_nothing_on_stdout(sock: Path, command: str) -> None:
    result = CliRunner().invoke(app, ["ctl", command, *ARGS[command], "--socket", str(sock)])
    assert (result.exit_code, result.stdout) == (3, "")
    assert result.stderr.startswith("error: arcus is not running")


def test_an_error_reply_is_json_on_stdout_and_exit_1(sock: Path) -> None:
    async def kill(args: dict) -> dict:
        raise NotFound(f"no live connection {args['id']}", hint="`arcus ctl conns` lists them")

    with ServerThread(sock, {"kill": kill}):
        result = CliRunner().invoke(app, ["ctl", "kill", "7", "--socket", str(sock), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "error": {"code": "not_found", "message": "no live connection 7", "hint": "`arcus ctl conns` lists them"}
    }
    assert result.stderr.splitlines() == ["error: no live connection 7", "hint: `arcus ctl conns` lists them"]


def test_a_command_the_daemon_does_not_know_is_json_too(sock: Path) -> None:
    with ServerThread(sock, {}):
        result = CliRunner().invoke(app, ["ctl", "escapers", "--socket", str(sock), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == "unknown_command"
