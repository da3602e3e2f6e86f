"""The count of passes through the daemon (arcus.escape.hops): the registry's bounds, and a
connection to this box remembered before its peer can accept it."""

from __future__ import annotations

import asyncio
import socket

import pytest

from arcus.escape.hops import HOPS, LINKS, Links, connect_counted


def test_a_port_is_taken_once_and_the_oldest_are_forgotten_past_the_bound() -> None:
    links = Links(limit=3)
    for port, n in ((1001, 1), (1002, 2), (1003, 3)):
        links.add(port, n)
    assert links.take(1002) == 2 and links.take(1002) == 0  # taken: a port is accepted once
    links.add(1004, 4)
    links.add(1005, 5)  # four remembered: the oldest (1001) goes
    assert links.take(1001) == 0 and (links.take(1003), links.take(1005)) == (3, 5)
    links.add(1004, 7)  # a port handed out again: the newer count
    assert links.take(1004) == 7 and len(links) == 0


def test_the_port_is_remembered_with_the_next_count_before_the_peer_accepts() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)

    async def main() -> tuple[int, int]:
        HOPS.set(3)
        sock = await connect_counted("127.0.0.1", server.getsockname()[1])
        try:
            accepted, peer = server.accept()  # the kernel finished the handshake: the peer may look now
            accepted.close()
            return peer[1], LINKS.take(peer[1])
        finally:
            sock.close()

    try:
        port, count = asyncio.run(main())
    finally:
        server.close()
    assert count == 4 and port > 0


def test_a_failed_connect_forgets_its_port() -> None:
    before = len(LINKS)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with pytest.raises(OSError):
        asyncio.run(connect_counted("127.0.0.1", dead))
    assert len(LINKS) == before



def test_the_listening_ports_are_each_daemons_own_and_their_union_is_asked() -> None:
    from arcus.escape.hops import Listening

    ports = Listening()
    a, b = object(), object()
    ports.replace(a, {3128, 1080})
    ports.replace(b, {8443})
    assert 3128 in ports and 8443 in ports and 80 not in ports
    ports.replace(a, {3129})  # a reload moved a listener
    assert 3128 not in ports and 3129 in ports and 8443 in ports
    ports.replace(b, set())  # a daemon closed its last one
    assert 8443 not in ports
