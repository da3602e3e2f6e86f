"""Reload (and its refusal, file:line), and a dashboard that outlives the daemon's restarts."""

from __future__ import annotations

from arcus.errors import OperatorError
from tests.unit.tui.conftest import make_app
from tests.unit.tui.pilot import gone, run, screen_text, shows
from tests.unit.tui.scripted import ScriptedDaemon, counters, stats

REFUSAL = OperatorError(
    "profile refused, still serving the previous one:\n"
    "/etc/arcus/edge.yaml:12: servers[0]: unknown key 'lisen' (did you mean 'listen'?)\n"
    "/etc/arcus/edge.yaml:31: escapers[1].resolver: no resolver named 'dns2'",
    code="invalid", hint="fix the profile (check it with `arcus config check PATH`) and reload again")


@run
async def test_reload_says_the_generation_or_shows_every_refused_line(daemon, sock):
    app = make_app(sock)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await shows(app, "● arcus")
        await pilot.press("ctrl+r")
        await shows(app, "reloaded: now serving generation 2")
        daemon.reload_error = REFUSAL
        await pilot.press("ctrl+r")
        text = await shows(app, "Reload refused", "/etc/arcus/edge.yaml:12: servers[0]: unknown key 'lisen'",
                           "/etc/arcus/edge.yaml:31: escapers[1].resolver: no resolver named 'dns2'")
        assert "profile refused, still serving the previous one:" in text
        assert "hint: fix the profile" in text
        await pilot.press("escape")
        await gone(app, "Reload refused")
        assert [c for c, _ in daemon.calls if c == "reload"] == ["reload", "reload"]


@run
async def test_a_daemon_restart_is_shown_and_the_dashboard_comes_back_by_itself(daemon, sock):
    daemon.current = stats(300.0, {"acme": counters(active=2, requests=500)})
    app = make_app(sock)
    async with app.run_test(size=(80, 24)):
        await shows(app, "● arcus", "up 5m00s")
        daemon.stop()
        # nothing answers now: each attempt says so, the delay grows to its cap (0.2 s here)
        text = await shows(app, f"○ arcus is not running: nothing answers on {sock}", "retrying in 0.2s",
                           "the figures below are the last received")
        assert "acme" in text and "up 5m00s" in text  # the last figures stay
        daemon.current = stats(0.5, {"acme": counters(active=1, requests=3)})
        daemon.start()
        await shows(app, "● arcus", "up 0.5s")
        assert app.model.restarts == 1
        assert "○" not in screen_text(app)


@run
async def test_with_no_daemon_at_start_it_says_how_to_start_one_and_waits(sock, tmp_path):
    app = make_app(sock)
    async with app.run_test(size=(80, 24)) as pilot:
        text = await shows(app, f"○ arcus is not running: nothing answers on {sock}", "q quits")
        assert "start it with `arcus serve`" in text
        with ScriptedDaemon(sock, tmp_path / "arcus.db") as daemon:
            daemon.current = stats(1.0, {"acme": counters(requests=1)})
            await shows(app, "● arcus", "acme")
            await gone(app, "q quits")
            await pilot.press("q")


@run
async def test_the_audit_tab_forgets_the_daemon_was_down_once_it_is_back(daemon, sock):
    """The events stream reconnects silently (nothing to send on an idle box): the tab said
    "arcus is not running" until the next event although the top line was green again."""
    app = make_app(sock)
    async with app.run_test(size=(100, 30)) as pilot:
        await shows(app, "● arcus")
        await pilot.press("4")
        daemon.stop()
        await shows(app, "arcus is not running")
        daemon.start()
        await shows(app, "● arcus")
        await gone(app, "arcus is not running")
