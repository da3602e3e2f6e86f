"""The cost of an ICAP RESPMOD per request (not a test): requests/s through Arcus with and without
the tenant's ICAP service, against c-icap 0.5.10 with its virus_scan module and a real clamd.

Run: .venv/bin/python bench/icap.py [--seconds 10] [--connections 8]

One run, one origin (a private nginx serving a 100-byte /small, keep-alive), one Arcus daemon, one
c-icap + clamd (arcus.testing.icap: a private signature database built from EICAR, so clamd
starts in milliseconds; a real database would make clamd slower to start, not to scan 100 bytes).
wrk keeps ``--connections`` connections alive through the proxy for each column in turn:

- plain:      the tenant has no ICAP service;
- respmod:    every response goes to c-icap (its 100-byte body fits the 1024-byte preview: one
              RESPMOD with ieof, clamd scans it, c-icap answers 204);
- sample 0.1: one response in ten goes;
- null ICAP:  every response goes to ``bench/_icap204.py``, a Python ICAP server that scans
              nothing and answers 204 at once: what the exchange costs Arcus itself.

Checks: nginx's counter moved by as many requests as wrk counted, and c-icap's access log holds
as many RESPMODs as the proxy sent (so the column measured what it says). The machine's load
average is printed: on a shared box the figures are lower bounds, their ratio is what counts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from _origin import start_origin  # noqa: E402
from _procs import free_port, run_bounded, spawn, stop, wait_port  # noqa: E402

from arcus.testing.daemon import DaemonProcess  # noqa: E402
from arcus.testing.icap import AntivirusPeers, missing  # noqa: E402

WRK_SCRIPT = BENCH / "wrk" / "bench.lua"

PROFILE = """\
servers:
  - name: http
    type: http_proxy
    listen: 127.0.0.1:0
    escaper: direct
escapers:
  - name: direct
    type: direct_fixed
    resolver: system
resolvers:
  - name: system
    type: system
log:
  level: warning
  access: false
audit:
  enabled: false
icap_services:
  - name: av
    servers: [{url}]
  - name: noop
    servers: [icap://127.0.0.1:{null_port}/noop]
"""


def wrk(proxy: str, origin_port: int, connections: int, seconds: int) -> dict:
    env = dict(os.environ, BENCH_PATH=f"http://127.0.0.1:{origin_port}/small", BENCH_HOST=f"127.0.0.1:{origin_port}",
               BENCH_CLOSE="0")
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(WRK_SCRIPT), f"http://{proxy}/"]
    out = run_bounded(argv, timeout=seconds + 60, cpus=None, env=env)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line.split(" ", 1)[1])
    raise SystemExit(f"wrk gave no result: {out.stderr.strip() or out.stdout.strip()}")


def respmods(peers: AntivirusPeers) -> int:
    log = peers.dir / "icap0" / "access.log"
    return log.read_text(errors="replace").count("RESPMOD") if log.exists() else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=8)
    args = ap.parse_args()
    if (what := missing()) is not None:
        raise SystemExit(f"{what} is not installed: run scripts/system-deps.sh bench")
    tmp = Path(tempfile.mkdtemp(prefix="arcus-bench-icap-"))
    started: list = []  # stopped in reverse order, whatever fails
    rows: list[tuple[str, dict, int]] = []
    try:
        origin = start_origin(tmp, cpus=None, bulk_mib=1)
        started.append(lambda: stop(origin.proc))
        peers = AntivirusPeers(tmp / "av")
        started.append(peers.stop)
        peers.start()
        null_port = free_port()
        null = spawn("icap204", [sys.executable, str(BENCH / "_icap204.py"), str(null_port)], log_dir=tmp / "logs", cpus=None)
        started.append(lambda: stop(null))
        wait_port(null, null_port)
        daemon = DaemonProcess(tmp / "arcus", PROFILE.format(url=peers.url(0), null_port=null_port))
        started.append(daemon.stop)
        daemon.start()
        proxy = daemon.proxy
        wrk(proxy, origin.port, args.connections, 2)  # warm-up: imports, pools
        for name, settings in (
            ("plain", ["--no-icap"]),
            ("respmod", ["--icap-service", "av", "--icap-sample", "1"]),
            ("sample 0.1", ["--icap-service", "av", "--icap-sample", "0.1"]),
            ("null ICAP", ["--icap-service", "noop", "--icap-sample", "1"]),
        ):
            r = daemon.arcus("tenant", "set", "default", *settings)
            if r.returncode != 0 and "nothing changed" not in r.stdout + r.stderr:
                raise SystemExit(r.stderr)
            if name != "plain":
                wrk(proxy, origin.port, args.connections, 1)  # the ICAP pool and OPTIONS, unmeasured
            seen0, icap0 = origin.status()["requests"], respmods(peers)
            res = wrk(proxy, origin.port, args.connections, args.seconds)
            time.sleep(0.5)  # c-icap writes its access log after the answer
            seen = origin.status()["requests"] - seen0 - 1  # minus our own status request
            if abs(seen - res["requests"]) > args.connections:
                print(f"warning: {name}: the origin served {seen} requests, wrk counted {res['requests']}")
            rows.append((name, res, respmods(peers) - icap0 if name != "null ICAP" else -1))
    finally:
        for stop_one in reversed(started):
            stop_one()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; wrk -t1 -c{args.connections} "
          f"-d{args.seconds}s GET /small (100 bytes) keep-alive through arcus; c-icap virus_scan + clamd")
    base = None
    for name, res, icap_n in rows:
        rps = res["requests"] / (res["duration_us"] / 1e6)
        errors = sum(v for k, v in res.items() if k.startswith("err_"))
        base = base or rps
        cost = (1 / rps - 1 / base) * 1e6
        scanned = f"c-icap RESPMODs {icap_n} of {res['requests']}" if icap_n >= 0 else "no scanner"
        print(f"{name:<11} {rps:8.0f} req/s  ({rps / base:4.2f}x)  p50 {res['lat_p50_us'] / 1000:6.2f} ms  "
              f"p99 {res['lat_p99_us'] / 1000:6.2f} ms  +{cost:5.0f} us/request  {scanned}  errors {errors}")

if __name__ == "__main__":
    main()
