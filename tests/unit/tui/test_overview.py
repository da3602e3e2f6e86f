"""The overview: box totals and one row per tenant with rates, live from stats.watch."""

from __future__ import annotations

from arcus.tui.panes import OverviewPane
from tests.unit.tui.conftest import make_app
from tests.unit.tui.pilot import run, screen_text, shows
from tests.unit.tui.scripted import counters, stats


@run
async def test_rates_come_from_the_daemons_uptime_between_two_updates(daemon, sock):
    daemon.current = stats(100.0, {
        "acme": counters(active=3, requests=1000, up=10_000, down=1_000_000, denied=5, upstream_connect=2),
        "default": counters(active=1, requests=10),
    })
    app = make_app(sock)
    async with app.run_test(size=(80, 24)):
        await shows(app, "● arcus", "acme", "default")
        # the first sample has nothing to compare with: live counts, no rates yet
        assert app.model.tenants["acme"].rps == 0
        # two seconds of the daemon's time later: 200 requests, 20000 bytes up, 4 refused
        daemon.push_stats(stats(102.0, {
            "acme": counters(active=4, requests=1200, up=30_000, down=3_048_576, denied=9, upstream_connect=3),
            "default": counters(active=1, requests=10),
        }))
        text = await shows(app, "req/s 100")
        acme = app.model.tenants["acme"]
        assert (acme.active, acme.rps, acme.up, acme.down, acme.blocked, acme.errors) == (4, 100.0, 10_000.0, 1_024_288.0, 2.0, 3)
        table = app.query_one(OverviewPane).query_one("#rates")
        row = [str(c) for c in table.get_row("acme")]
        assert row[:7] == ["acme", "4", "100", "9.8K", "1.0M", "2", "3"], row
        assert "box  active 5  req/s 100  up/s 9.8KB  down/s 1.0MB  blocked/s 2  errors 3" in text
        assert "generation 1  up 1m42s  fds 40/1024  reloads 0 (0 refused)  pooled 2" in text


@run
async def test_a_tenant_with_no_traffic_yet_is_listed_and_a_new_one_starts_from_zero(daemon, sock):
    daemon.tenancy.seed(lambda st: st.add_tenant("quiet", None, ["10.9.0.0/16"]))
    daemon.current = stats(5.0, {})
    app = make_app(sock)
    async with app.run_test(size=(80, 24)):
        await shows(app, "quiet")  # from tenant.list, with zeros
        assert app.model.tenants["quiet"].active == 0
        daemon.push_stats(stats(6.0, {"busy": counters(active=2, requests=50)}))
        await shows(app, "busy")
        assert app.model.tenants["busy"].rps == 50.0  # first counted now: it had nothing before


@run
async def test_a_restarted_daemon_does_not_show_a_negative_burst(daemon, sock):
    daemon.current = stats(500.0, {"acme": counters(requests=10_000)})
    app = make_app(sock)
    async with app.run_test(size=(80, 24)):
        await shows(app, "acme")
        daemon.push_stats(stats(1.0, {"acme": counters(requests=3)}))  # uptime went back
        await shows(app, "up 1.0s")
        assert app.model.restarts == 1
        assert app.model.tenants["acme"].rps == 0
        daemon.push_stats(stats(2.0, {"acme": counters(requests=13)}))
        await shows(app, "up 2.0s")
        assert app.model.tenants["acme"].rps == 10.0
        assert "-" not in screen_text(app).split("acme", 1)[1].splitlines()[0]
