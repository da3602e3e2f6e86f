"""Start-up cost of the CLI: `--version` imports no typer, a command imports only its own group.

Every `arcus ctl stats` of the frozen binary pays for what the CLI imports before it talks to the
daemon (packaging/timing.sh measures it). Checked in a fresh interpreter, by the modules loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import typer

from arcus import __version__
from arcus.cli import app as app_module

ROOT = Path(__file__).resolve().parents[3]
PROBE = """
import json, sys
out = sys.argv[1]
sys.argv = ["arcus", *sys.argv[2:]]
from arcus.cli.app import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
with open(out, "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""


def run(tmp_path: Path, *argv: str) -> tuple[int, set[str], str]:
    out = tmp_path / "probe.json"
    env = dict(os.environ, ARCUS_SOCKET=str(tmp_path / "nobody.sock"), ARCUS_DATA_DIR=str(tmp_path / "data"))
    r = subprocess.run([sys.executable, "-c", PROBE, str(out), *argv], capture_output=True, text=True,
                       timeout=60, cwd=ROOT, env=env)
    got = json.loads(out.read_text())
    return got["code"] or 0, set(got["modules"]), r.stdout


def test_version_imports_no_typer(tmp_path: Path) -> None:
    code, modules, stdout = run(tmp_path, "--version")
    assert (code, stdout) == (0, f"arcus {__version__}\n")
    assert not {"typer", "click", "rich"} & modules


def test_ctl_imports_its_group_only(tmp_path: Path) -> None:
    code, modules, _ = run(tmp_path, "ctl", "health")
    assert code == 3  # no daemon answers
    assert {"typer", "arcus.cli.ctl"} <= modules
    heavy = {"arcus.cli.tenant", "arcus.cli.ca", "arcus.cli.config", "arcus.store", "arcus.config.loader",
             "cryptography", "yaml"}
    assert heavy & modules == set()


def test_help_and_unknown_commands_see_every_group(tmp_path: Path) -> None:
    code, modules, stdout = run(tmp_path, "--help")
    assert code == 0
    assert {f"arcus.cli.{g}" for g in app_module.GROUPS} <= modules
    for group in app_module.GROUPS:
        assert group in stdout


def test_the_module_app_is_the_whole_tree() -> None:
    command = typer.main.get_command(app_module.app)
    assert sorted(command.commands) == sorted(app_module.GROUPS)  # type: ignore[attr-defined]
