"""CPU per request of each thread of a running Arcus, logs off (`arcus`) and on (`arcus-logs`).

    .venv/bin/python bench/audit_threads.py                       # this tree's arcus, 2 rounds of 10 s
    .venv/bin/python bench/audit_threads.py --arcus /other/tree/.venv/bin/arcus

The same setup as `bench/run.py --only keepalive` (nginx origin and wrk on the second core, the
proxy pinned to the first, bench/arcus-bench.yaml with the arcus-logs rewrite), but it reads
each thread's CPU time (/proc/PID/task/TID/stat) before and after the measured wrk run and
prints microseconds per request: the event loop's thread, and the other threads together (the
records writer and the audit writer; Python 3.11 gives its threads no OS name to tell them
apart by: bench/audit_micro.py splits them), and the context switches of all its threads per 1,000
requests (/proc/PID/task/TID/status). CPU per request moves less with a loaded machine
than requests per second do, and it says where a difference comes from. Rounds alternate the two columns; the
lowest total per column is printed last. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _peers  # noqa: E402
from _metrics import Context, Settings, _wrk  # noqa: E402
from _origin import start_origin  # noqa: E402
from _procs import cpu_sets, stop, stop_all  # noqa: E402


def thread_cpu(pid: int) -> dict[str, float]:
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        key = "loop" if task.name == str(pid) else "threads"
        out[key] = out.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
        try:
            status = (task / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():  # context switches: how often the threads hand the core over
            if "ctxt_switches:" in line:  # voluntary and nonvoluntary
                out["switches"] = out.get("switches", 0.0) + int(line.split()[1])
    return out


def main() -> int:
    p = argparse.ArgumentParser(prog="python bench/audit_threads.py", description=__doc__.splitlines()[0])
    p.add_argument("--arcus", type=Path, default=_peers.ARCUS, help="the arcus to run (default: this tree's .venv)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    _peers.ARCUS = args.arcus
    proxy_cpus, load_cpus = cpu_sets()
    tmp = Path(tempfile.mkdtemp(prefix="arcus-bench-threads-"))
    origin = start_origin(tmp, cpus=load_cpus, bulk_mib=1)
    ctx = Context(Settings(duration=args.seconds, warmup=2.0, connections=50, tunnels=0, bulk_repeat=1),
                  origin, tmp, load_cpus)
    print(f"{args.arcus}; load {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"{'column':>11} {'req/s':>8} {'loop':>6} {'threads':>8} {'total':>6}  us CPU per request; context switches per 1,000 requests")
    best: dict[str, tuple[float, str]] = {}
    try:
        for _ in range(args.rounds):
            for column in ("arcus", "arcus-logs"):
                proxy = _peers.start_proxy(column, tmp, origin.port, proxy_cpus, install=False)
                try:
                    _wrk(ctx, proxy.port, True, False, ctx.settings.warmup)
                    before = thread_cpu(proxy.proc.pid)
                    res = _wrk(ctx, proxy.port, True, False, args.seconds)
                    after = thread_cpu(proxy.proc.pid)
                finally:
                    stop(proxy.proc)
                n = res["requests"]
                per = {k: (after.get(k, 0.0) - before.get(k, 0.0)) / n * 1e6 for k in ("loop", "threads")}
                total = sum(per.values())
                line = (f"{column:>11} {n / (res['duration_us'] / 1e6):8.0f} {per['loop']:6.1f} {per['threads']:8.1f} "
                        f"{total:6.1f}  {(after.get('switches', 0) - before.get('switches', 0)) / n * 1000:6.1f}")
                print(line, flush=True)
                if column not in best or total < best[column][0]:
                    best[column] = (total, line)
    finally:
        stop(origin.proc)
        stop_all()
    print("best:")
    for _, line in best.values():
        print(line)
    if {"arcus", "arcus-logs"} <= set(best):
        print(f"logs on / off, CPU per request: {best['arcus-logs'][0] / best['arcus'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
