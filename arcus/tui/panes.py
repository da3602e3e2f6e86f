"""The dashboard's four tabs. Each shows what it is given and posts :class:`Send` for what the
operator asks; none of them does I/O (the app's workers do, :mod:`arcus.tui.app`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Input, RichLog, Static

from arcus.tui.forms import ConfirmScreen, TenantAddForm, TenantLimitsForm, error_text
from arcus.tui.messages import Answer, Send, TenantsListed
from arcus.tui.model import (
    CONN_COLUMNS,
    HISTORY,
    Filter,
    StatsModel,
    compact,
    conn_cells,
    event_blocked,
    event_kind,
    event_summary,
    event_time,
    select_conns,
    select_events,
    sparkline,
)
from arcus.units import format_bandwidth

TREND_WIDTH = 12
TREND_SPARE = 70
"""Columns the overview's other figures need (tenant names up to ~12 characters)."""


def _keep_cursor(table: DataTable[Any], key: str | None) -> None:
    """Put the cursor back on the row ``key`` after the table was rebuilt, if it is still there."""
    if key is None:
        return
    try:
        table.move_cursor(row=table.get_row_index(key), animate=False)
    except Exception:  # the row is gone (killed, filtered out): the cursor stays where it fell
        pass


def _cursor_key(table: DataTable[Any]) -> str | None:
    if table.row_count == 0:
        return None
    try:
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    except Exception:
        return None


class OverviewPane(Vertical):
    """Box totals, the box's request rate over time, and one row per tenant."""

    def compose(self) -> ComposeResult:
        yield Static("waiting for the daemon…", id="box", markup=False)
        yield Static("", id="health", markup=False)
        yield Static("", id="box-trend", markup=False)
        table: DataTable[Any] = DataTable(id="rates", cursor_type="row", zebra_stripes=True)
        table.add_column("tenant", key="tenant")
        for label in ("active", "req/s", "up/s", "down/s", "blk/s", "err"):
            table.add_column(Text(label, justify="right"), key=label)
        table.add_column("req/s trend", key="trend")
        yield table

    def show(self, model: StatsModel) -> None:
        if not self.query("#rates"):
            return  # not composed yet, or being torn down as the app quits: the next update shows it
        if model.generation is not None:  # else no stats yet: only the tenants the store has
            self.query_one("#box", Static).update("box  " + model.box_line())
            self.query_one("#health", Static).update("     " + model.health_line())
        # the box's request rate, one column a sample, newest on the right, scaled to its peak
        trend = self.query_one("#box-trend", Static)
        peak = max(model.box_trend, default=0.0)
        label = f"peak {compact(peak)} req/s "
        width = max(0, trend.size.width - len(label))
        trend.update(label + sparkline(model.box_trend, width) if peak else "")
        table = self.query_one("#rates", DataTable)
        # the trend column takes what a wide terminal has beyond the figures (one column a sample)
        trend_width = min(HISTORY, max(TREND_WIDTH, self.size.width - TREND_SPARE))
        keep = _cursor_key(table)
        table.clear()
        for name, r in model.tenants.items():
            cells = [str(r.active), compact(r.rps), compact(r.up), compact(r.down), compact(r.blocked), str(r.errors)]
            table.add_row(name, *(Text(c, justify="right") for c in cells),
                          sparkline(model.trend(name), trend_width), key=name)
        _keep_cursor(table, keep)


