"""Micro-benchmark of a /metrics scrape (not a test): the event loop's share and the thread's.

Run: .venv/bin/python bench/scrape_micro.py [--users N] [--tenants T] [--max-users M]

A scrape copies the counters on the event loop (``fold_users`` and the per-tenant copies: the
loop is stalled for that long) and formats the text in a worker thread (``render``). This prints
both, best of several rounds in this process's CPU time, for N users in T tenants.
"""

from __future__ import annotations

import argparse
import time

from arcus.stats.counters import CounterSet
from arcus.stats.prom import Figures, fold_users, render


def best(fn, rounds: int = 20) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--tenants", type=int, default=20)
    ap.add_argument("--max-users", type=int, default=100)
    a = ap.parse_args()
    users, tenants = CounterSet(), CounterSet()
    for i in range(a.users):
        c = users.get(f"t{i % a.tenants}/u{i}")
        c.requests, c.bytes_down = i, 100 * i
        c.errors["denied"] = 1
    for i in range(a.tenants):
        tenants.get(f"t{i}").requests = i

    def copy() -> Figures:
        return Figures(tenants=tenants.to_dict(), users=fold_users(users.items(), a.max_users))

    figures = copy()
    loop = best(copy)
    thread = best(lambda: render(figures))
    print(f"{a.users} users in {a.tenants} tenants, max_users {a.max_users}: "
          f"on the loop {loop * 1000:.2f} ms, render in a thread {thread * 1000:.2f} ms "
          f"({len(render(figures))} bytes, {len(figures.users)} user series)")


if __name__ == "__main__":
    main()
