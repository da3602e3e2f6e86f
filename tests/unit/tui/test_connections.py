"""The connections tab: filter, sort, and kill after a confirmation."""

from __future__ import annotations

from textual.widgets import DataTable, Input

from arcus.tui.panes import ConnsPane
from tests.unit.tui.conftest import make_app
from tests.unit.tui.pilot import gone, run, shows

CONNS = [
    {"id": 7, "server": "http", "tenant": "acme", "client": "10.20.0.5:50001", "target": "example.com:443",
     "age": 75.0, "bytes_up": 2048, "bytes_down": 900_000, "state": "tunnel"},
    {"id": 9, "server": "http", "tenant": "default", "client": "127.0.0.1:40000", "target": "",
     "age": 1.5, "bytes_up": 0, "bytes_down": 0, "state": "reading_request"},
    {"id": 12, "server": "http", "tenant": "acme", "client": "10.20.0.9:50002", "target": "news.example:80",
     "age": 3.0, "bytes_up": 100, "bytes_down": 5_000_000, "state": "exchange"},
]


def rows(app) -> list[str]:
    table = app.query_one(ConnsPane).query_one("#conns", DataTable)
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


@run
async def test_filter_and_sort(daemon, sock):
    daemon.conns = [dict(c) for c in CONNS]
    app = make_app(sock)
    async with app.run_test(size=(80, 24)) as pilot:
        await shows(app, "● arcus")
        await pilot.press("2")
        await shows(app, "3 live connections, sorted by id ascending", "example.com:443", "1m15s")
        assert rows(app) == ["7", "9", "12"]
        await pilot.press("slash")
        assert app.focused is app.query_one("#conns-filter", Input)
        await pilot.press(*"tenant:acme")
        await shows(app, "2 of 3 live connections")
        assert rows(app) == ["7", "12"]
        await pilot.press("enter")  # back to the table
        await pilot.press("s")  # sort by tenant (ties by id), then client...
        assert rows(app) == ["7", "12"]
        for _ in range(5):  # id -> tenant -> client -> target -> age -> up -> down
            await pilot.press("s")
        await shows(app, "sorted by down ascending")
        assert rows(app) == ["7", "12"]
        await pilot.press("S")
        await shows(app, "sorted by down descending")
        assert rows(app) == ["12", "7"]
        app.query_one("#conns-filter", Input).value = "news"  # a bare word matches anywhere
        await shows(app, "1 of 3 live connections")
        assert rows(app) == ["12"]


@run
async def test_kill_asks_first_and_no_sends_nothing(daemon, sock):
    daemon.conns = [dict(c) for c in CONNS]
    app = make_app(sock)
    async with app.run_test(size=(80, 24)) as pilot:
        await shows(app, "● arcus")
        await pilot.press("2")
        await shows(app, "3 live connections")
        await pilot.press("down")  # the cursor on connection 9
        await pilot.press("k")
        await shows(app, "Kill connection 9?", "default  127.0.0.1:40000 -> -  (reading_request)")
        await pilot.press("n")
        await gone(app, "Kill connection 9?")
        assert [c for c, _ in daemon.calls if c == "kill"] == []
        await pilot.press("k")
        await shows(app, "Kill connection 9?")
        await pilot.press("y")
        await shows(app, "2 live connections")
        assert ("kill", {"id": 9}) in daemon.calls
        assert rows(app) == ["7", "12"]


@run
async def test_killing_a_connection_that_already_ended_says_so(daemon, sock):
    daemon.conns = [dict(c) for c in CONNS]
    app = make_app(sock)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await shows(app, "● arcus")
        await pilot.press("2")
        await shows(app, "3 live connections")
        daemon.conns.pop(0)  # connection 7 ends before the operator confirms
        await pilot.press("k", "y")
        await shows(app, "no live connection 7")
