"""The typed messages between the dashboard's widgets and the app's workers.

Widgets and screens never talk to the daemon: they post :class:`Send`; the app runs the
command in a worker (through :class:`arcus.tui.link.DaemonLink`) and posts :class:`Answer`
back to whoever sent it. The workers that read the streams post the other messages.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message
from textual.message_pump import MessagePump

from arcus.control.protocol import ControlError


class Send(Message):
    """Run one control command; the :class:`Answer` goes to ``origin`` (None: nobody waits)."""

    def __init__(self, cmd: str, args: dict[str, Any] | None = None, *, origin: MessagePump | None = None) -> None:
        super().__init__()
        self.cmd = cmd
        self.args = dict(args or {})
        self.origin = origin


class Answer(Message):
    """The daemon's reply to a :class:`Send`: ``result``, or ``error`` when it refused or is gone."""

    def __init__(self, request: Send, result: Any = None, error: ControlError | None = None) -> None:
        super().__init__()
        self.request = request
        self.result = result
        self.error = error

    @property
    def ok(self) -> bool:
        return self.error is None


class StatsArrived(Message):
    """One ``stats.watch`` item."""

    def __init__(self, stats: dict[str, Any]) -> None:
        super().__init__()
        self.stats = stats


class LinkChanged(Message):
    """The stats stream (the dashboard's heartbeat) is up, or down with why and when it retries."""

    def __init__(self, up: bool, error: ControlError | None = None, retry_in: float = 0.0, attempt: int = 0) -> None:
        super().__init__()
        self.up = up
        self.error = error
        self.retry_in = retry_in
        self.attempt = attempt


class EventArrived(Message):
    """One ``events.watch`` item (or ``audit.tail``'s, from a daemon without events.watch)."""

    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__()
        self.event = event


class EventsState(Message):
    """The events stream answered (``source`` names the command), or failed with ``error``."""

    def __init__(self, source: str | None = None, error: ControlError | None = None, retry_in: float = 0.0) -> None:
        super().__init__()
        self.source = source
        self.error = error
        self.retry_in = retry_in


class TenantsListed(Message):
    """The tenants pane has a fresh ``tenant.list``: the overview lists them all."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names
