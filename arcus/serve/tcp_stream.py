"""`tcp_stream`: each client connection is relayed to one of a fixed list of upstreams.

No handshake: the connection is admitted (tenant by the server's ``tenant:`` or the source
address; policy on the upstream's host and port; limits) and the upstream opened at once.
``balance: round_robin`` starts each new connection at the next upstream of the server,
``random`` at a random one; when an upstream cannot be connected to (refused, timed out,
unresolvable, TLS failed), the next one in that order is tried, each once. A refusal by
admission is final. Refusals close the connection: there is no protocol to answer in.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections import defaultdict

from arcus.config.server.tcp_stream import TcpStreamConfig, split_upstream
from arcus.errors import Refusal, Side
from arcus.serve.relay import CONNECTING, RelayConnection

log = logging.getLogger("arcus.serve")

_turns: defaultdict[str, itertools.count] = defaultdict(itertools.count)  # server name -> round robin position


def upstream_order(server: str, upstreams: tuple[str, ...], balance: str) -> list[tuple[str, int]]:
    """Every upstream once, in the order this connection tries them."""
    parsed = [split_upstream(u) for u in upstreams]
    n = len(parsed)
    if n <= 1:
        return parsed
    start = random.randrange(n) if balance == "random" else next(_turns[server]) % n
    return parsed[start:] + parsed[:start]


class TcpStreamConnection(RelayConnection):
    config_type = TcpStreamConfig  # tls_stream's is one too
    conf: TcpStreamConfig
    candidates: list[tuple[str, int]] = []
    attempt = 0

    def handshake_started(self) -> None:
        self.candidates = upstream_order(self.server, self.conf.upstreams, self.conf.balance)
        self.attempt = 0
        self.next_upstream()

    def upstream_ssl(self):
        """TLS context for the upstream (tls_stream); None: plain TCP."""
        return None

    def next_upstream(self) -> None:
        host, port = self.candidates[self.attempt]
        self.attempt += 1
        self.open(host, port, ssl=self.upstream_ssl(), retry=self.attempt > 1)  # a failover is the same request

    def refuse(self, failure: Refusal, linger: bool | None = None) -> None:
        if self.state == CONNECTING and failure.side is Side.UPSTREAM and self.attempt < len(self.candidates):
            log.info("connection %s: %s; trying the next upstream", self.id, failure.message)
            self.srv_stats.errors["upstream_failover"] += 1
            self.next_upstream()
            return
        super().refuse(failure, linger)

    def audit_method(self) -> str | None:
        return "STREAM"


def tcp_stream_factory(shared, server: str):
    def make() -> TcpStreamConnection:
        return TcpStreamConnection(shared, server)

    return make
