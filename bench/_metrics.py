"""The five measurements. Each takes the run context and a started proxy (None: the baseline).

Each one checks that what it measured is what it claims: the origin's request counter must have
moved by as many requests as wrk counted (so the proxy did not answer them itself), the machine's
TCP connect counter tells whether wrk really opened a connection per request, curl must have
downloaded every byte with a 200 to its CONNECT, and every idle tunnel must have been answered 200
and still be open when memory is read. A failed check makes the cell "n/a: <why>"; a doubtful
one adds a warning next to the number.
"""

from __future__ import annotations

import json
import os
import select
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from _origin import Origin
from _peers import Running
from _procs import BenchError, cpu_times, cpu_used, run_delay, memory_kib, run_bounded, spawn, stop, tcp_opens

BENCH_DIR = Path(__file__).resolve().parent
WRK_SCRIPT = BENCH_DIR / "wrk" / "bench.lua"
TUNNEL_CLIENT = BENCH_DIR / "idle_tunnels.py"


@dataclass(frozen=True)
class Settings:
    duration: float  # seconds of each measured wrk run
    warmup: float  # seconds of unmeasured wrk load first (imports, caches, pools)
    connections: int  # wrk -c
    tunnels: int  # idle CONNECT tunnels held for the RSS metric
    bulk_repeat: int  # curl downloads per column; the median counts


@dataclass
class Context:
    settings: Settings
    origin: Origin
    tmp: Path
    load_cpus: set[int] | None


@dataclass
class Cell:
    """One column of one metric: a value, or the reason there is none."""

    value: float | None = None
    error: str | None = None
    details: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"value": self.value, "error": self.error, "details": self.details, "warnings": self.warnings}


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    unit: str
    higher_is_better: bool
    needs_proxy: bool  # False: the baseline column is measured too

    def describe(self, s: Settings) -> str:
        return {
            "keepalive": f"wrk -t1 -c{s.connections} -d{s.duration:g}s, GET /small (100-byte body), keep-alive",
            "newconn": f"wrk -t1 -c{s.connections} -d{s.duration:g}s, GET /small with Connection: close",
            "bulk": f"curl -p (CONNECT) download, median of {s.bulk_repeat}",
            "socks_bulk": f"curl --socks5 download, median of {s.bulk_repeat} (baseline: no proxy)",
            "rss": f"{s.tunnels} idle CONNECT tunnels; (RSS after - RSS before) / tunnels",
        }[self.key]


METRICS = {
    m.key: m
    for m in (
        Metric("keepalive", "keep-alive small responses", "requests/s", True, False),
        Metric("newconn", "new connection per request", "requests/s", True, False),
        Metric("bulk", "CONNECT bulk download", "MB/s", True, False),
        Metric("socks_bulk", "SOCKS5 bulk download", "MB/s", True, False),
        Metric("rss", "RSS per idle CONNECT tunnel", "KiB/tunnel", False, True),
    )
}


WAIT_WARN = 10.0  # percent of the wall time the proxy spent waiting for its core


@dataclass
class _Usage:
    """The proxy tree's CPU time and run-queue wait at one instant."""

    cpu: dict[int, float]
    wait: dict[int, float]
    at: float


def _usage(proxy: Running | None) -> _Usage:
    pids = proxy.proc.tree() if proxy else []
    return _Usage(cpu_times(pids), run_delay(pids), time.monotonic())


def _account(cell: Cell, before: _Usage, after: _Usage, pinned: bool = True) -> float:
    """Record the proxy's CPU % and CPU-wait % over the window; return CPU seconds used.

    CPU-wait sums every thread's run-queue wait, the proxy's own threads waiting for each other
    included (arcus-logs: the event loop and the log writers share the one core). Other work can
    only have taken the core time the proxy did not use, so when the proxy has one core
    (``pinned``) the warning looks at the smaller of the two."""
    wall = after.at - before.at
    used = cpu_used(before.cpu, after.cpu)
    waited = cpu_used(before.wait, after.wait)
    cell.details["proxy_cpu_percent"] = round(100 * used / wall, 1)
    cell.details["proxy_wait_percent"] = round(100 * waited / wall, 1)
    stolen = min(waited, max(0.0, wall - used)) if pinned else waited
    if 100 * stolen / wall > WAIT_WARN:
        cell.warnings.append(
            f"the proxy waited {100 * waited / wall:.0f}% of the time for its core: other work on the machine "
            "took it, this number is understated (rerun when it is quiet, or with --rounds 3)"
        )
    return used


# ---------------------------------------------------------------- wrk: keepalive and newconn


