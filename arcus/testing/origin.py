"""A scriptable HTTP/1.1 origin on a real loopback socket, for the proxy's integration tests.

It runs its own asyncio loop in a thread. Paths:
    /small                 100-byte body, keep-alive
    /bytes/N               N bytes
    /echo                  echoes the request body (content-length or chunked in)
    /headers               JSON of the request line and headers as received
    /chunked               a chunked body with a trailer
    /eicar                 the EICAR antivirus test file (68 bytes), for the ICAP tests
    /status/N              an empty response with that status (HEAD-like for 204/304)
    /close                 body delimited by closing the connection
    /slow/SECONDS          waits before answering
    /continue              answers 100 Continue, then echoes the body
    /early                 answers 413 without reading the body, then closes
    /upgrade               with "Upgrade: echo": 101, then echoes bytes (a protocol switch)
It records every request head in ``requests`` (method, target, headers) for assertions.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


@dataclass
class Seen:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    conn_id: int = 0

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


@dataclass
class Origin:
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[Seen] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="origin", daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def __enter__(self) -> Origin:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("origin did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self._shutdown()))
        self._thread.join(10)

    async def _shutdown(self) -> None:
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop.stop()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]

        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn_id = self.connections
        try:
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                lines = head.decode("latin-1").split("\r\n")
                method, target, version = lines[0].split(" ")
                headers = [tuple(h.split(":", 1)) for h in lines[1:] if h]
                headers = [(k, v.strip()) for k, v in headers]
                seen = Seen(method, target, version, headers, conn_id=conn_id)
                self.requests.append(seen)
                path = target.split("?", 1)[0]
                if path.startswith("http://"):
                    path = "/" + path.split("/", 3)[3]
                if path == "/continue" and (seen.header("expect") or "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    await writer.drain()
                if path == "/early":
                    writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    await writer.drain()
                    writer.close()
                    return
                body = await self._read_body(reader, seen)
                seen.body = body
                keep = await self._answer(path, seen, body, writer, reader)
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:  # the origin is shutting down
            pass
        finally:
            writer.close()

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, seen: Seen) -> bytes:
        te = (seen.header("transfer-encoding") or "").lower()
        if te == "chunked":
            out = bytearray()
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    return bytes(out)
                out += await reader.readexactly(size)
                await reader.readexactly(2)
        length = int(seen.header("content-length") or 0)
        return await reader.readexactly(length) if length else b""

    async def _answer(
        self, path: str, seen: Seen, body: bytes, writer: asyncio.StreamWriter, reader: asyncio.StreamReader
    ) -> bool:
        def send(status: str, payload: bytes, extra: str = "") -> None:
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Length: {len(payload)}\r\nContent-Type: text/plain\r\n{extra}\r\n".encode()
                + (b"" if seen.method == "HEAD" else payload)
            )

        if path == "/small":
            send("200 OK", b"x" * 100)
        elif path.startswith("/bytes/"):
            send("200 OK", b"b" * int(path.split("/")[2]))
        elif path in ("/echo", "/continue"):
            send("200 OK", body)
        elif path == "/headers":
            send(
                "200 OK",
                json.dumps({"method": seen.method, "target": seen.target, "version": seen.version, "headers": seen.headers}).encode(),
            )
        elif path == "/eicar":
            send("200 OK", EICAR)
        elif path == "/chunked":
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
                b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n"
            )
        elif path.startswith("/status/"):
            code = int(path.split("/")[2])
            writer.write(f"HTTP/1.1 {code} Status\r\n\r\n".encode() if code in (204, 304) else f"HTTP/1.1 {code} Status\r\nContent-Length: 0\r\n\r\n".encode())
        elif path == "/close":
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close")
            await writer.drain()
            return False
        elif path == "/upgrade" and (seen.header("upgrade") or "").lower() == "echo":
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
            await writer.drain()
            while True:  # the switched protocol: echo bytes back until the client closes
                data = await reader.read(65536)
                if not data:
                    return False
                writer.write(data)
                await writer.drain()
        elif path.startswith("/slow/"):
            await asyncio.sleep(float(path.split("/")[2]))
            send("200 OK", b"slow")
        else:
            send("404 Not Found", b"no such path")
        await writer.drain()
        # Connection is a list of tokens (RFC 9110 7.6.1): "Upgrade, close" asks for the close too
        return "close" not in {t.strip() for t in (seen.header("connection") or "").lower().split(",")}


def main() -> None:
    """``python -m arcus.testing.origin``: serve on 127.0.0.1, print the port, stop when stdin closes
    (for a test that needs the origin in another network namespace)."""
    import sys

    with Origin() as origin:
        print(origin.port, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
