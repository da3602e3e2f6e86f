"""`system` resolver: the platform's getaddrinfo, run off the event loop by the loop's executor."""

from __future__ import annotations

import asyncio
import socket

from arcus.resolve.base import Resolver


class SystemResolver(Resolver):
    async def _query(self, host: str) -> list[str]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        seen: dict[str, None] = {}
        for family, _, _, _, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                seen.setdefault(str(sockaddr[0]).split("%", 1)[0], None)
        return list(seen)
