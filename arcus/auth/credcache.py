"""Verified-credential cache and per-client failure throttle. Pure: the caller passes ``now``.

Why: a scrypt verification costs 32 MiB and a large fraction of a second; proxy clients send
``Proxy-Authorization`` on every request. ``CredentialCache`` remembers the outcome of a real
verification for ``ttl`` seconds so the key-derivation function runs once per credential,
not once per request.

What it keeps: for each (user key, password) it has seen, an HMAC-SHA256 of the password under
a random key made when the process starts (``secrets.token_bytes``), never the password. The
digest is useless outside this process and cannot be reversed offline without that key.

The user key: pass something that changes when the credential changes, e.g.
``f"{tenant}\\0{user}\\0{stored_secret}"`` built from the Snapshot's user record. A password
change, a re-import or a rehash then misses the cache by construction, even on a data plane
still holding an older Snapshot. ``invalidate(user_key)`` drops one key's entries and
``clear()`` everything (call it on a reload that blocks or removes users, to be quick rather
than wait for ``ttl``).

``FailureThrottle`` counts failed logins per client address and blocks an address that fails
``max_failures`` times within ``window`` seconds for ``block`` seconds. Use ``throttle_key``
to turn an address into its key: IPv6 clients are keyed by their /64, since one host usually
owns a whole /64 and could otherwise rotate addresses for free.

Both structures are bounded: least recently used entries go first when full. Neither is
thread-safe; each belongs to one event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass

NEGATIVE_TTL_MAX = 30.0


@dataclass(slots=True)
class _Outcome:
    ok: bool
    expires: float


class CredentialCache:
    """Remembers verification outcomes by keyed digest, bounded LRU with expiry.

    ``check`` answers True (verified before, same password), False (this exact password
    failed before) or None (not known: verify for real, then ``remember``). Failures are kept
    at most ``negative_ttl`` seconds (default: the smaller of ``ttl`` and 30 s) so a client
    retrying a wrong password does not run the KDF each time, while a just-fixed password
    store is believed quickly.
    """

    __slots__ = ("_entries", "_by_user", "_key", "max_entries", "ttl", "negative_ttl")

    def __init__(self, max_entries: int = 10000, ttl: float = 300.0, *, negative_ttl: float | None = None) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.max_entries = max_entries
        self.ttl = float(ttl)
        self.negative_ttl = float(min(ttl, NEGATIVE_TTL_MAX) if negative_ttl is None else negative_ttl)
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[tuple[str, bytes], _Outcome] = OrderedDict()
        self._by_user: dict[str, set[bytes]] = {}

    def __repr__(self) -> str:
        return f"CredentialCache(entries={len(self._entries)}, max_entries={self.max_entries}, ttl={self.ttl})"

    def __len__(self) -> int:
        return len(self._entries)

    def _digest(self, user_key: str, password: str) -> bytes:
        u = user_key.encode("utf-8", "surrogatepass")
        p = password.encode("utf-8", "surrogatepass")
        # Length-prefixed so ("ab", "c") and ("a", "bc") cannot collide.
        msg = len(u).to_bytes(4, "big") + u + p
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def check(self, user_key: str, password: str, now: float) -> bool | None:
        key = (user_key, self._digest(user_key, password))
        outcome = self._entries.get(key)
        if outcome is None:
            return None
        if now >= outcome.expires:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return outcome.ok

    def remember(self, user_key: str, password: str, ok: bool, now: float) -> None:
        digest = self._digest(user_key, password)
        key = (user_key, digest)
        expires = now + (self.ttl if ok else self.negative_ttl)
        if key in self._entries:
            self._entries[key] = _Outcome(ok, expires)
            self._entries.move_to_end(key)
            return
        while len(self._entries) >= self.max_entries:
            oldest = next(iter(self._entries))
            self._drop(oldest)
        self._entries[key] = _Outcome(ok, expires)
        self._by_user.setdefault(user_key, set()).add(digest)

    def invalidate(self, user_key: str) -> None:
        for digest in self._by_user.pop(user_key, ()):
            self._entries.pop((user_key, digest), None)

    def clear(self) -> None:
        self._entries.clear()
        self._by_user.clear()

    def _drop(self, key: tuple[str, bytes]) -> None:
        self._entries.pop(key, None)
        digests = self._by_user.get(key[0])
        if digests is not None:
            digests.discard(key[1])
            if not digests:
                del self._by_user[key[0]]


def throttle_key(address: str) -> str:
    """The throttle key of a client address: IPv4 as is, IPv6 as its /64.

    IPv4-mapped IPv6 (``::ffff:10.0.0.1``, what a dual-stack listener reports) becomes the
    IPv4 address; a zone index is dropped; anything unparsable (a Unix socket peer) is
    returned unchanged.
    """
    text = address.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


@dataclass(slots=True)
class _Failures:
    times: deque[float]
    blocked_until: float = 0.0


class FailureThrottle:
    """Blocks a client key after repeated failed logins.

    ``blocked(key, now)`` returns the seconds left (0.0 = free to try); ``failed`` records a
    failure and starts a block when ``max_failures`` fall within ``window`` seconds;
    ``succeeded`` forgets the key. The window slides: the last ``max_failures`` failure times
    are kept per key, nothing more. At most ``max_entries`` keys are tracked; when full, the
    key that failed least recently is forgotten (an address that keeps failing stays fresh).
    """

    __slots__ = ("_entries", "max_failures", "window", "block", "max_entries")

    def __init__(self, max_failures: int = 5, window: float = 60.0, block: float = 30.0, max_entries: int = 10000) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if window <= 0 or block <= 0:
            raise ValueError("window and block must be positive")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_failures = max_failures
        self.window = float(window)
        self.block = float(block)
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def blocked(self, client_ip: str, now: float) -> float:
        entry = self._entries.get(client_ip)
        if entry is None:
            return 0.0
        left = entry.blocked_until - now
        if left > 0:
            return left
        if not entry.times or now - entry.times[-1] > self.window:
            # Block over and nothing recent: forget the key rather than keep it around.
            del self._entries[client_ip]
        return 0.0

    def failed(self, client_ip: str, now: float) -> None:
        entry = self._entries.get(client_ip)
        if entry is None:
            while len(self._entries) >= self.max_entries:
                self._entries.popitem(last=False)
            entry = _Failures(deque(maxlen=self.max_failures))
            self._entries[client_ip] = entry
        else:
            self._entries.move_to_end(client_ip)
        if entry.blocked_until > now:
            return  # already blocked; a failure during the block does not extend it
        entry.times.append(now)
        if len(entry.times) == self.max_failures and now - entry.times[0] <= self.window:
            entry.blocked_until = now + self.block
            entry.times.clear()

    def succeeded(self, client_ip: str) -> None:
        self._entries.pop(client_ip, None)
