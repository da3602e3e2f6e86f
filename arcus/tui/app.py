"""`arcus tui`: the live dashboard of one daemon, over its control socket.

The app owns the :class:`arcus.tui.link.DaemonLink` and three kinds of worker: one follows
``stats.watch`` (the heartbeat: the overview, and the line that says whether the daemon is
reachable), one follows ``events.watch`` (the audit tail), and one per command a widget asks
for with :class:`arcus.tui.messages.Send`. When the daemon goes away the streams retry with a
bounded backoff and the top line says so; the last figures stay on screen until new ones come.

A terminal below :data:`MIN_SIZE` gets one notice (:class:`TooSmall`) in place of the dashboard,
which goes on underneath and is shown again as it was once the terminal is large enough.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.geometry import Size
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane

from arcus.control.protocol import ControlError
from arcus.tui.forms import FORM_CSS, MessageScreen, error_text
from arcus.tui.link import DaemonLink, Down, Item, Sleep, Up
from arcus.tui.messages import Answer, EventArrived, EventsState, LinkChanged, Send, StatsArrived, TenantsListed
from arcus.tui.model import Backoff, StatsModel
from arcus.tui.panes import AuditPane, ConnsPane, OverviewPane, TenantsPane

MIN_SIZE = (80, 24)
"""The smallest terminal, in columns and rows, the dashboard is shown in. Below it the widest
fixed parts are cut first: the dialogs are 76 columns (``FORM_CSS``); the overview's box and
health lines and the connections' info line take 75 with small figures and grow with a busier
box; the reload-refusal dialog is 22 rows and a form showing a refusal 18 or more."""

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
TooSmall { align: center middle; }
#too-small { width: 100%; height: auto; padding: 0 1; text-align: center; }
""" + FORM_CSS


def size_notice(width: int, height: int) -> str | None:
    """What a terminal of ``width`` x ``height`` shows instead of the dashboard; None: the dashboard."""
    min_width, min_height = MIN_SIZE
    if width >= min_width and height >= min_height:
        return None
    return (f"arcus tui needs at least {min_width}x{min_height}; this terminal is {width}x{height}"
            " — enlarge it (q quits)")


class TooSmall(Screen[None]):
    """The notice of a terminal below :data:`MIN_SIZE`, alone on the screen.

    It goes on top of the screen stack, so the dashboard and a dialog open under it keep their
    state and take no keys; the app lets only quitting through (:meth:`ArcusApp.check_action`).
    """

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        yield Static(self.text, id="too-small", markup=False)

    def say(self, text: str) -> None:
        self.text = text
        for line in self.query("#too-small").results(Static):  # none before compose: it uses self.text
            line.update(text)


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
        self.notice: TooSmall | None = None
        """On top of every screen while the terminal is below MIN_SIZE."""
        self._held: list[Screen[Any]] = []
        """Dialogs the app opened while the notice was shown: they open when it goes."""

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
        self._fit(self.size)

    async def on_unmount(self) -> None:
        await self.link.close()

    # -- the terminal's size ----------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size)

    def _fit(self, size: Size) -> None:
        """The notice while the terminal is below MIN_SIZE, the dashboard (as it was) otherwise."""
        text = size_notice(size.width, size.height)
        if text is not None:
            if self.notice is None:
                self.notice = TooSmall(text)
                self.push_screen(self.notice)
                self.refresh_bindings()
            else:
                self.notice.say(text)
            return
        if self.notice is None:
            return
        # nothing goes above the notice (check_action, open), so it is the top screen
        self.notice = None
        self.pop_screen()
        held, self._held = self._held, []
        for screen in held:
            self.push_screen(screen)
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Under the notice the dashboard's keys wait for the dashboard (a reload, a tab, the
        # command palette are not done unseen); q and ctrl+q quit, ctrl+c says how to.
        return self.notice is None or action in ("quit", "help_quit")

    def open(self, screen: Screen[Any]) -> None:
        """Open a dialog the app was not asked for at a key (a refused reload's answer): held
        while the notice is shown, since the notice stays the top screen until it goes."""
        if self.notice is not None:
            self._held.append(screen)
        else:
            self.push_screen(screen)

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
            self.open(MessageScreen("Reload refused", error_text(answer.error)))
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
