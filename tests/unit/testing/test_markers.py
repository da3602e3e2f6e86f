"""The integration-marker rule: a module using the daemon harness needs the marker."""

from __future__ import annotations

import importlib
import types

import pytest

from arcus.testing.markers import unmarked_daemon_test, uses_daemon_harness


def harness() -> types.ModuleType:
    # Not imported at module level: this module would then use the harness itself (and fail the rule).
    return importlib.import_module("arcus.testing.daemon")


def module(**names: object) -> types.ModuleType:
    m = types.ModuleType("tests.unit.fake.test_thing")
    vars(m).update(names)
    return m


class Item:
    def __init__(self, mod: types.ModuleType, marked: bool) -> None:
        self.module = mod
        self.nodeid = f"{mod.__name__.replace('.', '/')}.py::test_x"
        self._marked = marked

    def get_closest_marker(self, name: str) -> object | None:
        return pytest.mark.integration if self._marked and name == "integration" else None


def test_a_module_importing_the_harness_or_its_names_uses_it() -> None:
    assert uses_daemon_harness(module(DaemonProcess=harness().DaemonProcess))
    assert uses_daemon_harness(module(daemon=harness()))
    assert not uses_daemon_harness(module(pytest=pytest, types=types))
    assert not uses_daemon_harness(None)


def test_an_unmarked_test_in_such_a_module_is_named_with_the_fix() -> None:
    problem = unmarked_daemon_test(Item(module(DaemonProcess=harness().DaemonProcess), marked=False))
    assert problem == (
        "tests/unit/fake/test_thing.py::test_x can start a daemon (tests.unit.fake.test_thing imports "
        "arcus.testing.daemon) but has no @pytest.mark.integration: mark it "
        "(pytestmark = pytest.mark.integration for the module)"
    )
    assert unmarked_daemon_test(Item(module(DaemonProcess=harness().DaemonProcess), marked=True)) is None
    assert unmarked_daemon_test(Item(module(), marked=False)) is None
