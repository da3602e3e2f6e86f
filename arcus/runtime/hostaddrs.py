"""The box's own addresses, for the egress guard (read from /proc; no subprocess, no extra
package), and :class:`AddressWatcher`, which keeps them current while the daemon runs."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable
from pathlib import Path

from arcus.policy.egress import HostAddresses

log = logging.getLogger("arcus.hostaddrs")


def own_addresses() -> frozenset[str]:
    found: set[str] = set()
    found.update(_from_fib_trie(Path("/proc/net/fib_trie")))
    found.update(_from_if_inet6(Path("/proc/net/if_inet6")))
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            addr = info[4][0]
            if isinstance(addr, str):  # IPv4 or IPv6; typeshed also allows (int, bytes), a family Python cannot decode
                found.add(addr.split("%", 1)[0])
    except OSError:
        pass
    return frozenset(found)


def _from_fib_trie(path: Path) -> set[str]:
    """Addresses marked ``/32 host LOCAL`` in the kernel's IPv4 routing trie."""
    out: set[str] = set()
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    last = ""
    for line in lines:
        s = line.strip()
        if s.startswith("|--"):
            last = s[3:].strip()
        elif s.startswith("/32 host LOCAL") and last:
            out.add(last)
    return out


def _from_if_inet6(path: Path) -> set[str]:
    out: set[str] = set()
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if parts and len(parts[0]) == 32:
            try:
                out.add(str(ipaddress.IPv6Address(int(parts[0], 16))))
            except ValueError:
                continue
    return out


# ------------------------------------------------------------------------------ watching changes

RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
DEBOUNCE = 0.2  # one re-read for a burst of changes (an interface brought up adds several)
POLL_INTERVAL = 5.0  # without netlink: re-read this often


class AddressWatcher:
    """Keeps a :class:`HostAddresses` current while the daemon runs, without a reload.

    On Linux a netlink socket subscribed to address changes (RTM_NEWADDR/RTM_DELADDR, IPv4
    and IPv6) is read by the event loop; any message, or an overrun, schedules one re-read of
    the addresses (``read``, in a worker thread) ``DEBOUNCE`` seconds later. The messages
    themselves are not parsed: the re-read is the one source of truth. Where netlink cannot
    be opened the addresses are re-read every ``POLL_INTERVAL`` seconds instead.

    After a re-read the set is replaced whole, and ``on_gained`` is called with the addresses
    the box has gained (the daemon closes idle pooled connections to them).
    """

    def __init__(
        self,
        host: HostAddresses,
        on_gained: Callable[[frozenset], object] = lambda gained: None,
        *,
        read: Callable[[], frozenset[str]] = own_addresses,
        debounce: float = DEBOUNCE,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.host = host
        self.on_gained = on_gained
        self.read = read
        self.debounce = debounce
        self.poll_interval = poll_interval
        self.mode = "stopped"  # "netlink", "poll" or "stopped", for logs and tests
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None
        self._again = False  # a change arrived while a re-read was running
        self._lock = asyncio.Lock()  # re-reads one at a time: the last applied is the last read

    def start(self, netlink: bool = True) -> None:
        """Begin watching (on the event loop); ``netlink=False`` forces the timer."""
        self._loop = asyncio.get_running_loop()
        sock = _open_netlink() if netlink else None
        if sock is not None:
            try:
                self._loop.add_reader(sock.fileno(), self._readable)
            except (NotImplementedError, OSError, ValueError):
                sock.close()
                sock = None
        self._sock = sock
        if sock is not None:
            self.mode = "netlink"
        else:
            self.mode = "poll"
            self._timer = self._loop.call_later(self.poll_interval, self._tick)

    def close(self) -> None:
        self.mode = "stopped"
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def refresh(self) -> frozenset:
        """Re-read the addresses now and apply them; the addresses gained."""
        async with self._lock:
            found = await asyncio.to_thread(self.read)
            gained, lost = self.host.replace(found)
        if gained or lost:
            log.info(
                "this box's addresses changed:%s%s",
                f" gained {', '.join(sorted(map(str, gained)))} (refused as destinations for off-box clients)" if gained else "",
                f" lost {', '.join(sorted(map(str, lost)))}" if lost else "",
            )
        if gained:
            self.on_gained(gained)
        return gained

    # -- netlink

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        changed = False
        for _ in range(1000):  # bounded: a flood of messages still leaves the loop its turn
            try:
                if not sock.recv(65536):
                    break
                changed = True
            except BlockingIOError:
                break
            except OSError:  # ENOBUFS: messages were lost; the re-read does not need them
                changed = True
                break
        if changed:
            self._schedule()

    def _schedule(self) -> None:
        if self._task is not None:  # reading now: read once more when it ends
            self._again = True
        elif self._timer is None and self._loop is not None:
            self._timer = self._loop.call_later(self.debounce, self._fire)

    def _fire(self) -> None:
        loop = self._loop
        assert loop is not None  # a timer of _schedule's, on the loop start() set (never unset)
        self._timer = None
        self._again = False
        self._task = loop.create_task(self._run(), name="arcus-hostaddrs-refresh")

    async def _run(self) -> None:
        try:
            await self.refresh()
        except Exception:  # noqa: BLE001 - a failed read keeps the previous set; log and go on
            log.exception("re-reading this box's addresses failed; the previous set is kept")
        finally:
            self._task = None
        if self.mode == "stopped":
            return
        if self._again:
            self._schedule()
        elif self.mode == "poll":
            assert self._loop is not None  # a task of _fire's or _tick's, on the loop start() set
            self._timer = self._loop.call_later(self.poll_interval, self._tick)

    # -- without netlink

    def _tick(self) -> None:
        self._timer = None
        if self.mode == "poll":
            assert self._loop is not None  # a timer of start()'s or _run's, on the loop start() set
            self._task = self._loop.create_task(self._run(), name="arcus-hostaddrs-poll")


def _open_netlink() -> socket.socket | None:
    family = getattr(socket, "AF_NETLINK", None)
    if family is None:
        return None
    try:
        sock = socket.socket(family, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    except OSError as exc:
        log.info("cannot watch address changes with netlink (%s); re-reading every %gs", exc, POLL_INTERVAL)
        return None
    try:
        sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
    except OSError as exc:
        sock.close()
        log.info("cannot watch address changes with netlink (%s); re-reading every %gs", exc, POLL_INTERVAL)
        return None
    return sock