def _wrk(ctx: Context, port: int, via_proxy: bool, close: bool, seconds: float) -> dict:
    origin = ctx.origin
    env = dict(
        os.environ,
        BENCH_PATH=origin.url("/small") if via_proxy else "/small",
        BENCH_HOST=f"127.0.0.1:{origin.port}",
        BENCH_CLOSE="1" if close else "0",
    )
    duration = max(1, round(seconds))
    argv = [
        "wrk", "-t1", f"-c{ctx.settings.connections}", f"-d{duration}s", "--timeout", "5s",
        "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}/",
    ]
    out = run_bounded(argv, timeout=duration + 30, cpus=ctx.load_cpus, env=env)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line.split(" ", 1)[1])
    detail = (out.stderr.strip() or out.stdout.strip()).splitlines()[-1:] or [f"exit code {out.returncode}"]
    raise BenchError(f"wrk gave no result: {detail[0]}")


def measure_wrk(ctx: Context, proxy: Running | None, *, close: bool) -> Cell:
    port = proxy.port if proxy else ctx.origin.port
    via = proxy is not None
    cell = Cell()
    if ctx.settings.warmup > 0:
        warm = _wrk(ctx, port, via, close, ctx.settings.warmup)
        if warm["requests"] == 0:
            raise BenchError("no response during warm-up")
    status0, opens0, use0 = ctx.origin.status(), tcp_opens(), _usage(proxy)
    res = _wrk(ctx, port, via, close, ctx.settings.duration)
    use1 = _usage(proxy)
    opens1, status1 = tcp_opens(), ctx.origin.status()

    requests = res["requests"]
    if requests == 0:
        raise BenchError(f"no completed request (errors: {_wrk_errors(res)})")
    bad_status = res["err_status"]
    if bad_status > requests * 0.01:
        raise BenchError(f"{bad_status} of {requests} responses were not 2xx/3xx")
    origin_seen = status1["requests"] - status0["requests"] - 1  # minus the status request itself
    if origin_seen < requests * 0.99:
        raise BenchError(f"origin served {origin_seen} requests but wrk counted {requests}: answered by the proxy?")
    connects = opens1[0] - opens0[0]
    cell.value = requests / (res["duration_us"] / 1e6)
    cell.details = {
        "requests": requests,
        "seconds": round(res["duration_us"] / 1e6, 3),
        "origin_requests": origin_seen,
        "tcp_connects_per_request": round(connects / requests, 3),
        "latency_p50_ms": round(res["lat_p50_us"] / 1000, 2),
        "latency_p99_ms": round(res["lat_p99_us"] / 1000, 2),
        "errors": _wrk_errors(res),
    }
    if proxy:
        used = _account(cell, use0, use1, pinned=ctx.load_cpus is not None)
        cell.details["per_proxy_cpu_second"] = round(requests / used, 1) if used > 0 else None
    if bad_status:
        cell.warnings.append(f"{bad_status} non-2xx/3xx responses")
    socket_errors = sum(res[k] for k in ("err_connect", "err_read", "err_write", "err_timeout"))
    if socket_errors > requests * 0.001:
        cell.warnings.append(f"{socket_errors} socket errors ({_wrk_errors(res)})")
    if close and connects < requests * 0.95:
        cell.warnings.append(
            f"only {connects} TCP connects for {requests} requests: the connection was not closed after "
            "each response, so wrk did not reconnect"
        )
    return cell


def _wrk_errors(res: dict) -> str:
    parts = [f"{k[4:]}={res[k]}" for k in ("err_connect", "err_read", "err_write", "err_timeout", "err_status") if res[k]]
    return ", ".join(parts) or "none"


# ---------------------------------------------------------------- curl: CONNECT and SOCKS5 bulk


def measure_bulk(ctx: Context, proxy: Running | None, *, socks: bool = False) -> Cell:
    """One big download through a CONNECT tunnel (or SOCKS5 CONNECT with ``socks``)."""
    origin = ctx.origin
    url = origin.url("/" + origin.bulk_name)
    argv = ["curl", "-s", "-S", "-o", "/dev/null", "--max-time", "300",
            "-w", "%{http_code} %{http_connect} %{size_download} %{speed_download}"]
    if proxy and socks:
        if proxy.socks_port is None:
            raise BenchError(f"{proxy.name} has no SOCKS5 server")
        argv += ["--socks5", f"127.0.0.1:{proxy.socks_port}"]
    elif proxy:
        argv += ["-p", "-x", f"http://127.0.0.1:{proxy.port}"]
    argv.append(url)
    speeds = []
    use0 = _usage(proxy)
    for _ in range(ctx.settings.bulk_repeat):
        out = run_bounded(argv, timeout=330, cpus=ctx.load_cpus)
        if out.returncode != 0:
            raise BenchError(f"curl exit {out.returncode}: {out.stderr.strip()[-200:]}")
        code, connect_code, size, speed = out.stdout.split()
        if code != "200" or (proxy and not socks and connect_code != "200"):
            raise BenchError(f"curl got HTTP {code} (CONNECT {connect_code})")
        if int(size) != origin.bulk_bytes:
            raise BenchError(f"curl received {size} of {origin.bulk_bytes} bytes")
        speeds.append(float(speed) / 1e6)
    use1 = _usage(proxy)
    cell = Cell(value=statistics.median(speeds))
    cell.details = {"runs_mb_per_s": [round(s, 1) for s in speeds], "bytes": origin.bulk_bytes}
    if proxy:  # CPU over all the downloads together
        used = _account(cell, use0, use1, pinned=ctx.load_cpus is not None)
        moved = origin.bulk_bytes * ctx.settings.bulk_repeat / 1e6
        cell.details["per_proxy_cpu_second"] = round(moved / used, 1) if used > 0 else None
    return cell


