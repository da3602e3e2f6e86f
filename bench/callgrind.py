"""Instructions per keep-alive request, per thread, logs off (`arcus`) and on (`arcus-logs`).

    .venv/bin/python bench/callgrind.py                   # both columns, 12 s measured each
    .venv/bin/python bench/callgrind.py --columns arcus-logs --keep /tmp/cg
    .venv/bin/python bench/callgrind.py --arcus /other/tree/.venv/bin/arcus

The proxy runs under ``valgrind --tool=callgrind --separate-threads=yes`` with collection off;
wrk (50 connections, as in `bench/run.py --only keepalive`) keeps it busy through nginx; after a
warm-up collection is switched on with ``callgrind_control -i on`` for the measured window and
off again, and nginx's request counter (stub_status) read at both ends says how many requests
the window carried. Printed: instructions per request for the whole process and for each thread
that did any work (the event loop is thread 1; with logs on, the records writer and the audit
writer follow).

Why instructions: callgrind counts them exactly, whatever else the machine is doing (a loaded
CI box or the other core busy changes nothing), so two versions of a change can be compared to
a fraction of a percent where req/s moves by several. What it does not see: cache misses,
system calls' time in the kernel, waiting. Read it beside `bench/audit_threads.py` (CPU time per
thread) and `bench/run.py` (req/s). ``--keep DIR`` keeps the callgrind files for
``callgrind_annotate`` (``--tree=caller`` finds who calls a C function). Needs valgrind, wrk,
nginx (`bash scripts/system-deps.sh bench`, `apt-get install valgrind`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _peers  # noqa: E402
from _metrics import WRK_SCRIPT  # noqa: E402
from _origin import start_origin  # noqa: E402
from _procs import BenchError, spawn, stop, stop_all  # noqa: E402

TOTALS = re.compile(rb"^totals: (\d+)", re.M)


def wrapper(tmp: Path, arcus: Path, out: Path) -> Path:
    """An executable that runs ``arcus`` under callgrind (what _peers starts as the proxy)."""
    path = tmp / "arcus-callgrind"
    path.write_text(
        "#!/bin/sh\n"
        f"exec valgrind --tool=callgrind --separate-threads=yes --instr-atstart=no "
        f"--callgrind-out-file={out}/cg.%p '{arcus}' \"$@\"\n"
    )
    path.chmod(0o755)
    return path


def control(pid: int, switch: str) -> None:
    done = subprocess.run(["callgrind_control", "-i", switch, str(pid)], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise BenchError(f"callgrind_control -i {switch} failed: {done.stderr.strip() or done.stdout.strip()}")


def measure(column: str, args: argparse.Namespace, tmp: Path, origin, out: Path) -> tuple[int, dict[str, int]]:
    proxy = _peers.start_proxy(column, tmp, origin.port, None, install=False)
    env = dict(os.environ, BENCH_PATH=origin.url("/small"), BENCH_HOST=f"127.0.0.1:{origin.port}", BENCH_CLOSE="0")
    seconds = args.warmup + args.seconds + 5
    wrk = spawn(
        "wrk", ["wrk", "-t1", "-c50", f"-d{int(seconds)}s", "--timeout", "30s", "-s", str(WRK_SCRIPT),
                f"http://127.0.0.1:{proxy.port}/"],
        log_dir=tmp / "logs", env=env,
    )
    try:
        time.sleep(args.warmup)  # a load generator's warm-up: nothing to poll for
        before = origin.status()["requests"]
        control(proxy.proc.pid, "on")
        time.sleep(args.seconds)
        control(proxy.proc.pid, "off")
        after = origin.status()["requests"]
    finally:
        stop(wrk)
        stop(proxy.proc, grace=120)
    requests = after - before - 1  # the first status request is counted in `after`
    if requests <= 0:
        raise BenchError(f"{column}: no request in the measured window")
    threads: dict[str, int] = {}
    for f in sorted(out.glob("cg.*-*")):
        m = TOTALS.search(f.read_bytes())
        if m and int(m.group(1)):
            threads[f.name.rsplit("-", 1)[1]] = int(m.group(1))
    return requests, threads


def main() -> int:
    p = argparse.ArgumentParser(prog="python bench/callgrind.py", description=__doc__.splitlines()[0])
    p.add_argument("--arcus", type=Path, default=_peers.ARCUS, help="the arcus to run (default: this tree's .venv)")
    p.add_argument("--columns", default="arcus,arcus-logs", help="comma-separated: arcus, arcus-logs")
    p.add_argument("--seconds", type=float, default=12.0, help="measured window (default 12)")
    p.add_argument("--warmup", type=float, default=8.0, help="seconds before it (start-up under valgrind is slow)")
    p.add_argument("--keep", type=Path, help="copy the callgrind files here, one folder per column")
    args = p.parse_args()
    for tool in ("valgrind", "callgrind_control", "wrk"):
        if shutil.which(tool) is None:
            print(f"error: {tool} not found (apt-get install valgrind wrk)", file=sys.stderr)
            return 1
    tmp = Path(tempfile.mkdtemp(prefix="arcus-callgrind-"))
    origin = start_origin(tmp, cpus=None, bulk_mib=1)
    try:
        for column in args.columns.split(","):
            out = tmp / f"cg-{column}"
            out.mkdir()
            _peers.ARCUS = wrapper(tmp, args.arcus.resolve(), out)
            requests, threads = measure(column, args, tmp, origin, out)
            per = {k: v / requests for k, v in threads.items()}
            parts = "  ".join(f"thread {k}: {v / 1000:.1f}k" for k, v in per.items())
            print(f"{column:>11}  {sum(per.values()) / 1000:6.1f}k instructions per request ({requests} requests)  {parts}",
                  flush=True)
            if args.keep:
                shutil.copytree(out, args.keep / column, dirs_exist_ok=True)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        stop(origin.proc)
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
