"""The tenants tab: add, suspend, resume and limits, each form checked before anything is sent."""

from __future__ import annotations

from textual.widgets import Input

from tests.unit.tui.conftest import make_app
from tests.unit.tui.pilot import gone, run, shows


def sent(daemon, cmd: str) -> list[dict]:
    return [args for c, args in daemon.tenancy.calls if c == cmd]


@run
async def test_add_refuses_bad_input_in_place_then_adds(daemon, sock):
    app = make_app(sock)
    async with app.run_test(size=(80, 24)) as pilot:
        await shows(app, "● arcus")
        await pilot.press("3")
        await shows(app, "1 tenants, 0 suspended")
        await pilot.press("a")
        await shows(app, "Add a tenant")
        app.screen.query_one("#name", Input).value = "acme corp"
        await pilot.press("enter")
        # the store's own check, word for word, and nothing sent
        await shows(app, "invalid tenant name 'acme corp'")
        app.screen.query_one("#name", Input).value = "acme"
        app.screen.query_one("#sources", Input).value = "10.20.0.0/16, 10.30.0.1/33"
        await pilot.press("enter")
        await shows(app, "10.30.0.1/33")
        assert sent(daemon, "tenant.add") == []
        app.screen.query_one("#display_name", Input).value = "Acme Corp"
        app.screen.query_one("#sources", Input).value = "10.20.0.7/16 2001:db8::/48"
        await pilot.press("enter")
        await gone(app, "Add a tenant")
        await shows(app, "2 tenants", "acme", "10.20.0.0/16, 2001:db8::/48")
        assert sent(daemon, "tenant.add") == [
            {"name": "acme", "sources": ["10.20.0.0/16", "2001:db8::/48"], "display_name": "Acme Corp"}]
        assert daemon.store.get_tenant("acme").display_name == "Acme Corp"
        # the daemon's refusal is shown the same way, and the form stays open
        await pilot.press("a")
        await shows(app, "Add a tenant")
        app.screen.query_one("#name", Input).value = "ACME"
        await pilot.press("enter")
        await shows(app, "tenant 'ACME' clashes with tenant 'acme'", "Add a tenant")
        await pilot.press("escape")
        await gone(app, "Add a tenant")


@run
async def test_suspend_after_a_yes_and_resume(daemon, sock):
    daemon.tenancy.seed(lambda st: st.add_tenant("acme", None, ["10.20.0.0/16"]))
    app = make_app(sock)
    async with app.run_test(size=(80, 24)) as pilot:
        await shows(app, "● arcus")
        await pilot.press("3")
        await shows(app, "2 tenants, 0 suspended")  # acme first (by name), default second
        await pilot.press("s")
        await shows(app, "Suspend tenant acme?", "Its clients get 403 until it is resumed.")
        await pilot.press("n")
        await gone(app, "Suspend tenant acme?")
        assert sent(daemon, "tenant.suspend") == []
        await pilot.press("s", "y")
        await shows(app, "2 tenants, 1 suspended", "suspended")
        assert daemon.store.get_tenant("acme").suspended
        await pilot.press("u")
        await shows(app, "2 tenants, 0 suspended")
        assert not daemon.store.get_tenant("acme").suspended


@run
async def test_limits_are_parsed_as_the_cli_parses_them_and_only_changes_are_sent(daemon, sock):
    daemon.tenancy.seed(lambda st: st.add_tenant("acme", None, ["10.20.0.0/16"]))
    app = make_app(sock)
    async with app.run_test(size=(80, 24)) as pilot:
        await shows(app, "● arcus")
        await pilot.press("3")
        await shows(app, "2 tenants")
        await pilot.press("l")
        await shows(app, "Limits of tenant acme")
        assert app.screen.query_one("#max_conns", Input).value == "unlimited"
        await pilot.press("enter")
        await shows(app, "nothing to change")
        app.screen.query_one("#max_conns", Input).value = "0"
        await pilot.press("enter")
        await shows(app, "invalid connection limit '0': it must be more than 0")
        app.screen.query_one("#max_conns", Input).value = "500"
        app.screen.query_one("#bandwidth", Input).value = "50mb"
        await pilot.press("enter")
        await shows(app, "ambiguous bandwidth '50mb'")
        assert sent(daemon, "tenant.set") == []
        app.screen.query_one("#bandwidth", Input).value = "50M"
        await pilot.press("enter")
        await gone(app, "Limits of tenant acme")
        assert sent(daemon, "tenant.set") == [{"name": "acme", "max_conns": 500, "bandwidth": 6_250_000.0}]
        await shows(app, "500", "50Mbit/s")
        # the form opens with what is set, and a value typed back as it was is not sent again
        await pilot.press("l")
        await shows(app, "Limits of tenant acme")
        assert app.screen.query_one("#bandwidth", Input).value == "50Mbit"
        app.screen.query_one("#rps", Input).value = "12.5"
        await pilot.press("enter")
        await gone(app, "Limits of tenant acme")
        assert sent(daemon, "tenant.set")[-1] == {"name": "acme", "rps": 12.5}
