"""The rule that every test starting a daemon carries ``@pytest.mark.integration``.

``-m "not integration"`` must give a quick run that starts no daemon. Tests under
``tests/integration`` are marked by their directory (its conftest); elsewhere a test module that
uses the daemon harness (``arcus.testing.daemon``) must mark its daemon tests itself, and
``tests/unit/conftest.py`` fails one that does not, with :func:`unmarked_daemon_test`.

The check is static (what the test's module imported), so it costs nothing at run time and
cannot be flaky; a test that runs ``arcus serve`` through ``subprocess`` without the harness is
not seen by it.
"""

from __future__ import annotations

import types
from typing import Any

HARNESS = "arcus.testing.daemon"
MARKER = "integration"


def uses_daemon_harness(module: types.ModuleType | None) -> bool:
    """Whether ``module`` imported the daemon harness or anything from it."""
    if module is None:
        return False
    for value in vars(module).values():
        if isinstance(value, types.ModuleType):
            if value.__name__ == HARNESS:
                return True
        elif getattr(value, "__module__", None) == HARNESS:
            return True
    return False


def unmarked_daemon_test(item: Any) -> str | None:
    """Why the pytest ``item`` breaks the rule, or None when it keeps it."""
    if item.get_closest_marker(MARKER) is not None:
        return None
    if not uses_daemon_harness(getattr(item, "module", None)):
        return None
    return (
        f"{item.nodeid} can start a daemon ({item.module.__name__} imports {HARNESS}) but has no "
        f"@pytest.mark.{MARKER}: mark it (pytestmark = pytest.mark.{MARKER} for the module)"
    )
