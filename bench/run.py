"""Measure Arcus against squid, proxy.py and no proxy at all, in one run, and print ratios.

    python bench/run.py                      # everything, 10 s per wrk run, 1 GiB bulk, 2,000 tunnels
    python bench/run.py --quick              # smoke run: short, small
    python bench/run.py --only keepalive --skip-peer proxy.py

Each proxy runs pinned to the first CPU, wrk/curl/the origin (nginx) on the second; each metric
starts each proxy afresh. A column that cannot be measured reads "n/a: <reason>" and the run goes
on. Results: printed, and written as JSON and Markdown to bench/results/ (<timestamp> and latest).
See docs/benchmarks.md for what each number means and its caveats. Standard library only.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _metrics import METRICS, Cell, Context, Settings, measure  # noqa: E402
from _origin import start_origin  # noqa: E402
from _peers import (  # noqa: E402
    COLUMNS,
    LOG_COLUMN_METRICS,
    PROXIES,
    SOCKS_COLUMNS,
    ensure_proxypy,
    start_proxy,
    versions,
)
from _procs import BenchError, cpu_sets, machine_busy, raise_nofile, stop, stop_all  # noqa: E402
from _report import BUSY_WARN, render_markdown, render_text, to_json, write  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="Benchmark Arcus against squid, proxy.py and the no-proxy baseline.",
    )
    p.add_argument("--duration", type=float, help="seconds per measured wrk run (default 10; --quick: 3)")
    p.add_argument("--only", action="append", choices=sorted(METRICS), metavar="METRIC",
                   help=f"run only this metric (repeatable): {', '.join(METRICS)}")
    p.add_argument("--skip-peer", action="append", default=[], choices=COLUMNS, metavar="NAME",
                   help=f"leave a column out (repeatable): {', '.join(COLUMNS)}")
    p.add_argument("--quick", action="store_true", help="smoke run: 3 s wrk runs, 256 MiB bulk once, 500 tunnels")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure every column this many times, alternating columns; the best round counts "
                        "(the median for memory) (default 1)")
    p.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    p.add_argument("--tunnels", type=int, help="idle tunnels for the RSS metric (default 2000; --quick: 500)")
    p.add_argument("--bulk-mib", type=int, help="bulk file size in MiB (default 1024; --quick: 256)")
    p.add_argument("--repeat", type=int, help="bulk downloads per column, median kept (default 3; --quick: 1)")
    p.add_argument("--no-install", action="store_true",
                   help="do not create bench/.venv-peers with proxy.py when it is missing")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs and logs) for inspection")
    p.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    args = p.parse_args(argv)
    q = args.quick
    args.duration = args.duration or (3.0 if q else 10.0)
    args.tunnels = args.tunnels or (500 if q else 2000)
    args.bulk_mib = args.bulk_mib or (256 if q else 1024)
    args.repeat = args.repeat or (1 if q else 3)
    if not (1 <= args.duration <= 600 and 1 <= args.tunnels <= 8000 and 1 <= args.repeat <= 20
            and 1 <= args.rounds <= 10 and 1 <= args.connections <= 5000):
        p.error("--duration must be 1..600, --tunnels 1..8000, --repeat 1..20, --rounds 1..10, --connections 1..5000")
    return args


def _preflight(args: argparse.Namespace) -> dict[str, str]:
    """Reasons, per column, that it cannot run at all (so we do not try it for every metric)."""
    missing = [tool for tool in ("wrk", "curl") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"error: {', '.join(missing)} not found (apt-get install {' '.join(missing)})")
    blocked: dict[str, str] = {}
    if "proxy.py" not in args.skip_peer:
        try:
            ensure_proxypy(install=not args.no_install)
        except BenchError as exc:
            blocked["proxy.py"] = str(exc)
    return blocked


def _measure_column(metric: str, column: str, ctx: Context, proxy_cpus: set[int] | None, install: bool) -> Cell:
    if column == "baseline" and METRICS[metric].needs_proxy:
        return Cell(error="no proxy: not applicable")
    if metric == "socks_bulk" and column not in SOCKS_COLUMNS:
        return Cell(error="no SOCKS5 server: not applicable")
    running = None
    try:
        if column != "baseline":
            running = start_proxy(column, ctx.tmp, ctx.origin.port, proxy_cpus, install=install)
        return measure(metric, ctx, running)
    except BenchError as exc:
        return Cell(error=str(exc))
    except Exception as exc:  # a bug in one column must not cost the other columns
        traceback.print_exc(file=sys.stderr)
        return Cell(error=f"internal error: {type(exc).__name__}: {exc}")
    finally:
        if running is not None:
            stop(running.proc)


def _pick_round(metric: str, cells: list[Cell]) -> Cell:
    """One cell from several rounds: the best for throughput, the median for memory.

    Other work on the machine can only slow a proxy down, never speed it up, so the fastest
    round is the least disturbed one (timeit's reasoning). Memory per tunnel is not slowed by
    neighbours; its median is the honest summary. Every round's value is kept in the details.
    """
    good = sorted((c for c in cells if c.value is not None), key=lambda c: c.value)
    if not good:
        return cells[0]
    chosen = good[-1] if METRICS[metric].higher_is_better else good[(len(good) - 1) // 2]
    if len(cells) > 1:
        chosen.details["rounds"] = [None if c.value is None else round(c.value, 2) for c in cells]
        failed = [c.error for c in cells if c.error]
        if failed:
            chosen.warnings.append(f"{len(failed)} of {len(cells)} rounds failed: {failed[0]}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    metrics = [m for m in METRICS if not args.only or m in args.only]
    columns = [c for c in COLUMNS if c not in args.skip_peer]
    blocked = _preflight(args)
    nofile = raise_nofile()
    if nofile < args.tunnels + 256:
        print(f"warning: fd limit {nofile} may be too low for {args.tunnels} tunnels", file=sys.stderr)
    proxy_cpus, load_cpus = cpu_sets()
    if proxy_cpus is None:
        print("warning: fewer than 2 CPUs: nothing is pinned, numbers are not comparable", file=sys.stderr)

    # Clean up whatever happens: normal exit, exception, SIGTERM or Ctrl-C.
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    settings = Settings(
        duration=args.duration, warmup=0.5 if args.quick else 2.0, connections=args.connections,
        tunnels=args.tunnels, bulk_repeat=args.repeat,
    )
    busy = machine_busy(1.0)
    if busy > BUSY_WARN:
        print(f"warning: the machine is already {busy:.0f}% busy before the run: other work will skew "
              "the numbers (read the ratios and the per-CPU-second rows, or use --rounds 3)", file=sys.stderr)
    started = dt.datetime.now().astimezone()
    tmp = Path(tempfile.mkdtemp(prefix="arcus-bench-"))
    meta = {
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join(["python bench/run.py", *map(shlex.quote, argv if argv is not None else sys.argv[1:])]),
        "settings": vars(settings) | {"bulk_mib": args.bulk_mib, "quick": args.quick, "rounds": args.rounds},
        "pinning": {"proxy_cpus": sorted(proxy_cpus or []), "load_cpus": sorted(load_cpus or [])},
        "versions": versions(),
        "machine_busy_percent_before": busy,
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
    }
    results: dict[str, dict[str, Cell]] = {}
    origin = None
    t0 = time.monotonic()
    try:
        origin = start_origin(tmp, cpus=load_cpus, bulk_mib=args.bulk_mib if {"bulk", "socks_bulk"} & set(metrics) else 1)
        ctx = Context(settings=settings, origin=origin, tmp=tmp, load_cpus=load_cpus)
        for metric in metrics:
            # arcus-logs says what logging costs per request: not measured where that is nil
            runs: dict[str, list[Cell]] = {
                c: [] for c in columns if c != "arcus-logs" or metric in LOG_COLUMN_METRICS
            }
            for rnd in range(args.rounds):
                for column in runs:
                    label = f" (round {rnd + 1}/{args.rounds})" if args.rounds > 1 else ""
                    print(f"[{time.monotonic() - t0:6.1f}s] {metric}: {column}{label} ...", file=sys.stderr, flush=True)
                    if column in blocked:
                        cell = Cell(error=blocked[column])
                    else:
                        cell = _measure_column(metric, column, ctx, proxy_cpus, not args.no_install)
                    runs[column].append(cell)
                    shown = f"n/a: {cell.error}" if cell.error else f"{cell.value:,.2f} {METRICS[metric].unit}"
                    print(f"          {shown}", file=sys.stderr, flush=True)
            results[metric] = {c: _pick_round(metric, cells) for c, cells in runs.items()}
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if origin is not None:
            stop(origin.proc)
        stop_all()
        if args.keep_tmp:
            print(f"temp dir kept: {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    meta["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    text = render_text(results, settings, busy)
    print()
    print(text)
    doc = to_json(meta, results, settings)
    markdown = render_markdown(meta, results, settings)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    paths = write(args.results_dir, stamp, doc, markdown)
    print("written: " + ", ".join(os.path.relpath(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
