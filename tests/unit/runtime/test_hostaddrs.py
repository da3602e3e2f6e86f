"""The box's addresses: parsing /proc, and the watcher that keeps the live set current (with an
injected reader: what the kernel says is exercised in tests/integration/test_egress_netns.py)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import pytest

from arcus.policy.egress import HostAddresses, parse_ip
from arcus.runtime.hostaddrs import AddressWatcher, _from_fib_trie, _from_if_inet6, own_addresses

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.99.0.0/24 2 0 2
        |-- 10.99.0.0
           /24 link UNICAST
        |-- 10.99.0.1
           /32 host LOCAL
        |-- 10.99.0.255
           /32 link BROADCAST
     |-- 127.0.0.1
        /32 host LOCAL
"""

IF_INET6 = """\
00000000000000000000000000000001 01 80 10 80       lo
fe800000000000000000000000000001 02 40 20 80     eth0
20010db8000000000000000000000005 02 40 00 80     eth0
"""


def test_proc_files_are_parsed(tmp_path: Path) -> None:
    (tmp_path / "fib_trie").write_text(FIB_TRIE)
    (tmp_path / "if_inet6").write_text(IF_INET6)
    assert _from_fib_trie(tmp_path / "fib_trie") == {"10.99.0.1", "127.0.0.1"}
    assert _from_if_inet6(tmp_path / "if_inet6") == {"::1", "fe80::1", "2001:db8::5"}
    assert _from_fib_trie(tmp_path / "missing") == set()


def test_own_addresses_holds_loopback() -> None:
    assert "127.0.0.1" in own_addresses()


class Reader:
    """Hands out address sets in turn (the last one forever); counts the reads; can be held."""

    def __init__(self, *sets: set[str]) -> None:
        self.sets = list(sets)
        self.reads = 0
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self) -> frozenset[str]:
        self.gate.wait(5)
        self.reads += 1
        return frozenset(self.sets.pop(0) if len(self.sets) > 1 else self.sets[0])


async def until(ok, bound: float = 5.0) -> None:  # noqa: ANN001 - a predicate
    deadline = time.monotonic() + bound
    while not ok():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def test_without_netlink_a_timer_rereads_and_reports_what_was_gained() -> None:
    async def main() -> None:
        host = HostAddresses(["10.99.0.1"])
        gained: list[frozenset] = []
        read = Reader({"10.99.0.1"}, {"10.99.0.1", "10.99.0.9"})
        w = AddressWatcher(host, gained.append, read=read, poll_interval=0.01)
        w.start(netlink=False)
        try:
            assert w.mode == "poll"
            await until(lambda: gained)
            assert gained == [frozenset({parse_ip("10.99.0.9")})]
            assert host.is_local("10.99.0.9")
            n = read.reads
            await until(lambda: read.reads >= n + 2)  # and it keeps polling
            assert gained == [frozenset({parse_ip("10.99.0.9")})]  # nothing new: nothing reported
        finally:
            w.close()
        n = read.reads
        await asyncio.sleep(0.05)
        assert read.reads <= n + 1  # stopped (at most the read already running)

    asyncio.run(main())


def test_a_burst_of_changes_is_one_reread_and_a_change_during_it_one_more() -> None:
    async def main() -> None:
        host = HostAddresses()
        read = Reader({"10.99.0.1"}, {"10.99.0.1", "10.99.0.2"}, {"10.99.0.1", "10.99.0.2", "10.99.0.3"})
        w = AddressWatcher(host, read=read, debounce=0.02)
        w._loop, w.mode = asyncio.get_running_loop(), "netlink"  # as start() would; messages fed by hand
        for _ in range(5):
            w._schedule()
        await until(lambda: read.reads == 1 and w._task is None)
        assert {str(a) for a in host.addresses} == {"10.99.0.1"}
        read.gate.clear()  # the next read is slow; two changes arrive while it runs
        w._schedule()
        await until(lambda: w._task is not None)
        w._schedule()
        w._schedule()
        read.gate.set()
        await until(lambda: read.reads == 3 and w._task is None and w._timer is None)
        assert {str(a) for a in host.addresses} == {"10.99.0.1", "10.99.0.2", "10.99.0.3"}
        w.close()

    asyncio.run(main())


def test_a_failed_read_keeps_the_previous_set() -> None:
    def broken() -> frozenset[str]:
        raise OSError("no /proc")

    async def main() -> None:
        host = HostAddresses(["10.99.0.1"])
        w = AddressWatcher(host, read=broken, debounce=0.0)
        w._loop, w.mode = asyncio.get_running_loop(), "netlink"
        w._schedule()
        await until(lambda: w._timer is None and w._task is None)
        assert host.is_local("10.99.0.1")
        w.close()

    asyncio.run(main())


@pytest.mark.skipif(not hasattr(socket, "AF_NETLINK"), reason="netlink is Linux only")
def test_netlink_is_used_where_the_kernel_has_it() -> None:
    async def main() -> None:
        w = AddressWatcher(HostAddresses(), read=Reader({"127.0.0.1"}))
        w.start()
        try:
            assert w.mode == "netlink"
        finally:
            w.close()
        assert w.mode == "stopped" and w._sock is None

    asyncio.run(main())
