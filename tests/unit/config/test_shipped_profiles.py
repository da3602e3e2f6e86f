"""The shipped profiles: one copy in the top-level profiles/ folder, each valid, each saying who it is for."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from arcus.config import profile_text, shipped_names
from arcus.config.sources import summary
from tests.unit.cli.harness import invoke

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ("default", "edge", "school", "socks-gateway", "reverse")
HEADER = re.compile(r'# Arcus profile "(?P<name>[a-z-]+)" -- for \S.*')


def test_the_package_reads_the_top_level_folder() -> None:
    """One source of truth: arcus.profiles is the profiles/ folder itself, not a copy of it."""
    package = Path(str(resources.files("arcus.profiles")))
    assert package.resolve() == (ROOT / "profiles").resolve()
    assert (ROOT / "arcus" / "profiles").is_symlink()
    assert sorted(p.stem for p in (ROOT / "profiles").glob("*.yaml")) == shipped_names()


def test_every_profile_the_card_names_ships() -> None:
    assert set(SHIPPED) <= set(shipped_names())


@pytest.mark.parametrize("name", SHIPPED)
def test_header_says_who_it_is_for(name: str) -> None:
    _, text = profile_text(name)
    first = text.split("\n", 1)[0]
    m = HEADER.fullmatch(first)
    assert m is not None, f"{name}.yaml must start with '# Arcus profile \"{name}\" -- for ...', got {first!r}"
    assert m["name"] == name
    assert summary(text).startswith("for ")


@pytest.mark.parametrize("name", SHIPPED)
def test_config_check_accepts_it(name: str) -> None:
    result = invoke("config", "check", name)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"<embedded:{name}>: ok (")


def test_config_list_names_each_with_its_header() -> None:
    result = invoke("config", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == shipped_names()
    for r in rows:
        assert r["for"] == summary(profile_text(r["name"])[1])
    text = invoke("config", "list")
    assert text.exit_code == 0
    assert [line.split()[0] for line in text.output.splitlines()] == shipped_names()


def test_edge_is_open_to_the_network_and_locked_down() -> None:
    """edge listens everywhere, serves private ranges only, audits, keeps metrics on loopback."""
    result = invoke("config", "show", "edge", "--json")
    assert result.exit_code == 0, result.output
    p = json.loads(result.output)
    (server,) = p["servers"]
    assert sorted(server["listen"]) == sorted(["0.0.0.0:3128", "[::]:3128"])
    router = next(e for e in p["escapers"] if e["name"] == server["escaper"])
    assert router["type"] == "route_client"
    assert [r["clients"] for r in router["rules"]] == [["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]]
    assert next(e for e in p["escapers"] if e["name"] == router["fallback"])["type"] == "dummy_deny"
    direct = next(e for e in p["escapers"] if e["type"] == "direct_fixed")
    assert direct["allow_special"] == [] and direct["loopback_for_local_clients"] is False
    assert p["audit"]["enabled"] is True
    assert p["metrics"]["listen"].startswith("127.0.0.1:")


def test_check_of_a_shipped_name_from_the_installed_command() -> None:
    """The console entry point (not only the in-process app) finds the embedded profiles."""
    proc = subprocess.run([sys.executable, "-m", "arcus", "config", "check", "school"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("<embedded:school>: ok (")
