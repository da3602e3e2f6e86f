"""User secrets: how Arcus stores a password and checks one. Pure functions, no I/O.

New secrets are scrypt (``hashlib.scrypt``, RFC 7914) in a self-describing string::

    $scrypt$ln=15,r=8,p=1$<salt>$<key>

- ``ln=15``: N = 2**15 iterations of the memory-hard mix; ``r=8`` block size; ``p=1`` lane.
  Memory is 128 * r * N = 32 MiB per verification, about 0.1 to 0.3 s of one core on an edge
  box. That cost is why ``arcus.auth.credcache`` exists: the KDF runs once per credential and
  TTL, not once per request.
- salt: 16 random bytes from ``secrets.token_bytes``; key: 32 bytes. Both in standard base64
  without padding (the PHC string convention).

Accepted on import, verified natively, and reported by ``needs_rehash`` so that the first
successful login can replace them with scrypt:

- crypt(3): ``$1$`` md5-crypt, ``$5$``/``$6$`` sha256/sha512-crypt with optional
  ``rounds=N$`` (see ``arcus.auth.cryptfmt``).
- G3 ``fast_hash`` tokens (g3proxy user ``token: {salt, md5, sha1}``): G3 hashes the
  password's UTF-8 bytes followed by the 8 raw salt bytes, with every digest given required to
  match. As strings: ``$g3md5$<salt hex>$<md5 hex>``, ``$g3sha1$<salt hex>$<sha1 hex>`` and,
  for a token with both, ``$g3md5sha1$<salt hex>$<md5 hex>$<sha1 hex>``. ``from_g3_token``
  converts a G3 JSON/YAML token into one of these (or into its crypt string).

Every error is an OperatorError (code "invalid") whose hint lists the formats. Neither errors
nor reprs ever contain a password, and they quote a stored string's ``$scheme$`` prefix at
most (a user who pasted a plain password into an import file must not see it echoed).

Passwords longer than ``MAX_PASSWORD_BYTES`` never verify and cannot be set: legacy formats
cost time in proportion to the password's length, and a client controls that length.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets as _random
from collections.abc import Mapping
from dataclasses import dataclass, field

from arcus.auth.cryptfmt import CryptHash, parse_crypt
from arcus.errors import OperatorError

SCRYPT_LN = 15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
MAX_PASSWORD_BYTES = 1024

# Bounds on parameters read back from a stored string, so a crafted one cannot ask for
# gigabytes or minutes: at most 256 MiB of memory and 16 lanes.
_SCRYPT_MAX_LN = 20
_SCRYPT_MAX_R = 32
_SCRYPT_MAX_P = 16
_SCRYPT_MAX_MEM = 256 * 1024 * 1024

G3_SALT_BYTES = 8
_G3_DIGESTS = {"md5": 16, "sha1": 20}
_G3_SCHEMES = {"g3md5": ("md5",), "g3sha1": ("sha1",), "g3md5sha1": ("md5", "sha1")}

FORMATS_HINT = (
    "accepted secret formats: $scrypt$ln=N,r=N,p=N$<salt>$<key> (Arcus), "
    "crypt $1$ (md5-crypt), $5$ and $6$ (sha256/sha512-crypt, optional rounds=N$), "
    "G3 fast_hash as $g3md5$<salt hex>$<md5 hex>, $g3sha1$<salt hex>$<sha1 hex> "
    "or $g3md5sha1$<salt hex>$<md5 hex>$<sha1 hex>"
)

# Formats of other systems, named in the error so the operator knows what they hold.
_FOREIGN = {
    "2": "bcrypt", "2a": "bcrypt", "2b": "bcrypt", "2x": "bcrypt", "2y": "bcrypt",
    "argon2i": "argon2i", "argon2d": "argon2d", "argon2id": "argon2id",
    "7": "yescrypt/scrypt (libsodium)", "y": "yescrypt", "gy": "gost-yescrypt",
    "apr1": "Apache apr1-md5", "pbkdf2": "pbkdf2", "pbkdf2-sha256": "pbkdf2-sha256",
    "pbkdf2-sha512": "pbkdf2-sha512", "sha1": "NetBSD sha1-crypt", "3": "NT hash",
}

_PREFIX_RE = re.compile(r"\$([A-Za-z0-9-]{1,16})\$")
_HEX_RE = re.compile(r"[0-9a-fA-F]*")


def _bad(message: str) -> OperatorError:
    return OperatorError(message, code="invalid", hint=FORMATS_HINT)


def _password_bytes(password: str) -> bytes:
    if not isinstance(password, str):
        raise OperatorError("a password must be text", code="invalid")
    try:
        return password.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from a badly decoded header or file
        raise OperatorError("the password is not valid Unicode text", code="invalid") from None


@dataclass(frozen=True, slots=True)
class _Scrypt:
    ln: int
    r: int
    p: int
    salt: bytes = field(repr=False)
    key: bytes = field(repr=False)
    scheme: str = "scrypt"

    def verify(self, password: bytes) -> bool:
        return hmac.compare_digest(_scrypt(password, self.salt, self.ln, self.r, self.p, len(self.key)), self.key)


@dataclass(frozen=True, slots=True)
class _G3Fast:
    scheme: str  # "g3md5" | "g3sha1" | "g3md5sha1"
    salt: bytes = field(repr=False)
    digests: tuple[tuple[str, bytes], ...] = field(repr=False)

    def verify(self, password: bytes) -> bool:
        data = password + self.salt
        ok = True
        for name, expected in self.digests:
            ok &= hmac.compare_digest(hashlib.new(name, data).digest(), expected)
        return ok


_Parsed = _Scrypt | _G3Fast | CryptHash


def _scrypt(password: bytes, salt: bytes, ln: int, r: int, p: int, dklen: int) -> bytes:
    n = 1 << ln
    # OpenSSL's default limit (32 MiB) is exactly our N*r cost and fails on its overhead.
    maxmem = 128 * r * n * p + 128 * r * p + 1024 * 1024 * 8
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem)


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _b64decode(text: str, what: str) -> bytes:
    if not text or len(text) % 4 == 1:
        raise _bad(f"scrypt: the {what} is not base64")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"scrypt: the {what} is not base64") from None


def _parse_scrypt(stored: str) -> _Scrypt:
    parts = stored.split("$")
    # ['', 'scrypt', 'ln=15,r=8,p=1', salt, key]
    if len(parts) != 5:
        raise _bad("scrypt: expected $scrypt$ln=N,r=N,p=N$<salt>$<key>")
    params: dict[str, int] = {}
    for item in parts[2].split(","):
        name, eq, value = item.partition("=")
        if not eq or name not in ("ln", "r", "p") or name in params:
            raise _bad("scrypt: parameters must be ln=N,r=N,p=N")
        if not value.isascii() or not value.isdigit() or len(value) > 3:
            raise _bad(f"scrypt: {name} must be a small decimal number")
        params[name] = int(value)
    if set(params) != {"ln", "r", "p"}:
        raise _bad("scrypt: parameters must be ln=N,r=N,p=N")
    ln, r, p = params["ln"], params["r"], params["p"]
    if not (1 <= ln <= _SCRYPT_MAX_LN and 1 <= r <= _SCRYPT_MAX_R and 1 <= p <= _SCRYPT_MAX_P):
        raise _bad(
            f"scrypt: parameters out of range (ln 1-{_SCRYPT_MAX_LN}, r 1-{_SCRYPT_MAX_R}, p 1-{_SCRYPT_MAX_P})"
        )
    if 128 * r * (1 << ln) > _SCRYPT_MAX_MEM:
        raise _bad("scrypt: ln and r together ask for more than 256 MiB")
    salt = _b64decode(parts[3], "salt")
    key = _b64decode(parts[4], "key")
    if not 8 <= len(salt) <= 64:
        raise _bad("scrypt: the salt must be 8 to 64 bytes")
    if not 16 <= len(key) <= 64:
        raise _bad("scrypt: the key must be 16 to 64 bytes")
    return _Scrypt(ln=ln, r=r, p=p, salt=salt, key=key)


def _hex(text: str, length: int, what: str, scheme: str) -> bytes:
    if len(text) != 2 * length or not _HEX_RE.fullmatch(text):
        raise _bad(f"{scheme}: the {what} must be {2 * length} hex digits")
    return bytes.fromhex(text)


def _parse_g3(stored: str, scheme: str) -> _G3Fast:
    names = _G3_SCHEMES[scheme]
    parts = stored.split("$")
    # ['', scheme, salt, digest...]
    if len(parts) != 3 + len(names):
        shape = "$".join(f"<{n} hex>" for n in names)
        raise _bad(f"{scheme}: expected ${scheme}$<salt hex>${shape}")
    salt = _hex(parts[2], G3_SALT_BYTES, "salt", scheme)
    digests = tuple((n, _hex(v, _G3_DIGESTS[n], n, scheme)) for n, v in zip(names, parts[3:], strict=True))
    return _G3Fast(scheme=scheme, salt=salt, digests=digests)


def _parse(stored: str) -> _Parsed:
    if not isinstance(stored, str):
        raise _bad("a stored secret must be text")
    m = _PREFIX_RE.match(stored)
    if m is None:
        raise _bad("not a hashed secret: it does not start with a $scheme$ prefix")
    scheme = m.group(1)
    if scheme == "scrypt":
        return _parse_scrypt(stored)
    if scheme in ("1", "5", "6"):
        return parse_crypt(stored, FORMATS_HINT)
    if scheme in _G3_SCHEMES:
        return _parse_g3(stored, scheme)
    known = _FOREIGN.get(scheme)
    if known is not None:
        raise _bad(f"unsupported secret format: {known} (${scheme}$)")
    # Any other prefix is not quoted: it may be the start of a pasted plain password.
    raise _bad("unknown secret format: its $scheme$ prefix is not one Arcus reads")


_SCHEME_NAMES = {
    "scrypt": "scrypt",
    "md5-crypt": "md5-crypt",
    "sha256-crypt": "sha256-crypt",
    "sha512-crypt": "sha512-crypt",
    "g3md5": "g3-md5",
    "g3sha1": "g3-sha1",
    "g3md5sha1": "g3-md5-sha1",
}


def identify_secret(stored: str) -> str:
    """Validate a stored secret whole and name its scheme.

    One of "scrypt", "md5-crypt", "sha256-crypt", "sha512-crypt", "g3-md5", "g3-sha1",
    "g3-md5-sha1". ``arcus user import`` calls this on every entry so that nothing malformed
    reaches the store; raises OperatorError otherwise.
    """
    return _SCHEME_NAMES[_parse(stored).scheme]


def hash_secret(password: str) -> str:
    """A new scrypt secret for ``password`` (a fresh random salt each call).

    Takes a large fraction of a second of CPU: call it from a worker thread, not the loop.
    """
    raw = _password_bytes(password)
    if not raw:
        raise OperatorError("the password is empty", code="invalid", hint="choose a non-empty password")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise OperatorError(
            f"the password is longer than {MAX_PASSWORD_BYTES} bytes",
            code="invalid",
            hint=f"choose a password of at most {MAX_PASSWORD_BYTES} bytes (UTF-8)",
        )
    salt = _random.token_bytes(SALT_BYTES)
    key = _scrypt(raw, salt, SCRYPT_LN, SCRYPT_R, SCRYPT_P, KEY_BYTES)
    return f"$scrypt$ln={SCRYPT_LN},r={SCRYPT_R},p={SCRYPT_P}${_b64encode(salt)}${_b64encode(key)}"


def verify_secret(stored: str, password: str) -> bool:
    """Whether ``password`` matches ``stored``; the final comparison is constant-time.

    A malformed or unknown ``stored`` raises OperatorError (the store holds something it
    should not: the caller answers as for an internal error, and does not count it as a
    client's failed attempt). A password that is not text, not encodable, or longer than
    ``MAX_PASSWORD_BYTES`` simply does not match.

    Costly by design (scrypt, SHA-crypt): on the data plane run it off the event loop and put
    ``arcus.auth.credcache.CredentialCache`` in front of it.
    """
    parsed = _parse(stored)
    if not isinstance(password, str):
        return False
    try:
        raw = password.encode("utf-8")
    except UnicodeEncodeError:
        return False
    if len(raw) > MAX_PASSWORD_BYTES:
        return False
    return parsed.verify(raw)


def needs_rehash(stored: str) -> bool:
    """True when ``stored`` should be replaced by ``hash_secret`` at the next successful login.

    Every legacy format does, and scrypt secrets weaker than today's parameters do.
    """
    parsed = _parse(stored)
    if isinstance(parsed, _Scrypt):
        return parsed.ln < SCRYPT_LN or parsed.r < SCRYPT_R or len(parsed.key) < KEY_BYTES
    return True


def _g3_key(key: object) -> str:
    # G3 normalises config keys: case-insensitive, '-' and '_' alike.
    return str(key).lower().replace("-", "_")


def from_g3_token(token: Mapping[str, object] | str) -> str:
    """Turn a g3proxy user ``token`` (from its JSON or YAML user config) into a stored secret.

    G3 accepts three shapes, and so does this:

    - a string: a crypt(5) string (``$1$``, ``$5$``, ``$6$``), returned as is once valid;
    - ``{"type": "xcrypt_hash", "value": "<crypt string>"}``;
    - ``{"type": "fast_hash", "salt": "<16 hex>", "md5": "<32 hex>", "sha1": "<40 hex>"}``
      (``type`` may be omitted; at least one of md5/sha1). G3 also allows ``blake3``, which
      Python's hashlib lacks: it is ignored when md5 or sha1 is present (those still have to
      match) and refused when it is the only digest.

    Raises OperatorError naming the field at fault, never quoting a value.
    """
    if isinstance(token, str):
        if not token.startswith(("$1$", "$5$", "$6$")):
            raise _bad("a G3 string token must be a crypt $1$, $5$ or $6$ string")
        parse_crypt(token, FORMATS_HINT)
        return token
    if not isinstance(token, Mapping):
        raise _bad("a G3 token must be a crypt string or a map (fast_hash / xcrypt_hash)")
    fields = {_g3_key(k): v for k, v in token.items()}
    kind = fields.pop("type", "fast_hash")
    kind = _g3_key(kind) if isinstance(kind, str) else kind
    if kind == "xcrypt_hash":
        unknown = sorted(set(fields) - {"value"})
        if unknown:
            raise _bad(f"G3 xcrypt_hash token: unknown key {unknown[0]!r}")
        value = fields.get("value")
        if not isinstance(value, str):
            raise _bad("G3 xcrypt_hash token: 'value' must be a crypt string")
        return from_g3_token(value)
    if kind != "fast_hash":
        raise _bad("G3 token: type must be fast_hash or xcrypt_hash")
    unknown = sorted(set(fields) - {"salt", "md5", "sha1", "blake3", "b3"})
    if unknown:
        raise _bad(f"G3 fast_hash token: unknown key {unknown[0]!r}")
    for key, value in fields.items():
        if not isinstance(value, str):
            raise _bad(f"G3 fast_hash token: {key!r} must be a hex string")
    if "salt" not in fields:
        raise _bad("G3 fast_hash token: 'salt' is required")
    present = [n for n in ("md5", "sha1") if n in fields]
    if not present:
        if "blake3" in fields or "b3" in fields:
            raise OperatorError(
                "G3 fast_hash token: only a blake3 digest, which Arcus cannot verify",
                code="invalid",
                hint="re-create the user with a password (arcus user passwd), or give the token an md5 or sha1 digest",
            )
        raise _bad("G3 fast_hash token: needs an md5 or sha1 digest")
    scheme = "g3" + "".join(present)
    salt = str(fields["salt"])
    _hex(salt, G3_SALT_BYTES, "salt", "G3 fast_hash token")
    hexes = []
    for name in present:
        value = str(fields[name])
        _hex(value, _G3_DIGESTS[name], name, "G3 fast_hash token")
        hexes.append(value.lower())
    return "$".join(["", scheme, salt.lower(), *hexes])
