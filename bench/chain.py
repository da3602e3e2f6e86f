"""A chain's added latency: one CONNECT tunnel and one small GET through it, per sample.

    .venv/bin/python bench/chain.py [--samples 200] [--json out.json]

Columns (each a fresh TCP connection per sample, so a chain's handshakes are in every number):

- ``origin``: straight to the origin (TCP connect, GET, response): the floor.
- ``arcus``: Arcus ``direct_fixed``: CONNECT, 200, GET through the tunnel.
- ``arcus>tinyproxy``: Arcus ``proxy_http`` to tinyproxy (a CONNECT of its own upstream).
- ``arcus>dante``: Arcus ``proxy_socks5`` to dante.
- ``arcus>arcus(tls)``: Arcus ``proxy_https`` to a second Arcus listening with TLS.

The added latency of a chain is its median minus ``arcus``'s. Peers missing from the machine
make their column "n/a". Every peer is started here on loopback ports and stopped by PID; the
sample loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arcus.testing.daemon import DaemonProcess  # noqa: E402
from arcus.testing.origin import Origin  # noqa: E402

TIME_BOUND = 120.0  # seconds for one column at most


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def read_response(s: socket.socket) -> bytes:
    """A whole response framed by Content-Length (not by the close: a tunnel over TLS cannot
    pass a half-close on, so the end of the body is the end of the sample)."""
    data = b""
    while True:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            head = data[:end].lower()
            at = head.find(b"content-length:")
            if at >= 0:
                length = int(head[at + 15:].split(b"\r\n", 1)[0])
                if len(data) >= end + 4 + length:
                    return data
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def sample_direct(origin_port: int) -> float:
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", origin_port), timeout=10) as s:
        s.sendall(b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        body = read_response(s)
    took = time.perf_counter() - t0
    if not body.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"origin answered {body[:40]!r}")
    return took


def sample_tunnel(proxy_port: int, origin_port: int) -> float:
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as s:
        s.sendall(f"CONNECT 127.0.0.1:{origin_port} HTTP/1.1\r\nHost: 127.0.0.1:{origin_port}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError(f"proxy closed during CONNECT: {head!r}")
            head += chunk
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"CONNECT answered {head[:80]!r}")
        s.sendall(b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        body = read_response(s)
    took = time.perf_counter() - t0
    if b"HTTP/1.1 200" not in body:
        raise RuntimeError(f"origin through the tunnel answered {body[:40]!r}")
    return took


def measure(fn, samples: int) -> dict:
    for _ in range(min(20, samples)):  # warm-up: imports, caches
        fn()
    times = []
    deadline = time.monotonic() + TIME_BOUND
    for _ in range(samples):
        if time.monotonic() > deadline:
            break
        times.append(fn() * 1000.0)
    times.sort()
    return {
        "samples": len(times),
        "median_ms": round(statistics.median(times), 3),
        "p90_ms": round(times[int(len(times) * 0.9) - 1], 3),
    }


def arcus_profile(escapers: str, entry: str, listen: str = "127.0.0.1:0", tls: str = "") -> str:
    return f"""\
servers:
  - name: http
    type: http_proxy
    listen: {listen}
    escaper: {entry}
{tls}
resolvers:
  - name: system
    type: system
escapers:
  - name: direct
    type: direct_fixed
{escapers}
log:
  level: warning
  access: false
audit:
  enabled: false
"""


@contextmanager
def arcus(work: Path, text: str):
    d = DaemonProcess(work, text)
    d.start()
    try:
        yield d
    finally:
        d.stop()


@contextmanager
def process(argv: list[str], port: int, log: Path):
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def tinyproxy(work: Path, stack: ExitStack) -> int | None:
    exe = shutil.which("tinyproxy")
    if exe is None:
        return None
    port = free_port()
    conf = work / "tinyproxy.conf"
    conf.write_text(f"Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nMaxClients 100\nLogLevel Warning\n")
    stack.enter_context(process([exe, "-d", "-c", str(conf)], port, work / "tinyproxy.log"))
    return port


def dante(work: Path, stack: ExitStack) -> int | None:
    exe = shutil.which("danted") or ("/usr/sbin/danted" if Path("/usr/sbin/danted").exists() else None)
    if exe is None:
        return None
    port = free_port()
    conf = work / "danted.conf"
    conf.write_text(
        f"logoutput: {work / 'danted.log'}\ninternal: 127.0.0.1 port = {port}\nexternal: 127.0.0.1\n"
        "clientmethod: none\nsocksmethod: none\nuser.privileged: root\nuser.unprivileged: nobody\n"
        "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }\n"
        "socks pass {\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n  command: connect\n}\n"
    )
    stack.enter_context(process([exe, "-f", str(conf), "-N", "2"], port, work / "danted.out"))
    return port


def tls_upstream(work: Path, stack: ExitStack) -> tuple[int, Path]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.integration.tls_peers import LocalCA

    ca = LocalCA(work / "ca")
    cert, key = ca.issue("upstream.arcus.test", "127.0.0.1", stem="upstream")
    port = free_port()
    tls = f"    tls:\n      certificate: {cert}\n      private_key: {key}\n"
    stack.enter_context(arcus(work / "upstream", arcus_profile("", "direct", f"127.0.0.1:{port}", tls)))
    return port, ca.cert_path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    samples = max(10, min(args.samples, 5000))
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="arcus-chain-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        origin = stack.enter_context(Origin())
        results["origin"] = measure(lambda: sample_direct(origin.port), samples)
        chains: dict[str, str] = {"arcus": ""}
        tp = tinyproxy(work, stack)
        if tp is not None:
            chains["arcus>tinyproxy"] = f"  - name: chain\n    type: proxy_http\n    proxy: 127.0.0.1:{tp}\n"
        dn = dante(work, stack)
        if dn is not None:
            chains["arcus>dante"] = f"  - name: chain\n    type: proxy_socks5\n    proxy: 127.0.0.1:{dn}\n"
        up_port, ca = tls_upstream(work, stack)
        chains["arcus>arcus(tls)"] = (
            f"  - name: chain\n    type: proxy_https\n    proxy: 127.0.0.1:{up_port}\n"
            f"    ca_file: {ca}\n    tls_name: upstream.arcus.test\n"
        )
        for label, escapers in chains.items():
            entry = "chain" if escapers else "direct"
            with arcus(work / label.replace(">", "_").replace("(", "").replace(")", ""), arcus_profile(escapers, entry)) as d:
                port = d.proxy_port
                try:
                    results[label] = measure(lambda: sample_tunnel(port, origin.port), samples)
                except (OSError, RuntimeError) as exc:
                    results[label] = {"error": f"n/a: {type(exc).__name__}: {exc}"}
        for missing in ("arcus>tinyproxy", "arcus>dante"):
            results.setdefault(missing, {"error": "n/a: peer not installed"})
    base = results["arcus"]["median_ms"]
    print(f"{'column':<20}{'median ms':>12}{'p90 ms':>10}{'added ms':>12}")
    for label, r in results.items():
        if "error" in r:
            print(f"{label:<20}{r['error']:>34}")
            continue
        added = "" if label in ("origin", "arcus") else f"{r['median_ms'] - base:+.3f}"
        r["added_ms"] = None if not added else round(r["median_ms"] - base, 3)
        print(f"{label:<20}{r['median_ms']:>12.3f}{r['p90_ms']:>10.3f}{added:>12}")
    if args.json is not None:
        args.json.write_text(json.dumps({"metric": "chain", "samples": samples, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