# ---------------------------------------------------------------- idle tunnels: RSS


def _read_event(proc, deadline: float, buf: bytearray) -> dict:
    """Next JSON line from the tunnel client's stdout, waiting no later than deadline."""
    fd = proc.popen.stdout.fileno()
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError("tunnel client did not report in time")
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise BenchError(f"tunnel client exited early: {proc.log_tail()}")
            buf.extend(chunk)
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return json.loads(line)


def _tunnel_argv(proxy: Running, ctx: Context, count: int, hold: float) -> list[str]:
    return [
        sys.executable, str(TUNNEL_CLIENT),
        "--proxy", f"127.0.0.1:{proxy.port}", "--target", f"127.0.0.1:{ctx.origin.port}",
        "--count", str(count), "--hold", str(hold),
    ]


def measure_rss(ctx: Context, proxy: Running | None) -> Cell:
    if proxy is None:
        raise BenchError("no proxy: not applicable")
    count = ctx.settings.tunnels
    # Warm-up: the first tunnels pay for lazy imports and first-use allocations, not per-tunnel state.
    warm = run_bounded(_tunnel_argv(proxy, ctx, 20, 0), timeout=60, cpus=ctx.load_cpus)
    events = [json.loads(l) for l in warm.stdout.splitlines() if l.startswith("{")]
    if not events or events[0].get("opened") != 20:
        raise BenchError(f"warm-up tunnels failed: {events[0] if events else warm.stderr.strip()[-200:]}")
    time.sleep(1.0)

    before = memory_kib(proxy.proc.tree())
    active0 = ctx.origin.status()["active"]
    client = spawn(
        f"idle_tunnels-{proxy.name}", _tunnel_argv(proxy, ctx, count, 300),
        log_dir=ctx.tmp / "logs", cpus=ctx.load_cpus, stdin=subprocess.PIPE, stdout_to_log=False,
    )
    buf = bytearray()
    try:
        ready = _read_event(client, time.monotonic() + 60 + count / 50, buf)
        opened = ready["opened"]
        if opened < count * 0.99:
            raise BenchError(f"only {opened} of {count} tunnels opened (errors: {ready['errors']})")
        time.sleep(2.0)  # let the proxy settle: buffers allocated on accept are part of the cost
        after = memory_kib(proxy.proc.tree())
        active1 = ctx.origin.status()["active"]
        client.popen.stdin.write(b"\n")
        client.popen.stdin.flush()
        closed = _read_event(client, time.monotonic() + 30, buf)
    finally:
        stop(client, grace=10)

    cell = Cell(value=(after["rss_kib"] - before["rss_kib"]) / opened)
    cell.details = {
        "tunnels": opened,
        "open_seconds": ready["seconds"],
        "rss_before_kib": before["rss_kib"],
        "rss_after_kib": after["rss_kib"],
        "uss_per_tunnel_kib": round((after["uss_kib"] - before["uss_kib"]) / opened, 2),
        "origin_connections_added": active1 - active0,
        "closed_early": closed["closed_early"],
    }
    if closed["closed_early"]:
        cell.warnings.append(f"{closed['closed_early']} tunnels were closed before memory was read")
    if active1 - active0 < opened * 0.99:
        cell.warnings.append(f"origin gained only {active1 - active0} connections for {opened} tunnels")
    return cell


def measure(metric: str, ctx: Context, proxy: Running | None) -> Cell:
    if metric == "keepalive":
        return measure_wrk(ctx, proxy, close=False)
    if metric == "newconn":
        return measure_wrk(ctx, proxy, close=True)
    if metric == "bulk":
        return measure_bulk(ctx, proxy)
    if metric == "socks_bulk":
        return measure_bulk(ctx, proxy, socks=True)
    return measure_rss(ctx, proxy)
