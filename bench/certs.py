"""Leaf certificates per second (not a test): cold (a new host each time) and cached (memory, disk).

Run: taskset -c 0 .venv/bin/python bench/certs.py [--count N] [--key ec|rsa2048|rsa3072]

The process pins itself to one core (CPU 0, as ``taskset -c 0`` does) unless ``--any-core``, so
the factory's worker threads share that core with the event loop: the figures are per core.
A fresh CA is made in a temporary data dir. Every leaf uses the CA's one shared EC P-256 leaf
key (see docs/ca.md), so a cold leaf costs one signature plus building the certificate.

Figures (each the best of ``--rounds`` rounds of ``--count`` leaves):

- sign only: :func:`arcus.tls.leaf.issue`, called in a loop (the floor of a cold leaf);
- cold, factory: ``await LeafFactory.get`` one new host after another (thread hop, signature,
  atomic write of the cache file), and the same with 64 concurrent new hosts at a time;
- memory hit: ``get`` of hosts already in the LRU (on the loop, no thread);
- disk hit: a new factory over the same directory (a restart): read and parse the cached file.

The machine's load average is printed with the figures: on a shared box they are lower bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arcus.tls import leaf as leaflib  # noqa: E402 - after the path tweak, so a checkout runs without install
from arcus.tls.ca import utcnow  # noqa: E402
from arcus.tls.castore import CAStore, check_kind  # noqa: E402
from arcus.tls.certcache import LeafFactory  # noqa: E402

_serial = itertools.count()


def hosts(n: int) -> list[str]:
    return [f"h{next(_serial)}.bench.example.com" for _ in range(n)]


def best(rounds: int, count: int, run: Callable[[], None]) -> tuple[float, float]:
    """(per CPU second, per wall second), each the best round. CPU time is the process's (every
    thread, user and system): what one core does when it is not shared; wall time includes the
    time other processes on this core took from us."""
    cpu, wall = [], []
    for _ in range(rounds):
        c, w = time.process_time(), time.perf_counter()
        run()
        cpu.append(count / max(time.process_time() - c, 1e-9))
        wall.append(count / (time.perf_counter() - w))
    return max(cpu), max(wall)


def fs_type(path: str) -> str:
    """The file system type of ``path`` (from /proc/mounts: the longest mount point above it)."""
    best_mount, kind = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and (path + "/").startswith(parts[1].rstrip("/") + "/") \
                        and len(parts[1]) >= len(best_mount):
                    best_mount, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--key", default="ec", help="the CA's key type (leaves always use EC P-256)")
    ap.add_argument("--any-core", action="store_true", help="do not pin to CPU 0")
    ap.add_argument("--dir", help="where the temporary data dir goes (its file system matters: one file per "
                    "leaf is created) [default: $TMPDIR]")
    args = ap.parse_args()
    if not args.any_core:
        os.sched_setaffinity(0, {0})
    n, rounds = args.count, args.rounds
    with tempfile.TemporaryDirectory(prefix="arcus-bench-certs-", dir=args.dir) as tmp:
        ca = CAStore(Path(tmp)).init(None, check_kind(args.key))
        now = utcnow()
        figures: list[tuple[str, tuple[float, float]]] = []

        def sign_only() -> None:
            for h in hosts(n):
                leaflib.issue(ca, h, now=now)

        figures.append(("cold, sign only (leaf.issue)", best(rounds, n, sign_only)))

        factory = LeafFactory(workers=2, memory_entries=max(4096, 2 * n))
        warm: list[str] = []

        async def cold_sequential() -> None:
            batch = hosts(n)
            for h in batch:
                await factory.get(ca, h)
            warm[:] = batch

        async def cold_concurrent() -> None:
            batch = hosts(n)
            for i in range(0, n, 64):
                await asyncio.gather(*(factory.get(ca, h) for h in batch[i:i + 64]))

        async def memory_hits() -> None:
            for h in warm:
                await factory.get(ca, h)

        figures.append(("cold, factory get, one at a time", best(rounds, n, lambda: asyncio.run(cold_sequential()))))
        figures.append(("cold, factory get, 64 concurrent", best(rounds, n, lambda: asyncio.run(cold_concurrent()))))
        figures.append(("memory hit, factory get", best(rounds, n, lambda: asyncio.run(memory_hits()))))
        issued = factory.stats.issued
        factory.close()

        def disk_hits() -> None:
            restarted = LeafFactory(workers=2)
            try:
                async def go() -> None:
                    for h in warm:
                        await restarted.get(ca, h)
                asyncio.run(go())
                assert restarted.stats.issued == 0 and restarted.stats.disk_hits == len(warm)
            finally:
                restarted.close()

        figures.append(("disk hit, new factory (restart)", best(rounds, n, disk_hits)))

    cpus = sorted(os.sched_getaffinity(0))
    load = os.getloadavg()
    print(f"leaf certificates per second: CA {args.key}, leaf key EC P-256 (shared), {n} leaves x {rounds} rounds, "
          f"best round; CPUs {cpus} of {os.cpu_count()}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"data dir on {fs_type(tmp)}")
    print(f"  {'':<36} {'per CPU s':>10} {'per wall s':>11}")
    for label, (cpu, wall) in figures:
        print(f"  {label:<36} {cpu:>10,.0f} {wall:>11,.0f}")
    print(f"  (the factory signed {issued} leaves)")


if __name__ == "__main__":
    main()