class ConnsPane(Vertical):
    """Live connections: a filter, a sort column, and kill (after a yes)."""

    BINDINGS = [
        Binding("slash", "filter", "filter"),
        Binding("s", "sort", "sort"),
        Binding("S", "reverse", "reverse", show=False),
        Binding("k", "kill", "kill"),
        Binding("r", "refresh", "refresh"),
        Binding("escape", "leave_filter", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.conns: list[Mapping[str, Any]] = []
        self.sort = "id"
        self.reverse = False
        self.filter = Filter()

    def compose(self) -> ComposeResult:
        yield Input(placeholder="/ filter: tenant:acme state:tunnel example.com", id="conns-filter")
        yield Static("", id="conns-info", markup=False)
        table: DataTable[Any] = DataTable(id="conns", cursor_type="row", zebra_stripes=True)
        for key, label in CONN_COLUMNS:
            right = key in ("id", "age", "bytes_up", "bytes_down")
            table.add_column(Text(label, justify="right") if right else label, key=key)
        yield table

    def action_refresh(self) -> None:
        self.post_message(Send("conns", origin=self))

    def on_answer(self, answer: Answer) -> None:
        if answer.request.cmd == "conns":
            if answer.error is None and isinstance(answer.result, list):
                self.conns = answer.result
                self.redraw()
            return
        if answer.request.cmd == "kill":
            if answer.error is None:
                self.app.notify(f"killed connection {answer.request.args.get('id')}")
                self.action_refresh()
            else:
                self.app.notify(error_text(answer.error), severity="error")

    def redraw(self) -> None:
        rows = select_conns(self.conns, self.filter, self.sort, self.reverse)
        table = self.query_one("#conns", DataTable)
        keep = _cursor_key(table)
        table.clear()
        for c in rows:
            cells = conn_cells(c)
            table.add_row(*(Text(v, justify="right") if i in (0, 4, 5, 6) else v for i, v in enumerate(cells)),
                          key=str(c.get("id")))
        _keep_cursor(table, keep)
        label = dict(CONN_COLUMNS)[self.sort]
        shown = f"{len(rows)} of {len(self.conns)}" if self.filter else f"{len(self.conns)}"
        self.query_one("#conns-info", Static).update(
            f"{shown} live connection{'s' if len(self.conns) != 1 else ''}, sorted by {label} "
            f"{'descending' if self.reverse else 'ascending'}  (s: sort, k: kill, /: filter)")

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "conns-filter":
            self.filter = Filter.parse(event.value)
            self.redraw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#conns", DataTable).focus()

    def action_filter(self) -> None:
        self.query_one("#conns-filter", Input).focus()

    def action_leave_filter(self) -> None:
        self.query_one("#conns", DataTable).focus()

    def action_sort(self) -> None:
        keys = [k for k, _ in CONN_COLUMNS]
        self.sort = keys[(keys.index(self.sort) + 1) % len(keys)]
        self.redraw()

    def action_reverse(self) -> None:
        self.reverse = not self.reverse
        self.redraw()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = event.column_key.value
        if key == self.sort:
            self.reverse = not self.reverse
        elif key:
            self.sort, self.reverse = key, False
        self.redraw()

    def action_kill(self) -> None:
        key = _cursor_key(self.query_one("#conns", DataTable))
        conn = next((c for c in self.conns if str(c.get("id")) == key), None)
        if conn is None:
            self.app.notify("no connection selected", severity="warning")
            return
        cid = conn.get("id")
        question = (f"Kill connection {cid}?\n{conn.get('tenant')}  {conn.get('client')} -> "
                    f"{conn.get('target') or '-'}  ({conn.get('state')})")

        def killed(yes: bool | None) -> None:
            if yes:
                self.post_message(Send("kill", {"id": cid}, origin=self))

        self.app.push_screen(ConfirmScreen(question, yes="Kill"), killed)


class TenantsPane(Vertical):
    """Every tenant with its state and limits: add, suspend, resume, set limits."""

    BINDINGS = [
        Binding("a", "add", "add"),
        Binding("s", "suspend", "suspend"),
        Binding("u", "resume", "resume"),
        Binding("l", "limits", "limits"),
        Binding("r", "refresh", "refresh"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.tenants: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="tenants-info", markup=False)
        table: DataTable[Any] = DataTable(id="tenants", cursor_type="row", zebra_stripes=True)
        for col in ("tenant", "state", "conns", "req/s", "bandwidth", "sources"):
            table.add_column(col, key=col)
        yield table

    def action_refresh(self) -> None:
        self.post_message(Send("tenant.list", origin=self))

    def on_answer(self, answer: Answer) -> None:
        cmd = answer.request.cmd
        if cmd == "tenant.list":
            if answer.error is None and isinstance(answer.result, list):
                self.tenants = answer.result
                self.redraw()
                self.post_message(TenantsListed([str(t.get("name")) for t in self.tenants]))
            return
        if answer.error is not None:
            self.app.notify(error_text(answer.error), severity="error")
            return
        name = answer.request.args.get("name")
        self.app.notify(f"tenant {name} {'suspended' if cmd == 'tenant.suspend' else 'resumed'}")
        self.action_refresh()

    def redraw(self) -> None:
        table = self.query_one("#tenants", DataTable)
        keep = _cursor_key(table)
        table.clear()
        for t in self.tenants:
            table.add_row(
                str(t.get("name")),
                Text("suspended", style="bold red") if t.get("suspended") else "serving",
                "-" if t.get("max_conns") is None else str(t["max_conns"]),
                "-" if t.get("rps") is None else f"{t['rps']:g}",
                "-" if t.get("bandwidth") is None else format_bandwidth(t["bandwidth"]),
                ", ".join(t.get("sources") or []) or "-",
                key=str(t.get("name")),
            )
        _keep_cursor(table, keep)
        suspended = sum(1 for t in self.tenants if t.get("suspended"))
        self.query_one("#tenants-info", Static).update(
            f"{len(self.tenants)} tenants, {suspended} suspended  (a: add, s: suspend, u: resume, l: limits)")

    def selected(self) -> dict[str, Any] | None:
        key = _cursor_key(self.query_one("#tenants", DataTable))
        found = next((t for t in self.tenants if str(t.get("name")) == key), None)
        if found is None:
            self.app.notify("no tenant selected", severity="warning")
        return found

    def _changed(self, result: dict[str, Any] | None) -> None:
        if result:
            self.app.notify(f"tenant {result.get('name')} saved")
            self.action_refresh()

    def action_add(self) -> None:
        self.app.push_screen(TenantAddForm(), self._changed)

    def action_limits(self) -> None:
        tenant = self.selected()
        if tenant is not None:
            self.app.push_screen(TenantLimitsForm(tenant), self._changed)

    def action_suspend(self) -> None:
        tenant = self.selected()
        if tenant is None:
            return
        name = tenant["name"]

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.post_message(Send("tenant.suspend", {"name": name}, origin=self))

        self.app.push_screen(ConfirmScreen(f"Suspend tenant {name}?\nIts clients get 403 until it is resumed.",
                                           yes="Suspend"), confirmed)

    def action_resume(self) -> None:
        tenant = self.selected()
        if tenant is not None:
            self.post_message(Send("tenant.resume", {"name": tenant["name"]}, origin=self))


class AuditPane(Vertical):
    """The live event tail, newest last, with the filter language of the connections tab."""

    BINDINGS = [
        Binding("slash", "filter", "filter"),
        Binding("b", "blocked", "blocked only"),
        Binding("c", "clear", "clear"),
        Binding("escape", "leave_filter", show=False),
    ]
    KEEP = 2000

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.events: deque[dict[str, Any]] = deque(maxlen=self.KEEP)
        self.filter = Filter()
        self.source: str | None = None
        self.problem = ""

    def compose(self) -> ComposeResult:
        yield Input(placeholder="/ filter: tenant:acme kind:request blocked example.com", id="audit-filter")
        yield Static("waiting for events…", id="audit-info", markup=False)
        yield RichLog(id="audit-log", max_lines=self.KEEP, wrap=False, markup=False, auto_scroll=True)

    def add(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if not self._composed():
            return
        if not select_events([event], self.filter):
            self._info()
            return
        self.query_one("#audit-log", RichLog).write(self.line(event))
        self._info()

    @staticmethod
    def line(ev: Mapping[str, Any]) -> Text:
        text = Text(no_wrap=True)
        text.append(event_time(ev), style="dim")
        text.append(f" {event_kind(ev):<10.10} ", style="cyan")
        text.append(f"{str(ev.get('tenant') or '-'):<10.10} ", style="bold")
        warn = event_blocked(ev) or event_kind(ev) in ("reload_refused", "problem", "dropped")
        text.append(event_summary(ev), style="red" if warn else "")
        return text

    def set_state(self, source: str | None, problem: str = "") -> None:
        if source is not None:
            self.source = source
        self.problem = problem
        self._info()

    def on_mount(self) -> None:
        self.redraw()  # what arrived before the pane was composed

    def _composed(self) -> bool:
        """False before compose and while the app quits (a stream may still deliver then)."""
        return bool(self.query("#audit-info")) and bool(self.query("#audit-log"))

    def _info(self) -> None:
        if not self._composed():
            return
        shown = len(select_events(self.events, self.filter)) if self.filter else len(self.events)
        parts = [f"{shown} of {len(self.events)} events" if self.filter else f"{len(self.events)} events"]
        if self.source:
            parts.append(f"from {self.source}")
        if self.problem:
            parts.append(self.problem)
        self.query_one("#audit-info", Static).update("  ·  ".join(parts))

    def redraw(self) -> None:
        if not self._composed():
            return
        log = self.query_one("#audit-log", RichLog)
        log.clear()
        for ev in select_events(self.events, self.filter):
            log.write(self.line(ev), scroll_end=False)
        log.scroll_end(animate=False, x_axis=False)  # the newest, as a tail shows
        self._info()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "audit-filter":
            self.filter = Filter.parse(event.value)
            self.redraw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#audit-log", RichLog).focus()

    def action_filter(self) -> None:
        self.query_one("#audit-filter", Input).focus()

    def action_leave_filter(self) -> None:
        self.query_one("#audit-log", RichLog).focus()

    def action_blocked(self) -> None:
        box = self.query_one("#audit-filter", Input)
        words = box.value.split()
        box.value = " ".join(w for w in words if w.lower() != "blocked") if self.filter.blocked else \
            " ".join([*words, "blocked"])

    def action_clear(self) -> None:
        self.events.clear()
        self.redraw()
