"""arcus.ops.users: each function over a real store; secrets are checked and never echoed."""

from __future__ import annotations

import pytest

from arcus.errors import AlreadyExists, NotFound, OperatorError
from arcus.ops import users
from arcus.store import Store

SHA512 = "$6$saltsalt$" + "a" * 86
PLAIN = "hunter2-not-hashed"
KEYS = {"tenant", "name", "secret_scheme", "blocked", "expires_at", "max_conns", "rps", "bandwidth", "created_at"}


def test_require_tenant(store: Store) -> None:
    users.require_tenant(store, "acme")
    with pytest.raises(NotFound, match="tenant 'nosuch' does not exist"):
        users.require_tenant(store, "nosuch")


def test_add_list_show_remove(store: Store) -> None:
    added = users.add(store, "acme", "alice", SHA512, "2030-01-01")
    assert set(added) == KEYS and added["expires_at"] == "2030-01-01T00:00:00Z"
    assert [u["name"] for u in users.list_all(store, "acme")] == ["alice"]
    assert users.show(store, "acme", "alice") == added
    with pytest.raises(AlreadyExists):
        users.add(store, "acme", "alice", SHA512)
    assert users.remove(store, "acme", "alice") == {"removed": "alice"}
    with pytest.raises(NotFound):
        users.show(store, "acme", "alice")


def test_a_plain_password_is_refused_without_being_quoted(store: Store) -> None:
    for call in (lambda: users.add(store, "acme", "alice", PLAIN), lambda: users.passwd(store, "acme", "alice", PLAIN),
                 lambda: users.import_users(store, "acme", [("bob", PLAIN, None)])):
        with pytest.raises(OperatorError) as caught:
            call()
        assert PLAIN not in caught.value.message and PLAIN not in (caught.value.hint or "")
    assert users.list_all(store, "acme") == []


def test_passwd_block_change(store: Store) -> None:
    users.add(store, "acme", "alice", SHA512)
    assert users.passwd(store, "acme", "alice", SHA512)["secret_scheme"] == "sha512-crypt"
    assert users.set_blocked(store, "acme", "alice", True)["blocked"] is True
    out = users.change(store, "acme", "alice", {"max_conns": 3, "bandwidth": 1e6})
    assert (out["max_conns"], out["bandwidth"]) == (3, 1e6)
    for changes, message in (({}, "nothing to change"), ({"secret": SHA512}, "secret is not set here"),
                             ({"blocked": True}, "blocked is not set here"), ({"colour": 1}, "unknown user setting")):
        with pytest.raises(OperatorError, match=message):
            users.change(store, "acme", "alice", changes)


def test_import_is_one_change(store: Store) -> None:
    users.add(store, "acme", "alice", SHA512)
    with pytest.raises(AlreadyExists):
        users.import_users(store, "acme", [("bob", SHA512, None), ("alice", SHA512, None)])
    assert [u["name"] for u in users.list_all(store, "acme")] == ["alice"]  # bob was not kept either
    assert users.import_users(store, "acme", [("bob", SHA512, None), ("alice", SHA512, "2031-01-01")],
                              replace=True) == {"imported": 2}
    with pytest.raises(OperatorError, match="user import entry 1: invalid user name"):
        users.import_users(store, "acme", [("a b", SHA512, None)])
