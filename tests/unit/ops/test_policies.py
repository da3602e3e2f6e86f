"""arcus.ops.policies: rules checked alone and within the whole policy before they are stored."""

from __future__ import annotations

import pytest

from arcus.errors import AlreadyExists, NotFound, OperatorError
from arcus.ops import policies
from arcus.policy import Rule
from arcus.store import Store


def ids(store: Store) -> list[str]:
    return [r["id"] for r in policies.list_rules(store, "acme")]


def test_add_list_move_remove(store: Store) -> None:
    out = policies.add(store, "acme", Rule("a", "deny", hosts=("*.casino.example",)))
    assert out["position"] == 1 and out["rule"]["hosts"] == ["*.casino.example"]
    policies.add(store, "acme", Rule("b", "allow"))
    policies.add(store, "acme", Rule("c", "report"), position=1)
    assert ids(store) == ["c", "a", "b"]
    listed = policies.list_rules(store, "acme")
    assert [r["position"] for r in listed] == [1, 2, 3] and set(listed[0]) == set(policies.RULE_FIELDS) | {"position"}
    assert [r["id"] for r in policies.move(store, "acme", "c", 3)] == ["a", "b", "c"]
    assert policies.remove(store, "acme", "b") == {"removed": "b"}
    assert ids(store) == ["a", "c"]


def test_refusals_store_nothing(store: Store) -> None:
    policies.add(store, "acme", Rule("a", "deny"))
    with pytest.raises(AlreadyExists, match="rule 'a' already exists"):
        policies.add(store, "acme", Rule("a", "allow"))
    with pytest.raises(OperatorError, match="rule 'bad'"):
        policies.add(store, "acme", Rule("bad", "deny", ports=("70000",)))
    with pytest.raises(OperatorError, match="invalid position 0"):
        policies.add(store, "acme", Rule("b", "deny"), position=0)
    with pytest.raises(NotFound):
        policies.add(store, "ghost", Rule("b", "deny"))
    with pytest.raises(NotFound):
        policies.move(store, "acme", "nope", 1)
    assert ids(store) == ["a"]


def test_rule_dict_round_trip_and_shapes() -> None:
    rule = Rule("r", "deny", hosts=("a.example",), ports=("443",), comment="c")
    assert policies.rule_from_dict(policies.rule_to_dict(rule)) == rule
    with pytest.raises(OperatorError, match="unknown rule field 'colour'"):
        policies.rule_from_dict({"id": "r", "action": "deny", "colour": "red"})
    with pytest.raises(OperatorError, match="rule field 'hosts' must be a list"):
        policies.rule_from_dict({"id": "r", "action": "deny", "hosts": "a.example"})
    with pytest.raises(OperatorError, match="a rule needs its action"):
        policies.rule_from_dict({"id": "r"})


@pytest.mark.parametrize(
    ("pattern", "hint"),
    [
        ("bücher.example", "write 'xn--bcher-kva.example'"),
        (".BÜCHER.example", "write '.xn--bcher-kva.example'"),
        ("*.faß.example", "write '*.xn--fa-hia.example'"),
        ("*ü*", "write the name in its A-label form (xn--...)"),
    ],
)
def test_a_host_pattern_in_unicode_is_refused_with_its_a_label(store: Store, pattern: str, hint: str) -> None:
    """Clients send internationalized names as A-labels and the proxy answers a host that is not
    ASCII with 400: a pattern in Unicode would be stored and never match anything."""
    with pytest.raises(OperatorError) as info:
        policies.add(store, "acme", Rule("idn", "deny", hosts=(pattern,)))
    assert info.value.message == (
        f"rule 'idn': hosts: host pattern {pattern!r} is not ASCII: it would never match, clients send "
        "internationalized names as A-labels (xn--...)"
    )
    assert info.value.hint is not None and info.value.hint.startswith(hint)
    assert ids(store) == []
    policies.add(store, "acme", Rule("idn", "deny", hosts=("xn--bcher-kva.example",)))


def test_import_appends_in_order_as_one_change(store: Store) -> None:
    policies.add(store, "acme", Rule("first", "allow", hosts=("intranet.example",)))
    listed = [{**policies.rule_to_dict(Rule(f"r{i}", "deny", hosts=(f".s{i}.example",))), "position": 99} for i in range(3)]
    rules = policies.rules_from_list(listed)  # as `policy list --json` prints them: the position is ignored
    assert policies.import_rules(store, "acme", rules) == {"imported": 3, "first_position": 2, "rules": 4}
    assert ids(store) == ["first", "r0", "r1", "r2"]


def test_an_import_that_fails_anywhere_stores_nothing(store: Store) -> None:
    policies.add(store, "acme", Rule("taken", "deny"))
    with pytest.raises(AlreadyExists, match="already has rule 'taken'"):
        policies.import_rules(store, "acme", [Rule("new", "deny"), Rule("taken", "allow")])
    with pytest.raises(AlreadyExists, match="'twice' is in the import twice"):
        policies.import_rules(store, "acme", [Rule("twice", "deny"), Rule("twice", "allow")])
    with pytest.raises(OperatorError, match="rule 'bad'"):
        policies.import_rules(store, "acme", [Rule("ok", "deny"), Rule("bad", "deny", ports=("70000",))])
    with pytest.raises(OperatorError, match="no rules to import"):
        policies.import_rules(store, "acme", [])
    assert ids(store) == ["taken"]


def test_rules_from_a_list_name_the_place_of_a_bad_one() -> None:
    with pytest.raises(OperatorError, match="rule 2 of 2: unknown rule field 'hostz'"):
        policies.rules_from_list([{"id": "a", "action": "deny"}, {"id": "b", "action": "deny", "hostz": ["x"]}])
    with pytest.raises(OperatorError, match="must be a list"):
        policies.rules_from_list({"id": "a"})
