"""`arcus tui`: the live dashboard of one daemon, over its control socket.

The app owns the :class:`arcus.tui.link.DaemonLink` and three kinds of worker: one follows
``stats.watch`` (the heartbeat: the overview, and the line that says whether the daemon is
reachable), one follows ``events.watch`` (the audit tail), and one per command a widget asks
for with :class:`arcus.tui.messages.Send`. When the daemon goes away the streams retry with a
bounded backoff and the top line says so; the last figures stay on screen until new ones come.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Static, TabbedContent, TabPane

from arcus.control.protocol import ControlError
from arcus.tui.forms import FORM_CSS, MessageScreen, error_text
from arcus.tui.link import DaemonLink, Down, Item, Sleep, Up
from arcus.tui.messages import Answer, EventArrived, EventsState, LinkChanged, Send, StatsArrived, TenantsListed
from arcus.tui.model import Backoff, StatsModel
from arcus.tui.panes import AuditPane, ConnsPane, OverviewPane, TenantsPane

EVENTS_BACKLOG = 100
"""Audit events a daemon without ``events.watch`` sends first from its ``audit.tail`` backlog."""

CSS = """
#link { height: 1; background: $panel; padding: 0 1; }
#link.down { background: $error 40%; height: auto; max-height: 5; }
TabbedContent { height: 1fr; }
TabPane { padding: 0; }
#box, #health { height: 1; padding: 0 1; }
#box-trend { height: 1; padding: 0 1; color: $accent; }
#conns-filter, #audit-filter { height: 1; border: none; padding: 0 1; }
#conns-info, #tenants-info, #audit-info { height: 1; padding: 0 1; color: $text-muted; }
DataTable, RichLog { height: 1fr; }
""" + FORM_CSS


class ArcusApp(App[None]):
    TITLE = "arcus"
    CSS = CSS
    BINDINGS = [
        Binding("1", "show('overview')", "overview"),
        Binding("2", "show('connections')", "conns"),
        Binding("3", "show('tenants')", "tenants"),
        Binding("4", "show('audit')", "audit"),
        Binding("ctrl+r", "reload", "reload"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, socket: Path, *, interval: float = 1.0, conns_every: float = 2.0,
                 backoff: Callable[[], Backoff] = Backoff, sleep: Sleep = asyncio.sleep) -> None:
        """``interval``: seconds between ``stats.watch`` updates; ``conns_every``: seconds between
        refreshes of the connections tab while it is shown; ``backoff`` and ``sleep`` pace the
        reconnection attempts (tests make them short)."""
        super().__init__()
        self.socket = Path(socket)
        self.interval = interval
        self.conns_every = conns_every
        self.link = DaemonLink(self.socket, backoff=backoff, sleep=sleep)
        self.model = StatsModel()
        self.connected = False
        self.ever_connected = False
        # The widgets of the main screen, kept: App.query_one() searches the active screen,
        # which is a dialog while one is open, and the streams go on meanwhile.
        self.bar = Static(f"connecting to {self.socket}…", id="link", markup=False)
        self.tabs = TabbedContent(initial="overview")
        self.overview = OverviewPane()
        self.conns = ConnsPane(id="conns-pane")
        self.tenants = TenantsPane(id="tenants-pane")
        self.audit = AuditPane(id="audit-pane")

    def compose(self) -> ComposeResult:
        yield self.bar
        with self.tabs:
            with TabPane("1 Overview", id="overview"):
                yield self.overview
            with TabPane("2 Connections", id="connections"):
                yield self.conns
            with TabPane("3 Tenants", id="tenants"):
                yield self.tenants
            with TabPane("4 Audit", id="audit"):
                yield self.audit
        yield Footer()

    def on_mount(self) -> None:
        # Workers get the coroutine function, not a coroutine: one that never starts (the app
        # quit first) leaves nothing un-awaited behind.
        # (textual types run_worker's work as returning Never: the ignores are for that)
        self.run_worker(self._follow_stats, name="stats.watch", group="streams")  # type: ignore[arg-type]
        self.run_worker(self._follow_events, name="events.watch", group="streams")  # type: ignore[arg-type]
        self.set_interval(self.conns_every, self._poll_conns, name="conns poll")

    async def on_unmount(self) -> None:
        await self.link.close()

    # -- the streams ------------------------------------------------------------------------

    async def _follow_stats(self) -> None:
        async for ev in self.link.follow("stats.watch", {"interval": self.interval},
                                         idle_timeout=self.interval + 10):
            if isinstance(ev, Up):
                self.post_message(LinkChanged(True))
            elif isinstance(ev, Item):
                if isinstance(ev.value, dict):
                    self.post_message(StatsArrived(ev.value))
            elif isinstance(ev, Down):
                self.post_message(LinkChanged(False, ev.error, ev.retry_in, ev.attempt))

    async def _follow_events(self) -> None:
        # A daemon without events.watch (older than the dashboard) still has its audit tail.
        fallback = ("audit.tail", {"n": EVENTS_BACKLOG})
        async for ev in self.link.follow("events.watch", {}, fallback=fallback):
            if isinstance(ev, Up):
                self.post_message(EventsState(source=ev.cmd))
            elif isinstance(ev, Item):
                if isinstance(ev.value, dict):
                    self.post_message(EventArrived(ev.value))
            elif isinstance(ev, Down):
                self.post_message(EventsState(error=ev.error, retry_in=ev.retry_in))

    def on_stats_arrived(self, message: StatsArrived) -> None:
        self.model.update(message.stats)
        self.overview.show(self.model)
        if self.connected:
            self._show_link()

    def on_tenants_listed(self, message: TenantsListed) -> None:
        self.model.set_known(message.names)
        self.overview.show(self.model)

    def on_link_changed(self, message: LinkChanged) -> None:
        bar = self.bar
        if message.up:
            self.connected = self.ever_connected = True
            bar.remove_class("down")
            self._show_link()
            # a (re)started daemon: fetch the lists afresh
            self.tenants.action_refresh()
            self.conns.action_refresh()
            # the events stream reconnects on its own, silently until an event comes: the
            # daemon's "not running" must not stay on the audit tab meanwhile
            self.audit.set_state(None, "")
            return
        self.connected = False
        bar.add_class("down")
        err = message.error
        text = f"○ {err.message if err else 'daemon unreachable'}\n  retrying in {message.retry_in:g}s " \
               f"(attempt {message.attempt})"
        if self.ever_connected:
            text += "; the figures below are the last received"
        else:
            text += "; q quits"
            if err is not None and err.hint:
                text += f"\n  {err.hint}"
        bar.update(text)

    def _show_link(self) -> None:
        m = self.model
        gen = f" · generation {m.generation}" if m.generation is not None else ""
        line = Text(f"● arcus{gen} · {self.socket}", no_wrap=True, overflow="ellipsis")
        self.bar.update(line)

    def on_event_arrived(self, message: EventArrived) -> None:
        self.audit.add(message.event)

    def on_events_state(self, message: EventsState) -> None:
        pane = self.audit
        if message.error is None:
            pane.set_state(message.source)
        else:
            pane.set_state(None, f"{message.error.message} (retrying in {message.retry_in:g}s)")

    # -- commands -----------------------------------------------------------------------------

    def on_send(self, message: Send) -> None:
        message.stop()
        self.run_worker(functools.partial(self._send, message), name=message.cmd,  # type: ignore[arg-type]
                        group="commands")

    async def _send(self, message: Send) -> None:
        try:
            result: Any = await self.link.call(message.cmd, message.args)
        except ControlError as exc:
            answer = Answer(message, error=exc)
        else:
            answer = Answer(message, result)
        target = message.origin or self
        if target is self or target.is_attached:  # type: ignore[attr-defined]
            target.post_message(answer)

    def on_answer(self, answer: Answer) -> None:
        if answer.request.cmd != "reload":
            return
        if answer.error is None:
            gen = (answer.result or {}).get("generation")
            self.notify(f"reloaded: now serving generation {gen}")
        elif answer.error.code == "invalid":
            self.push_screen(MessageScreen("Reload refused", error_text(answer.error)))
        else:
            self.notify(error_text(answer.error), title="reload failed", severity="error")

    def action_reload(self) -> None:
        self.post_message(Send("reload", origin=self))

    def action_show(self, tab: str) -> None:
        self.tabs.active = tab
        if self.connected and tab == "connections":
            self.conns.action_refresh()
        elif self.connected and tab == "tenants":
            self.tenants.action_refresh()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        table = event.pane.query("DataTable, RichLog").first()
        table.focus()

    def _poll_conns(self) -> None:
        if self.connected and self.tabs.active == "connections":
            self.conns.action_refresh()
