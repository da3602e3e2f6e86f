"""One definition of each command: the daemon's path and the no-daemon path give the same result.

Each case runs the same setup and then the same command twice: through the daemon (its real
handlers, its own store) and with no daemon (the arcus.ops function on the data dir's store). The
``--json`` outputs, or the error lines, must be equal; only what exists on one side by nature is
set aside (creation times, the daemon's live ``usage``, and whether explain read the served
policy or the stored one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from arcus.cli import user as user_cli
from arcus.testing.control import TenancyDaemon
from tests.unit.cli.harness import SHA256_CRYPT, cheap_hash, run

PW = "s3cret-horse"
SETUP: list[tuple[str, ...]] = [
    ("tenant", "add", "acme", "--source", "10.20.0.0/16"),
    ("user", "add", "acme", "alice", "--password-stdin"),
    ("policy", "add", "acme", "r1", "--deny-host", "*.casino.example"),
    ("policy", "add", "acme", "r2", "--allow", "--dest", "10.0.0.0/8"),
]
CASES: list[tuple[str, ...]] = [
    ("tenant", "add", "globex", "--name", "Globex", "--source", "10.30.0.0/16"),
    ("tenant", "add", "ACME"),
    ("tenant", "list"),
    ("tenant", "show", "acme"),
    ("tenant", "show", "Acme"),
    ("tenant", "set", "acme", "--lock-sources", "--rps", "20", "--auth", "required"),
    ("tenant", "set", "acme", "--intercept", "on"),
    ("tenant", "set", "acme", "--intercept", "maybe"),
    ("tenant", "suspend", "acme"),
    ("tenant", "resume", "acme"),
    ("tenant", "rm", "acme"),
    ("tenant", "rm", "default"),
    ("user", "add", "acme", "bob", "--password-stdin"),
    ("user", "add", "nosuch", "bob", "--password-stdin"),
    ("user", "list", "acme"),
    ("user", "show", "acme", "alice"),
    ("user", "rm", "acme", "alice"),
    ("user", "passwd", "acme", "alice", "--password-stdin"),
    ("user", "passwd", "acme", "ghost", "--password-stdin"),
    ("user", "block", "acme", "alice"),
    ("user", "unblock", "acme", "alice"),
    ("user", "set", "acme", "alice", "--max-conns", "4", "--expires", "2030-01-01"),
    ("user", "import", "acme", "{users}"),
    ("policy", "add", "acme", "r3", "--report", "--host", ".video.example", "--position", "1"),
    ("policy", "add", "acme", "r1", "--deny"),
    ("policy", "list", "acme"),
    ("policy", "rm", "acme", "r1"),
    ("policy", "move", "acme", "r2", "1"),
    ("policy", "explain", "acme", "http://www.casino.example/x", "--from", "10.20.1.7"),
    ("policy", "explain", "acme", "http://169.254.169.254/", "--from", "10.20.1.7"),
    ("policy", "explain", "acme", "https://10.1.2.3/", "--user", "alice"),
]
ASIDE = ("created_at", "usage", "policy_source")


@pytest.fixture(autouse=True)
def fast_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(user_cli, "hash_secret", cheap_hash)


def comparable(result: Result) -> Any:
    if result.exit_code != 0:
        assert result.exit_code == 1 and result.stdout == "", result.output
        return ("error", result.stderr.splitlines())
    return ("ok", strip(json.loads(result.stdout)))


def strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in ASIDE}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def play(sock: Path, data_dir: Path, case: tuple[str, ...], users: Path) -> Result:
    for step in SETUP:
        assert run(sock, data_dir, *step, input=PW + "\n").exit_code == 0
    args = [a.replace("{users}", str(users)) for a in case]
    return run(sock, data_dir, *args, "--json", input=PW + "\n")


@pytest.mark.parametrize("case", CASES, ids=lambda c: " ".join(c[:3]))
def test_daemon_and_store_give_the_same_result(daemon: TenancyDaemon, sock: Path, sock_dir: Path, data_dir: Path,
                                               tmp_path: Path, case: tuple[str, ...]) -> None:
    users = tmp_path / "users.json"
    users.write_text(json.dumps([{"name": "carol", "hash": SHA256_CRYPT}, {"name": "dave", "password": PW}]))
    via_daemon = play(sock, data_dir, case, users)
    assert daemon.calls and not data_dir.exists()  # the daemon did it all
    via_store = play(sock_dir / "nowhere.sock", data_dir, case, users)
    assert via_store.stderr.endswith("directly\n") or via_store.exit_code == 1
    assert comparable(via_daemon) == comparable(via_store)
    if case[1] in ("add", "set", "rm", "suspend", "resume", "passwd", "block", "unblock", "import", "move") \
            and via_daemon.exit_code == 0:
        assert daemon.refreshes == len(SETUP) + 1  # the change is in the Snapshot the daemon serves
