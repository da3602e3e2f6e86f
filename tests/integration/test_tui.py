"""`arcus tui` against the real daemon: live figures, the audit tail, a tenant added through its
form, reload and its refusal, and a daemon restart the dashboard outlives."""

from __future__ import annotations

import asyncio

import pytest
from textual.widgets import Input

from arcus.testing.wait import async_wait_until
from arcus.tui.app import ArcusApp
from arcus.tui.model import Counts, schedule
from tests.integration.conftest import run_curl
from tests.unit.tui.pilot import gone, run, shows


@pytest.mark.integration
@run
async def test_the_dashboard_on_a_real_daemon(daemon, origin, curl):
    app = ArcusApp(daemon.socket, interval=0.2, conns_every=3600.0, backoff=schedule(0.05, 0.5))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await shows(app, "● arcus", "generation 1", "default")
        r = await asyncio.to_thread(run_curl, curl, "-x", daemon.proxy, origin.url("/tui-probe"))
        assert r.returncode == 0, r.stderr
        # the request is counted (stats.watch) ...
        await shows(app, "default")
        await async_wait_until(lambda: (app.model.counts("default") or Counts()).requests >= 1,
                               what="the request counted")
        # ... and tailed (events.watch, or audit.tail on a daemon without it)
        await pilot.press("4")
        await shows(app, f"request    default    GET 127.0.0.1:{origin.port}/tui-probe")  # not port 80: shown

        await pilot.press("3")
        await shows(app, "1 tenants")
        await pilot.press("a")
        await shows(app, "Add a tenant")
        app.screen.query_one("#name", Input).value = "acme"
        app.screen.query_one("#sources", Input).value = "10.20.0.0/16"
        await pilot.press("enter")
        await shows(app, "2 tenants", "10.20.0.0/16")
        assert [t["name"] for t in daemon.ctl("tenant.list")] == ["acme", "default"]

        await pilot.press("ctrl+r")
        await shows(app, "reloaded: now serving generation")
        good = daemon.profile_path.read_text()
        daemon.profile_path.write_text(good.replace("escaper: direct", "escaper: nowhere", 1))
        await pilot.press("ctrl+r")
        await shows(app, "Reload refused")
        message = str(app.screen.query_one("#message-text").content)
        assert f'{daemon.profile_path}:5: server "http": escaper "nowhere" is not defined' in message
        await pilot.press("escape")
        await gone(app, "Reload refused")
        daemon.profile_path.write_text(good)

        daemon.stop()
        await shows(app, "○ arcus is not running: nothing answers on", "retrying in")
        assert f"nothing answers on {daemon.socket}\n" in str(app.query_one("#link").content)
        daemon.start()
        await shows(app, "● arcus", "generation 1")  # a new daemon: generation 1 again
        await gone(app, "○")
        assert app.model.restarts == 1

