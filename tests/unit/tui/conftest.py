"""Fixtures of the dashboard's tests: a scripted daemon on a real socket, and the app on it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from arcus.tui.app import ArcusApp
from arcus.tui.model import schedule
from tests.unit.tui.scripted import ScriptedDaemon


@pytest.fixture
def sock() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="arcus-tui-") as d:  # AF_UNIX paths are short
        yield Path(d) / "arcus.sock"


@pytest.fixture
def daemon(sock: Path, tmp_path: Path) -> Iterator[ScriptedDaemon]:
    with ScriptedDaemon(sock, tmp_path / "store" / "arcus.db") as d:
        yield d


def make_app(sock: Path) -> ArcusApp:
    """The dashboard as `arcus tui` starts it, retrying fast (0.05 s, at most 0.2 s) for tests."""
    return ArcusApp(sock, interval=1.0, conns_every=3600.0, backoff=schedule(0.05, 0.2))
