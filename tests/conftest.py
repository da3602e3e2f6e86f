"""Shared fixtures: real daemon, real origin, and the rule for missing system components."""

from __future__ import annotations

import os
import shutil

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
