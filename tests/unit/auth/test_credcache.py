"""Credential cache and failure throttle: outcomes, expiry, bounds, and what is kept in memory."""

from __future__ import annotations

import hashlib

import pytest

from arcus.auth.credcache import CredentialCache, FailureThrottle, throttle_key

# --- CredentialCache -------------------------------------------------------------------------


def test_unknown_then_remembered_outcomes() -> None:
    cache = CredentialCache(ttl=300.0)
    assert cache.check("acme/alice", "pw", 0.0) is None
    cache.remember("acme/alice", "pw", True, 0.0)
    assert cache.check("acme/alice", "pw", 1.0) is True
    # Another password for the same user is not known: it must be verified for real.
    assert cache.check("acme/alice", "pw2", 1.0) is None
    cache.remember("acme/alice", "pw2", False, 1.0)
    assert cache.check("acme/alice", "pw2", 2.0) is False
    # ...and remembering the failure did not push out the success.
    assert cache.check("acme/alice", "pw", 2.0) is True
    # Same password, other user key: unknown.
    assert cache.check("acme/bob", "pw", 2.0) is None


def test_key_and_password_boundaries_do_not_collide() -> None:
    cache = CredentialCache()
    cache.remember("ab", "c", True, 0.0)
    assert cache.check("a", "bc", 0.0) is None
    assert cache.check("ab", "c", 0.0) is True


def test_success_expires_after_ttl_and_failure_sooner() -> None:
    cache = CredentialCache(ttl=300.0)
    assert cache.negative_ttl == 30.0
    cache.remember("u", "good", True, 100.0)
    cache.remember("u", "bad", False, 100.0)
    assert cache.check("u", "bad", 129.9) is False
    assert cache.check("u", "bad", 130.0) is None
    assert cache.check("u", "good", 399.9) is True
    assert cache.check("u", "good", 400.0) is None
    assert len(cache) == 0  # expired entries are dropped when seen


def test_remember_again_refreshes_the_outcome() -> None:
    cache = CredentialCache(ttl=10.0, negative_ttl=5.0)
    cache.remember("u", "pw", False, 0.0)
    cache.remember("u", "pw", True, 1.0)
    assert cache.check("u", "pw", 10.5) is True
    assert len(cache) == 1


def test_bounded_lru() -> None:
    cache = CredentialCache(max_entries=3)
    for i in range(3):
        cache.remember(f"u{i}", "pw", True, 0.0)
    assert cache.check("u0", "pw", 1.0) is True  # u0 now most recently used
    cache.remember("u3", "pw", True, 1.0)  # evicts u1, the least recently used
    assert len(cache) == 3
    assert cache.check("u1", "pw", 1.0) is None
    assert [cache.check(f"u{i}", "pw", 1.0) for i in (0, 2, 3)] == [True, True, True]
    for i in range(1000):
        cache.remember(f"flood{i}", "pw", False, 2.0)
    assert len(cache) == 3
    assert len(cache._by_user) == 3  # the per-user index shrinks with evictions too


def test_invalidate_and_clear() -> None:
    cache = CredentialCache()
    cache.remember("acme/alice", "a", True, 0.0)
    cache.remember("acme/alice", "b", False, 0.0)
    cache.remember("acme/bob", "a", True, 0.0)
    cache.invalidate("acme/alice")
    assert cache.check("acme/alice", "a", 0.0) is None
    assert cache.check("acme/alice", "b", 0.0) is None
    assert cache.check("acme/bob", "a", 0.0) is True
    cache.invalidate("nobody")  # no error
    cache.clear()
    assert cache.check("acme/bob", "a", 0.0) is None and len(cache) == 0


def test_a_changed_secret_in_the_user_key_misses_the_cache() -> None:
    cache = CredentialCache()
    cache.remember("acme\0alice\0$scrypt$old", "old-pw", True, 0.0)
    assert cache.check("acme\0alice\0$scrypt$new", "old-pw", 1.0) is None


