"""Micro-benchmark of the HTTP/1.x head parsers (not a test): parses per second on this core.

Run: .venv/bin/python bench/parse_micro.py [--seconds S] [--repeat N]

With httptools installed (``pip install -e '.[bench]'``) it also measures llhttp, the parser
behind uvicorn, against ours on the same request head, in the same run, as a ratio: see
:func:`compare_httptools` for what is compared and why the comparison is about syntax.

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
    _fields,
    _request_line,
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


def compare_httptools(seconds: float) -> list[tuple[str, float]]:
    """Ours against httptools (llhttp) on REQUEST; (label, calls per second) for each.

    What llhttp could replace is our *syntax* step: the request line and the field lines,
    checked and split (one ``re.fullmatch`` and one ``re.findall`` over the head, in C). What
    follows it -- Host and target rules, framing, keep-alive, the RequestHead -- is Arcus' own
    semantics and would stay in Python either way. So besides the whole parse, this times both
    syntax steps producing the same things: method, target (split into scheme, authority and
    rest for an absolute URI), version, and the (name, value) list with OWS stripped. llhttp
    hands fields over through one Python callback per field, which is most of its cost here.
    A parser is built per head, as ``parse_request_head`` is called per head (a parser kept
    per connection saves the construction, measured too).
    """
    try:
        import httptools
    except ImportError:
        print("httptools is not installed (pip install -e '.[bench]'): ours is not compared")
        return []

    class Collect:
        __slots__ = ("url", "headers")

        def __init__(self) -> None:
            self.url = b""
            self.headers: list[tuple[bytes, bytes]] = []

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value.rstrip(b" \t")))

    limits = Limits()
    end = REQUEST.find(b"\r\n\r\n")
    line_end = REQUEST.find(b"\r\n")

    def ours_syntax() -> object:
        return _request_line(REQUEST, 0, line_end), _fields(REQUEST, line_end, end, limits, "client", 400, 431)

    def llhttp_syntax() -> object:
        c = Collect()
        p = httptools.HttpRequestParser(c)
        p.feed_data(REQUEST)
        u = httptools.parse_url(c.url)  # scheme, host, port, path, query
        return p.get_method(), p.get_http_version(), u.schema, u.host, u.port, u.path, c.headers

    def llhttp_strict() -> object:
        # The least a strictness layer must add on the happy path: llhttp accepts more than one
        # SP between the request line's parts (and, beyond it, a fragment, Transfer-Encoding in
        # HTTP/1.0 and any number of leading empty lines, which are cheap to check), so the
        # request line is matched against our pattern again. (What llhttp refuses and we accept
        # -- methods it does not know, lowercase methods, obs-text in a path -- would fall back
        # to our parser, at no cost on this head.)
        out = llhttp_syntax()
        _request_line(REQUEST, 0, line_end)
        return out

    kept = Collect()
    kept_parser = httptools.HttpRequestParser(kept)

    def llhttp_kept() -> object:  # the bound of what llhttp can do: no parser built per head
        kept.url = b""
        kept.headers = []
        kept_parser.feed_data(REQUEST)
        return httptools.parse_url(kept.url), kept.headers

    # the same result, checked once, so the comparison is of equals
    c = Collect()
    httptools.HttpRequestParser(c).feed_data(REQUEST)
    assert c.headers == _fields(REQUEST, line_end, end, limits, "client", 400, 431)
    return [
        ("ours: parse_request_head (whole)", rate(lambda: parse_request_head(REQUEST, limits), seconds)),
        ("ours: syntax step only", rate(ours_syntax, seconds)),
        ("httptools: syntax step, parser per head", rate(llhttp_syntax, seconds)),
        ("httptools: syntax step, parser kept", rate(llhttp_kept, seconds)),
        ("httptools: syntax step + request-line check", rate(llhttp_strict, seconds)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per figure (default 2)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of the httptools comparison (default 2)")
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
    for n in range(args.repeat):
        figures = compare_httptools(args.seconds)
        if not figures:
            break
        print(f"-- ours vs httptools {__import__('httptools').__version__} (llhttp), run {n + 1} of {args.repeat}")
        whole, ours, per_head, kept, strict = (1e6 / r for _, r in figures)
        for label, per_s in figures:
            print(f"{label:<48} {per_s:>12,.0f} /s  {1e6 / per_s:7.2f} us")
        print(f"syntax step, httptools/ours time: {per_head / ours:.2f} (parser per head), {kept / ours:.2f} (kept), "
              f"{strict / ours:.2f} (with the request-line check)")
        print(f"a whole head on httptools would cost {(whole - ours + per_head) / whole:.2f}x ours without a "
              f"strictness layer, {(whole - ours + strict) / whole:.2f}x with its least part")


if __name__ == "__main__":
    main()
