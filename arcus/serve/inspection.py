"""Protocol inspection of one tunnel: what its first bytes show, and the policy on it.

Every ``Tunnel`` has one ``Inspection``. While it is ``watching``, the tunnel hands it each chunk
either side sends *before* passing the chunk on; it feeds a copy to the sans-io
:class:`~arcus.proto.sniff.Sniffer` and answers at once (no byte is held, no timer is set). Once
the protocol is named:

- a TLS ClientHello's server name becomes the tunnel's ``sni`` (what the record shows);
- if the admission left a ``tunnel_check`` on the owner (a tenant rule has a ``protocols``
  condition, or the tunnel goes to a literal address: host rules then apply to the server name
  its TLS client sends, ``arcus.tenancy.admission.TunnelCheck``), the policy decides again. A
  denial closes the tunnel at once: the chunk that told is not passed on (its side's earlier
  chunks, if the protocol took several to show, were), and the record says ``deny`` with the
  rule; a ``report`` rule that matches is recorded as a report.

The watch ends when the protocol is named, after the sniffer's byte and chunk bounds, or when
a chunk arrives more than :data:`WATCH_SECONDS` after the tunnel started; the tunnel's end
settles what is known (``protocol``). After that a tunnel pays one attribute test per chunk.
"""

from __future__ import annotations

import time
from typing import Any

from arcus.errors import ErrorCode, Refusal
from arcus.proto.sniff import TLS, Sniffed, Sniffer

WATCH_SECONDS = 10.0  # a protocol not named within this (e.g. a greeting cut short) stays unknown


class Inspection:
    __slots__ = ("tunnel", "sniffer", "watching", "until", "sniffed", "refusal", "reports")

    def __init__(self, tunnel: Any) -> None:
        self.tunnel = tunnel
        self.sniffer = Sniffer()
        self.watching = True
        self.until = time.monotonic() + WATCH_SECONDS
        self.sniffed: Sniffed | None = None
        self.refusal: Refusal | None = None  # the policy refused what the first bytes showed
        self.reports: tuple[str, ...] = ()  # report rules that matched on them

    def client(self, data: bytes) -> bool:
        """A client chunk, before it goes upstream. True: the tunnel was refused and closed
        (the chunk must not be passed on)."""
        found = self.sniffer.client_data(data)
        if found is None:
            if self.sniffer.done or time.monotonic() < self.until:
                return False
            found = self.sniffer.finish()
        return self._named(found)

    def server(self, data: bytes) -> bool:
        """An upstream chunk, before it goes to the client. True: refused and closed."""
        found = self.sniffer.server_data(data)
        if found is None:
            if self.sniffer.done or time.monotonic() < self.until:
                return False
            found = self.sniffer.finish()
        return self._named(found)

    @property
    def protocol(self) -> str | None:
        """The protocol named; at the end of a tunnel that carried bytes, ``unknown`` if they did
        not tell; None for a tunnel that carried none."""
        if self.sniffed is None:
            if self.sniffer.first is None:
                return None
            self.watching = False
            self.sniffed = self.sniffer.finish()
        return self.sniffed.protocol

    @property
    def sni(self) -> str | None:
        return self.sniffed.sni if self.sniffed is not None else None

    def _named(self, found: Sniffed) -> bool:
        self.watching = False
        self.sniffed = found
        tunnel = self.tunnel
        if found.protocol == TLS and found.sni is not None:
            tunnel.sni = found.sni
        owner = tunnel.owner
        check = owner.tunnel_check
        if check is None:
            return False
        decision = check(found.protocol, found.sni)
        if decision.action == "allow":
            self.reports = decision.reports
            return False
        what = f"the tunnel carries {found.protocol}" + (f" to {found.sni}" if found.sni else "")
        self.refusal = Refusal(ErrorCode.DENIED, f"{decision.reason} ({what})", rule=decision.rule_id or "default")
        owner.srv_stats.errors[ErrorCode.DENIED] += 1
        owner.ten_stats.errors[ErrorCode.DENIED] += 1
        tunnel.refused()
        return True
