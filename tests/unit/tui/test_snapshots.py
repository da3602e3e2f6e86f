"""Snapshot tests: the dashboard as it looks, at 80x24 and 200x60, from fixed data, and the
notice a terminal below the minimum gets instead.

Nothing on screen comes from a clock: rates come from the daemon's uptime in the scripted stats,
event times from the events, and every screenshot is taken once the data it shows has arrived
(a bounded poll, never a sleep). The socket path is relative (the test runs in a temp directory)
so the top line is the same on every machine. Update after a deliberate change with
``pytest tests/unit/tui/test_snapshots.py --snapshot-update`` and look at the report.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from arcus.errors import OperatorError
from arcus.testing.wait import async_wait_until
from arcus.tui.app import TooSmall
from tests.unit.tui.conftest import make_app
from tests.unit.tui.scripted import ScriptedDaemon, counters, stats
from tests.unit.tui.test_audit import record
from tests.unit.tui.test_connections import CONNS

SOCK = Path("arcus.sock")


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the relative socket path is short and the same everywhere
    return tmp_path


@pytest.fixture
def box(here) -> ScriptedDaemon:
    with ScriptedDaemon(SOCK, here / "store" / "arcus.db") as d:
        d.tenancy.seed(lambda st: (st.add_tenant("acme", "Acme Corp", ["10.20.0.0/16"]),
                                   st.add_tenant("school", None, ["10.30.0.0/16", "2001:db8::/48"]),
                                   st.set_tenant("acme", max_conns=500, rps=200.0, bandwidth=6_250_000.0)))
        d.current = _traffic(0)
        yield d


def _traffic(step: int) -> dict:
    """Stats at second ``300 + step``: acme ramps up, school steady, default idle."""
    acme = sum(20 * (i + 1) for i in range(step))
    return stats(300.0 + step, {
        "acme": counters(active=12 + step, requests=1000 + acme, up=50_000 + 4000 * acme, down=10**6 + 90_000 * acme,
                         denied=3 + step, upstream_connect=2),
        "school": counters(active=40, requests=5000 + 55 * step, up=10**7, down=5 * 10**8 + 2 * 10**6 * step,
                           auth_required=10 + 2 * step),
        "default": counters(active=0, requests=4),
    }, generation=7)


async def _fed(pilot: Pilot, box: ScriptedDaemon, steps: int = 12) -> None:
    app = pilot.app
    await box.subscribed("stats.watch")
    for step in range(1, steps + 1):
        box.push_stats(_traffic(step))
    await async_wait_until(lambda: app.model.uptime == 300.0 + steps and "school" in app.model.tenants,
                           what="the last stats update")
    await async_wait_until(lambda: len(app.tenants.tenants) == 3, what="the tenant list")
    await pilot.pause()


def test_overview_80x24(snap_compare, box):
    async def before(pilot: Pilot) -> None:
        await _fed(pilot, box)

    assert snap_compare(make_app(SOCK), terminal_size=(80, 24), run_before=before)


def test_overview_200x60(snap_compare, box):
    async def before(pilot: Pilot) -> None:
        await _fed(pilot, box)

    assert snap_compare(make_app(SOCK), terminal_size=(200, 60), run_before=before)


def test_connections_80x24(snap_compare, box):
    box.conns = [dict(c) for c in CONNS]

    async def before(pilot: Pilot) -> None:
        await _fed(pilot, box, 1)
        await pilot.press("2")
        await async_wait_until(lambda: len(pilot.app.conns.conns) == 3, what="the connections")
        await pilot.press("S")  # newest first

    assert snap_compare(make_app(SOCK), terminal_size=(80, 24), run_before=before)


def test_tenant_form_refusal_80x24(snap_compare, box):
    async def before(pilot: Pilot) -> None:
        await _fed(pilot, box, 1)
        await pilot.press("3", "a")
        await async_wait_until(lambda: pilot.app.screen.query("#name"), what="the form")
        for box_ in pilot.app.screen.query(Input):
            box_.cursor_blink = False
        pilot.app.screen.query_one("#name", Input).value = "new-tenant"
        pilot.app.screen.query_one("#sources", Input).value = "10.40.0.0/33"
        await pilot.press("enter")
        await async_wait_until(lambda: "10.40.0.0/33" in str(pilot.app.screen.query_one("#form-error").content),
                               what="the refusal")

    assert snap_compare(make_app(SOCK), terminal_size=(80, 24), run_before=before)


def test_audit_80x24(snap_compare, box):
    async def before(pilot: Pilot) -> None:
        await _fed(pilot, box, 1)
        await pilot.press("4")
        await box.subscribed("events.watch")
        box.push_event(record(1, "acme", "example.com"))
        box.push_event(record(2, "acme", "casino.example", 403, decision="deny", rule="no-gambling"))
        box.push_event(record(3, "school", "wiki.example", user="pupil7"))
        box.push_event({"type": "tunnel", "time": 1796402404.0, "tenant": "school", "host": "mail.example",
                        "port": 993, "status": 0, "client": "10.30.1.9:40112", "method": None})
        box.push_event({"type": "change", "time": 1796402405.0, "cmd": "tenant.set", "tenant": "acme",
                        "generation": 8})
        box.push_event(record(6, "school", "games.example", 407, error_code="auth_required", error_side="client"))
        await async_wait_until(lambda: len(pilot.app.audit.events) == 6, what="the events")

    assert snap_compare(make_app(SOCK), terminal_size=(80, 24), run_before=before)


def test_reload_refused_80x24(snap_compare, box):
    box.reload_error = OperatorError(
        "profile refused, still serving the previous one:\n"
        "/etc/arcus/edge.yaml:12: servers[0]: unknown key 'lisen' (did you mean 'listen'?)",
        code="invalid", hint="fix the profile (check it with `arcus config check PATH`) and reload again")

    async def before(pilot: Pilot) -> None:
        await _fed(pilot, box, 1)
        await pilot.press("ctrl+r")
        await async_wait_until(lambda: pilot.app.screen.query("#message-text"), what="the refusal")

    assert snap_compare(make_app(SOCK), terminal_size=(80, 24), run_before=before)


def test_too_small_60x20(snap_compare, box):
    async def before(pilot: Pilot) -> None:
        await _fed(pilot, box, 1)
        await async_wait_until(lambda: isinstance(pilot.app.screen, TooSmall), what="the notice")

    assert snap_compare(make_app(SOCK), terminal_size=(60, 20), run_before=before)
