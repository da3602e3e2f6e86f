"""The Unix crypt(3) formats users bring on import: md5-crypt ``$1$`` and SHA-crypt ``$5$``/``$6$``.

Implemented here with ``hashlib`` because Python's ``crypt`` module is deprecated and removed
in 3.13, and a C library's crypt(3) differs between systems (musl, glibc, libxcrypt). Only
verification is offered: Arcus never creates these hashes, it upgrades them to scrypt at the
first successful login (see ``arcus.auth.secrets.needs_rehash``).

The algorithms follow their public descriptions: Poul-Henning Kamp's md5-crypt (FreeBSD,
1994) and Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512" (2007-2008). Both end with
the crypt "base-64": the alphabet ``./0-9A-Za-z``, little-endian 6-bit groups, taken from the
digest bytes in a fixed order (the ``_ORDER_*`` tables).

The cost of SHA-crypt grows with ``rounds`` and with the password length (each round hashes
the password again). Both are bounded so that a crafted stored string or a huge
``Proxy-Authorization`` header cannot pin a CPU: stored strings asking for more than
``MAX_ROUNDS`` are refused when parsed, and the caller refuses passwords longer than
``arcus.auth.secrets.MAX_PASSWORD_BYTES`` before anything is hashed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass, field

from arcus.errors import OperatorError

CRYPT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ALPHABET_SET = frozenset(CRYPT_ALPHABET)

MD5_PREFIX = "$1$"
SHA256_PREFIX = "$5$"
SHA512_PREFIX = "$6$"

MD5_SALT_MAX = 8
SHA_SALT_MAX = 16
ROUNDS_DEFAULT = 5000
ROUNDS_MIN = 1000  # glibc raises smaller requests to this; so do we
# glibc allows up to 999,999,999; in pure Python 1,000,000 SHA-512 rounds already take seconds,
# and a stored secret is verified on the data path (off the loop, but still a worker's time).
MAX_ROUNDS = 1_000_000

# Byte order of the final encoding: each triple becomes 4 characters, the tail fewer.
_ORDER_MD5 = ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))
_TAIL_MD5 = ((None, None, 11), 2)


def _sha_order(groups: int, rotations: tuple[tuple[int, int, int], ...]) -> tuple[tuple[int, int, int], ...]:
    """Drepper's tables: group k takes bytes k, k+groups, k+2*groups, rotated by k mod 3."""
    order = []
    for k in range(groups):
        trio = (k, k + groups, k + 2 * groups)
        rot = rotations[k % 3]
        order.append((trio[rot[0]], trio[rot[1]], trio[rot[2]]))
    return tuple(order)


# Rotation per k mod 3, as indexes into (k, k+g, k+2g).
_ORDER_SHA256 = _sha_order(10, ((0, 1, 2), (2, 0, 1), (1, 2, 0)))
_TAIL_SHA256 = ((None, 31, 30), 3)
_ORDER_SHA512 = _sha_order(21, ((0, 1, 2), (1, 2, 0), (2, 0, 1)))
_TAIL_SHA512 = ((None, None, 63), 2)


def _encode(digest: bytes, order: tuple[tuple[int, int, int], ...], tail: tuple[tuple[int | None, int | None, int], int]) -> str:
    out: list[str] = []

    def put(b2: int, b1: int, b0: int, n: int) -> None:
        w = (b2 << 16) | (b1 << 8) | b0
        for _ in range(n):
            out.append(CRYPT_ALPHABET[w & 0x3F])
            w >>= 6

    for a, b, c in order:
        put(digest[a], digest[b], digest[c], 4)
    (t2, t1, t0), n = tail
    put(digest[t2] if t2 is not None else 0, digest[t1] if t1 is not None else 0, digest[t0], n)
    return "".join(out)


def _repeat(block: bytes, length: int) -> bytes:
    """``length`` bytes of ``block`` repeated (the spec's "sequence P/S" and digest fill-ins)."""
    if length <= len(block):
        return block[:length]
    whole, rest = divmod(length, len(block))
    return block * whole + block[:rest]


def md5_crypt(password: bytes, salt: bytes) -> str:
    """The 22-character hash part of ``$1$<salt>$<hash>`` (salt already cut to 8 bytes)."""
    md5 = hashlib.md5
    alt = md5(password + salt + password).digest()
    ctx = md5(password + MD5_PREFIX.encode() + salt)
    ctx.update(_repeat(alt, len(password)))
    # The original's quirk, kept for compatibility: a NUL byte for each 1 bit of the length,
    # the password's first byte for each 0 bit.
    i = len(password)
    first = password[:1]
    while i:
        ctx.update(b"\0" if i & 1 else first)
        i >>= 1
    final = ctx.digest()
    for r in range(1000):
        c = md5()
        c.update(password if r & 1 else final)
        if r % 3:
            c.update(salt)
        if r % 7:
            c.update(password)
        c.update(final if r & 1 else password)
        final = c.digest()
    return _encode(final, _ORDER_MD5, _TAIL_MD5)


