"""Store.set_tenant: validated settings, one transaction and one history row per change."""

from __future__ import annotations

import json

import pytest

from arcus.errors import NotFound, OperatorError
from arcus.store import Store


def test_defaults_of_a_new_tenant(store: Store) -> None:
    t = store.add_tenant("acme")
    assert (t.auth, t.auth_exempt, t.realm, t.default_action, t.block_page) == ("none", (), None, "allow", None)
    assert (t.max_conns, t.rps, t.bandwidth, t.log_query) == (None, None, None, False)


def test_set_every_setting_and_read_it_back(store: Store) -> None:
    store.add_tenant("acme")
    t = store.set_tenant(
        "acme",
        auth="required",
        auth_exempt=["10.9.8.7/16", "10.1.2.3", "2001:db8::1/48", "10.9.0.0/16"],
        realm="Acme proxy",
        default_action="deny",
        block_page="<h1>{tenant}</h1> {rule} {reason} {request_id} {host} {{literal}}",
        max_conns=500,
        rps=200,
        bandwidth=50e6,
        log_query=True,
    )
    assert t == store.get_tenant("acme")
    assert t.auth == "required"
    assert t.auth_exempt == ("10.1.2.3/32", "10.9.0.0/16", "2001:db8::/48")  # normalized, deduplicated, sorted
    assert t.realm == "Acme proxy"
    assert t.default_action == "deny"
    assert t.block_page.startswith("<h1>{tenant}</h1>")
    assert t.max_conns == 500
    assert t.rps == 200.0 and isinstance(t.rps, float)
    assert t.bandwidth == 50e6
    assert t.log_query is True
    d = t.to_dict()
    assert d["auth_exempt"] == ["10.1.2.3/32", "10.9.0.0/16", "2001:db8::/48"]
    assert json.loads(json.dumps(d)) == d


def test_none_resets_a_setting(store: Store) -> None:
    store.add_tenant("acme")
    store.set_tenant("acme", max_conns=5, rps=1.5, bandwidth=1000, realm="r", block_page="x", auth_exempt=["10.0.0.0/8"])
    t = store.set_tenant("acme", max_conns=None, rps=None, bandwidth=None, realm=None, block_page=None, auth_exempt=None)
    assert (t.max_conns, t.rps, t.bandwidth, t.realm, t.block_page, t.auth_exempt) == (None, None, None, None, None, ())


def test_history_records_only_what_changed(store: Store) -> None:
    store.add_tenant("acme")
    store.set_tenant("acme", auth="optional", rps=10)
    store.set_tenant("acme", auth="optional", rps=20)  # auth unchanged
    store.set_tenant("acme", auth="optional")  # nothing changed: no row
    store.set_tenant("acme")  # no change given: no row
    rows = [r for r in store.history() if r["action"] == "tenant.set"]
    assert [(r["object"], r["detail"]) for r in rows] == [
        ("acme", {"rps": 20.0}),
        ("acme", {"auth": "optional", "rps": 10.0}),
    ]


def test_default_tenant_can_be_set(store: Store) -> None:
    assert store.set_tenant("default", default_action="deny").default_action == "deny"


def test_unknown_tenant(store: Store) -> None:
    with pytest.raises(NotFound) as info:
        store.set_tenant("nope", auth="required")
    assert str(info.value) == "tenant 'nope' does not exist"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"auth": "sometimes"}, "invalid auth mode 'sometimes'"),
        ({"auth": None}, "invalid auth mode None"),
        ({"default_action": "redirect"}, "invalid default action 'redirect'"),
        ({"auth_exempt": "10.0.0.0/8"}, "invalid auth_exempt '10.0.0.0/8': expected a list of ranges"),
        ({"auth_exempt": ["10.0.0.0/33"]}, "invalid source range '10.0.0.0/33': '33' is not a valid netmask"),
        ({"realm": 'say "hi"'}, "invalid realm 'say \"hi\"'"),
        ({"realm": ""}, "invalid realm ''"),
        ({"realm": "x" * 101}, "invalid realm '" + "x" * 101 + "'"),
        ({"block_page": "{tenant.__class__}"}, "invalid block page: unknown field {tenant.__class__}"),
        ({"block_page": "{0}"}, "invalid block page: unknown field {0}"),
        ({"block_page": "{host:>999999999}"}, "invalid block page: field {host} takes no format spec or conversion"),
        ({"block_page": "{host!r}"}, "invalid block page: field {host} takes no format spec or conversion"),
        ({"block_page": "oops {"}, "invalid block page: Single '{' encountered in format string"),
        ({"block_page": ""}, "invalid block page: 0 characters (1 to 65536)"),
        ({"max_conns": 0}, "invalid max_conns 0"),
        ({"max_conns": 1.5}, "invalid max_conns 1.5"),
        ({"max_conns": True}, "invalid max_conns True"),
        ({"max_conns": "5"}, "invalid max_conns '5'"),
        ({"rps": 0}, "invalid rps 0"),
        ({"rps": float("inf")}, "invalid rps inf"),
        ({"rps": float("nan")}, "invalid rps nan"),
        ({"bandwidth": -1}, "invalid bandwidth -1"),
        ({"log_query": 1}, "invalid log_query 1: expected true or false, got int"),
        ({"suspended": True}, "unknown tenant setting 'suspended'"),
    ],
)
def test_invalid_settings_refused_and_nothing_written(store: Store, changes: dict, message: str) -> None:
    store.add_tenant("acme")
    store.set_tenant("acme", auth="optional", realm="r", block_page="b", max_conns=3, rps=3, bandwidth=3)
    before, tenant_before = store.history(), store.get_tenant("acme")
    with pytest.raises(OperatorError) as info:
        store.set_tenant("acme", **changes)
    assert info.value.code == "invalid"
    assert str(info.value) == message
    assert info.value.hint
    assert store.history() == before
    assert store.get_tenant("acme") == tenant_before


def test_one_bad_value_refuses_the_whole_change(store: Store) -> None:
    store.add_tenant("acme")
    with pytest.raises(OperatorError):
        store.set_tenant("acme", auth="required", rps=-5)
    assert store.get_tenant("acme").auth == "none"


def test_settings_survive_reopen(db_path, store: Store) -> None:  # type: ignore[no-untyped-def]
    store.add_tenant("acme")
    store.set_tenant("acme", auth="optional", auth_exempt=["10.0.0.0/8"], bandwidth=1.25e6)
    store.close()
    with Store.open(db_path) as again:
        t = again.get_tenant("acme")
        assert (t.auth, t.auth_exempt, t.bandwidth) == ("optional", ("10.0.0.0/8",), 1.25e6)


def test_exempt_ranges_may_overlap_between_tenants(store: Store) -> None:
    store.add_tenant("a")
    store.add_tenant("b")
    store.set_tenant("a", auth_exempt=["10.0.0.0/8"])
    assert store.set_tenant("b", auth_exempt=["10.0.0.0/8"]).auth_exempt == ("10.0.0.0/8",)


def test_removing_a_tenant_takes_its_users_and_rules(store: Store) -> None:
    store.add_tenant("acme")
    store.add_user("acme", "alice", "$scrypt$ln=15,r=8,p=1$c2FsdA$a2V5")
    store.add_rule("acme", {"id": "r1", "action": "deny"})
    store.remove_tenant("acme")
    assert store.history()[0]["detail"] == {"sources": [], "users": 1, "rules": 1}
    store.add_tenant("acme")
    assert store.list_users("acme") == []
    assert store.list_rules("acme") == []
