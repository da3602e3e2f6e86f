"""Progress bars of long operations, run as a person runs them: `arcus` in a real pseudo-terminal
(a bar on stderr), and with stdout piped or redirected (no bar, only the closing summary)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arcus.cli import audit as audit_cli
from tests.unit.audit.factory import event, fill

ESCAPES = ("\x1b[?25l", "\x1b[2K")  # rich's live display: cursor hidden, lines cleared


def arcus(args: list[str], *, stdout_tty: bool, cwd: Path, timeout: float = 60.0) -> tuple[int, str, bytes]:
    """Run ``python -m arcus ARGS`` with stderr on a pty, stdout on the same pty or a pipe;
    return (exit code, what the terminal showed, what stdout's pipe got)."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    env.update(TERM="xterm-256color", COLUMNS="120", LINES="40")
    proc = subprocess.Popen(
        [sys.executable, "-m", "arcus", *args],
        stdin=subprocess.DEVNULL, stdout=slave if stdout_tty else subprocess.PIPE, stderr=slave, cwd=cwd, env=env,
    )
    os.close(slave)
    shown, piped = bytearray(), bytearray()
    sinks = {master: shown}
    if proc.stdout is not None:
        sinks[proc.stdout.fileno()] = piped
    deadline = time.monotonic() + timeout
    try:
        while sinks and time.monotonic() < deadline:  # both read at once: a full pipe must not stall the child
            ready, _, _ = select.select(list(sinks), [], [], 0.2)
            for fd in ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO on the pty: every writer has closed it
                    chunk = b""
                if chunk:
                    sinks[fd] += chunk
                else:
                    del sinks[fd]
            if not ready and proc.poll() is not None and master not in sinks:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, shown.decode("utf-8", "replace"), bytes(piped)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An audit log with more events than the export's progress threshold."""
    data = tmp_path_factory.mktemp("big")
    n = audit_cli.PROGRESS_THRESHOLD + 2000
    fill(data / "audit.db", (event(i) for i in range(n)))
    return data


def test_export_to_a_file_on_a_terminal_shows_a_bar(big: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.csv"
    n = audit_cli.PROGRESS_THRESHOLD + 2000
    code, shown, _ = arcus(["audit", "export", "--format", "csv", "-o", str(out), "--data-dir", str(big)],
                           stdout_tty=True, cwd=tmp_path)
    assert code == 0, shown
    assert "exporting" in shown and f"{n}/{n}" in shown
    assert any(e in shown for e in ESCAPES)
    assert f"exported {n} events to {out}" in shown
    assert len(out.read_text().splitlines()) == n + 1


def test_export_with_stdout_piped_draws_no_bar(big: Path, tmp_path: Path) -> None:
    n = audit_cli.PROGRESS_THRESHOLD + 2000
    code, shown, piped = arcus(["audit", "export", "--data-dir", str(big)], stdout_tty=False, cwd=tmp_path)
    assert code == 0, shown
    assert shown.strip() == f"exported {n} events"  # stderr is a terminal; stdout is not: the summary only
    lines = piped.splitlines()
    assert len(lines) == n and json.loads(lines[-1])["request_id"] == f"req-{n - 1}"


def test_export_to_stdout_on_a_terminal_draws_no_bar_between_the_rows(big: Path, tmp_path: Path) -> None:
    code, shown, _ = arcus(["audit", "export", "--limit", "10001", "--data-dir", str(big)], stdout_tty=True,
                           cwd=tmp_path)
    assert code == 0
    assert "exporting" not in shown and not any(e in shown for e in ESCAPES)


def test_user_import_on_a_terminal_shows_a_bar_and_none_when_piped(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    users.write_text(json.dumps([{"name": f"u{i}", "password": f"pw-{i}-correct horse"} for i in range(3)]))
    base = ["--data-dir", str(tmp_path / "data"), "--socket", str(tmp_path / "none.sock")]
    code, shown, _ = arcus(["tenant", "add", "acme", *base], stdout_tty=False, cwd=tmp_path)
    assert code == 0, shown
    code, shown, _ = arcus(["user", "import", "acme", str(users), *base], stdout_tty=True, cwd=tmp_path)
    assert code == 0, shown
    assert "hashing passwords" in shown and "imported 3 users into tenant acme" in shown
    users.write_text(json.dumps([{"name": f"v{i}", "password": f"pw-{i}-correct horse"} for i in range(3)]))
    code, shown, piped = arcus(["user", "import", "acme", str(users), *base], stdout_tty=False, cwd=tmp_path)
    assert code == 0, shown
    assert "hashing passwords" not in shown and not any(e in shown for e in ESCAPES)
    assert b"imported 3 users into tenant acme" in piped
