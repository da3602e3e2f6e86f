"""Secrets: scrypt round trips, the published vectors of every legacy format, and refusals."""

from __future__ import annotations

import base64

import pytest

from arcus.auth import cryptfmt
from arcus.auth.secrets import (
    FORMATS_HINT,
    MAX_PASSWORD_BYTES,
    from_g3_token,
    hash_secret,
    identify_secret,
    needs_rehash,
    verify_secret,
)
from arcus.errors import OperatorError

# --- Vectors ---------------------------------------------------------------------------------

# Ulrich Drepper, "Unix crypt using SHA-256 and SHA-512", test vectors of the specification
# (also in glibc/libxcrypt/PHP test suites). Inputs whose salt or rounds the spec clamps are
# given here in the stored (output) form, which is what an import file holds.
SHA256_VECTORS = [
    ("Hello world!", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"),
    ("Hello world!", "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA"),
    ("This is just a test", "$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5"),
    (
        "a very much longer text to encrypt.  This one even stretches over morethan one line.",
        "$5$rounds=1400$anotherlongsalts$Rx.j8H.h8HjEDGomFU8bDkXm3XIUnzyxf12oP84Bnq1",
    ),
    (
        "we have a short salt string but not a short password",
        "$5$rounds=77777$short$JiO1O3ZpDAxGJeaDIuqCoEFysAe1mZNJRs3pw0KQRd/",
    ),
    ("a short string", "$5$rounds=123456$asaltof16chars..$gP3VQ/6X7UUEW3HkBn2w1/Ptq2jxPyzV/cZKmF/wJvD"),
    (
        "the minimum number is still observed",
        "$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC",
    ),
]
SHA512_VECTORS = [
    (
        "Hello world!",
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
    ),
    (
        "Hello world!",
        "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/"
        "YTBmSK6H9qs/y3RnOaw5v.",
    ),
    (
        "This is just a test",
        "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/"
        "e1JSbq3y6JMxxl8audkUEm0",
    ),
    (
        "a very much longer text to encrypt.  This one even stretches over morethan one line.",
        "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7"
        "UmJEiDwGqd8p4ur1",
    ),
    (
        "we have a short salt string but not a short password",
        "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5C"
        "xtgfiAc0",
    ),
    (
        "a short string",
        "$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMN"
        "rCzIMVcgEJAstJeonj1",
    ),
    (
        "the minimum number is still observed",
        "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0d"
        "qbpBYYBaHHrsX.",
    ),
    # An empty salt is valid crypt(3) output (PHP's test suite).
    ("foo", "$6$$QMXjqd7rHQZPQ1yHsXkQqC1FBzDiVfTHXL.LaeDAeVV.IzMaV9VU4MQ8kPuZa2SOP1A0RPm772EaFYjpEJtdu."),
]
# md5-crypt: passlib's known-correct hashes, and g3-xcrypt's own test.
MD5_VECTORS = [
    ("", "$1$dOHYPKoP$tnxS1T8Q6VVn3kpV8cN6o."),
    (" ", "$1$m/5ee7ol$bZn0kIBFipq39e.KDXX8I0"),
    ("test", "$1$ec6XvcoW$ghEtNK2U1MC5l.Dwgi3020"),
    ("Compl3X AlphaNu3meric", "$1$nX1e7EeI$ljQn72ZUgt6Wxd9hfvHdV0"),
    ("4lpHa N|_|M3r1K W/ Cur5Es: #$%(*)(*%#", "$1$jQS7o98J$V6iTcr71CGgwW2laf17pi1"),
    ("test", "$1$SuMrG47N$ymvzYjr7QcEQjaK5m1PGx1"),
    ("t\u00e1\u0411\u2113\u0259", "$1$d6/Ky1lU$/xpf8m7ftmWLF.TjHCqel0"),  # UTF-8 bytes
    ("123456", "$1$DDiGYGte$K/SAC4VvllDonGcP1EfaY1"),
]
# g3-xcrypt's tests for the other two formats.
G3_XCRYPT_VECTORS = [
    ("123456", "$5$W9wFmTCpBILzJn18$X496nPJHVQ895fwotE3WPBLmxgxGD8ivpUhfmoKbtb7"),
    (
        "123456",
        "$6$yeDpErl4xq9E2vKP$.reNyfNzRJyAJrlh38J1XGx/5QTfBy3IedVNdTqfWqSeZFPAbXzV85uNK9fdmXvGCxizHVcAiIoQ4uXMJWuB6/",
    ),
]
# g3's FastHashedPassPhrase test (lib/g3-types/src/auth/crypt.rs): md5/sha1 of password+salt.
G3_PASSWORD = "IQ5ZhanWaop2cw"
G3_SALT = "d950eeffd53f7189"
G3_MD5 = "28cb2d22a1148a2c4c43d2c8eab0a202"
G3_SHA1 = "0b39e984b59251425245e81241aebf7dbe197cc3"

# RFC 7914 section 12, second vector: scrypt("pleaseletmein", "SodiumChloride", N=16384, r=8, p=1).
RFC7914_KEY = bytes.fromhex(
    "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2"
    "d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887"
)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


RFC7914_STORED = f"$scrypt$ln=14,r=8,p=1${_b64(b'SodiumChloride')}${_b64(RFC7914_KEY)}"


def _error(fn, *args) -> OperatorError:
    with pytest.raises(OperatorError) as info:
        fn(*args)
    assert info.value.code == "invalid"
    return info.value


# --- scrypt ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hunter2() -> str:
    return hash_secret("hunter2 \u00e9t\u00e9")  # non-ASCII: hashed as UTF-8


def test_hash_secret_format_and_round_trip(hunter2: str) -> None:
    scheme, params, salt, key = hunter2.split("$")[1:]
    assert scheme == "scrypt" and params == "ln=15,r=8,p=1"
    assert len(base64.b64decode(salt + "==")) == 16
    assert len(base64.b64decode(key + "=")) == 32
    assert identify_secret(hunter2) == "scrypt"
    assert verify_secret(hunter2, "hunter2 \u00e9t\u00e9")
    assert not verify_secret(hunter2, "hunter2 ete")
    assert not verify_secret(hunter2, "")
    assert not needs_rehash(hunter2)


def test_hash_secret_salts_every_time(hunter2: str) -> None:
    again = hash_secret("hunter2 \u00e9t\u00e9")
    assert again != hunter2
    assert verify_secret(again, "hunter2 \u00e9t\u00e9")


def test_scrypt_rfc7914_vector_and_weaker_parameters_need_rehash() -> None:
    assert identify_secret(RFC7914_STORED) == "scrypt"
    assert verify_secret(RFC7914_STORED, "pleaseletmein")
    assert not verify_secret(RFC7914_STORED, "pleaseletmeout")
    assert needs_rehash(RFC7914_STORED)  # ln=14 < 15


def test_hash_secret_refuses_empty_and_overlong_without_echo() -> None:
    assert _error(hash_secret, "").message == "the password is empty"
    long = "x" * (MAX_PASSWORD_BYTES + 1)
    err = _error(hash_secret, long)
    assert err.message == f"the password is longer than {MAX_PASSWORD_BYTES} bytes"
    assert long not in str(err) and long not in (err.hint or "")


def test_overlong_or_unencodable_passwords_never_verify(hunter2: str) -> None:
    md5_stored = MD5_VECTORS[2][1]
    assert not verify_secret(md5_stored, "test" + "x" * MAX_PASSWORD_BYTES)
    assert not verify_secret(md5_stored, "te\udcffst")
    assert not verify_secret(hunter2, None)  # type: ignore[arg-type]


# --- crypt(3) --------------------------------------------------------------------------------


@pytest.mark.parametrize(("password", "stored"), SHA256_VECTORS + G3_XCRYPT_VECTORS[:1])
def test_sha256_crypt_vectors(password: str, stored: str) -> None:
    assert identify_secret(stored) == "sha256-crypt"
    assert verify_secret(stored, password)
    assert not verify_secret(stored, password + "!")
    assert needs_rehash(stored)


@pytest.mark.parametrize(("password", "stored"), SHA512_VECTORS + G3_XCRYPT_VECTORS[1:])
def test_sha512_crypt_vectors(password: str, stored: str) -> None:
    assert identify_secret(stored) == "sha512-crypt"
    assert verify_secret(stored, password)
    assert not verify_secret(stored, password[:-1])
    assert needs_rehash(stored)


@pytest.mark.parametrize(("password", "stored"), MD5_VECTORS)
def test_md5_crypt_vectors(password: str, stored: str) -> None:
    assert identify_secret(stored) == "md5-crypt"
    assert verify_secret(stored, password)
    assert not verify_secret(stored, password + "x")
    assert needs_rehash(stored)


def test_rounds_below_minimum_are_raised_like_glibc() -> None:
    # The spec's "roundstoolow" vector as a setting (rounds=10) computes with 1000 rounds.
    stored = SHA256_VECTORS[-1][1].replace("rounds=1000$", "rounds=10$")
    assert verify_secret(stored, "the minimum number is still observed")


def test_crypt_repr_hides_salt_and_hash() -> None:
    parsed = cryptfmt.parse_crypt(SHA512_VECTORS[0][1])
    assert repr(parsed) == "CryptHash(scheme='sha512-crypt', rounds=5000)"


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ("$1$toolongsalt$tnxS1T8Q6VVn3kpV8cN6o.", "md5-crypt: the salt is longer than 8 characters"),
        ("$1$dOHYPKoP$tnxS1T8Q6VVn3kpV8cN6o", "md5-crypt: the hash must be 22 characters of [./0-9A-Za-z]"),
        ("$1$dOHYPKoP$tnxS1T8Q6VVn3kpV8cN6o!", "md5-crypt: the hash must be 22 characters of [./0-9A-Za-z]"),
        ("$1$dOHYPKoP", "md5-crypt: expected <salt>$<hash> after the prefix"),
        (
            "$5$abcdefghijklmnopq$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
            "sha256-crypt: the salt is longer than 16 characters",
        ),
        ("$5$rounds=$salt$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5", "sha256-crypt: rounds= must be a decimal number followed by '$'"),
        ("$5$rounds=-5$salt$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5", "sha256-crypt: rounds= must be a decimal number followed by '$'"),
        (
            "$6$rounds=999999999$salt$" + "a" * 86,
            "sha512-crypt: rounds=999999999 is more than Arcus verifies (1000000)",
        ),
        ("$6$salt$" + "a" * 85, "sha512-crypt: the hash must be 86 characters of [./0-9A-Za-z]"),
        ("$6$sa\tlt$" + "a" * 86, "sha512-crypt: the salt has characters crypt(3) does not produce"),
    ],
)
def test_malformed_crypt_strings(stored: str, message: str) -> None:
    err = _error(verify_secret, stored, "x")
    assert err.message == message
    assert err.hint == FORMATS_HINT
    assert _error(identify_secret, stored).message == message


