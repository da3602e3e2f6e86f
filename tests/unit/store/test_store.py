"""Every Store method, its results and its errors (exact messages and codes)."""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path

import pytest

from arcus.errors import AlreadyExists, NotFound, OperatorError
from arcus.store import Store, Tenant

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")


def raw_count(path: Path, sql: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


# -- open / default tenant -----------------------------------------------------------------


def test_new_store_holds_only_the_default_tenant(store: Store) -> None:
    [default] = store.list_tenants()
    assert default.name == "default"
    assert default.display_name == "Default"
    assert default.sources == ()
    assert default.suspended is False
    assert ISO_UTC.match(default.created_at)


def test_path_attribute(store: Store, db_path: Path) -> None:
    assert store.path == db_path


def test_data_survives_close_and_reopen(db_path: Path) -> None:
    with Store.open(db_path) as s:
        s.add_tenant("acme", sources=["10.20.0.0/16"])
    with Store.open(db_path) as s:
        assert s.get_tenant("acme").sources == ("10.20.0.0/16",)


def test_closed_store_refuses_calls(db_path: Path) -> None:
    s = Store.open(db_path)
    s.close()
    s.close()  # twice is harmless
    with pytest.raises(RuntimeError, match="is closed"):
        s.list_tenants()


# -- add ----------------------------------------------------------------------------------


def test_add_returns_the_stored_tenant_normalized(store: Store) -> None:
    t = store.add_tenant(
        "acme", "Acme Corp", ["2001:DB8::1/48", "10.20.9.9/16", "10.20.0.0/16", "192.0.2.7"]
    )
    assert t.name == "acme"
    assert t.display_name == "Acme Corp"
    assert t.sources == ("10.20.0.0/16", "192.0.2.7/32", "2001:db8::/48")
    assert t.suspended is False
    assert ISO_UTC.match(t.created_at)
    assert store.get_tenant("acme") == t


def test_display_name_defaults_to_name(store: Store) -> None:
    assert store.add_tenant("acme").display_name == "acme"
    assert store.add_tenant("beta", "   ").display_name == "beta"
    assert store.add_tenant("gamma", "  Gamma  ").display_name == "Gamma"


@pytest.mark.parametrize("bad", ["x" * 201, "tab\there", "new\nline", "nul\x00"])
def test_bad_display_name_refused(store: Store, bad: str) -> None:
    with pytest.raises(OperatorError) as info:
        store.add_tenant("acme", bad)
    assert info.value.code == "invalid"
    assert str(info.value) == f"invalid display name {bad!r}"
    assert "printable" in (info.value.hint or "")
    assert [t.name for t in store.list_tenants()] == ["default"]


def test_duplicate_tenant(store: Store) -> None:
    store.add_tenant("acme")
    with pytest.raises(AlreadyExists) as info:
        store.add_tenant("acme", sources=["10.0.0.0/8"])
    assert info.value.code == "exists"
    assert str(info.value) == "tenant 'acme' already exists"
    assert info.value.hint == "choose another name, or see `arcus tenant show acme`"
    assert store.get_tenant("acme").sources == ()  # the failed add left nothing
    assert raw_count(store.path, "SELECT count(*) FROM tenant_sources") == 0


def test_default_cannot_be_added_again(store: Store) -> None:
    with pytest.raises(AlreadyExists, match=r"^tenant 'default' already exists$"):
        store.add_tenant("default")


@pytest.mark.parametrize("bad", ["", "bad name", "-lead", "a/b", "x" * 64, "ünï"])
def test_invalid_tenant_name(store: Store, bad: str) -> None:
    with pytest.raises(OperatorError) as info:
        store.add_tenant(bad)
    assert info.value.code == "invalid"
    assert str(info.value) == f"invalid tenant name {bad!r}"
    assert info.value.hint


def test_bad_cidr_refused_before_anything_is_written(store: Store) -> None:
    with pytest.raises(OperatorError) as info:
        store.add_tenant("acme", sources=["10.0.0.0/8", "10.1.0.0/33"])
    assert info.value.code == "invalid"
    assert str(info.value) == "invalid source range '10.1.0.0/33': '33' is not a valid netmask"
    assert info.value.hint == (
        "write an IPv4 or IPv6 range in CIDR form, e.g. 10.20.0.0/16 or 2001:db8::/48"
    )
    with pytest.raises(NotFound):
        store.get_tenant("acme")


def test_ipv4_mapped_range_refused(store: Store) -> None:
    with pytest.raises(OperatorError) as info:
        store.add_tenant("acme", sources=["::ffff:10.0.0.0/104"])
    assert str(info.value) == (
        "invalid source range '::ffff:10.0.0.0/104': IPv4-mapped IPv6 ranges are not accepted"
    )
    assert info.value.code == "invalid"


def test_same_range_twice_in_one_call_is_stored_once(store: Store) -> None:
    t = store.add_tenant("acme", sources=["10.20.0.0/16", "10.20.1.1/16"])
    assert t.sources == ("10.20.0.0/16",)


def test_range_owned_by_another_tenant(store: Store) -> None:
    store.add_tenant("acme", sources=["10.20.0.0/16"])
    with pytest.raises(AlreadyExists) as info:
        store.add_tenant("beta", sources=["10.20.5.5/16"])
    assert info.value.code == "exists"
    assert str(info.value) == "source range '10.20.0.0/16' already belongs to tenant 'acme'"
    assert info.value.hint == (
        "a range identifies one tenant: remove it from 'acme' first "
        "(`arcus tenant set acme --source ...` with the ranges it keeps, or --no-sources), "
        "or give a more specific range (the longest prefix wins)"
    )


def test_nested_ranges_of_different_tenants_are_fine(store: Store) -> None:
    store.add_tenant("acme", sources=["10.0.0.0/8"])
    assert store.add_tenant("beta", sources=["10.20.0.0/16"]).sources == ("10.20.0.0/16",)


def test_conflict_on_second_of_three_ranges_leaves_nothing(store: Store) -> None:
    """The 1st range is inserted before the 2nd hits the UNIQUE constraint: rollback."""
    store.add_tenant("acme", sources=["10.20.0.0/16"])
    before = store.history()
    with pytest.raises(AlreadyExists, match="already belongs to tenant 'acme'"):
        # sorted order: 10.10/16 (new), 10.20/16 (taken), 10.30/16 (new)
        store.add_tenant("beta", sources=["10.30.0.0/16", "10.20.0.0/16", "10.10.0.0/16"])
    assert [t.name for t in store.list_tenants()] == ["acme", "default"]
    assert raw_count(store.path, "SELECT count(*) FROM tenant_sources") == 1
    assert store.history() == before
    # the ranges that were inserted then rolled back are free for another tenant
    assert store.add_tenant("gamma", sources=["10.10.0.0/16", "10.30.0.0/16"]).sources == (
        "10.10.0.0/16",
        "10.30.0.0/16",
    )


def test_failure_after_all_inserts_rolls_back_everything(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure at the very end of the transaction (the history row) undoes it all."""
    from arcus.store import history

    def boom(*args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(history, "record", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.add_tenant("acme", sources=["10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32"])
    monkeypatch.undo()
    assert [t.name for t in store.list_tenants()] == ["default"]
    assert raw_count(store.path, "SELECT count(*) FROM tenant_sources") == 0
    # and the store is usable afterwards (no transaction left open)
    assert store.add_tenant("acme", sources=["10.0.0.0/8"]).sources == ("10.0.0.0/8",)


# -- list / get ---------------------------------------------------------------------------


def test_list_sorted_by_name_with_default(store: Store) -> None:
    for name in ["zeta", "alpha", "mid"]:
        store.add_tenant(name)
    assert [t.name for t in store.list_tenants()] == ["alpha", "default", "mid", "zeta"]


def test_list_carries_each_tenants_own_sources(store: Store) -> None:
    store.add_tenant("a", sources=["10.1.0.0/16", "10.2.0.0/16"])
    store.add_tenant("b", sources=["2001:db8::/48"])
    got = {t.name: t.sources for t in store.list_tenants()}
    assert got == {"a": ("10.1.0.0/16", "10.2.0.0/16"), "b": ("2001:db8::/48",), "default": ()}


def test_get_unknown(store: Store) -> None:
    with pytest.raises(NotFound) as info:
        store.get_tenant("nope")
    assert info.value.code == "not_found"
    assert str(info.value) == "tenant 'nope' does not exist"
    assert info.value.hint == "see `arcus tenant list`"


def test_to_dict_is_json_ready(store: Store) -> None:
    import json

    t = store.add_tenant("acme", "Acme", ["10.20.0.0/16"])
    d = t.to_dict()
    assert d == {
        "name": "acme",
        "display_name": "Acme",
        "sources": ["10.20.0.0/16"],
        "suspended": False,
        "created_at": t.created_at,
        "auth": "none",
        "auth_exempt": [],
        "realm": None,
        "default_action": "allow",
        "block_page": None,
        "max_conns": None,
        "rps": None,
        "bandwidth": None,
        "log_query": False,
        "proxy_hosts": [],
        "lock_sources": False,
        "icap_service": None,
        "icap_fail": "open",
        "icap_sample": 1.0,
        "icap_max_body": 8 << 20,
        "icap_oversize": "pass",
        "intercept": None,
    }
    assert json.loads(json.dumps(d)) == d


def test_tenant_is_frozen() -> None:
    t = Tenant("a", "a", (), False, "2024-01-01T00:00:00Z")
    with pytest.raises(AttributeError):
        t.name = "b"  # type: ignore[misc]


# -- remove -------------------------------------------------------------------------------


def test_remove_deletes_tenant_and_frees_its_ranges(store: Store) -> None:
    store.add_tenant("acme", sources=["10.20.0.0/16", "2001:db8::/48"])
    store.remove_tenant("acme")
    with pytest.raises(NotFound):
        store.get_tenant("acme")
    assert raw_count(store.path, "SELECT count(*) FROM tenant_sources") == 0
    assert store.add_tenant("beta", sources=["10.20.0.0/16"]).sources == ("10.20.0.0/16",)


def test_remove_unknown(store: Store) -> None:
    with pytest.raises(NotFound) as info:
        store.remove_tenant("nope")
    assert str(info.value) == "tenant 'nope' does not exist"
    assert info.value.hint == "see `arcus tenant list`"
    assert len(store.history()) == 1  # only the default tenant's creation


def test_default_cannot_be_removed(store: Store) -> None:
    with pytest.raises(OperatorError) as info:
        store.remove_tenant("default")
    assert info.value.code == "invalid"
    assert str(info.value) == "tenant 'default' cannot be removed"
    assert "arcus tenant suspend default" in (info.value.hint or "")
    assert store.get_tenant("default").name == "default"


def test_failed_remove_keeps_tenant_and_ranges(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arcus.store import history

    store.add_tenant("acme", sources=["10.20.0.0/16", "10.30.0.0/16"])
    monkeypatch.setattr(history, "record", lambda *a: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError):
        store.remove_tenant("acme")
    monkeypatch.undo()
    assert store.get_tenant("acme").sources == ("10.20.0.0/16", "10.30.0.0/16")


# -- suspend / resume ---------------------------------------------------------------------


def test_suspend_and_resume(store: Store) -> None:
    store.add_tenant("acme", sources=["10.20.0.0/16"])
    t = store.set_suspended("acme", True)
    assert t.suspended is True and t.sources == ("10.20.0.0/16",)
    assert store.get_tenant("acme").suspended is True
    assert store.set_suspended("acme", False).suspended is False
    assert [h["action"] for h in store.history(2)] == ["tenant.resume", "tenant.suspend"]


def test_suspend_twice_records_one_change(store: Store) -> None:
    store.add_tenant("acme")
    store.set_suspended("acme", True)
    store.set_suspended("acme", True)
    assert [h["action"] for h in store.history()].count("tenant.suspend") == 1


def test_default_can_be_suspended(store: Store) -> None:
    assert store.set_suspended("default", True).suspended is True


def test_suspend_unknown(store: Store) -> None:
    with pytest.raises(NotFound) as info:
        store.set_suspended("nope", True)
    assert str(info.value) == "tenant 'nope' does not exist"
    assert info.value.hint == "see `arcus tenant list`"


# -- history ------------------------------------------------------------------------------


def test_history_newest_first_with_details(store: Store) -> None:
    store.add_tenant("acme", "Acme", ["10.20.0.0/16"])
    store.set_suspended("acme", True)
    store.remove_tenant("acme")
    rows = store.history()
    assert [(r["action"], r["object"]) for r in rows] == [
        ("tenant.remove", "acme"),
        ("tenant.suspend", "acme"),
        ("tenant.add", "acme"),
        ("tenant.add", "default"),
    ]
    assert rows[0]["detail"] == {"sources": ["10.20.0.0/16"], "users": 0, "rules": 0}
    assert rows[2]["detail"] == {"display_name": "Acme", "sources": ["10.20.0.0/16"]}
    assert all(ISO_UTC.match(r["time"]) for r in rows)
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)
    assert set(rows[0]) == {"id", "time", "action", "object", "detail"}


def test_history_limit(store: Store) -> None:
    for i in range(5):
        store.add_tenant(f"t{i}")
    assert [r["object"] for r in store.history(limit=2)] == ["t4", "t3"]


@pytest.mark.parametrize("bad", [0, -1, 10_001, True, "5"])
def test_history_bad_limit(store: Store, bad: object) -> None:
    with pytest.raises(OperatorError) as info:
        store.history(limit=bad)  # type: ignore[arg-type]
    assert info.value.code == "invalid"
    assert str(info.value) == f"invalid history limit {bad!r}"


# -- concurrency --------------------------------------------------------------------------


def test_threads_share_one_store(store: Store) -> None:
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(20):
                store.add_tenant(f"w{k}-{i}", sources=[f"10.{k}.{i}.0/24"])
                store.list_tenants()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert len(store.list_tenants()) == 1 + 4 * 20


def test_two_stores_on_one_file_see_each_others_changes(db_path: Path) -> None:
    with Store.open(db_path) as a, Store.open(db_path) as b:
        a.add_tenant("acme", sources=["10.20.0.0/16"])
        assert b.get_tenant("acme").sources == ("10.20.0.0/16",)
        with pytest.raises(AlreadyExists, match="already belongs to tenant 'acme'"):
            b.add_tenant("beta", sources=["10.20.0.0/16"])


def test_writer_blocked_too_long_gets_busy(db_path: Path) -> None:
    Store.open(db_path).close()
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with Store.open(db_path, busy_timeout=0.1) as s:
            with pytest.raises(OperatorError) as info:
                s.add_tenant("acme")
            assert info.value.code == "busy"
            assert str(info.value).startswith(f"store {db_path} is busy: ")
            assert info.value.hint == "another arcus process is writing to it; retry in a moment"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    with Store.open(db_path) as s:
        s.add_tenant("acme")  # the lock is gone, the store is fine
