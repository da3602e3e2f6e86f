"""`route_select`: spread connections over a pool of escapers.

Pick policies:

- ``round_robin``: each usable member in turn.
- ``weighted_round_robin``: smooth weighted round robin (nginx's): over any window of
  sum(weights) picks each member gets its weight's share, interleaved, not in bursts.
- ``consistent_hash``: weighted rendezvous hashing (HRW) of the client's address, or of the
  user's name with ``hash_by: user`` (the address when there is no user): a key keeps its
  member while that member is usable, and when one goes out only its keys move.

Members leave and rejoin rotation by the circuit breaker of ``arcus.escape.health`` (active TCP
checks every ``health_interval`` when set). A connection whose member fails by its own fault is
tried once more on the next member in pick order, within the connect timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import time
import weakref
from collections.abc import Callable

from arcus.config.escaper.route_select import RouteSelectEscaperConfig
from arcus.errors import ErrorCode, EscapeError
from arcus.escape.base import Connected, Escaper, hop_failed
from arcus.escape.health import UP, Breaker, Member, check_loop

MAX_TRIES = 2


def _unit(key: bytes) -> float:
    """A hash of ``key`` as a float in (0, 1)."""
    digest = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
    return (digest + 1) / (2**64 + 1)


def rendezvous_order(key: str, members: list[Member]) -> list[Member]:
    """Members by weighted HRW score for ``key``, best first (score = -weight / ln(u))."""
    encoded = key.encode("utf-8", "surrogateescape") + b"\x00"
    return sorted(
        members,
        key=lambda m: -m.weight / math.log(_unit(encoded + m.name.encode())),
        reverse=True,
    )


class RouteSelectEscaper(Escaper):
    type_name = "route_select"
    config: RouteSelectEscaperConfig

    def __init__(
        self, config: RouteSelectEscaperConfig, escapers: dict[str, Escaper], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(config)
        self.clock = clock  # the breaker's time (retry_after, down_for); tests drive their own
        nodes = config.next
        self.pick = config.pick
        self.hash_by = config.hash_by
        self.interval = config.health_interval
        self.health_timeout = config.health_timeout
        members = []
        for node in nodes:
            escaper = escapers[node.escaper]
            probe = None
            if node.probe is not None:
                host, _, port = node.probe.rpartition(":")
                probe = (host.strip("[]"), int(port))
            elif self.interval is not None:
                probe = escaper.probe_address()
            members.append(Member(escaper, node.escaper, node.weight, probe))
        self.breaker = Breaker(members, config.max_failures, config.retry_after, self.interval is not None)
        self._rr = itertools.count()
        self.closed = False
        self._task: asyncio.Task | None = None

    def unprobed(self) -> list[str]:
        """Members health checks cannot reach (no ``probe`` and no address of their own)."""
        if self.interval is None:
            return []
        return [m.name for m in self.breaker.members if m.probe is None]

    # -- life cycle

    async def start(self) -> None:
        if self._task is None and self.interval is not None and not self.closed:
            self._task = asyncio.get_running_loop().create_task(
                check_loop(weakref.ref(self), self.interval, self.health_timeout, self.clock), name=f"arcus-health-{self.name}"
            )

    def close(self) -> None:
        self.closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    def adopt(self, previous: Escaper) -> None:
        """Keep breaker states of members that are still in the pool (a reload must not put a
        dead upstream back in rotation)."""
        if not isinstance(previous, RouteSelectEscaper):
            return
        old = {m.name: m for m in previous.breaker.members}
        for m in self.breaker.members:
            before = old.get(m.name)
            if before is not None:
                m.state, m.failures, m.down_since, m.last_error = (
                    before.state, before.failures, before.down_since, before.last_error,
                )
                m.checks_ok, m.checks_failed = before.checks_ok, before.checks_failed  # counters go on, as failures do
                m.trial_busy = False

    # -- picking

    def order(self, client_ip: str, user: str | None, now: float) -> list[Member]:
        """Usable members, the picked one first, then the order a retry follows."""
        usable = self.breaker.usable(now)
        if not usable:
            return []
        if self.pick == "consistent_hash":
            key = user if self.hash_by == "user" and user else client_ip
            return rendezvous_order(key, usable)
        if self.pick == "weighted_round_robin":
            total = 0
            best = usable[0]
            for m in usable:
                m.current += m.weight
                total += m.weight
                if m.current > best.current:
                    best = m
            best.current -= total
            first = best
        else:
            first = usable[next(self._rr) % len(usable)]
        i = usable.index(first)
        return usable[i:] + usable[:i]

    async def connect(
        self, host, port, client_ip, protocol_factory, *, timeout, ssl=None, check=None, user=None
    ) -> Connected:
        if self.interval is not None and self._task is None and not self.closed:
            await self.start()  # the runtime starts it; this covers a Snapshot it did not
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        candidates = self.order(client_ip, user, self.clock())
        if not candidates:
            reasons = "; ".join(f"{m.name}: {m.last_error or m.state}" for m in self.breaker.members)
            raise EscapeError(
                f"no upstream of pool {self.name} is in service ({reasons})", code=ErrorCode.UPSTREAM_CONNECT
            )
        last: EscapeError | None = None
        failed: list[str] = []  # "member: why", each member tried
        for member in candidates[:MAX_TRIES]:
            left = deadline - loop.time()
            if left <= 0:
                break
            self.breaker.started(member)
            try:
                conn = await member.escaper.connect(  # type: ignore[attr-defined]
                    host, port, client_ip, protocol_factory, timeout=left, ssl=ssl, check=check, user=user
                )
            except EscapeError as exc:
                if hop_failed(exc) is None:
                    self.breaker.abandoned(member)
                    raise  # the destination, or policy: another member would not do better
                self.breaker.failure(member, exc.message, self.clock())
                last = exc
                failed.append(f"{member.name}: {exc.message}")
                continue
            except BaseException:
                self.breaker.abandoned(member)
                raise
            self.breaker.success(member)
            return conn
        if last is None:
            raise EscapeError(f"connecting through pool {self.name} timed out", code=ErrorCode.UPSTREAM_TIMEOUT)
        if len(failed) > 1:  # the client hears of every member tried, as route_failover names both
            raise EscapeError(f"every member of pool {self.name} tried failed: {'; '.join(failed)}",
                              code=last.code, hop=last.hop, socks5=last.socks5)
        raise last

    # -- introspection

    @property
    def next_escapers(self) -> tuple[Escaper, ...]:
        return tuple(m.escaper for m in self.breaker.members)  # type: ignore[misc]

    @property
    def varies_by_client(self) -> bool:
        return self.pick == "consistent_hash" or super().varies_by_client

    def info(self) -> dict:
        now = self.clock()
        return {
            **super().info(),
            "pick": self.pick,
            "health_checks": self.interval is not None,
            "members": [m.info(now) for m in self.breaker.members],
            "in_service": sum(1 for m in self.breaker.members if m.state == UP),
        }
