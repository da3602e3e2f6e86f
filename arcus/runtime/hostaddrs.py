"""The box's own addresses, for the egress guard (read from /proc; no subprocess, no extra package)."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path


def own_addresses() -> frozenset[str]:
    found: set[str] = set()
    found.update(_from_fib_trie(Path("/proc/net/fib_trie")))
    found.update(_from_if_inet6(Path("/proc/net/if_inet6")))
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.add(info[4][0].split("%", 1)[0])
    except OSError:
        pass
    return frozenset(found)


def _from_fib_trie(path: Path) -> set[str]:
    """Addresses marked ``/32 host LOCAL`` in the kernel's IPv4 routing trie."""
    out: set[str] = set()
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    last = ""
    for line in lines:
        s = line.strip()
        if s.startswith("|--"):
            last = s[3:].strip()
        elif s.startswith("/32 host LOCAL") and last:
            out.add(last)
    return out


def _from_if_inet6(path: Path) -> set[str]:
    out: set[str] = set()
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if parts and len(parts[0]) == 32:
            try:
                out.add(str(ipaddress.IPv6Address(int(parts[0], 16))))
            except ValueError:
                continue
    return out
