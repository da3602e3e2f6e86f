"""Health of a pool member: a circuit breaker fed by real connections and active checks.

States (g3 keeps the same three in its ``route_select`` health code, under other names):

- ``up``: in rotation. ``max_failures`` consecutive failures take it ``down``.
- ``down``: out of rotation until ``retry_after`` has passed since it went down.
- ``trial``: ``retry_after`` passed; one probe decides. With active health checks the probe is
  the next check; without, the next real connection to pick it. Success: ``up``; failure:
  ``down`` again for another ``retry_after``.

Only failures of the member itself count (a connect to the member's upstream proxy failing, its
TLS or credentials refused: ``arcus.escape.base.hop_failed``), never a destination that is down
behind a healthy proxy, nor a policy refusal.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

UP = "up"
DOWN = "down"
TRIAL = "trial"


@dataclass(eq=False)
class Member:
    escaper: object  # arcus.escape.base.Escaper
    name: str
    weight: int = 1
    probe: tuple[str, int] | None = None
    state: str = UP
    failures: int = 0  # consecutive
    down_since: float = 0.0
    last_error: str = ""
    last_check: float = 0.0
    checks_ok: int = 0
    checks_failed: int = 0
    current: int = 0  # smooth weighted round robin's running weight
    trial_busy: bool = field(default=False)

    def info(self, now: float) -> dict:
        out = {
            "escaper": self.name,
            "state": self.state,
            "weight": self.weight,
            "failures": self.failures,
            "checks_ok": self.checks_ok,
            "checks_failed": self.checks_failed,
        }
        if self.probe is not None:
            host, port = self.probe
            out["probe"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if self.last_error:
            out["last_error"] = self.last_error
        if self.state == DOWN:
            out["down_for"] = round(now - self.down_since, 3)
        return out


class Breaker:
    """The state machine over a pool's members (no I/O, time passed in)."""

    def __init__(self, members: list[Member], max_failures: int, retry_after: float, active: bool) -> None:
        self.members = members
        self.max_failures = max_failures
        self.retry_after = retry_after
        self.active = active  # health checks run: trials are theirs, not real connections'

    def usable(self, now: float) -> list[Member]:
        """Members a connection may use now. Without active checks, a member due for a trial is
        offered (to one connection at a time)."""
        out = []
        for m in self.members:
            if m.state == UP:
                out.append(m)
            elif not self.active:
                if m.state == DOWN and now - m.down_since >= self.retry_after:
                    m.state = TRIAL
                if m.state == TRIAL and not m.trial_busy:
                    out.append(m)
        return out

    def due_for_check(self, m: Member, now: float) -> bool:
        if m.state == DOWN and now - m.down_since >= self.retry_after:
            m.state = TRIAL
        return m.state != DOWN

    def started(self, m: Member) -> None:
        if m.state == TRIAL:
            m.trial_busy = True

    def success(self, m: Member) -> None:
        m.failures = 0
        m.trial_busy = False
        m.state = UP

    def failure(self, m: Member, reason: str, now: float) -> None:
        m.failures += 1
        m.last_error = reason
        m.trial_busy = False
        if m.state == TRIAL or (m.state == UP and m.failures >= self.max_failures):
            m.state = DOWN
            m.down_since = now

    def abandoned(self, m: Member) -> None:
        """A trial connection ended without a verdict (cancelled, or the destination failed)."""
        m.trial_busy = False


async def tcp_probe(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection to ``host:port`` opens within ``timeout``; else why not."""
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await asyncio.wait_for(loop.create_connection(asyncio.Protocol, host, port), timeout)
    except TimeoutError:
        return f"health check: no TCP connection within {timeout:g}s"
    except OSError as exc:
        return f"health check: {exc.strerror or exc}"
    transport.abort()
    return None


Probe = Callable[[str, int, float], Awaitable[str | None]]


async def check_round(breaker: Breaker, timeout: float, clock: Callable[[], float], probe: Probe = tcp_probe) -> None:
    """Probe every member that is due, together, and feed the results to ``breaker``."""
    now = clock()
    due = [(m, m.probe) for m in breaker.members if m.probe is not None and breaker.due_for_check(m, now)]
    if not due:
        return
    results = await asyncio.gather(*(probe(host, port, timeout) for _, (host, port) in due))
    now = clock()
    for (m, _), error in zip(due, results, strict=True):
        m.last_check = now
        if error is None:
            m.checks_ok += 1
            breaker.success(m)
        else:
            m.checks_failed += 1
            breaker.failure(m, error, now)


async def check_loop(
    owner_ref: weakref.ref[Any],
    interval: float,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    probe: Probe = tcp_probe,
) -> None:
    """A :func:`check_round` every ``interval`` while the owning escaper lives and is not
    closed (held weakly: a Snapshot dropped without close() ends the loop too)."""
    while True:
        owner = owner_ref()
        if owner is None or owner.closed:
            return
        breaker: Breaker = owner.breaker
        del owner
        await check_round(breaker, timeout, clock, probe)
        await asyncio.sleep(interval)
