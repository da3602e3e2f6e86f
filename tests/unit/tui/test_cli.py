"""`arcus tui` on the command line: what it says when it cannot start, and what it loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from arcus.cli.app import app

ROOT = Path(__file__).resolve().parents[3]


def test_no_wait_with_no_daemon_is_one_line_and_exit_3(sock):
    result = CliRunner().invoke(app, ["tui", "--no-wait", "--socket", str(sock)])
    assert result.exit_code == 3, result.output
    assert result.stderr.splitlines()[0] == f"error: arcus is not running: nothing answers on {sock}"
    assert result.stderr.splitlines()[1].startswith("hint: start it with `arcus serve`")
    assert "Traceback" not in result.output


def test_without_a_terminal_it_says_so(sock):
    result = CliRunner().invoke(app, ["tui", "--socket", str(sock)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: arcus tui needs a terminal",
        "hint: for scripts, use `arcus ctl stats --json` or `arcus ctl stats --watch --json`",
    ]


def test_the_cli_loads_textual_only_for_the_dashboard():
    """`arcus ctl stats` must not pay for Textual's import (the binary's start-up time)."""
    probe = "import json, sys; import arcus.cli.app; print(json.dumps(sorted(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert not [m for m in json.loads(r.stdout) if m.split(".")[0] == "textual"]
    r = subprocess.run([sys.executable, "-c", probe.replace("arcus.cli.app", "arcus.tui.app")],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert "textual" in json.loads(r.stdout)  # the probe can see it
