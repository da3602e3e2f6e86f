"""`arcus config check|show`: exit codes, the one-line messages, the --json shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from arcus.cli.app import app
from arcus.errors import NotFound
from tests.unit.cli.harness import invoke

GOOD = """\
servers:
  - name: http
    type: http_proxy
    listen: 127.0.0.1:0
    escaper: deny
escapers:
  - name: deny
    type: dummy_deny
"""
BAD = GOOD.replace("escaper: deny", "escaper: denny").replace("type: dummy_deny", "type: dummy_deny\n    bind: x")


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    return str(path)


def test_check_ok_prints_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    result = invoke("config", "check", path)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: ok (1 server, 1 escaper, 0 resolvers)\n"
    assert result.stderr == ""


def test_check_embedded_default() -> None:
    result = invoke("config", "check", "default")
    assert result.exit_code == 0
    assert result.stdout == "<embedded:default>: ok (1 server, 2 escapers, 1 resolver)\n"


def test_check_prints_every_issue_on_stderr_and_exits_1(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    result = invoke("config", "check", path)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f'{path}:5: server "http": escaper "denny" is not defined; defined escapers: deny',
        f'{path}:9: escaper "deny": unknown key "bind"; known keys: name, type',
    ]


def test_check_json_shape(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    result = invoke("config", "check", "--json", path)
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "ok": False,
        "source": path,
        "issues": [
            {"file": path, "line": 5, "message": 'server "http": escaper "denny" is not defined; defined escapers: deny'},
            {"file": path, "line": 9, "message": 'escaper "deny": unknown key "bind"; known keys: name, type'},
        ],
    }
    result = invoke("config", "check", write(tmp_path, GOOD), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"ok": True, "source": path, "issues": []}


def test_check_yaml_error(tmp_path: Path) -> None:
    path = write(tmp_path, "servers:\n  - name: a\n    type: x: y\n")
    result = invoke("config", "check", path)
    assert result.exit_code == 1
    assert result.stderr == f"{path}:3: invalid YAML: mapping values are not allowed here\n"


def test_check_unknown_name_is_an_operator_error() -> None:
    """Raised past the command (the boundary is app.main(), tested below), so not through invoke()."""
    result = CliRunner().invoke(app, ["config", "check", "nosuch"])
    assert isinstance(result.exception, NotFound)
    assert result.exception.hint is not None and "default" in result.exception.hint


def test_check_unknown_name_through_the_error_boundary(tmp_path: Path) -> None:
    env = {**os.environ, "ARCUS_DATA_DIR": str(tmp_path)}
    env.pop("ARCUS_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "arcus", "config", "check", "nosuch"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.splitlines()[0] == 'error: no shipped profile named "nosuch"'
    assert proc.stderr.splitlines()[1].startswith("hint: shipped profiles: default")


def test_check_needs_an_argument() -> None:
    result = invoke("config", "check")
    assert result.exit_code == 2


def test_show_prints_a_profile_that_loads_again(tmp_path: Path) -> None:
    result = invoke("config", "show")
    assert result.exit_code == 0
    assert result.stdout.startswith("# effective profile of <embedded:default>\n")
    data = yaml.safe_load(result.stdout)
    assert data["servers"][0]["listen"] == "127.0.0.1:3128"
    assert data["servers"][0]["timeouts"]["client_header"] == "30s"
    again = invoke("config", "check", write(tmp_path, result.stdout))
    assert again.exit_code == 0, again.output


def test_show_json(tmp_path: Path) -> None:
    result = invoke("config", "show", write(tmp_path, GOOD), "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["escapers"] == [{"name": "deny", "type": "dummy_deny"}]
    assert data["resolvers"] == []


def test_show_refuses_a_bad_profile_with_its_issues(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    result = invoke("config", "show", path)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 2