# --- G3 fast_hash ----------------------------------------------------------------------------


def test_g3_vector_each_digest_alone_and_together() -> None:
    forms = {
        f"$g3md5${G3_SALT}${G3_MD5}": "g3-md5",
        f"$g3sha1${G3_SALT}${G3_SHA1}": "g3-sha1",
        f"$g3md5sha1${G3_SALT}${G3_MD5}${G3_SHA1}": "g3-md5-sha1",
        f"$g3md5${G3_SALT.upper()}${G3_MD5.upper()}": "g3-md5",
    }
    for stored, scheme in forms.items():
        assert identify_secret(stored) == scheme
        assert verify_secret(stored, G3_PASSWORD)
        assert not verify_secret(stored, G3_PASSWORD.lower())
        assert needs_rehash(stored)


def test_g3_dual_hash_requires_both_digests_to_match() -> None:
    wrong_sha1 = "0" * 40
    assert not verify_secret(f"$g3md5sha1${G3_SALT}${G3_MD5}${wrong_sha1}", G3_PASSWORD)


def test_from_g3_token_shapes() -> None:
    both = {"type": "fast_hash", "salt": G3_SALT, "md5": G3_MD5, "sha1": G3_SHA1}
    assert from_g3_token(both) == f"$g3md5sha1${G3_SALT}${G3_MD5}${G3_SHA1}"
    # G3 lets "type" be omitted for fast_hash, and normalises key case and dashes.
    assert from_g3_token({"Salt": G3_SALT.upper(), "MD5": G3_MD5}) == f"$g3md5${G3_SALT}${G3_MD5}"
    assert from_g3_token({"type": "Fast-Hash", "salt": G3_SALT, "sha1": G3_SHA1}) == f"$g3sha1${G3_SALT}${G3_SHA1}"
    # blake3 cannot be checked with hashlib: ignored beside md5/sha1, which still must match.
    assert from_g3_token({"salt": G3_SALT, "md5": G3_MD5, "blake3": "ab" * 32}) == f"$g3md5${G3_SALT}${G3_MD5}"
    crypt = MD5_VECTORS[2][1]
    assert from_g3_token(crypt) == crypt
    assert from_g3_token({"type": "xcrypt_hash", "value": crypt}) == crypt
    assert verify_secret(from_g3_token(both), G3_PASSWORD)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ({"type": "fast_hash", "md5": G3_MD5}, "G3 fast_hash token: 'salt' is required"),
        ({"salt": G3_SALT}, "G3 fast_hash token: needs an md5 or sha1 digest"),
        ({"salt": G3_SALT, "blake3": "ab" * 32}, "G3 fast_hash token: only a blake3 digest, which Arcus cannot verify"),
        ({"salt": G3_SALT[:-2], "md5": G3_MD5}, "G3 fast_hash token: the salt must be 16 hex digits"),
        ({"salt": G3_SALT, "md5": G3_MD5[:-1] + "g"}, "G3 fast_hash token: the md5 must be 32 hex digits"),
        ({"salt": G3_SALT, "sha1": G3_MD5}, "G3 fast_hash token: the sha1 must be 40 hex digits"),
        ({"salt": G3_SALT, "md5": 5}, "G3 fast_hash token: 'md5' must be a hex string"),
        ({"salt": G3_SALT, "md5": G3_MD5, "pepper": "x"}, "G3 fast_hash token: unknown key 'pepper'"),
        ({"type": "bcrypt", "value": "x"}, "G3 token: type must be fast_hash or xcrypt_hash"),
        ({"type": "xcrypt_hash"}, "G3 xcrypt_hash token: 'value' must be a crypt string"),
        ({"type": "xcrypt_hash", "value": "s3cret"}, "a G3 string token must be a crypt $1$, $5$ or $6$ string"),
        ("s3cret", "a G3 string token must be a crypt $1$, $5$ or $6$ string"),
        (["s3cret"], "a G3 token must be a crypt string or a map (fast_hash / xcrypt_hash)"),
        ("$1$dOHYPKoP$short", "md5-crypt: the hash must be 22 characters of [./0-9A-Za-z]"),
    ],
)
def test_from_g3_token_refusals_name_the_field_not_the_value(token: object, message: str) -> None:
    err = _error(from_g3_token, token)
    assert err.message == message
    assert "s3cret" not in err.message and "s3cret" not in (err.hint or "")


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        (f"$g3md5${G3_SALT}", "g3md5: expected $g3md5$<salt hex>$<md5 hex>"),
        (f"$g3md5sha1${G3_SALT}${G3_MD5}", "g3md5sha1: expected $g3md5sha1$<salt hex>$<md5 hex>$<sha1 hex>"),
        (f"$g3sha1${G3_SALT}00${G3_SHA1}", "g3sha1: the salt must be 16 hex digits"),
        (f"$g3sha1${G3_SALT}${G3_MD5}", "g3sha1: the sha1 must be 40 hex digits"),
    ],
)
def test_malformed_g3_strings(stored: str, message: str) -> None:
    assert _error(verify_secret, stored, G3_PASSWORD).message == message


