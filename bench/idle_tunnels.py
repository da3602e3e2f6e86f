"""Open N CONNECT tunnels through a proxy to a target and hold them idle until told to close.

Used by bench/run.py for the RSS-per-idle-tunnel metric, as a separate process pinned to the
load core. Protocol with the parent, one JSON line each on stdout:
  {"event": "ready", "opened": N, "failed": F, "errors": {...}, "seconds": S}
then it waits for a line (or EOF) on stdin, or --hold seconds, whichever comes first, and
prints {"event": "closed", "closed_early": K} (tunnels the proxy or origin had already ended)
before closing everything and exiting. Standard library only; every wait is bounded.

    python bench/idle_tunnels.py --proxy 127.0.0.1:3128 --target 127.0.0.1:8080 --count 2000
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import resource
import sys
import time


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


class Refused(Exception):
    """The proxy answered CONNECT with something other than 200."""


async def _open_one(proxy: tuple[str, int], target: str, timeout: float):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*proxy), timeout)
    try:
        writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status = head.split(b" ", 2)[1] if head.startswith(b"HTTP/") else b"?"
        if status != b"200":
            raise Refused(f"CONNECT answered {status.decode(errors='replace')}")
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def _main(args: argparse.Namespace) -> int:
    proxy = _addr(args.proxy)
    target = args.target
    sem = asyncio.Semaphore(args.concurrency)
    errors: collections.Counter[str] = collections.Counter()
    tunnels = []

    async def one() -> None:
        async with sem:
            try:
                tunnels.append(await _open_one(proxy, target, args.timeout))
            except Refused as exc:
                errors[str(exc)[:80]] += 1
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                errors[type(exc).__name__] += 1

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(args.count)))
    print(json.dumps({
        "event": "ready", "opened": len(tunnels), "failed": sum(errors.values()),
        "errors": dict(errors), "seconds": round(time.monotonic() - started, 3),
    }), flush=True)

    if args.hold > 0:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), args.hold)
        except asyncio.TimeoutError:
            pass
    closed_early = sum(1 for reader, _ in tunnels if reader.at_eof())
    print(json.dumps({"event": "closed", "closed_early": closed_early}), flush=True)
    for _, writer in tunnels:
        writer.close()
    await asyncio.sleep(0.2)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proxy", required=True, help="proxy host:port")
    parser.add_argument("--target", required=True, help="CONNECT target host:port")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=100, help="tunnels being opened at once")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-tunnel connect+reply bound (s)")
    parser.add_argument("--hold", type=float, default=120.0, help="longest hold before closing (s); 0: close at once")
    args = parser.parse_args()
    _raise_nofile(args.count + 256)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
