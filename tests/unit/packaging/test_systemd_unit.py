"""packaging/arcus.service: `systemd-analyze verify` accepts it without a word, and it keeps its
hardening (the capabilities a proxy needs and no more, a read-only system, the data dir writable).

verify refuses a unit whose ExecStart binary is missing, so the check runs on a copy whose
ExecStart points at a stand-in executable; every other line is the shipped one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_program

UNIT = Path(__file__).resolve().parents[3] / "packaging" / "arcus.service"
BINARY = "/usr/local/bin/arcus"


def settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def verify(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    analyze = require_program("systemd-analyze")
    stand_in = tmp_path / "arcus"
    shutil.copy(shutil.which("true") or "/bin/true", stand_in)
    unit = tmp_path / "arcus.service"
    assert BINARY in text
    unit.write_text(text.replace(BINARY, str(stand_in)))
    return subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)


def test_systemd_analyze_verify_accepts_it_silently(tmp_path: Path) -> None:
    r = verify(tmp_path, UNIT.read_text())
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_the_check_would_notice_a_mistake(tmp_path: Path) -> None:
    r = verify(tmp_path, UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystm=strict"))
    assert "Unknown key 'ProtectSystm'" in r.stderr


def test_hardening() -> None:
    s = settings(UNIT.read_text())
    caps = {"CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN", "CAP_NET_RAW"}
    assert set(s["CapabilityBoundingSet"][0].split()) == caps
    assert set(s["AmbientCapabilities"][0].split()) == caps
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes"), ("Restart", "on-failure"), ("User", "arcus")]:
        assert s[key] == [value], key
    (exec_start,) = s["ExecStart"]
    data_dir = re.search(r"--data-dir (\S+)", exec_start)
    assert data_dir is not None and s["ReadWritePaths"] == [data_dir[1]]
    assert "--socket /run/arcus/" in exec_start and s["RuntimeDirectory"] == ["arcus"]


@pytest.mark.parametrize("key", ["StateDirectory", "RuntimeDirectory"])
def test_directories_are_the_daemons_own(key: str) -> None:
    assert settings(UNIT.read_text())[key] == ["arcus"]
