"""Shared fixtures: real daemon, real origin, and the rule for missing system components."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_program(name: str) -> str:
    """Path of a system program the test drives; under CI=true a missing one fails the test."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path is None:
        message = f"{name} is not installed (scripts/system-deps.sh installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def curl() -> str:
    return require_program("curl")


@pytest.fixture(autouse=True, scope="session")
def _no_default_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test reaches the developer's own daemon or store by default: a command run without
    --socket/--data-dir finds no daemon and a private, empty store. (DaemonProcess passes its own
    and drops these; the test of the real defaults runs in a PrivateBox.)"""
    private = tmp_path_factory.mktemp("no-default-daemon")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ARCUS_SOCKET", str(private / "nothing-answers-here.sock"))
        mp.setenv("ARCUS_DATA_DIR", str(private / "data"))
        yield
