"""Policy rules in the store: ordered, ids unique per tenant, dense positions; and load_all."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from arcus.errors import AlreadyExists, NotFound, OperatorError
from arcus.store import Store, StoreData

SCRYPT = "$scrypt$ln=15,r=8,p=1$c2FsdA$a2V5"


@pytest.fixture
def acme(store: Store) -> Store:
    store.add_tenant("acme")
    return store


def ids(store: Store, tenant: str = "acme") -> list[str]:
    return [r["id"] for r in store.list_rules(tenant)]


def positions(store: Store, tenant: str = "acme") -> list[int]:
    conn = sqlite3.connect(store.path)
    try:
        return [p for (p,) in conn.execute(
            "SELECT r.position FROM policy_rules r JOIN tenants t ON t.id = r.tenant_id WHERE t.name = ? "
            "ORDER BY r.position", (tenant,)
        )]
    finally:
        conn.close()


def test_add_appends_and_inserts(acme: Store) -> None:
    assert acme.add_rule("acme", {"id": "a", "action": "deny"}) == 1
    assert acme.add_rule("acme", {"id": "b", "action": "deny"}) == 2
    assert acme.add_rule("acme", {"id": "c", "action": "deny"}, position=1) == 1
    assert acme.add_rule("acme", {"id": "d", "action": "deny"}, position=3) == 3
    assert acme.add_rule("acme", {"id": "e", "action": "deny"}, position=5) == 5  # n + 1 appends
    assert ids(acme) == ["c", "a", "d", "b", "e"]
    assert positions(acme) == [1, 2, 3, 4, 5]


def test_rule_kept_as_given(acme: Store) -> None:
    rule = {
        "id": "no-casino", "action": "deny", "hosts": ["*.casino.example"], "ports": ["80", "443"],
        "timezone": "Europe/Paris", "redirect_to": None, "comment": "gambling", "user": None,
    }
    acme.add_rule("acme", rule)
    assert acme.list_rules("acme") == [rule]


@pytest.mark.parametrize("position", [0, -1, 3, True, "1", 1.0])
def test_bad_position(acme: Store, position: object) -> None:
    acme.add_rule("acme", {"id": "a", "action": "deny"})
    with pytest.raises(OperatorError) as info:
        acme.add_rule("acme", {"id": "b", "action": "deny"}, position=position)  # type: ignore[arg-type]
    assert str(info.value) == f"invalid position {position!r}"
    assert info.value.hint == "give a position from 1 to 2 (2 appends)"
    assert ids(acme) == ["a"]


def test_ids_unique_per_tenant_user_rules_included(acme: Store) -> None:
    acme.add_tenant("beta")
    acme.add_user("acme", "alice", SCRYPT)
    acme.add_rule("acme", {"id": "r1", "action": "allow", "user": "alice"})
    with pytest.raises(AlreadyExists) as info:
        acme.add_rule("acme", {"id": "r1", "action": "deny"})
    assert str(info.value) == "rule 'r1' already exists in tenant 'acme'"
    assert acme.add_rule("beta", {"id": "r1", "action": "deny"}) == 1  # another tenant: fine
    assert len(acme.history(1000)) == 6


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("deny all", "a rule must be a mapping of fields, got str"),
        ({"action": "deny"}, "a rule needs an id"),
        ({"id": "bad id", "action": "deny"}, "invalid rule name 'bad id'"),
        ({"id": "r", "action": "deny", "user": 5}, "rule 'r': user must be a user name, got int"),
        ({"id": "r", "action": "deny", "user": "no one"}, "invalid user name 'no one'"),
        ({"id": "r", "action": "deny", "x": float("nan")}, "rule 'r' cannot be stored: Out of range float values are not JSON compliant"),
        ({"id": "r", "action": "deny", "x": {1, 2}}, "rule 'r' cannot be stored: Object of type set is not JSON serializable"),
        ({"id": "r", "action": "deny", "comment": "x" * 70_000}, "rule 'r' is too large (70039 bytes of JSON, at most 65536)"),
    ],
)
def test_rules_the_store_cannot_keep(acme: Store, rule: object, message: str) -> None:
    with pytest.raises(OperatorError) as info:
        acme.add_rule("acme", rule)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert acme.list_rules("acme") == []


def test_user_rule_needs_the_user(acme: Store) -> None:
    with pytest.raises(NotFound) as info:
        acme.add_rule("acme", {"id": "r", "action": "allow", "user": "alice"})
    assert str(info.value) == "user 'alice' of tenant 'acme' does not exist"
    assert info.value.hint == "add the user first (`arcus user add acme alice`), then the rule"


def test_unknown_tenant(store: Store) -> None:
    for call in (
        lambda: store.add_rule("nope", {"id": "r", "action": "deny"}),
        lambda: store.list_rules("nope"),
        lambda: store.remove_rule("nope", "r"),
        lambda: store.move_rule("nope", "r", 1),
    ):
        with pytest.raises(NotFound) as info:
            call()
        assert str(info.value) == "tenant 'nope' does not exist"


def test_remove_closes_the_gap(acme: Store) -> None:
    for name in "abcd":
        acme.add_rule("acme", {"id": name, "action": "deny"})
    acme.remove_rule("acme", "b")
    assert ids(acme) == ["a", "c", "d"]
    assert positions(acme) == [1, 2, 3]
    row = acme.history()[0]
    assert (row["action"], row["object"], row["detail"]) == (
        "policy.remove", "acme", {"rule": {"id": "b", "action": "deny"}, "position": 2}
    )
    with pytest.raises(NotFound) as info:
        acme.remove_rule("acme", "b")
    assert str(info.value) == "rule 'b' does not exist in tenant 'acme'"
    assert info.value.hint == "see `arcus policy list acme`"


@pytest.mark.parametrize(
    ("rule", "to", "expected"),
    [
        ("a", 3, ["b", "c", "a", "d"]),
        ("d", 1, ["d", "a", "b", "c"]),
        ("b", 4, ["a", "c", "d", "b"]),
        ("c", 2, ["a", "c", "b", "d"]),
        ("b", 2, ["a", "b", "c", "d"]),
    ],
)
def test_move(acme: Store, rule: str, to: int, expected: list[str]) -> None:
    for name in "abcd":
        acme.add_rule("acme", {"id": name, "action": "deny"})
    acme.move_rule("acme", rule, to)
    assert ids(acme) == expected
    assert positions(acme) == [1, 2, 3, 4]
    moves = [r["detail"] for r in acme.history() if r["action"] == "policy.move"]
    start = "abcd".index(rule) + 1
    assert moves == ([] if start == to else [{"rule_id": rule, "from": start, "to": to}])  # no move, no row


def test_move_refuses(acme: Store) -> None:
    for name in "ab":
        acme.add_rule("acme", {"id": name, "action": "deny"})
    with pytest.raises(OperatorError) as info:
        acme.move_rule("acme", "a", 3)
    assert info.value.hint == "give a position from 1 to 2 (the policy's length)"
    with pytest.raises(NotFound):
        acme.move_rule("acme", "zz", 1)
    assert ids(acme) == ["a", "b"]


def test_rules_cascade_with_tenant_and_ids_free_again(acme: Store) -> None:
    acme.add_rule("acme", {"id": "r", "action": "deny"})
    acme.remove_tenant("acme")
    acme.add_tenant("acme")
    assert acme.add_rule("acme", {"id": "r", "action": "allow"}) == 1


# -- load_all -------------------------------------------------------------------------------


def test_load_all(acme: Store) -> None:
    acme.add_tenant("beta")
    acme.set_tenant("beta", default_action="deny")
    acme.add_user("acme", "bob", SCRYPT)
    acme.add_user("acme", "alice", SCRYPT)
    acme.add_rule("acme", {"id": "r2", "action": "deny"})
    acme.add_rule("acme", {"id": "r1", "action": "allow", "user": "alice"}, position=1)
    data = acme.load_all()
    assert isinstance(data, StoreData)
    assert [t.name for t in data.tenants] == ["acme", "beta", "default"]
    assert data.tenants[1].default_action == "deny"
    assert {k: [u.name for u in v] for k, v in data.users.items()} == {"acme": ["alice", "bob"], "beta": [], "default": []}
    assert data.users["acme"][0] == acme.get_user("acme", "alice")
    assert data.rules == {
        "acme": [{"id": "r1", "action": "allow", "user": "alice"}, {"id": "r2", "action": "deny"}],
        "beta": [],
        "default": [],
    }


def test_load_all_is_one_consistent_view(db_path, acme: Store) -> None:  # type: ignore[no-untyped-def]
    """A writer in another process-like connection never shows half a change to load_all."""
    stop = threading.Event()
    seen: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with Store.open(db_path) as other:
                i = 0
                while not stop.is_set() and i < 200:
                    # one transaction: a user and a rule for it appear together
                    other.import_users("acme", [(f"u{i}", SCRYPT, None)])
                    other.add_rule("acme", {"id": f"r{i}", "action": "deny", "user": f"u{i}"})
                    other.remove_user("acme", f"u{i}")  # takes the rule with it, atomically
                    i += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(200):
            data = acme.load_all()
            users = {u.name for u in data.users["acme"]}
            for rule in data.rules["acme"]:
                assert rule["user"] in users  # never a rule whose user is gone
            seen.append((len(users), len(data.rules["acme"])))
    finally:
        stop.set()
        t.join(timeout=60)
    assert errors == []
    assert seen
