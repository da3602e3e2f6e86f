"""Unit tests start no daemon unless marked ``integration`` (see arcus/testing/markers.py)."""

from __future__ import annotations

import pytest

from arcus.testing.markers import unmarked_daemon_test


def pytest_runtest_setup(item: pytest.Item) -> None:
    problem = unmarked_daemon_test(item)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
