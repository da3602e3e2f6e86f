"""Users in the store: add/get/list/set/remove/import, expiry normalization, secrets never shown."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone

import pytest

from arcus.auth.secrets import from_g3_token, hash_secret, identify_secret
from arcus.errors import AlreadyExists, NotFound, OperatorError
from arcus.store import Store, User

SCRYPT = "$scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U"
SHA512 = "$6$saltsalt$" + "a" * 86
G3MD5 = "$g3md5$0011223344556677$" + "0" * 32
PLAIN = "hunter2-not-hashed"


@pytest.fixture
def acme(store: Store) -> Store:
    store.add_tenant("acme")
    return store


def everything_visible(store: Store, user: User) -> str:
    """Every text the store gives out about a user: repr, dict, history."""
    return repr(user) + json.dumps(user.to_dict()) + json.dumps(store.history(1000)) + repr(store.load_all())


def test_add_and_get(acme: Store) -> None:
    u = acme.add_user("acme", "alice", SCRYPT, expires_at="2027-01-31")
    assert u == acme.get_user("acme", "alice")
    assert (u.tenant, u.name, u.secret, u.blocked, u.expires_at) == ("acme", "alice", SCRYPT, False, "2027-01-31T00:00:00Z")
    assert (u.max_conns, u.rps, u.bandwidth) == (None, None, None)
    assert u.created_at.endswith("Z")
    assert u.to_dict() == {
        "tenant": "acme",
        "name": "alice",
        "secret_scheme": "scrypt",
        "blocked": False,
        "expires_at": "2027-01-31T00:00:00Z",
        "max_conns": None,
        "rps": None,
        "bandwidth": None,
        "created_at": u.created_at,
    }


def test_secret_never_shown(acme: Store) -> None:
    u = acme.add_user("acme", "alice", SCRYPT)
    acme.set_user("acme", "alice", secret=SHA512)
    acme.import_users("acme", [("bob", G3MD5, None)])
    shown = everything_visible(acme, u)
    for secret in (SCRYPT, SHA512, G3MD5, "c2FsdHNhbHRzYWx0c2FsdA"):
        assert secret not in shown
    assert "secret" not in u.to_dict()
    [row] = [r for r in acme.history() if r["action"] == "user.set"]
    assert row["detail"] == {"secret": "changed"}


def test_secret_schemes_match_identify_secret(acme: Store) -> None:
    real = hash_secret("correct horse")
    g3 = from_g3_token({"salt": "0011223344556677", "md5": "0" * 32, "sha1": "1" * 40})
    for i, secret in enumerate((real, SHA512, G3MD5, g3, "$1$salt$" + "b" * 22, "$5$salt$" + "c" * 43)):
        u = acme.add_user("acme", f"u{i}", secret)
        assert u.to_dict()["secret_scheme"] == identify_secret(secret)


@pytest.mark.parametrize("secret", [PLAIN, "", "$2b$12$abcdefghijklmnopqrstuv", "$unknown$x", "$scrypt-ish", "x$scrypt$abc", 5, None])
def test_unhashed_or_unknown_secret_refused_without_echo(acme: Store, secret: object) -> None:
    with pytest.raises(OperatorError) as info:
        acme.add_user("acme", "alice", secret)  # type: ignore[arg-type]
    assert info.value.code == "invalid"
    assert str(info.value).startswith("invalid secret for user 'alice' of tenant 'acme'")
    if isinstance(secret, str) and secret:
        assert secret not in str(info.value)
    assert acme.list_users("acme") == []


def test_duplicate_and_missing(acme: Store) -> None:
    acme.add_user("acme", "alice", SCRYPT)
    with pytest.raises(AlreadyExists) as info:
        acme.add_user("acme", "alice", SCRYPT)
    assert str(info.value) == "user 'alice' of tenant 'acme' already exists"
    with pytest.raises(NotFound) as nf:
        acme.add_user("nope", "alice", SCRYPT)
    assert str(nf.value) == "tenant 'nope' does not exist"
    with pytest.raises(NotFound) as nf:
        acme.get_user("acme", "bob")
    assert str(nf.value) == "user 'bob' of tenant 'acme' does not exist"
    assert nf.value.hint == "see `arcus user list acme`"
    with pytest.raises(NotFound):
        acme.list_users("nope")
    with pytest.raises(OperatorError, match="invalid user name"):
        acme.add_user("acme", "bad name", SCRYPT)


def test_same_name_in_two_tenants_is_two_users(acme: Store) -> None:
    acme.add_tenant("beta")
    acme.add_user("acme", "alice", SCRYPT)
    acme.add_user("beta", "alice", SHA512)
    acme.set_user("beta", "alice", blocked=True)
    assert acme.get_user("acme", "alice").blocked is False
    assert acme.get_user("beta", "alice").secret == SHA512
    acme.remove_user("acme", "alice")
    assert acme.get_user("beta", "alice").name == "alice"


def test_list_sorted_by_name(acme: Store) -> None:
    for name in ("carol", "alice", "bob"):
        acme.add_user("acme", name, SCRYPT)
    assert [u.name for u in acme.list_users("acme")] == ["alice", "bob", "carol"]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2027-01-31", "2027-01-31T00:00:00Z"),
        ("2027-01-31T18:30:00Z", "2027-01-31T18:30:00Z"),
        ("2027-01-31T18:30:00.123456Z", "2027-01-31T18:30:00Z"),
        ("2027-01-31T18:30:00+02:00", "2027-01-31T16:30:00Z"),
        ("2027-01-31 18:30", "2027-01-31T18:30:00Z"),
        ("2027-01-31T01:00:00-05:00", "2027-01-31T06:00:00Z"),
        (None, None),
    ],
)
def test_expiry_normalized_to_utc(acme: Store, given: str | None, stored: str | None) -> None:
    assert acme.add_user("acme", "alice", SCRYPT, expires_at=given).expires_at == stored


@pytest.mark.parametrize("given", ["tomorrow", "31/01/2027", "2027-13-01", "", 20270131, "1969-12-31"])
def test_bad_expiry_refused(acme: Store, given: object) -> None:
    with pytest.raises(OperatorError) as info:
        acme.add_user("acme", "alice", SCRYPT, expires_at=given)  # type: ignore[arg-type]
    assert str(info.value).startswith(f"invalid expiry {given!r}")
    assert "2027-01-31" in (info.value.hint or "")


def test_expired(acme: Store) -> None:
    u = acme.add_user("acme", "alice", SCRYPT, expires_at="2027-01-31")
    assert not u.expired(datetime(2027, 1, 30, 23, 59, 59, tzinfo=timezone.utc))
    assert u.expired(datetime(2027, 1, 31, tzinfo=timezone.utc))
    assert u.expired(datetime(2027, 2, 1))  # naive: UTC
    assert not acme.add_user("acme", "bob", SCRYPT).expired(datetime(9999, 1, 1, tzinfo=timezone.utc))


def test_set_user_fields_and_history(acme: Store) -> None:
    acme.add_user("acme", "alice", SCRYPT)
    u = acme.set_user("acme", "alice", blocked=True, expires_at="2030-06-01", max_conns=3, rps=2, bandwidth=1e6)
    assert (u.blocked, u.expires_at, u.max_conns, u.rps, u.bandwidth) == (True, "2030-06-01T00:00:00Z", 3, 2.0, 1e6)
    u = acme.set_user("acme", "alice", blocked=False, expires_at=None, max_conns=None, rps=None, bandwidth=None)
    assert (u.blocked, u.expires_at, u.max_conns, u.rps, u.bandwidth) == (False, None, None, None, None)
    acme.set_user("acme", "alice", blocked=False)  # no change: no row
    rows = [r for r in acme.history() if r["action"] == "user.set"]
    assert [r["object"] for r in rows] == ["acme/alice", "acme/alice"]
    assert rows[1]["detail"] == {"blocked": True, "expires_at": "2030-06-01T00:00:00Z", "max_conns": 3, "rps": 2.0,
                                 "bandwidth": 1e6}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"blocked": "yes"}, "invalid blocked 'yes': expected true or false, got str"),
        ({"max_conns": -1}, "invalid max_conns -1"),
        ({"rps": "fast"}, "invalid rps 'fast'"),
        ({"name": "bob"}, "unknown user setting 'name'"),
        ({"secret": PLAIN}, "invalid secret for user 'alice' of tenant 'acme': not a hashed secret in a format Arcus reads"),
    ],
)
def test_set_user_refuses_bad_values(acme: Store, changes: dict, message: str) -> None:
    acme.add_user("acme", "alice", SCRYPT)
    before = acme.get_user("acme", "alice")
    with pytest.raises(OperatorError) as info:
        acme.set_user("acme", "alice", **changes)
    assert str(info.value) == message
    assert acme.get_user("acme", "alice") == before


def test_set_unknown_user(acme: Store) -> None:
    with pytest.raises(NotFound):
        acme.set_user("acme", "ghost", blocked=True)


def test_remove_user_takes_its_rules(acme: Store) -> None:
    acme.add_user("acme", "alice", SCRYPT)
    acme.add_rule("acme", {"id": "t1", "action": "deny"})
    acme.add_rule("acme", {"id": "a1", "action": "allow", "user": "alice"})
    acme.add_rule("acme", {"id": "t2", "action": "deny"})
    acme.remove_user("acme", "alice")
    assert [r["id"] for r in acme.list_rules("acme")] == ["t1", "t2"]
    assert acme.history()[0] == {**acme.history()[0], "action": "user.remove", "object": "acme/alice",
                                 "detail": {"rules_removed": ["a1"]}}
    # a later user of the same name does not inherit them
    acme.add_user("acme", "alice", SCRYPT)
    assert [r.get("user") for r in acme.list_rules("acme")] == [None, None]
    acme.add_rule("acme", {"id": "t3", "action": "deny"})
    assert [r["id"] for r in acme.list_rules("acme")] == ["t1", "t2", "t3"]  # positions stayed dense
    with pytest.raises(NotFound):
        acme.remove_user("acme", "ghost")


# -- import ---------------------------------------------------------------------------------


def test_import_adds_all_in_one_transaction(acme: Store) -> None:
    n = acme.import_users("acme", [("alice", SCRYPT, "2027-01-31"), ("bob", SHA512, None), ("carol", G3MD5, None)])
    assert n == 3
    assert [(u.name, u.expires_at) for u in acme.list_users("acme")] == [
        ("alice", "2027-01-31T00:00:00Z"), ("bob", None), ("carol", None)
    ]
    [row] = [r for r in acme.history() if r["action"] == "user.import"]
    assert row["object"] == "acme"
    assert row["detail"] == {"added": 3, "updated": 0, "replace": False}


def test_import_from_a_generator(acme: Store) -> None:
    assert acme.import_users("acme", ((f"u{i}", SCRYPT, None) for i in range(50))) == 50
    assert len(acme.list_users("acme")) == 50


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([("alice", SCRYPT, None), ("bob", PLAIN, None)],
         "user import entry 2: invalid secret for user 'bob' of tenant 'acme': not a hashed secret in a format Arcus reads"),
        ([("alice", SCRYPT, None), ("bad name", SCRYPT, None)], "user import entry 2: invalid user name 'bad name'"),
        ([("alice", SCRYPT, "someday")], "user import entry 1: invalid expiry 'someday'"),
        ([("alice", SCRYPT, None), ("alice", SHA512, None)],
         "user import entry 2: user 'alice' already given as entry 1"),
        ([("alice", SCRYPT)], "user import entry 1: expected (name, secret, expires_at)"),
    ],
)
def test_import_refuses_a_bad_entry_and_imports_nothing(acme: Store, entries: list, message: str) -> None:
    with pytest.raises(OperatorError) as info:
        acme.import_users("acme", entries)
    assert str(info.value) == message
    assert PLAIN not in str(info.value)
    assert acme.list_users("acme") == []


def test_import_existing_name_refuses_all_unless_replace(acme: Store) -> None:
    acme.add_user("acme", "bob", SCRYPT)
    acme.set_user("acme", "bob", blocked=True, max_conns=2)
    with pytest.raises(AlreadyExists) as info:
        acme.import_users("acme", [("alice", SCRYPT, None), ("bob", SHA512, None)])
    assert str(info.value) == "user import entry 2: user 'bob' of tenant 'acme' already exists"
    assert [u.name for u in acme.list_users("acme")] == ["bob"]  # alice rolled back
    assert acme.import_users("acme", [("alice", SCRYPT, None), ("bob", SHA512, "2028-01-01")], replace=True) == 2
    bob = acme.get_user("acme", "bob")
    assert (bob.secret, bob.expires_at) == (SHA512, "2028-01-01T00:00:00Z")
    assert (bob.blocked, bob.max_conns) == (True, 2)  # settings of the operator stay
    assert acme.history()[0]["detail"] == {"added": 1, "updated": 1, "replace": True}


def test_import_into_unknown_tenant(store: Store) -> None:
    with pytest.raises(NotFound):
        store.import_users("nope", [("alice", SCRYPT, None)])


def test_import_replace_must_be_bool(acme: Store) -> None:
    with pytest.raises(OperatorError, match="invalid replace"):
        acme.import_users("acme", [], replace="yes")  # type: ignore[arg-type]


def test_user_rows_cascade_with_tenant(acme: Store) -> None:
    acme.add_user("acme", "alice", SCRYPT)
    acme.remove_tenant("acme")
    conn = sqlite3.connect(acme.path)
    try:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 0
    finally:
        conn.close()


def test_user_is_frozen(acme: Store) -> None:
    u = acme.add_user("acme", "alice", SCRYPT)
    with pytest.raises(AttributeError):
        u.blocked = True  # type: ignore[misc]
