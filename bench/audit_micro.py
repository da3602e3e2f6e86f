"""CPU per request record off the event loop: N records through Records -> access log -> audit sink -> SQLite.

    .venv/bin/python bench/audit_micro.py                    # 200,000 records, access log and audit on
    .venv/bin/python bench/audit_micro.py --no-access        # the audit log alone
    .venv/bin/python bench/audit_micro.py --no-audit         # the access log alone
    .venv/bin/python bench/audit_micro.py --rounds 5         # best of 5 (the machine is shared)
    .venv/bin/python bench/audit_micro.py --hosts 1000       # destinations spread over 1,000 hosts
    .venv/bin/python bench/audit_micro.py --users 2000       # requests from 2,000 authenticated users

What it measures: the CPU time (user + system, from each thread's own CPU clock) that the
writer threads spend per record -- the records writer (batches, access-log lines, handing on)
and the audit sink (rows, SQLite) -- and the emitting thread's (the event loop's share:
``Records.emit``). Records are request events as the HTTP proxy builds them, with a few
connection events among them; they are emitted in bursts of ``--burst`` with a short pause
between, as a busy loop hands them over, so the writer wakes once per full batch. The access
log goes to /dev/null through a StreamHandler with the daemon's own format (the fast path).
The audit database is a fresh file in a temp dir (WAL, as the daemon opens it).

``--hosts N`` spreads the requests over N destination hosts (the same pseudo-random sequence
every run) instead of the benchmark origin alone: the audit table's ``(host, time)`` index then
takes its entries all over the tree instead of at one end, which is what a gateway's real
traffic does to it. ``--users N`` does the same for the users the requests come from (the
benchmark's are anonymous; a school's are not).

CPU time per thread is what a proxy pinned to one core pays: every microsecond here is one
the event loop does not get. Thread CPU clocks are exact to the microsecond, so a loaded
machine changes the figures less than wall time (cache and frequency still move them: take
the best of a few rounds and compare variants in one run).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arcus.audit.events import AuditEvent  # noqa: E402
from arcus.audit.records import LOG_FORMAT, AccessLog, Records  # noqa: E402
from arcus.config.schema import AuditConfig  # noqa: E402


def make_events(n: int, start: float, hosts: int = 1, users: int = 0) -> list[AuditEvent]:
    names = ["127.0.0.1"] if hosts <= 1 else [f"www{i}.site{i % 97}.example" for i in range(hosts)]
    people = [None] if users <= 0 else [f"pupil{i}" for i in range(users)]
    pick = random.Random(7).choice
    out = []
    for i in range(n):
        t = start + i * 0.00005
        if i % 50 == 49:
            out.append(AuditEvent(t, "connection", "default", None, f"127.0.0.1:{40000 + i % 20000}", "bench",
                                  "direct", "", 0, None, None, 0, 4100, 81000, 1.25, None, None, None, None,
                                  None, i // 50, server_type="http_proxy"))
        else:
            out.append(AuditEvent(t, "request", "default", pick(people), f"127.0.0.1:{40000 + i % 20000}", "bench",
                                  "direct", pick(names), 18080, "GET", "/small", 200, 82, 1620, 0.000412,
                                  "allow", None, None, None, f"r{i:012x}", i // 50, server_type="http_proxy"))
    return out


def thread_cpu(thread) -> float:
    if thread is None or thread.ident is None:
        return 0.0
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except OSError:
        return 0.0


def one_round(args: argparse.Namespace) -> dict[str, float]:
    config = AuditConfig(enabled=not args.no_audit, queue=max(args.n * 2, 10_000), batch=args.batch,
                         flush_interval=1.0)
    logger = logging.getLogger("bench.access")
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.disabled = args.no_access
    devnull = open("/dev/null", "w")
    handler = logging.StreamHandler(devnull)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    events = make_events(args.n, time.time(), args.hosts, args.users)
    with tempfile.TemporaryDirectory(prefix="audit-micro-") as tmp:
        records = Records(config, AccessLog(logger))
        records.apply_audit(config, Path(tmp))
        records.start()
        sink = records.audit
        # Let the threads start and the sink finish its first (empty) retention pass.
        time.sleep(0.2)
        r0 = thread_cpu(records._thread)
        s0 = thread_cpu(sink._thread if sink else None)
        main0 = time.thread_time()
        wall0 = time.perf_counter()
        emit = records.emit
        burst = args.burst
        loop_cpu = 0.0
        for i in range(0, args.n, burst):
            c = time.thread_time()
            for e in events[i : i + burst]:
                emit(e)
            loop_cpu += time.thread_time() - c
            time.sleep(args.pause)
        want = args.n if sink else 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if records.queued == 0 and (sink is None or sink.written + sink.dropped >= want):
                break
            time.sleep(0.01)
        wall = time.perf_counter() - wall0
        r1 = thread_cpu(records._thread)
        s1 = thread_cpu(sink._thread if sink else None)
        del main0
        dropped = records.dropped + (sink.dropped if sink else 0)
        records.close()
        db_bytes = sum(p.stat().st_size for p in Path(tmp).glob("audit.db*"))
    devnull.close()
    n = args.n
    return {
        "emit": loop_cpu / n * 1e6,
        "records": (r1 - r0) / n * 1e6,
        "sink": (s1 - s0) / n * 1e6,
        "total": (loop_cpu + r1 - r0 + s1 - s0) / n * 1e6,
        "wall_s": wall,
        "dropped": dropped,
        "db_mib": db_bytes / 2**20,
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python bench/audit_micro.py", description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=200_000, help="records per round (default 200,000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds; the best (lowest total) is printed too (default 3)")
    p.add_argument("--batch", type=int, default=500, help="audit.batch (default 500, the profile's default)")
    p.add_argument("--burst", type=int, default=100, help="records emitted between pauses (default 100)")
    p.add_argument("--pause", type=float, default=0.002, help="seconds between bursts (default 0.002)")
    p.add_argument("--hosts", type=int, default=1, help="destination hosts the requests go to (default 1, the origin)")
    p.add_argument("--users", type=int, default=0, help="users the requests come from (default 0: anonymous)")
    p.add_argument("--no-access", action="store_true", help="access log off")
    p.add_argument("--no-audit", action="store_true", help="audit log off")
    args = p.parse_args()
    print(f"{args.n} records/round, batch {args.batch}, access {'off' if args.no_access else 'on'}, "
          f"audit {'off' if args.no_audit else 'on'}, {args.hosts} host(s), {args.users} user(s); CPU us per record")
    print(f"{'round':>5} {'emit':>7} {'records':>8} {'sink':>7} {'total':>7} {'wall s':>7} {'dropped':>8} {'db MiB':>7}")
    best = None
    for i in range(args.rounds):
        r = one_round(args)
        print(f"{i + 1:>5} {r['emit']:7.2f} {r['records']:8.2f} {r['sink']:7.2f} {r['total']:7.2f} "
              f"{r['wall_s']:7.2f} {r['dropped']:8d} {r['db_mib']:7.1f}")
        if best is None or r["total"] < best["total"]:
            best = r
    assert best is not None
    print(f"{'best':>5} {best['emit']:7.2f} {best['records']:8.2f} {best['sink']:7.2f} {best['total']:7.2f}")


if __name__ == "__main__":
    main()