def test_the_password_is_not_kept_anywhere() -> None:
    password = "Unmistakable-Secret-9431"
    cache = CredentialCache()
    cache.remember("u", password, True, 0.0)
    assert password not in repr(cache)
    ((user_key, digest),) = cache._entries
    assert user_key == "u" and len(digest) == 32
    assert password.encode() not in digest
    outcome = cache._entries[(user_key, digest)]
    assert password not in repr(outcome) and password not in repr(cache._by_user)
    # A plain (unkeyed) hash of the password is not what is kept either.
    assert digest != hashlib.sha256(password.encode()).digest()


def test_two_caches_use_different_keys() -> None:
    a, b = CredentialCache(), CredentialCache()
    a.remember("u", "pw", True, 0.0)
    b.remember("u", "pw", True, 0.0)
    assert next(iter(a._entries))[1] != next(iter(b._entries))[1]


@pytest.mark.parametrize("kwargs", [{"max_entries": 0}, {"ttl": 0}])
def test_cache_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        CredentialCache(**kwargs)


# --- FailureThrottle -------------------------------------------------------------------------


def test_blocks_after_max_failures_in_window_then_frees() -> None:
    t = FailureThrottle(max_failures=3, window=60.0, block=30.0)
    for now in (0.0, 10.0):
        t.failed("10.0.0.1", now)
        assert t.blocked("10.0.0.1", now) == 0.0
    t.failed("10.0.0.1", 20.0)
    assert t.blocked("10.0.0.1", 20.0) == 30.0
    assert t.blocked("10.0.0.1", 35.0) == 15.0
    assert t.blocked("10.0.0.2", 35.0) == 0.0  # other clients unaffected
    t.failed("10.0.0.1", 40.0)  # a failure during the block does not extend it
    assert t.blocked("10.0.0.1", 49.0) == pytest.approx(1.0)
    assert t.blocked("10.0.0.1", 50.0) == 0.0
    # After a block the count starts over.
    t.failed("10.0.0.1", 51.0)
    t.failed("10.0.0.1", 52.0)
    assert t.blocked("10.0.0.1", 52.0) == 0.0


def test_failures_spread_wider_than_the_window_never_block() -> None:
    t = FailureThrottle(max_failures=3, window=60.0, block=30.0)
    for i in range(20):
        now = i * 31.0  # any 3 consecutive failures span 62 s
        t.failed("c", now)
        assert t.blocked("c", now) == 0.0


def test_success_forgets_failures() -> None:
    t = FailureThrottle(max_failures=2, window=60.0, block=30.0)
    t.failed("c", 0.0)
    t.succeeded("c")
    t.failed("c", 1.0)
    assert t.blocked("c", 1.0) == 0.0
    assert len(t) == 1
    t.succeeded("unknown")  # no error


def test_quiet_keys_are_forgotten_when_seen() -> None:
    t = FailureThrottle(max_failures=5, window=60.0, block=30.0)
    t.failed("c", 0.0)
    assert t.blocked("c", 30.0) == 0.0 and len(t) == 1
    assert t.blocked("c", 61.0) == 0.0 and len(t) == 0


def test_throttle_memory_is_bounded_and_evicts_least_recent() -> None:
    t = FailureThrottle(max_failures=2, window=60.0, block=30.0, max_entries=100)
    t.failed("attacker", 0.0)
    for i in range(99):
        t.failed(f"c{i}", 0.0)
    t.failed("attacker", 1.0)  # blocked now, and most recent
    for i in range(99, 1000):
        t.failed(f"c{i}", 2.0)
        if i % 50 == 0:
            t.failed("attacker", 2.0)  # keeps failing, stays fresh
    assert len(t) == 100
    assert t.blocked("attacker", 3.0) == pytest.approx(28.0)


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("10.1.2.3", "10.1.2.3"),
        ("::ffff:10.1.2.3", "10.1.2.3"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("/run/arcus.sock", "/run/arcus.sock"),
    ],
)
def test_throttle_key(address: str, key: str) -> None:
    assert throttle_key(address) == key
