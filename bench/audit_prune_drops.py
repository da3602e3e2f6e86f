"""Events dropped while retention prunes a big audit log under load, and the longest writer stall.

    .venv/bin/python bench/audit_prune_drops.py                      # 5 M events, 70 % pruned, 15k/s
    .venv/bin/python bench/audit_prune_drops.py -n 3000000 --fill-batch 500 --rate 17000
    .venv/bin/python bench/audit_prune_drops.py --keep /var/tmp/apd  # keep the filled template for the next run
    .venv/bin/python bench/audit_prune_drops.py --trace 0.05         # print every statement of 50 ms or more

What it does, as the daemon does it: a file of ``-n`` events written over the last ten days
(through the sink's own insert, batch map and all, ``--fill-batch`` events a batch: 20, a
night's batches, by default), its pages evicted from the page cache
(``posix_fadvise(DONTNEED)`` on this file only: a 20 M-event log is not in memory either), then
the real :class:`~arcus.audit.records.Records` and :class:`~arcus.audit.sink.AuditSink` with
``audit.queue`` events of room each, fed ``--rate`` events a second from a thread in 5 ms bursts
(as the event loop hands them over). After ``--warmup`` seconds a reload shortens
``audit.retention`` so that ``--prune`` of the file's events are older than it (the sink's
``reconfigure``: a pass at once); the load goes on until retention has nothing left to do (or
``--limit`` seconds), then the figures:

- emitted, written, dropped (the sink's ``dropped``, which ``audit_dropped`` reports and which
  counts the records queue's refusals too), records dropped (``records_dropped``), in the first
  5 s after the reload and over the whole run;
- the longest writer stall: the longest time the sink wrote nothing while a batch or more was
  waiting (sampled every 2 ms from another thread);
- the statements of the writer's connection that took longest, by kind (``--trace S`` prints
  each one of S seconds or more as it ends, with its time since the reload).

Bounded: ``--limit`` (60 s by default) ends the load whatever retention still has to do; the
fill (about 9 s a million events here) is skipped when ``--keep DIR`` holds a template of the
same size.

Figures on the 2-core VM (``--keep /var/tmp/apd``, defaults), 3.5 M of 5 M events pruned:
before the fix 4,500 dropped (all in the first 5 s), longest stall 958 ms, the batch map's
cleanup 977 ms at worst and 14 s of the pass's 32.5 s, 41 GB read through the page cache;
after, 0 dropped, longest stall about 80 ms, the pass 20 s, 2.3 GB read.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arcus.audit.db import open_writer  # noqa: E402
from arcus.audit.events import AuditEvent, as_row  # noqa: E402
from arcus.audit.records import AccessLog, Records  # noqa: E402
from arcus.audit.sink import AuditSink  # noqa: E402
from arcus.config.schema import AuditConfig  # noqa: E402

DAY = 86400.0
SPAN = 10 * DAY  # the filled events' times: the last ten days, oldest first
BIG = 1 << 40  # max_size out of the way: this is about retention by age


def request(t: float, i: int, rnd: random.Random) -> AuditEvent:
    return AuditEvent(t, "request", "default", rnd.choice(("alice", "bob", None)), f"10.1.{i % 250}.{i % 199}:40000",
                      "bench", "direct", f"www{rnd.randrange(2000)}.example", 443, "GET",
                      "/" + "p" * rnd.randrange(8, 90), 200, 420, 18000, 0.0123, "allow", None, None, None,
                      f"r{i:012x}", i // 20, server_type="http_proxy")


def fill(path: Path, n: int, end: float, batch: int) -> None:
    """``n`` events over the ``SPAN`` before ``end``, in batches of ``batch`` through the sink's insert
    (one line of the batch map each: a daemon at night writes a few events a batch)."""
    sink = AuditSink(path, AuditConfig(retention=BIG, max_size=BIG))
    sink._conn = open_writer(path)
    rnd = random.Random(7)
    step = SPAN / n
    start = end - SPAN
    t0 = time.monotonic()
    for lo in range(0, n, batch):
        sink._insert([as_row(request(start + i * step, i, rnd)) for i in range(lo, min(n, lo + batch))])
        if lo % 500_000 < batch and lo:
            print(f"  filled {lo:,} in {time.monotonic() - t0:.0f}s", flush=True)
    sink._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    sink._conn.close()


def evict(path: Path) -> None:
    """Push the file's pages out of the page cache (written back first): cold, as a big log is."""
    for p in (path, Path(f"{path}-wal")):
        if p.exists():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def io() -> dict[str, int]:
    """This process's I/O so far: bytes asked of the kernel (rchar, wchar) and of the disk."""
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return {}
    return {k: int(v) for k, v in (line.split(": ") for line in text.splitlines())}


