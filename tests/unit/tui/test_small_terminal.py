"""A terminal smaller than the dashboard needs gets one notice in place of cut columns.

The dashboard goes on meanwhile (streams, figures, a dialog that was open) and comes back as it
was as soon as the terminal is large enough; q still quits.
"""

from __future__ import annotations

import asyncio

import pytest
from textual.message_pump import MessagePump
from textual.widgets import Input

from arcus.errors import OperatorError
from arcus.testing.wait import async_wait_until
from arcus.tui.app import MIN_SIZE, ArcusApp
from arcus.tui.messages import Send
from tests.unit.tui.conftest import make_app
from tests.unit.tui.pilot import gone, run, screen_text, shows
from tests.unit.tui.scripted import ScriptedDaemon, counters, stats

W, H = MIN_SIZE


def notice(width: int, height: int) -> str:
    return f"arcus tui needs at least {W}x{H}; this terminal is {width}x{height} — enlarge it (q quits)"


def words(app: ArcusApp) -> str:
    """The screen as a person reads it: words in order, however a narrow terminal wrapped them."""
    return " ".join(screen_text(app).split())


async def reads(app: ArcusApp, text: str) -> None:
    """Wait until the screen shows ``text`` and nothing else."""
    try:
        await async_wait_until(lambda: words(app) == text, what=f"the screen to read only {text!r}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- the screen:\n{screen_text(app)}") from None


async def settled(pump: MessagePump) -> None:
    """Every message queued for ``pump`` so far has been handled (they are handled in order)."""
    done = asyncio.Event()
    pump.call_later(done.set)
    await asyncio.wait_for(done.wait(), timeout=10)


async def answered(app: ArcusApp, daemon: ScriptedDaemon, cmd: str, to: MessagePump) -> None:
    """The daemon answered ``cmd`` and ``to`` has handled the answer."""
    await async_wait_until(lambda: any(c == cmd for c, _ in daemon.calls + daemon.tenancy.calls),
                           what=f"{cmd} at the daemon")
    # the worker posts the answer, then ends
    await async_wait_until(lambda: not any(w.name == cmd for w in app.workers), what=f"the {cmd} worker to end")
    await settled(to)


def reloads(daemon: ScriptedDaemon) -> int:
    return sum(1 for c, _ in daemon.calls if c == "reload")


@pytest.mark.parametrize("size", [(W - 1, H), (W, H - 1), (60, 20), (24, 6)], ids=lambda s: f"{s[0]}x{s[1]}")
@run
async def test_below_the_minimum_one_notice_replaces_the_dashboard(daemon, sock, size):
    daemon.current = stats(100.0, {"acme": counters(active=3, requests=1000)})
    app = make_app(sock)
    async with app.run_test(size=size):
        await daemon.subscribed("stats.watch")
        await async_wait_until(lambda: "acme" in app.model.tenants, what="the first stats")
        await reads(app, notice(*size))


@run
async def test_at_the_minimum_the_dashboard_shows(daemon, sock):
    daemon.current = stats(100.0, {"acme": counters(active=3, requests=1000)})
    app = make_app(sock)
    async with app.run_test(size=MIN_SIZE):
        text = await shows(app, "● arcus", "1 Overview", "acme", "q quit")
        assert "needs at least" not in text


@run
async def test_the_dashboard_comes_back_as_it_was_with_what_arrived_meanwhile(daemon, sock):
    daemon.current = stats(100.0, {"acme": counters(active=3, requests=1000)})
    app = make_app(sock)
    async with app.run_test(size=(100, 30)) as pilot:
        await shows(app, "● arcus", "up 1m40s")
        await pilot.press("3")
        await shows(app, "1 tenants, 0 suspended")
        table = app.focused
        assert table is not None and table.id == "tenants"

        await pilot.resize_terminal(60, 20)
        await reads(app, notice(60, 20))
        await pilot.resize_terminal(70, 22)
        await reads(app, notice(70, 22))
        # the dashboard's keys wait for the dashboard; its streams do not
        await pilot.press("1", "ctrl+r")
        daemon.push_stats(stats(102.0, {"acme": counters(active=4, requests=1200)}))
        await async_wait_until(lambda: app.model.uptime == 102.0, what="the stats sent while the notice shows")
        assert words(app) == notice(70, 22)
        assert reloads(daemon) == 0

        await pilot.resize_terminal(W, H)
        text = await shows(app, "3 Tenants", "1 tenants, 0 suspended")  # the tab it was on
        assert "needs at least" not in text
        assert app.focused is table
        await pilot.press("1")
        await shows(app, "up 1m42s", "req/s 100")  # what came while it was hidden
        await pilot.press("ctrl+r")
        await async_wait_until(lambda: reloads(daemon) == 1, what="the reload")


@run
async def test_q_quits_while_the_notice_is_shown(daemon, sock):
    app = make_app(sock)
    async with app.run_test(size=(60, 20)) as pilot:
        await reads(app, notice(60, 20))
        await pilot.press("q")
        await async_wait_until(lambda: app.return_code is not None, what="the app to quit")
    assert app.return_code == 0


@run
async def test_a_form_answered_while_the_notice_covers_it_closes_once_it_is_shown(daemon, sock):
    """The form's answer comes while the terminal is too small: the form waits with it under
    the notice (closing then would take the notice off instead) and closes when it shows."""
    app = make_app(sock)
    async with app.run_test(size=MIN_SIZE, notifications=True) as pilot:
        await shows(app, "● arcus")
        await pilot.press("3", "a")
        await shows(app, "Add a tenant")
        form = app.screen
        form.query_one("#name", Input).value = "acme"
        form.query_one("#sources", Input).value = "10.20.0.0/16"

        await pilot.resize_terminal(60, 20)
        await reads(app, notice(60, 20))
        form.submit()  # Enter pressed just before the terminal shrank
        await answered(app, daemon, "tenant.add", form)
        assert daemon.store.get_tenant("acme") is not None
        assert words(app) == notice(60, 20)

        await pilot.resize_terminal(W, H)
        await gone(app, "Add a tenant")
        await shows(app, "tenant acme saved", "2 tenants", "10.20.0.0/16")


@run
async def test_a_refused_reload_answered_while_the_notice_shows_opens_when_the_dashboard_is_back(daemon, sock):
    daemon.reload_error = OperatorError("profile refused, still serving the previous one:\n"
                                        "/etc/arcus/edge.yaml:12: servers[0]: unknown key 'lisen'", code="invalid")
    app = make_app(sock)
    async with app.run_test(size=MIN_SIZE) as pilot:
        await shows(app, "● arcus")
        await pilot.resize_terminal(60, 20)
        await reads(app, notice(60, 20))
        app.post_message(Send("reload", origin=app))  # ctrl+r pressed just before the terminal shrank
        await answered(app, daemon, "reload", app)
        assert words(app) == notice(60, 20)

        await pilot.resize_terminal(W, H)
        await shows(app, "Reload refused", "/etc/arcus/edge.yaml:12: servers[0]: unknown key 'lisen'")
        await pilot.press("escape")
        await shows(app, "● arcus", "1 Overview")
