"""kill -9 of the daemon while a client keeps adding tenants over the control socket.

Every round starts the real daemon on the same data dir and socket (the previous round left a
stale socket behind), checks it serves, lets a client add tenants with many source ranges each
(the count is in the name), and SIGKILLs the daemon at a random moment. After each kill the
store must be whole: SQLite's integrity check passes, every tenant has exactly its ranges, and
every tenant the daemon acknowledged is there (at most the one in flight may be extra).
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from arcus.control.client import ControlClient, DaemonNotRunning
from arcus.control.protocol import ControlError
from arcus.testing.daemon import DaemonProcess
from tests.integration.conftest import run_curl

pytestmark = pytest.mark.integration

ROUNDS = 8
NAME = re.compile(r"r(\d+)-t(\d+)-n(\d+)\Z")


def sources(rnd: int, i: int, k: int) -> list[str]:
    """Tenant i's k ranges, written as the store normalises them."""
    return [str(ipaddress.ip_network(f"2001:db8:{rnd:x}:{i:x}:{j:x}::/80")) for j in range(k)]


class Adder(threading.Thread):
    """Adds tenants one by one until the daemon disappears (bounded in count)."""

    def __init__(self, socket_path: Path, rnd: int) -> None:
        super().__init__(name=f"adder-{rnd}", daemon=True)
        self.socket_path = socket_path
        self.rnd = rnd
        self.acked: list[str] = []
        self.ended_by: BaseException | None = None

    def run(self) -> None:
        try:
            with ControlClient(self.socket_path, timeout=10) as client:
                for i in range(2000):
                    k = 1 + (i * 37 + self.rnd * 11) % 120
                    name = f"r{self.rnd}-t{i}-n{k}"
                    client.call("tenant.add", {"name": name, "sources": sources(self.rnd, i, k)})
                    self.acked.append(name)
        except (ControlError, OSError) as exc:
            self.ended_by = exc


def check_store(path: Path) -> dict[str, int]:
    """Assert the store is whole; return {tenant: number of ranges}."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.execute("PRAGMA foreign_keys = ON")
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        counts = dict(
            conn.execute(
                "SELECT t.name, count(s.cidr) FROM tenants t "
                "LEFT JOIN tenant_sources s ON s.tenant_id = t.id GROUP BY t.id"
            ).fetchall()
        )
        by_tenant: dict[str, set[str]] = {}
        for name, cidr in conn.execute(
            "SELECT t.name, s.cidr FROM tenant_sources s JOIN tenants t ON t.id = s.tenant_id"
        ):
            by_tenant.setdefault(name, set()).add(cidr)
    finally:
        conn.close()
    assert counts.pop("default") == 0
    for name, count in counts.items():
        match = NAME.match(name)
        assert match, name
        rnd, i, k = (int(g) for g in match.groups())
        assert count == k, f"{name} has {count} of its {k} ranges"
        assert by_tenant[name] == set(sources(rnd, i, k)), name
    return counts


@pytest.mark.timeout(150)
def test_kill_9_during_tenant_adds_leaves_a_whole_store_and_the_daemon_starts_again(curl, tmp_path, origin):
    rng = random.Random(os.environ.get("ARCUS_CRASH_SEED", "9"))
    workdir = tmp_path / "arcus"
    store = workdir / "data" / "arcus.db"
    acked_total: set[str] = set()
    killed_mid_stream = 0
    for rnd in range(ROUNDS):
        d = DaemonProcess(workdir)
        if rnd:
            assert d.socket.exists()  # the stale socket of the killed daemon is still there
            with pytest.raises(DaemonNotRunning):
                d.ctl("health")
        d.start()
        try:
            # it came back with everything acknowledged before, and it serves
            listed = {t["name"]: len(t["sources"]) for t in d.ctl("tenant.list")}
            assert acked_total <= set(listed)
            r = run_curl(curl, "-x", f"http://{d.proxy}", origin.url("/small"))
            assert (r.returncode, r.stdout) == (0, b"x" * 100), r.stderr

            adder = Adder(d.socket, rnd)
            adder.start()
            deadline = time.monotonic() + 10
            while not adder.acked and time.monotonic() < deadline and adder.is_alive():
                time.sleep(0.01)
            assert adder.acked, (adder.ended_by, d.log())
            time.sleep(rng.uniform(0.05, 0.8))  # a kill at a random moment: the behaviour under test
            os.kill(d.proc.pid, signal.SIGKILL)
            assert d.proc.wait(10) == -signal.SIGKILL
            adder.join(15)
            assert not adder.is_alive()
            if adder.ended_by is not None:
                killed_mid_stream += 1
        finally:
            d.kill()
            if d._log is not None:
                d._log.close()
        counts = check_store(store)
        acked = set(adder.acked)
        assert acked <= set(counts), sorted(acked - set(counts))[:5]  # acknowledged means durable
        this_round = {n for n in counts if n.startswith(f"r{rnd}-")}
        assert len(this_round - acked) <= 1  # only the one in flight may have landed unacknowledged
        acked_total |= acked

    assert killed_mid_stream == ROUNDS  # every kill interrupted a client in the middle of its adds
    assert len(acked_total) >= ROUNDS

    with DaemonProcess(workdir) as d:
        tenants = {t["name"]: t for t in d.ctl("tenant.list")}
        assert acked_total <= set(tenants)
        for name in acked_total:
            assert len(tenants[name]["sources"]) == int(NAME.match(name).group(3))
        r = run_curl(curl, "-x", f"http://{d.proxy}", origin.url("/small"))
        assert (r.returncode, r.stdout) == (0, b"x" * 100), r.stderr
        assert d.arcus("ctl", "health").returncode == 0
