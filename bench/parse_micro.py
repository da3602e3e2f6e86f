"""Micro-benchmark of the HTTP/1.x head parsers (not a test): parses per second on this core.

Run: .venv/bin/python bench/parse_micro.py [--seconds S]

Why it exists: the proxy's request rate is bounded by Python work per request, and parsing two
heads is a fixed part of it. This prints that cost for a typical ~400-byte request head and
response head, plus the chunked scanner on a small chunked body, so a change to the parser
shows its price. Each figure is the best of several timed rounds, timed in this process's CPU
time (so other load on the box inflates it less than wall-clock time would).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arcus.proto.http1 import (  # noqa: E402 - after the path tweak, so a checkout runs without install
    ChunkedScanner,
    Limits,
    build_request_head,
    forward_headers,
    parse_request_head,
    parse_response_head,
)

REQUEST = (
    b"GET http://www.example.com/static/js/app.3f9c1b.js?v=20240101 HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: */*\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate\r\n"
    b"Referer: http://www.example.com/index.html\r\n"
    b"Proxy-Connection: keep-alive\r\n"
    b"Connection: keep-alive\r\n"
    b"Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark\r\n"
    b"\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
    b"Server: nginx/1.24.0\r\n"
    b"Content-Type: application/javascript; charset=utf-8\r\n"
    b"Content-Length: 48213\r\n"
    b"Last-Modified: Sun, 31 Dec 2023 12:00:00 GMT\r\n"
    b"Connection: keep-alive\r\n"
    b'ETag: "6590f0a0-bc55"\r\n'
    b"Cache-Control: public, max-age=31536000, immutable\r\n"
    b"Accept-Ranges: bytes\r\n"
    b"Vary: Accept-Encoding\r\n"
    b"\r\n"
)
CHUNKED_BODY = b"".join(b"%x\r\n%s\r\n" % (n, b"x" * n) for n in (512, 1024, 77, 4096)) + b"0\r\n\r\n"


def rate(fn: Callable[[], object], seconds: float, rounds: int = 5) -> float:
    """Calls per second of ``fn``: best round of ``rounds``, each about seconds/rounds long."""
    per_round = seconds / rounds
    n = 1000
    while True:  # calibrate: enough calls for ~per_round seconds (bounded: n only grows)
        t0 = time.process_time()
        for _ in range(n):
            fn()
        took = time.process_time() - t0
        if took >= per_round / 4 or n >= 10_000_000:
            break
        n *= 4
    n = max(1, int(n * per_round / max(took, 1e-9)))
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, time.process_time() - t0)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per figure (default 2)")
    args = parser.parse_args()
    limits = Limits()
    req_head, _ = parse_request_head(REQUEST, limits) or (None, 0)
    assert req_head is not None and parse_response_head(RESPONSE, limits, b"GET") is not None

    def scan() -> None:
        ChunkedScanner(limits).feed(CHUNKED_BODY)

    def forward() -> None:
        fields = forward_headers(req_head.headers, req_head.connection_tokens)
        build_request_head(req_head.method, req_head.path, fields)

    crlf = b"\r\n"
    cases = [
        (f"parse_request_head ({len(REQUEST)} B, {REQUEST.count(crlf) - 2} fields)",
         lambda: parse_request_head(REQUEST, limits)),
        (f"parse_response_head ({len(RESPONSE)} B, {RESPONSE.count(crlf) - 2} fields)",
         lambda: parse_response_head(RESPONSE, limits, b"GET")),
        ("forward_headers + build_request_head", forward),
        (f"ChunkedScanner.feed ({len(CHUNKED_BODY)} B, 5 chunks)", scan),
    ]
    print(f"python {sys.version.split()[0]}, {args.seconds:g} s per figure")
    for label, fn in cases:
        per_s = rate(fn, args.seconds)
        print(f"{label:<48} {per_s:>12,.0f} /s  {1e6 / per_s:7.2f} us")


if __name__ == "__main__":
    main()