# --- Unknown and malformed -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ("correct horse battery staple", "not a hashed secret: it does not start with a $scheme$ prefix"),
        ("", "not a hashed secret: it does not start with a $scheme$ prefix"),
        ("$2b$12$abcdefghijklmnopqrstuv", "unsupported secret format: bcrypt ($2b$)"),
        ("$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", "unsupported secret format: argon2id ($argon2id$)"),
        ("$hunter$2", "unknown secret format: its $scheme$ prefix is not one Arcus reads"),
        ("$scrypt$ln=15,r=8$c2FsdHNhbHQ$" + "A" * 43, "scrypt: parameters must be ln=N,r=N,p=N"),
        ("$scrypt$ln=15,r=8,p=1,p=1$c2FsdHNhbHQ$" + "A" * 43, "scrypt: parameters must be ln=N,r=N,p=N"),
        ("$scrypt$ln=15,r=8,p=x$c2FsdHNhbHQ$" + "A" * 43, "scrypt: p must be a small decimal number"),
        ("$scrypt$ln=30,r=8,p=1$c2FsdHNhbHQ$" + "A" * 43, "scrypt: parameters out of range (ln 1-20, r 1-32, p 1-16)"),
        ("$scrypt$ln=20,r=32,p=1$c2FsdHNhbHQ$" + "A" * 43, "scrypt: ln and r together ask for more than 256 MiB"),
        ("$scrypt$ln=15,r=8,p=1$c2Fs!HNhbHQ$" + "A" * 43, "scrypt: the salt is not base64"),
        ("$scrypt$ln=15,r=8,p=1$c2FsdA$" + "A" * 43, "scrypt: the salt must be 8 to 64 bytes"),
        ("$scrypt$ln=15,r=8,p=1$c2FsdHNhbHQ$AAAA", "scrypt: the key must be 16 to 64 bytes"),
        ("$scrypt$ln=15,r=8,p=1$c2FsdHNhbHQ$", "scrypt: the key is not base64"),
        ("$scrypt$ln=15,r=8,p=1$c2FsdHNhbHQ", "scrypt: expected $scrypt$ln=N,r=N,p=N$<salt>$<key>"),
    ],
)
def test_unknown_and_malformed_formats(stored: str, message: str) -> None:
    for fn in (identify_secret, needs_rehash):
        err = _error(fn, stored)
        assert err.message == message
        assert err.hint == FORMATS_HINT
    assert _error(verify_secret, stored, "pw").message == message


def test_a_pasted_plain_password_is_never_echoed() -> None:
    for plain in ("$zq9x$Passw0rd", "Passw0rd", "$Passw0rd"):
        err = _error(verify_secret, plain, "x")
        assert "Passw0rd" not in str(err) and "zq9x" not in str(err)
        assert "Passw0rd" not in (err.hint or "")


def test_the_password_is_never_in_an_error() -> None:
    password = "TopSecret-42"
    for stored in ("$hunter$2", "$1$x", MD5_VECTORS[0][1] + "x"):
        err = _error(verify_secret, stored, password)
        assert password not in str(err) and password not in (err.hint or "")
