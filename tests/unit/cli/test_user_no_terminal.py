"""`arcus user add/passwd/import` as a script runs them: the real entry point in a process of its
own, with no controlling terminal (a new session) and stdin not a tty. The tenant (user) is looked
up before a password is asked for or hashed, and a missing password is one line saying how to
give one, never Python's GetPassWarning or a bare "Aborted!"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from arcus.store import Store

HINT = "hint: pipe it in with --password-stdin: printf '%s\\n' \"$PW\" | arcus {} --password-stdin"


def arcus(sock: Path, data_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "arcus", *args, "--socket", str(sock), "--data-dir", str(data_dir)],
        input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL, capture_output=True, text=True,
        timeout=60, start_new_session=True, env={**os.environ, "ARCUS_DEBUG": ""},
    )


def test_no_terminal(sock: Path, data_dir: Path, tmp_path: Path) -> None:
    with Store.open(data_dir / "arcus.db") as store:
        store.add_tenant("acme")
    r = arcus(sock, data_dir, "user", "add", "nosuch", "alice")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr.splitlines() == ["error: tenant 'nosuch' does not exist", "hint: see `arcus tenant list`"]

    r = arcus(sock, data_dir, "user", "add", "acme", "alice")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr.splitlines() == ["error: no terminal to ask the password on", HINT.format("user add acme alice")]
    assert "Warning" not in r.stderr and "Aborted" not in r.stderr

    r = arcus(sock, data_dir, "user", "add", "acme", "alice", "--password-stdin", "--json", stdin="pw-1\n")
    assert r.returncode == 0 and json.loads(r.stdout)["name"] == "alice"

    r = arcus(sock, data_dir, "user", "passwd", "acme", "ghost")
    assert r.stderr.splitlines() == ["error: user 'ghost' of tenant 'acme' does not exist",
                                     "hint: see `arcus user list acme`"]
    r = arcus(sock, data_dir, "user", "passwd", "acme", "alice")
    assert r.stderr.splitlines() == ["error: no terminal to ask the password on",
                                     HINT.format("user passwd acme alice")]

    users = tmp_path / "users.json"
    users.write_text(json.dumps([{"name": "bob", "password": "pw-2"}]))
    r = arcus(sock, data_dir, "user", "import", "nosuch", str(users))
    assert r.stderr.splitlines() == ["error: tenant 'nosuch' does not exist", "hint: see `arcus tenant list`"]
    with Store.open(data_dir / "arcus.db") as store:
        assert [u.name for u in store.list_users("acme")] == ["alice"]
