"""arcus.ops.tenants: each function over a real store, its result shape and its refusals."""

from __future__ import annotations

import pytest

from arcus.errors import AlreadyExists, NotFound, OperatorError
from arcus.ops import tenants
from arcus.store import Store

KEYS = {"name", "display_name", "sources", "suspended", "created_at", "auth", "auth_exempt", "realm",
        "default_action", "block_page", "max_conns", "rps", "bandwidth", "log_query", "proxy_hosts", "lock_sources",
        "icap_service", "icap_fail", "icap_sample", "icap_max_body", "icap_oversize", "intercept"}


def test_add_list_show(store: Store) -> None:
    added = tenants.add(store, "globex", None, ["10.30.1.9/16"])
    assert set(added) == KEYS and added["sources"] == ["10.30.0.0/16"] and added["display_name"] == "globex"
    assert [t["name"] for t in tenants.list_all(store)] == ["acme", "default", "globex"]
    store.add_rule("acme", {"id": "r1", "action": "deny"})
    shown = tenants.show(store, "acme")
    assert set(shown) == KEYS | {"users", "rules"} and (shown["users"], shown["rules"]) == (0, 1)


def test_add_refuses_a_name_differing_only_in_case(store: Store) -> None:
    with pytest.raises(AlreadyExists, match="'ACME' clashes with tenant 'acme'"):
        tenants.add(store, "ACME")


def test_change_and_lock_sources(store: Store) -> None:
    out = tenants.change(store, "acme", {"lock_sources": True, "rps": 5})
    assert (out["lock_sources"], out["rps"]) == (True, 5.0)
    assert tenants.show(store, "acme")["lock_sources"] is True
    with pytest.raises(OperatorError, match="nothing to change"):
        tenants.change(store, "acme", {})
    with pytest.raises(OperatorError, match="unknown tenant setting|nosuch"):
        tenants.change(store, "acme", {"nosuch": 1})


def test_suspend_remove(store: Store) -> None:
    assert tenants.set_suspended(store, "acme", True)["suspended"] is True
    assert tenants.set_suspended(store, "acme", False)["suspended"] is False
    assert tenants.remove(store, "acme") == {"removed": "acme"}
    with pytest.raises(NotFound):
        tenants.show(store, "acme")


@pytest.mark.parametrize("call", [tenants.show, tenants.remove, lambda s, n: tenants.set_suspended(s, n, True),
                                  lambda s, n: tenants.change(s, n, {"rps": 1})])
def test_bad_and_unknown_names(store: Store, call) -> None:
    with pytest.raises(OperatorError, match="invalid tenant name"):
        call(store, "a b")
    with pytest.raises(NotFound) as caught:
        call(store, "Acme")
    assert caught.value.hint.startswith("did you mean 'acme'?")
