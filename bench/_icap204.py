"""An ICAP server that scans nothing: OPTIONS like c-icap's, then 204 to every REQMOD/RESPMOD
once it has read the message (and its preview). bench/icap.py runs it to tell Arcus' own cost
of an ICAP exchange from the scanner's.

Run: python bench/_icap204.py PORT
"""

from __future__ import annotations

import asyncio
import sys

OPTIONS = (b"ICAP/1.0 200 OK\r\nMethods: RESPMOD, REQMOD\r\nISTag: \"null-1\"\r\nPreview: 1024\r\n"
           b"Transfer-Preview: *\r\nAllow: 204\r\nOptions-TTL: 3600\r\nEncapsulated: null-body=0\r\n\r\n")


async def chunks(reader: asyncio.StreamReader) -> bool:
    """Read a chunked body to its last chunk; whether that carried ieof."""
    while True:
        line = await reader.readuntil(b"\r\n")
        size, _, ext = line.strip().partition(b";")
        n = int(size, 16)
        if n == 0:
            await reader.readuntil(b"\r\n")
            return b"ieof" in ext
        await reader.readexactly(n + 2)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"OPTIONS"):
                writer.write(OPTIONS)
                continue
            encap = next(ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"encapsulated:"))
            parts = [p.strip().split(b"=") for p in encap.split(b":", 1)[1].split(b",")]
            await reader.readexactly(int(parts[-1][1]))
            if parts[-1][0] != b"null-body":
                ieof = await chunks(reader)
                if b"Preview:" in head and not ieof:
                    pass  # 204 after the preview: the rest is not sent
            writer.write(b"ICAP/1.0 204 No Content\r\nISTag: \"null-1\"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError, StopIteration):
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
