"""The data plane loads no CLI or TUI library, and the import graph only points down.

`arcus serve` start-up time and footprint, and a frozen binary's size, depend on it. Checked in
a fresh interpreter (this test process has typer loaded already), and with import-linter's
contracts from pyproject.toml.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA_PLANE = ("arcus.runtime.daemon", "arcus.runtime.main", "arcus.serve.http_proxy")
FORBIDDEN = ("typer", "rich", "textual", "click", "sqlite_utils")

PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def test_importing_the_data_plane_loads_no_cli_or_tui_library() -> None:
    r = subprocess.run(
        [sys.executable, "-c", PROBE, *DATA_PLANE], capture_output=True, text=True, timeout=60, cwd=ROOT, env=_env()
    )
    assert r.returncode == 0, r.stderr
    loaded = set(json.loads(r.stdout))
    assert set(DATA_PLANE) <= loaded  # the probe did import them
    offenders = sorted(m for m in loaded if m.split(".", 1)[0] in FORBIDDEN)
    assert offenders == [], f"the data plane pulled in {offenders}"


def test_the_probe_would_notice_a_cli_import() -> None:
    """The same probe on the CLI finds typer: the check above can fail."""
    r = subprocess.run(
        [sys.executable, "-c", PROBE, "arcus.cli.ctl"], capture_output=True, text=True, timeout=60, cwd=ROOT, env=_env()
    )
    assert r.returncode == 0, r.stderr
    assert "typer" in json.loads(r.stdout)


def test_import_linter_contracts_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    assert lint.exists(), f"{lint} is missing: install the test extra (pip install -e '.[test]')"
    r = subprocess.run([str(lint)], capture_output=True, text=True, timeout=120, cwd=ROOT, env=_env())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout
    assert "Layers point down KEPT" in r.stdout
    assert "The data plane imports no CLI or TUI library KEPT" in r.stdout