def sha_crypt(algorithm: str, password: bytes, salt: bytes, rounds: int) -> str:
    """The hash part of ``$5$``/``$6$`` (``algorithm`` "sha256" or "sha512")."""
    new: Callable[[bytes], Any] = getattr(hashlib, algorithm)
    plen, slen = len(password), len(salt)
    alt = new(password + salt + password).digest()
    ctx = new(password + salt)
    ctx.update(_repeat(alt, plen))
    i = plen
    while i:
        ctx.update(alt if i & 1 else password)
        i >>= 1
    a = ctx.digest()
    p_seq = _repeat(new(password * plen).digest(), plen)
    s_seq = _repeat(new(salt * (16 + a[0])).digest(), slen)
    c = a
    for r in range(rounds):
        h = new(p_seq if r & 1 else c)
        if r % 3:
            h.update(s_seq)
        if r % 7:
            h.update(p_seq)
        h.update(c if r & 1 else p_seq)
        c = h.digest()
    if algorithm == "sha256":
        return _encode(c, _ORDER_SHA256, _TAIL_SHA256)
    return _encode(c, _ORDER_SHA512, _TAIL_SHA512)


@dataclass(frozen=True, slots=True)
class CryptHash:
    """A parsed crypt(3) string. ``repr`` hides the salt and hash (they are secret material)."""

    scheme: str  # "md5-crypt" | "sha256-crypt" | "sha512-crypt"
    rounds: int
    salt: bytes = field(repr=False)
    hash: str = field(repr=False)

    def verify(self, password: bytes) -> bool:
        if self.scheme == "md5-crypt":
            computed = md5_crypt(password, self.salt)
        else:
            computed = sha_crypt(self.scheme[:6], password, self.salt, self.rounds)
        return hmac.compare_digest(computed.encode(), self.hash.encode())


_HASH_LEN = {"md5-crypt": 22, "sha256-crypt": 43, "sha512-crypt": 86}


def _bad(message: str, hint: str | None) -> OperatorError:
    return OperatorError(message, code="invalid", hint=hint)


def parse_crypt(stored: str, hint: str | None = None) -> CryptHash:
    """Parse ``$1$salt$hash``, ``$5$[rounds=N$]salt$hash`` or ``$6$...``.

    Raises OperatorError (code "invalid", with ``hint``) naming what is wrong, never quoting
    the salt or hash.
    """
    if stored.startswith(MD5_PREFIX):
        scheme, rest, salt_max = "md5-crypt", stored[3:], MD5_SALT_MAX
    elif stored.startswith(SHA256_PREFIX):
        scheme, rest, salt_max = "sha256-crypt", stored[3:], SHA_SALT_MAX
    elif stored.startswith(SHA512_PREFIX):
        scheme, rest, salt_max = "sha512-crypt", stored[3:], SHA_SALT_MAX
    else:
        raise _bad("not a crypt $1$, $5$ or $6$ string", hint)
    rounds = 1000 if scheme == "md5-crypt" else ROUNDS_DEFAULT
    if scheme != "md5-crypt" and rest.startswith("rounds="):
        spec, sep, rest = rest[len("rounds="):].partition("$")
        if not sep or not spec.isascii() or not spec.isdigit() or len(spec) > 10:
            raise _bad(f"{scheme}: rounds= must be a decimal number followed by '$'", hint)
        rounds = max(int(spec), ROUNDS_MIN)
        if rounds > MAX_ROUNDS:
            raise _bad(f"{scheme}: rounds={int(spec)} is more than Arcus verifies ({MAX_ROUNDS})", hint)
    salt, sep, digest = rest.partition("$")
    if not sep:
        raise _bad(f"{scheme}: expected <salt>$<hash> after the prefix", hint)
    if len(salt) > salt_max:
        raise _bad(f"{scheme}: the salt is longer than {salt_max} characters", hint)
    if not salt.isprintable() or not salt.isascii():
        raise _bad(f"{scheme}: the salt has characters crypt(3) does not produce", hint)
    if len(digest) != _HASH_LEN[scheme] or not _ALPHABET_SET.issuperset(digest):
        raise _bad(
            f"{scheme}: the hash must be {_HASH_LEN[scheme]} characters of [./0-9A-Za-z]", hint
        )
    return CryptHash(scheme=scheme, rounds=rounds, salt=salt.encode("ascii"), hash=digest)
