"""A tiny scriptable DNS server on 127.0.0.1 (UDP) for the c_ares unit tests.

It answers A and AAAA from a table with the TTLs given, NXDOMAIN or SERVFAIL for names
listed so, and never answers names in ``silent``; it counts every question. Real packets on a
real socket: c-ares is exercised as it is in production, without a system program (the
integration tests use dnsmasq).
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections import Counter
from dataclasses import dataclass, field

A, AAAA = 1, 28
NOERROR, SERVFAIL, NXDOMAIN = 0, 2, 3


@dataclass
class Zone:
    records: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # name -> [(address, ttl)]
    rcodes: dict[str, int] = field(default_factory=dict)  # name -> rcode (NXDOMAIN, SERVFAIL)
    silent: set = field(default_factory=set)  # names, or (name, "A"|"AAAA"), never answered
    delay: float = 0.0  # seconds before every answer
    slow: dict[str, float] = field(default_factory=dict)  # name -> seconds before its answers
    asked: Counter = field(default_factory=Counter)  # (name, "A"|"AAAA") -> questions seen


def _qname(packet: bytes, offset: int) -> tuple[str, int]:
    labels = []
    while True:
        length = packet[offset]
        offset += 1
        if length == 0:
            return ".".join(labels).lower(), offset
        labels.append(packet[offset : offset + length].decode("ascii"))
        offset += length


def answer(zone: Zone, packet: bytes) -> bytes | None:
    qid, _flags, qdcount = struct.unpack("!HHH", packet[:6])
    if qdcount != 1:
        return None
    name, end = _qname(packet, 12)
    qtype, _qclass = struct.unpack("!HH", packet[end : end + 4])
    question = packet[12 : end + 4]
    kind = {A: "A", AAAA: "AAAA"}.get(qtype, str(qtype))
    zone.asked[(name, kind)] += 1
    if name in zone.silent or (name, kind) in zone.silent:
        return None
    rcode = zone.rcodes.get(name, NOERROR if name in zone.records else NXDOMAIN)
    rrs = []
    if rcode == NOERROR:
        for address, ttl in zone.records[name]:
            ip = ipaddress.ip_address(address)
            rtype = A if ip.version == 4 else AAAA
            if rtype == qtype:
                rrs.append(struct.pack("!HHHIH", 0xC00C, rtype, 1, ttl, len(ip.packed)) + ip.packed)
    header = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, len(rrs), 0, 0)
    return header + question + b"".join(rrs)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        reply = answer(self.zone, data)
        if reply is None or self.transport is None:
            return
        delay = self.zone.delay or self.zone.slow.get(_qname(data, 12)[0], 0.0)
        if delay:
            asyncio.get_running_loop().call_later(delay, self.transport.sendto, reply, addr)
        else:
            self.transport.sendto(reply, addr)


class DnsPeer:
    """``async with DnsPeer(zone) as peer: peer.address`` is "127.0.0.1:PORT"."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> DnsPeer:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self.zone), local_addr=("127.0.0.1", 0))
        self.port = self.transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.transport is not None:
            self.transport.close()
