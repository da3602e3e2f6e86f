"""Limits: concurrent connections, request rates and bandwidth. Pure, no I/O, no clock.

Every time is passed in as float seconds, from ``loop.time()`` on the data plane and from a
simulated clock in tests. One limiter object per level and scope (global, tenant, user), held
by the runtime across Snapshots so that a live change (``arcus tenant set acme --max-conns
500 --rps 200 --bandwidth 50M``) calls ``set_limit``/``set_rate`` on the existing object and
keeps its count or fill instead of starting over. None of these are thread-safe: each belongs
to one event loop.

How the data plane is meant to use them:

Connections (on accept, after tenant and user are known)::

    refused = try_acquire_all(global_conns, tenant_conns, user_conns)
    if refused is not None:
        ...answer 503 (SOCKS: reply 0x02), naming refused's level; close
    ...and in connection_lost: release_all(global_conns, tenant_conns, user_conns)

Request rate (per HTTP request, per SOCKS/CONNECT tunnel)::

    wait = take_all(loop.time(), global_rps, tenant_rps, user_rps)
    if wait:
        ...answer 429 with Retry-After: max(1, ceil(wait))

  All levels or none are charged, so a request refused by its tenant's limit spends nothing
  of the global budget (``wait`` is ``inf`` only when n exceeds a bucket's burst: give
  request buckets a burst of at least 1, as the default does).

Bandwidth (in the relay protocol, one set of shapers per direction)::

    def data_received(self, data):
        self.peer.write(data)
        pause = max_pause(loop.time(), len(data), global_down, tenant_down, user_down)
        if pause:
            self.transport.pause_reading()
            self.timer = loop.call_later(pause, self.transport.resume_reading)

  Never drop or buffer more: the bytes received are forwarded, and not reading lets TCP
  slow the sender. Cancel the timer in connection_lost. Combine this with write
  backpressure (pause_writing on the peer pauses reading here as well), resuming only when
  both the shaper's pause is over and the peer's buffer has drained.

Operator input goes through ``parse_rate``, ``parse_count`` and ``parse_bandwidth``
(``arcus.units``: a bare ``50M`` is 50 megabits/s, ``50MB`` is megabytes/s).
"""

from arcus.limit.bucket import TokenBucket, take_all
from arcus.limit.conns import ConcurrencyLimit, release_all, try_acquire_all
from arcus.limit.shaper import Shaper, max_pause
from arcus.units import format_bandwidth, parse_bandwidth, parse_count, parse_rate

__all__ = [
    "ConcurrencyLimit",
    "Shaper",
    "TokenBucket",
    "format_bandwidth",
    "max_pause",
    "parse_bandwidth",
    "parse_count",
    "parse_rate",
    "release_all",
    "take_all",
    "try_acquire_all",
]
