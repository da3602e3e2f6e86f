"""What ``ctl health`` says beyond "up": problems the box has had in the last minute.

A daemon that answers is not necessarily well: with its data dir full it still forwards every
request while every audit event is dropped, and out of file descriptors it resets connections
it never sees. ``HealthWatch.observe`` is fed the running drop and shortage counters by the
daemon's sweeper (once a second, no clock of its own); ``problems`` names each counter that moved
within ``window`` seconds, with what to look at. ``ctl health`` reports ``status: degraded`` and
the list while there is one (exit status stays 0: the daemon is up and serving).
"""

from __future__ import annotations

from collections.abc import Mapping

WINDOW = 60.0

# counter name -> what the operator reads in ``ctl health``
DESCRIPTIONS: Mapping[str, str] = {
    "audit_dropped": "audit events were dropped (a full disk, or a queue over its bound): see `arcus audit stats` and the daemon log",
    "records_dropped": "request records were dropped before the access and audit logs (the records queue was full)",
    "fds_low": "the daemon ran low on file descriptors (connections may have been reset unseen): raise LimitNOFILE",
    "ca_unreadable": "a CA's files could not be read (a damaged or missing key): intercepted tunnels use the CA "
                     "loaded before, or fail; see the daemon log and `arcus ca show`",
}


class HealthWatch:
    __slots__ = ("window", "_last", "_moved")

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self._last: dict[str, int] = {}
        self._moved: dict[str, tuple[float, int]] = {}  # name -> (when it last moved, by how much since first seen moving)

    def observe(self, now: float, counters: Mapping[str, int]) -> list[str]:
        """Take the counters' values now; return the problems that start (no episode within
        ``window``), for the ``problem`` event of ``events.watch``."""
        started: list[str] = []
        for name, value in counters.items():
            before = self._last.get(name)
            self._last[name] = value
            if before is not None and value > before:
                _, total = self._moved.get(name, (now, 0))
                if self.problem_age(name, now) is None:
                    total = 0  # an old episode: count this one afresh
                    started.append(name)
                self._moved[name] = (now, total + value - before)
        return started

    def problem_age(self, name: str, now: float) -> float | None:
        moved = self._moved.get(name)
        if moved is None or now - moved[0] > self.window:
            return None
        return now - moved[0]

    def problems(self, now: float) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for name, (when, count) in sorted(self._moved.items()):
            if now - when <= self.window:
                out.append({"problem": name, "count": count, "seconds_ago": round(now - when, 1),
                            "detail": DESCRIPTIONS.get(name, name)})
        return out