def kind(sql: str) -> str:
    s = " ".join(sql.split())
    for key, name in (("incremental_vacuum", "incremental_vacuum"), ("wal_checkpoint", "checkpoint"),
                      ("DELETE FROM event_batches", "UNMAP"), ("DELETE FROM events", "DELETE chunk"),
                      ("'delete'", "unindex"), ("id >= ? ORDER BY id LIMIT 1", "ids_from probe"),
                      ("SELECT (SELECT min(id)", "ID_RANGE"), ("INSERT INTO event_batches", "batch map line"),
                      ("INSERT INTO events", "INSERT batch"), ("BEGIN", "BEGIN"), ("COMMIT", "COMMIT"),
                      ("freelist_count", "freelist_count"), ("page_count", "page_count"), ("sqlite_sequence", "seq"),
                      ("max(id)", "max(id)")):
        if key in s:
            return name
    return s[:40]


class Traced:
    """The writer's connection, timing every statement (the sink and retention call these only)."""

    def __init__(self, conn: sqlite3.Connection, trace: float, since: list[float]) -> None:
        self._conn = conn
        self._trace = trace
        self._since = since
        self.worst: dict[str, float] = defaultdict(float)
        self.total: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)

    def _timed(self, fn: Any, sql: str, *args: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(sql, *args)
        finally:
            d = time.perf_counter() - t
            k = kind(sql)
            self.worst[k] = max(self.worst[k], d)
            self.total[k] += d
            self.count[k] += 1
            if self._trace and d >= self._trace:
                at = time.monotonic() - self._since[0] if self._since[0] else float("nan")
                print(f"  {at:8.2f}s  {d * 1000:8.1f} ms  {k}", flush=True)

    def execute(self, sql: str, *args: Any) -> Any:
        return self._timed(self._conn.execute, sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        return self._timed(self._conn.executemany, sql, *args)

    def executescript(self, sql: str) -> Any:
        return self._timed(self._conn.executescript, sql)

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def close(self) -> None:
        self._conn.close()


def main() -> None:
    p = argparse.ArgumentParser(prog="python bench/audit_prune_drops.py", description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=5_000_000, help="events in the file before the load (default 5,000,000)")
    p.add_argument("--prune", type=float, default=0.7, help="share of them the reload's retention deletes (0.7)")
    p.add_argument("--rate", type=int, default=15_000, help="events emitted a second (default 15,000)")
    p.add_argument("--queue", type=int, default=10_000, help="audit.queue (default 10,000)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of load before the reload (default 3)")
    p.add_argument("--limit", type=float, default=60.0, help="seconds of load at most after the reload (default 60)")
    p.add_argument("--fill-batch", type=int, default=20, help="events per batch in the filled file (default 20)")
    p.add_argument("--keep", type=Path, help="directory to keep the filled template in (reused when it matches)")
    p.add_argument("--warm", action="store_true", help="leave the file in the page cache")
    p.add_argument("--trace", type=float, default=0.0, help="print each statement of this many seconds or more")
    args = p.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="audit-prune-")
    keep = args.keep or Path(tmp.name)
    keep.mkdir(parents=True, exist_ok=True)
    template = keep / f"template-{args.n}-{args.fill_batch}.db"
    stamp = keep / f"template-{args.n}-{args.fill_batch}.end"
    if not template.exists() or not stamp.exists():
        end = time.time()
        print(f"filling {args.n:,} events (once per --keep dir) ...", flush=True)
        fill(template, args.n, end, args.fill_batch)
        stamp.write_text(repr(end))
    end = float(stamp.read_text())
    data = Path(tmp.name) / "data"
    data.mkdir()
    db = data / "audit.db"
    shutil.copyfile(template, db)
    if not args.warm:
        evict(db)
    cutoff = end - SPAN + SPAN * args.prune  # events before it go
    print(f"{args.n:,} events in batches of {args.fill_batch}, {db.stat().st_size / 2**20:.0f} MiB; secure_delete "
          f"{sqlite3.connect(':memory:').execute('PRAGMA secure_delete').fetchone()[0]}; "
          f"load {args.rate:,}/s, queue {args.queue:,}; the reload deletes {args.prune:.0%} "
          f"({int(args.n * args.prune):,}); {'warm' if args.warm else 'cold'} page cache", flush=True)

    base = AuditConfig(retention=(time.time() - end) + SPAN + DAY, max_size=BIG, queue=args.queue)
    records = Records(base, AccessLog())
    records.apply_audit(base, data)
    sink = records.audit
    assert sink is not None
    since = [0.0]
    traced = Traced(sink._conn, args.trace, since)  # type: ignore[arg-type]
    sink._conn = traced  # type: ignore[assignment]
    records.start()

    stop = threading.Event()
    emitted = [0]

    def load() -> None:
        rnd = random.Random(11)
        per = max(1, args.rate // 200)
        nxt = time.monotonic()
        i = 0
        emit = records.emit
        while not stop.is_set():
            now = time.time()
            for _ in range(per):
                emit(request(now, i, rnd))
                i += 1
            emitted[0] = i
            nxt += 0.005
            delay = nxt - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    stall = [0.0, 0.0]  # longest, and when (since the reload)

    def watch() -> None:
        last_w, last_t = sink.written, time.monotonic()
        while not stop.is_set():
            time.sleep(0.002)
            now, w = time.monotonic(), sink.written
            if w != last_w or sink.queued + records.queued < base.batch:
                last_w, last_t = w, now
            elif now - last_t > stall[0]:
                stall[0], stall[1] = now - last_t, (last_t - since[0]) if since[0] else -1.0

    threads = [threading.Thread(target=load, name="load"), threading.Thread(target=watch, name="watch")]
    for t in threads:
        t.start()
    time.sleep(args.warmup)
    before = (emitted[0], sink.dropped, records.dropped)
    pruned0 = sink.pruned
    io0 = io()
    since[0] = time.monotonic()
    records.apply_audit(AuditConfig(retention=time.time() - cutoff, max_size=BIG, queue=args.queue), data)
    first5: tuple[int, int] | None = None
    want = int(args.n * args.prune)
    while time.monotonic() - since[0] < args.limit:
        time.sleep(0.05)
        if first5 is None and time.monotonic() - since[0] >= 5:
            first5 = (sink.dropped - before[1], emitted[0] - before[0])
        if sink.pruned - pruned0 >= want and time.monotonic() - since[0] >= 6:
            break
    took = time.monotonic() - since[0]
    io1 = io()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    records.close()
    sink_drop, rec_drop = sink.dropped, records.dropped
    if first5 is None:
        first5 = (sink_drop - before[1], emitted[0] - before[0])
    print(f"pruned {sink.pruned - pruned0:,} of {want:,} in {took:.1f}s (load went on {took + 0.5:.1f}s after the reload)")
    print(f"emitted {emitted[0]:,}  written {sink.written:,}  dropped {sink_drop:,} "
          f"(records queue {rec_drop:,}; {first5[0]:,} in the first 5 s)  "
          f"longest writer stall {stall[0] * 1000:.0f} ms at {stall[1]:.1f}s")
    if io0 and io1:
        print("I/O during the prune (MiB): " + ", ".join(
            f"{k} {(io1[k] - io0[k]) / 2**20:.0f}" for k in ("rchar", "wchar", "read_bytes", "write_bytes")))
    print("slowest statements (worst ms / total s / count):")
    for k in sorted(traced.worst, key=traced.worst.get, reverse=True)[:10]:  # type: ignore[arg-type]
        print(f"  {k:20} {traced.worst[k] * 1000:9.1f} {traced.total[k]:8.2f} {traced.count[k]:8d}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
