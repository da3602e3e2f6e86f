"""kill -9 of a process writing the store, at random moments: nothing is ever half-written.

A child process adds tenants with many source ranges each (and removes every fifth one); the
number of ranges is encoded in the tenant's name. The test SIGKILLs it at random moments, then
checks the file: SQLite's integrity check passes, no range lost its tenant, every tenant has
exactly its full set of ranges, and the history agrees with the tenants present.
"""

from __future__ import annotations

import os
import random
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arcus.store import Store

pytestmark = pytest.mark.integration

ROUNDS = 15
NAME = re.compile(r"r(\d+)-t(\d+)-n(\d+)\Z")

CHILD = r"""
import sys
from pathlib import Path
from arcus.store import Store

path, rnd = Path(sys.argv[1]), int(sys.argv[2])
store = Store.open(path)
sys.stdout.write("ready\n")
sys.stdout.flush()
for i in range(100_000):
    k = 1 + (i * 37 + rnd * 11) % 250
    store.add_tenant(
        f"r{rnd}-t{i}-n{k}",
        sources=[f"2001:db8:{rnd:x}:{i:x}:{j:x}::/80" for j in range(k)],
    )
    if i % 5 == 4:
        store.remove_tenant(f"r{rnd}-t{i - 1}-n{1 + ((i - 1) * 37 + rnd * 11) % 250}")
"""


def wait_ready(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return bool(ready) and proc.stdout.readline() == b"ready\n"


def check_store(path: Path) -> tuple[int, int]:
    """Assert the store is whole; return (tenants written by children, their ranges)."""
    Store.open(path).close()  # opens, finishing an interrupted migration if any
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.execute("PRAGMA foreign_keys = ON")
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        orphans = conn.execute(
            "SELECT count(*) FROM tenant_sources WHERE tenant_id NOT IN (SELECT id FROM tenants)"
        ).fetchone()[0]
        assert orphans == 0
        counts = dict(
            conn.execute(
                "SELECT t.name, count(s.cidr) FROM tenants t "
                "LEFT JOIN tenant_sources s ON s.tenant_id = t.id GROUP BY t.id"
            ).fetchall()
        )
        adds = conn.execute(
            "SELECT count(*) FROM changes WHERE action = 'tenant.add' AND object != 'default'"
        ).fetchone()[0]
        removes = conn.execute(
            "SELECT count(*) FROM changes WHERE action = 'tenant.remove'"
        ).fetchone()[0]
    finally:
        conn.close()
    assert counts.pop("default") == 0
    for name, count in counts.items():
        match = NAME.match(name)
        assert match, name
        assert count == int(match.group(3)), f"{name} has {count} ranges"
    assert adds - removes == len(counts)  # each change landed with its history row
    return len(counts), sum(counts.values())


@pytest.mark.timeout(90)
def test_kill_9_mid_write_leaves_nothing_half_written(tmp_path: Path) -> None:
    path = tmp_path / "data" / "arcus.db"
    rng = random.Random(os.environ.get("ARCUS_CRASH_SEED", "20"))
    killed_while_running = 0
    for rnd in range(ROUNDS):
        stderr_file = tmp_path / f"child-{rnd}.err"
        with open(stderr_file, "wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(path), str(rnd)],
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        try:
            if rnd % 4 == 0:
                # anywhere from interpreter start-up through open/migration into writing
                time.sleep(rng.uniform(0.0, 0.6))  # a kill at a random moment: the behaviour under test
            else:
                assert wait_ready(proc, 10.0), stderr_file.read_text()
                time.sleep(rng.uniform(0.01, 0.9))  # likewise, once it is writing
            if proc.poll() is None:
                killed_while_running += 1
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:  # pragma: no cover - only if an assert above failed
                proc.kill()
                proc.wait(timeout=10)
            assert proc.stdout is not None
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL, stderr_file.read_text()
        check_store(path)
    tenants, ranges = check_store(path)
    assert killed_while_running == ROUNDS
    # the children did write: the checks above were not run on an empty store
    assert tenants >= ROUNDS and ranges >= 100 * ROUNDS
