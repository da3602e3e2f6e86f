"""The audit tab: events.watch live, with the filter language, and a daemon without events.watch."""

from __future__ import annotations

from textual.widgets import Input

from arcus.tui.panes import AuditPane
from tests.unit.tui.conftest import make_app
from tests.unit.tui.pilot import gone, run, screen_text, shows

T0 = 1796402400.0  # 2026-12-04T16:40:00Z


def record(n: int, tenant: str, host: str, status: int = 200, **kw) -> dict:
    ev = {"type": "request", "time": T0 + n, "at": "", "tenant": tenant, "user": None, "client": f"10.0.0.{n}:5000",
          "server": "http", "server_type": "http_proxy", "escaper": "direct", "host": host, "port": 80,
          "method": "GET", "path": "/", "status": status, "bytes_up": 0, "bytes_down": 10, "duration": 0.01,
          "decision": "allow", "rule": None, "error_side": None, "error_code": None, "request_id": f"r{n}",
          "conn_id": n, "sni": None}
    ev.update(kw)
    return ev


def daemon_event(daemon, i: int) -> dict:
    return daemon.pushed[i]


@run
async def test_events_arrive_live_and_filters_apply_to_what_was_received(daemon, sock):
    app = make_app(sock)
    async with app.run_test(size=(80, 24)) as pilot:
        await shows(app, "● arcus")
        await pilot.press("4")
        await daemon.subscribed("events.watch")
        assert ("events.watch", {}) in daemon.calls
        daemon.push_event(record(1, "acme", "example.com"))
        daemon.push_event(record(2, "acme", "casino.example", 403, decision="deny", rule="no-gambling"))
        daemon.push_event(record(3, "default", "news.example"))
        daemon.push_event({"type": "change", "time": T0 + 4, "at": "", "cmd": "tenant.suspend", "tenant": "acme",
                           "generation": 12})
        daemon.push_event({"type": "reload_refused", "time": T0 + 5, "at": "", "code": "invalid",
                           "message": "profile refused, still serving the previous one:\n"
                                      "/etc/arcus/edge.yaml:12: unknown key 'lisen'\n/etc/arcus/edge.yaml:30: x"})
        text = await shows(app, "5 events  ·  from events.watch")
        assert "16:40:01 request    acme       GET example.com/  200  from 10.0.0.1:5000" in text
        assert "16:40:02 request    acme       GET casino.example/  403  deny by no-gambling" in text
        assert "16:40:04 change     acme       tenant.suspend acme (generation 12)" in text
        assert "16:40:05 reload_ref -          reload refused: /etc/arcus/edge.yaml:12: unkn" in text  # 80 columns
        assert AuditPane.line(daemon_event(daemon, -1)).plain.endswith(
            "reload refused: /etc/arcus/edge.yaml:12: unknown key 'lisen' (+1 more)")
        await pilot.press("b")  # blocked only
        assert app.query_one("#audit-filter", Input).value == "blocked"
        text = await shows(app, "1 of 5 events")
        assert "casino.example" in text and "news.example" not in text
        await pilot.press("b")
        await shows(app, "5 events  ·", "news.example")
        app.query_one("#audit-filter", Input).value = "tenant:default"
        text = await shows(app, "1 of 5 events")
        assert "news.example" in text and "example.com/" not in text
        daemon.push_event(record(6, "default", "late.example"))  # a new event passes the filter live
        await shows(app, "2 of 6 events", "late.example")
        daemon.push_event(record(7, "acme", "hidden.example"))
        await shows(app, "2 of 7 events")
        assert "hidden.example" not in screen_text(app)
        app.query_one("#audit-filter", Input).value = "kind:change"
        text = await shows(app, "1 of 7 events")
        assert "tenant.suspend" in text


@run
async def test_a_slow_dashboard_is_told_and_subscribes_again(daemon, sock):
    app = make_app(sock)
    async with app.run_test(size=(80, 24)) as pilot:
        await shows(app, "● arcus")
        await pilot.press("4")
        await daemon.subscribed("events.watch")
        daemon.push_event({"type": "dropped", "time": T0, "at": "", "reason": "slow subscriber", "skipped": 5210,
                           "buffer": 1000})
        await shows(app, "dropped    -          fell behind, 5210 events lost; resubscribing")
        # (the daemon ends the stream after `dropped`: here the test ends it by a restart)
        daemon.stop()
        daemon.start()
        await daemon.subscribed("events.watch")
        daemon.push_event(record(9, "acme", "after.example"))
        await shows(app, "after.example")


@run
async def test_a_daemon_without_events_watch_is_tailed_through_audit_tail(daemon, sock):
    daemon.events_cmd = "audit.tail"
    daemon.stop()
    daemon.start()
    app = make_app(sock)
    async with app.run_test(size=(80, 24)) as pilot:
        await shows(app, "● arcus")
        await pilot.press("4")
        await daemon.subscribed("audit.tail")
        assert ("audit.tail", {"n": 100}) in daemon.calls
        row = record(1, "acme", "old.example")
        del row["type"]
        daemon.push_event({**row, "id": 41, "kind": "request"})
        await shows(app, "1 events  ·  from audit.tail", "request    acme       GET old.example/")
        await pilot.press("c")
        await gone(app, "old.example")
