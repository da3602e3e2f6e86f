"""The tenancy control handlers against a real Store and a real Snapshot.

:class:`arcus.testing.control.TenancyDaemon` has what the handlers use of the daemon: ``store``,
``shared`` (counters, the Snapshot of the embedded default profile) and ``refresh_tenants()``
(counted, so each test can assert a change was made live, and that a refused one was not).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from arcus.auth.secrets import hash_secret, identify_secret
from arcus.errors import AlreadyExists, NotFound, OperatorError
from arcus.ops.explain import parse_target
from arcus.ops.policies import rule_from_dict, rule_to_dict
from arcus.policy import Rule
from arcus.runtime.tenancy import tenancy_handlers
from arcus.store import Store
from arcus.testing.control import TenancyDaemon

SHA512 = "$6$saltsalt$" + "a" * 86
G3MD5 = "$g3md5$0011223344556677$" + "0" * 32
PLAIN = "hunter2-not-hashed"
ZEROS = {"conns_total": 0, "conns_active": 0, "requests": 0, "bytes_up": 0, "bytes_down": 0, "errors": {}}


class Ctl:
    """Calls handlers the way the control server does: by command name, with an args dict."""

    def __init__(self, daemon: TenancyDaemon) -> None:
        self.daemon = daemon
        self.handlers = tenancy_handlers(daemon)

    def __call__(self, cmd: str, **args: Any) -> Any:
        return asyncio.run(self.handlers[cmd](args))

    def raw(self, cmd: str, args: Any) -> Any:
        return asyncio.run(self.handlers[cmd](args))


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[TenancyDaemon]:
    store = Store.open(tmp_path / "arcus.db")
    try:
        d = TenancyDaemon(store)
        d.seed(lambda st: st.add_tenant("acme", sources=["10.20.0.0/16"]))
        yield d
        asyncio.run(d.close())
    finally:
        store.close()


@pytest.fixture
def ctl(daemon: TenancyDaemon) -> Ctl:
    return Ctl(daemon)


def refused(ctl: Ctl, cmd: str, args: Any, error: type[OperatorError] = OperatorError) -> OperatorError:
    """The command fails with ``error`` and nothing is made live."""
    before = ctl.daemon.refreshes
    with pytest.raises(error) as info:
        ctl.raw(cmd, args)
    assert ctl.daemon.refreshes == before
    return info.value


def test_commands_offered() -> None:
    assert set(tenancy_handlers(SimpleNamespace())) == {
        "tenant.add", "tenant.list", "tenant.show", "tenant.set", "tenant.rm", "tenant.suspend", "tenant.resume",
        "user.add", "user.list", "user.show", "user.rm", "user.passwd", "user.block", "user.unblock",
        "user.set", "user.import",
        "policy.add", "policy.import", "policy.list", "policy.rm", "policy.move", "policy.explain",
    }


# -- tenants ---------------------------------------------------------------------------------


def test_tenant_set(ctl: Ctl) -> None:
    out = ctl("tenant.set", name="acme", auth="required", auth_exempt=["10.20.5.0/24"], rps=200,
              max_conns=500, bandwidth=50e6, realm="Acme", default_action="deny", log_query=True,
              block_page="blocked by {rule}")
    assert ctl.daemon.refreshes == 1
    assert out == ctl.daemon.store.get_tenant("acme").to_dict()
    assert (out["auth"], out["auth_exempt"], out["rps"], out["max_conns"]) == ("required", ["10.20.5.0/24"], 200.0, 500)
    out = ctl("tenant.set", name="acme", rps=None, max_conns=None)  # null removes a limit
    assert (out["rps"], out["max_conns"], out["bandwidth"]) == (None, None, 50e6)
    assert ctl.daemon.refreshes == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"auth": "required"}, "missing tenant name"),
        ({"name": 5, "auth": "required"}, "tenant name must be text, got int"),
        ({"name": "acme"}, "tenant.set: nothing to change"),
        ({"name": "acme", "members": ["10.0.0.0/8"]}, "tenant.set: unknown argument 'members'"),
        ({"name": "acme", "auth": "maybe"}, "invalid auth mode 'maybe'"),
        ({"name": "acme", "rps": "200/s"}, "invalid rps '200/s'"),
        ({"name": "acme", "auth_exempt": "10.0.0.0/8"}, "invalid auth_exempt '10.0.0.0/8': expected a list of ranges"),
    ],
)
def test_tenant_set_refused(ctl: Ctl, args: dict, message: str) -> None:
    exc = refused(ctl, "tenant.set", args)
    assert str(exc) == message and exc.code == "invalid" and exc.hint


@pytest.mark.parametrize(
    ("cmd", "args"),
    [
        ("tenant.show", {"name": "acme"}), ("tenant.rm", {"name": "acme"}), ("tenant.suspend", {"name": "acme"}),
        ("tenant.resume", {"name": "acme"}), ("user.list", {"tenant": "acme"}),
        ("user.show", {"tenant": "acme", "name": "alice"}), ("user.rm", {"tenant": "acme", "name": "alice"}),
        ("user.block", {"tenant": "acme", "name": "alice"}), ("user.unblock", {"tenant": "acme", "name": "alice"}),
        ("policy.list", {"tenant": "acme"}), ("policy.rm", {"tenant": "acme", "id": "r1"}),
        ("policy.move", {"tenant": "acme", "id": "r1", "position": 1}),
    ],
)
def test_every_tenancy_command_refuses_an_unknown_argument(ctl: Ctl, daemon: TenancyDaemon, cmd: str, args: dict) -> None:
    """A misspelt key is an error, not ignored: `{"name": "acme", "force": true}` to tenant.rm
    must not remove the tenant as if the key meant nothing (docs/control.md)."""
    exc = refused(ctl, cmd, {**args, "extra": 1})
    assert str(exc) == f"{cmd}: unknown argument 'extra'" and exc.code == "invalid"
    assert daemon.store.get_tenant("acme").suspended is False  # nothing was done


def test_tenant_set_unknown(ctl: Ctl) -> None:
    assert str(refused(ctl, "tenant.set", {"name": "nope", "auth": "none"}, NotFound)) == "tenant 'nope' does not exist"


def test_tenant_show_with_usage_and_counts(ctl: Ctl, daemon: TenancyDaemon) -> None:
    daemon.shared.tenant_counters.get("acme").requests = 7
    daemon.shared.tenant_counters.get("acme").conns_active = 2
    daemon.store.add_user("acme", "alice", SHA512)
    daemon.store.add_rule("acme", {"id": "r1", "action": "deny"})
    daemon.store.add_rule("acme", {"id": "r2", "action": "deny"})
    out = ctl("tenant.show", name="acme")
    assert out["usage"] == {**ZEROS, "requests": 7, "conns_active": 2}
    assert (out["users"], out["rules"]) == (1, 2)
    assert {k: v for k, v in out.items() if k not in ("usage", "users", "rules")} == daemon.store.get_tenant("acme").to_dict()
    assert ctl("tenant.show", name="default")["usage"] == ZEROS
    assert daemon.refreshes == 0
    refused(ctl, "tenant.show", {"name": "nope"}, NotFound)


# -- users -----------------------------------------------------------------------------------


def test_user_add_with_a_real_hash(ctl: Ctl, daemon: TenancyDaemon) -> None:
    secret = hash_secret("correct horse battery staple")
    out = ctl("user.add", tenant="acme", name="alice", secret=secret, expires_at="2027-01-31")
    assert out == {
        "tenant": "acme", "name": "alice", "secret_scheme": "scrypt", "blocked": False,
        "expires_at": "2027-01-31T00:00:00Z", "max_conns": None, "rps": None, "bandwidth": None,
        "created_at": out["created_at"],
    }
    assert daemon.store.get_user("acme", "alice").secret == secret
    assert daemon.refreshes == 1


@pytest.mark.parametrize(
    "secret",
    [
        PLAIN,
        "$scrypt$ln=15,r=8,p=1$c2FsdA$short",  # the store's prefix check passes; identify_secret does not
        "$6$salt$tooshort",
    ],
)
def test_user_add_refuses_secret_identify_secret_rejects(ctl: Ctl, daemon: TenancyDaemon, secret: str) -> None:
    with pytest.raises(OperatorError):
        identify_secret(secret)
    exc = refused(ctl, "user.add", {"tenant": "acme", "name": "alice", "secret": secret})
    assert str(exc).startswith("user 'alice' of tenant 'acme': ")
    assert secret not in str(exc) and secret not in (exc.hint or "")
    assert daemon.store.list_users("acme") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"name": "alice", "secret": SHA512}, "missing tenant name"),
        ({"tenant": "acme", "secret": SHA512}, "missing user name"),
        ({"tenant": "acme", "name": ["alice"], "secret": SHA512}, "user name must be text, got list"),
        ({"tenant": "acme", "name": "alice"}, "user 'alice' of tenant 'acme': missing secret"),
        ({"tenant": "acme", "name": "alice", "secret": 5}, "user 'alice' of tenant 'acme': secret must be text"),
        ({"tenant": "acme", "name": "alice", "secret": SHA512, "expires_at": 5},
         "invalid expiry 5: expected text, got int"),
        ({"tenant": "acme", "name": "alice", "secret": SHA512, "password": "x"}, "user.add: unknown argument 'password'"),
        ({"tenant": "acme", "name": "a b", "secret": SHA512}, "invalid user name 'a b'"),
    ],
)
def test_user_add_refused(ctl: Ctl, args: dict, message: str) -> None:
    assert str(refused(ctl, "user.add", args)) == message


def test_user_add_duplicate_and_unknown_tenant(ctl: Ctl) -> None:
    ctl("user.add", tenant="acme", name="alice", secret=SHA512)
    refused(ctl, "user.add", {"tenant": "acme", "name": "alice", "secret": SHA512}, AlreadyExists)
    refused(ctl, "user.add", {"tenant": "nope", "name": "alice", "secret": SHA512}, NotFound)


def test_user_list_show_rm(ctl: Ctl, daemon: TenancyDaemon) -> None:
    ctl("user.add", tenant="acme", name="bob", secret=SHA512)
    ctl("user.add", tenant="acme", name="alice", secret=G3MD5)
    assert [(u["name"], u["secret_scheme"]) for u in ctl("user.list", tenant="acme")] == [("alice", "g3-md5"), ("bob", "sha512-crypt")]
    daemon.shared.user_counters.get("acme/alice").bytes_up = 1234
    shown = ctl("user.show", tenant="acme", name="alice")
    assert shown["usage"] == {**ZEROS, "bytes_up": 1234}
    assert ctl("user.show", tenant="acme", name="bob")["usage"] == ZEROS
    assert "secret" not in shown and G3MD5 not in repr(shown)
    assert ctl("user.rm", tenant="acme", name="alice") == {"removed": "alice"}
    assert daemon.refreshes == 3
    refused(ctl, "user.show", {"tenant": "acme", "name": "alice"}, NotFound)
    refused(ctl, "user.rm", {"tenant": "acme", "name": "alice"}, NotFound)


def test_user_show_before_any_traffic(ctl: Ctl, daemon: TenancyDaemon) -> None:
    """A user the data plane has not counted yet: usage is zeros rather than an error."""
    ctl("user.add", tenant="acme", name="alice", secret=SHA512)
    assert ctl("user.show", tenant="acme", name="alice")["usage"] == ZEROS


def test_user_passwd_block_unblock_set(ctl: Ctl, daemon: TenancyDaemon) -> None:
    ctl("user.add", tenant="acme", name="alice", secret=SHA512)
    assert ctl("user.passwd", tenant="acme", name="alice", secret=G3MD5)["secret_scheme"] == "g3-md5"
    assert daemon.store.get_user("acme", "alice").secret == G3MD5
    assert ctl("user.block", tenant="acme", name="alice")["blocked"] is True
    assert ctl("user.unblock", tenant="acme", name="alice")["blocked"] is False
    out = ctl("user.set", tenant="acme", name="alice", expires_at="2030-01-01T12:00:00+01:00", max_conns=4, rps=2.5,
              bandwidth=1e6)
    assert (out["expires_at"], out["max_conns"], out["rps"], out["bandwidth"]) == ("2030-01-01T11:00:00Z", 4, 2.5, 1e6)
    out = ctl("user.set", tenant="acme", name="alice", expires_at=None, max_conns=None)
    assert (out["expires_at"], out["max_conns"], out["rps"]) == (None, None, 2.5)
    assert daemon.refreshes == 6
    history = repr(daemon.store.history(100))
    assert G3MD5 not in history and SHA512 not in history


@pytest.mark.parametrize(
    ("cmd", "args", "message"),
    [
        ("user.passwd", {"tenant": "acme", "name": "alice", "secret": PLAIN},
         "user 'alice' of tenant 'acme': not a hashed secret: it does not start with a $scheme$ prefix"),
        ("user.passwd", {"tenant": "acme", "name": "alice"}, "user 'alice' of tenant 'acme': missing secret"),
        ("user.set", {"tenant": "acme", "name": "alice"}, "user.set: nothing to change"),
        ("user.set", {"tenant": "acme", "name": "alice", "secret": SHA512}, "user.set: secret is not set here"),
        ("user.set", {"tenant": "acme", "name": "alice", "blocked": True}, "user.set: blocked is not set here"),
        ("user.set", {"tenant": "acme", "name": "alice", "rps": -1}, "invalid rps -1"),
        ("user.set", {"tenant": "acme", "name": "alice", "colour": "red"}, "user.set: unknown argument 'colour'"),
        ("user.block", {"tenant": "acme"}, "missing user name"),
    ],
)
def test_user_changes_refused(ctl: Ctl, cmd: str, args: dict, message: str) -> None:
    ctl("user.add", tenant="acme", name="alice", secret=SHA512)
    exc = refused(ctl, cmd, args)
    assert str(exc) == message
    assert PLAIN not in str(exc)
    assert ctl.daemon.store.get_user("acme", "alice").secret == SHA512


def test_user_import(ctl: Ctl, daemon: TenancyDaemon) -> None:
    users = [{"name": "alice", "secret": SHA512, "expires_at": "2027-01-31"}, {"name": "bob", "secret": G3MD5}]
    assert ctl("user.import", tenant="acme", users=users) == {"imported": 2}
    assert daemon.refreshes == 1
    assert [(u.name, u.expires_at) for u in daemon.store.list_users("acme")] == [("alice", "2027-01-31T00:00:00Z"), ("bob", None)]
    refused(ctl, "user.import", {"tenant": "acme", "users": users}, AlreadyExists)
    assert ctl("user.import", tenant="acme", users=[{"name": "bob", "secret": SHA512}], replace=True) == {"imported": 1}
    assert daemon.store.get_user("acme", "bob").secret == SHA512


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"tenant": "acme"}, "user.import: users must be a list of {name, secret, expires_at?}"),
        ({"tenant": "acme", "users": {"alice": SHA512}}, "user.import: users must be a list of {name, secret, expires_at?}"),
        ({"tenant": "acme", "users": [{"name": "a", "secret": SHA512}, {"name": "b", "secret": PLAIN}]},
         "user import entry 2 ('b'): not a hashed secret: it does not start with a $scheme$ prefix"),
        ({"tenant": "acme", "users": [{"name": "a", "secret": SHA512}, "b"]},
         "user import entry 2: expected an object {name, secret, expires_at?}"),
        ({"tenant": "acme", "users": [{"name": "a", "secret": SHA512, "token": {}}]},
         "user import entry 1: unknown key 'token'"),
        ({"tenant": "acme", "users": [{"secret": SHA512}]}, "user import entry 1: missing user name"),
        ({"tenant": "acme", "users": [{"name": "a b", "secret": SHA512}]}, "user import entry 1: invalid user name 'a b'"),
        ({"tenant": "acme", "users": [{"name": "a"}]}, "user import entry 1 ('a'): missing secret"),
        ({"tenant": "acme", "users": [], "replace": "yes"}, "user.import: replace must be true or false"),
        ({"tenant": "acme", "users": [{"name": "a", "secret": SHA512, "expires_at": "soon"}]},
         "user import entry 1: invalid expiry 'soon'"),
    ],
)
def test_user_import_refused(ctl: Ctl, args: dict, message: str) -> None:
    exc = refused(ctl, "user.import", args)
    assert str(exc) == message
    assert PLAIN not in str(exc)
    assert ctl.daemon.store.list_users("acme") == []


# -- policies --------------------------------------------------------------------------------


def test_policy_add_list_rm_move(ctl: Ctl, daemon: TenancyDaemon) -> None:
    out = ctl("policy.add", tenant="acme", rule={"id": "no-casino", "action": "deny", "hosts": ["*.casino.example"],
                                                   "comment": "gambling"})
    full = {"id": "no-casino", "action": "deny", "hosts": ["*.casino.example"], "dest_cidrs": [], "ports": [],
            "sources": [], "methods": [], "path_prefixes": [], "times": [], "timezone": "UTC", "redirect_to": None,
            "comment": "gambling", "user": None, "protocols": []}
    assert out == {"rule": full, "position": 1}
    assert daemon.store.list_rules("acme") == [full]  # stored whole: Rule(**d) works on it
    ctl("policy.add", tenant="acme", rule={"id": "first", "action": "allow", "hosts": ["ok.example"]}, position=1)
    ctl("policy.add", tenant="acme", rule={"id": "last", "action": "report"})
    listed = ctl("policy.list", tenant="acme")
    assert [(r["id"], r["position"]) for r in listed] == [("first", 1), ("no-casino", 2), ("last", 3)]
    assert listed[1] == {**full, "position": 2}
    moved = ctl("policy.move", tenant="acme", id="last", position=1)
    assert [(r["id"], r["position"]) for r in moved] == [("last", 1), ("first", 2), ("no-casino", 3)]
    assert ctl("policy.rm", tenant="acme", id="first") == {"removed": "first"}
    assert [r["id"] for r in ctl("policy.list", tenant="acme")] == ["last", "no-casino"]
    assert daemon.refreshes == 5


def test_policy_list_fills_defaults_of_a_sparse_stored_rule(ctl: Ctl, daemon: TenancyDaemon) -> None:
    daemon.store.add_rule("acme", {"id": "r", "action": "deny"})  # e.g. written by the CLI without a daemon
    [r] = ctl("policy.list", tenant="acme")
    assert r == {**rule_to_dict(Rule("r", "deny")), "position": 1}


@pytest.mark.parametrize(
    ("args", "message", "error"),
    [
        ({"tenant": "acme"}, "a rule must be an object of fields, got NoneType", OperatorError),
        ({"tenant": "acme", "rule": {"id": "r", "action": "deny", "hostz": ["x"]}}, "unknown rule field 'hostz'",
         OperatorError),
        ({"tenant": "acme", "rule": {"action": "deny"}}, "a rule needs an id", OperatorError),
        ({"tenant": "acme", "rule": {"id": "r"}}, "a rule needs its action", OperatorError),
        ({"tenant": "acme", "rule": {"id": "r", "action": "deny", "hosts": "x.example"}},
         "rule field 'hosts' must be a list, got str", OperatorError),
        ({"tenant": "acme", "rule": {"id": "r", "action": "deny", "hosts": ["*.bad host"]}},
         "rule 'r': hosts: character not allowed in host pattern '*.bad host'", OperatorError),
        ({"tenant": "acme", "rule": {"id": "r", "action": "block"}}, "rule 'r': action: unknown action 'block'",
         OperatorError),
        ({"tenant": "acme", "rule": {"id": "r", "action": "redirect"}}, "rule 'r': redirect_to: action redirect needs a URL",
         OperatorError),
        ({"tenant": "acme", "rule": {"id": "r", "action": "deny", "ports": [80]}}, "rule 'r': ports: expected text, got int 80",
         OperatorError),
        ({"tenant": "acme", "rule": {"id": "r", "action": "deny", "timezone": "Mars/Olympus"}},
         "rule 'r': timezone: unknown time zone 'Mars/Olympus'", OperatorError),
        ({"tenant": "acme", "rule": {"id": 7, "action": "deny"}}, "invalid rule name 7", OperatorError),
        ({"tenant": "acme", "rule": {"id": "r", "action": "deny"}, "position": 0}, "invalid position 0", OperatorError),
        ({"tenant": "acme", "rule": {"id": "r", "action": "deny"}, "position": "1"}, "invalid position '1'",
         OperatorError),
        ({"tenant": "acme", "rule": {"id": "r", "action": "deny"}, "position": 5}, "invalid position 5", OperatorError),
        ({"tenant": "acme", "rule": {"id": "r", "action": "deny"}, "at": 1}, "policy.add: unknown argument 'at'",
         OperatorError),
        ({"tenant": "acme", "rule": {"id": "r", "action": "allow", "user": "ghost"}},
         "user 'ghost' of tenant 'acme' does not exist", NotFound),
        ({"tenant": "nope", "rule": {"id": "r", "action": "deny"}}, "tenant 'nope' does not exist", NotFound),
    ],
)
def test_policy_add_refused(ctl: Ctl, args: dict, message: str, error: type[OperatorError]) -> None:
    exc = refused(ctl, "policy.add", args, error)
    assert str(exc) == message
    if error is OperatorError:
        assert exc.code == "invalid"
    if args["tenant"] == "acme":
        assert ctl.daemon.store.list_rules("acme") == []


def test_policy_add_duplicate_id_across_user_rules(ctl: Ctl) -> None:
    ctl("user.add", tenant="acme", name="alice", secret=SHA512)
    ctl("policy.add", tenant="acme", rule={"id": "r", "action": "allow", "user": "alice"})
    exc = refused(ctl, "policy.add", {"tenant": "acme", "rule": {"id": "r", "action": "deny"}}, AlreadyExists)
    assert str(exc) == "rule 'r' already exists in tenant acme"  # ids are unique across user rules too


def test_policy_rm_move_refused(ctl: Ctl) -> None:
    ctl("policy.add", tenant="acme", rule={"id": "r", "action": "deny"})
    assert str(refused(ctl, "policy.rm", {"tenant": "acme", "id": "zz"}, NotFound)) == "rule 'zz' does not exist in tenant 'acme'"
    assert str(refused(ctl, "policy.rm", {"tenant": "acme"})) == "missing rule name"
    assert str(refused(ctl, "policy.move", {"tenant": "acme", "id": "r"})) == "policy.move: missing position"
    assert str(refused(ctl, "policy.move", {"tenant": "acme", "id": "r", "position": 2})) == "invalid position 2"
    assert str(refused(ctl, "policy.move", {"tenant": "acme", "id": "r", "position": True})) == "invalid position True"
    refused(ctl, "policy.move", {"tenant": "acme", "id": "zz", "position": 1}, NotFound)


# -- explain ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "port", "path", "tunnel"),
    [
        ("http://www.example.com/a/b?q=1", "www.example.com", 80, "/a/b?q=1", False),
        ("HTTP://WWW.Example.com:8080", "www.example.com", 8080, "/", False),
        ("https://bank.example/login", "bank.example", 443, None, True),
        ("https://bank.example:8443/", "bank.example", 8443, None, True),
        ("bank.example:443", "bank.example", 443, None, True),
        ("[2001:db8::1]:443", "2001:db8::1", 443, None, True),
        ("http://[2001:db8::1]:81/x", "2001:db8::1", 81, "/x", False),
    ],
)
def test_parse_target(url: str, host: str, port: int, path: str | None, tunnel: bool) -> None:
    t = parse_target(url)
    assert (t.host, t.port, t.path, t.is_tunnel) == (host, port, path, tunnel)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (None, "missing URL"),
        ("  ", "missing URL"),
        (5, "missing URL"),
        ("ftp://example.com/", "unsupported URL scheme 'ftp'"),
        ("example.com", "invalid target 'example.com': a bare target is host:port"),
        ("example.com:443/path", "invalid target 'example.com:443/path': a bare target is host:port"),
        ("http://", "invalid URL 'http://': no host"),
        ("http://example.com:99999/", "invalid URL 'http://example.com:99999/': Port out of range 0-65535"),
        ("http://example.com:0/", "invalid URL 'http://example.com:0/': port 0"),
        ("http://exa mple.com/", "invalid URL: too long or containing spaces or control characters"),
        ("http://user:pw@example.com/",
         "invalid URL 'http://user:pw@example.com/': userinfo in the request URI is not accepted; the proxy answers 400"),
    ],
)
def test_parse_target_refused(url: object, message: str) -> None:
    with pytest.raises(OperatorError) as info:
        parse_target(url)
    assert str(info.value) == message
    assert info.value.hint == "give http://host[:port]/path, https://host[:port]/ or host:port (CONNECT)"


def add_rules(ctl: Ctl, *rules: dict) -> None:
    for rule in rules:
        ctl("policy.add", tenant="acme", rule=rule)


def test_explain_deny_with_trace(ctl: Ctl) -> None:
    add_rules(
        ctl,
        {"id": "admin", "action": "deny", "path_prefixes": ["/admin"], "comment": "no admin"},
        {"id": "casino", "action": "deny", "hosts": ["*.casino.example"]},
    )
    out = ctl("policy.explain", tenant="acme", url="http://www.casino.example/play", **{"from": "10.20.1.5"})
    assert out["tenant"] == "acme"
    assert out["request"] == {"host": "www.casino.example", "port": 80, "method": "GET", "path": "/play",
                              "tunnel": False, "protocol": None, "client": "10.20.1.5", "user": None}
    assert out["decision"] == {"action": "deny", "rule_id": "casino", "reason": "denied by rule 'casino'",
                               "reports": [], "redirect_to": None}
    assert [(t["rule_id"], t["matched"]) for t in out["trace"]] == [("admin", False), ("casino", True)]
    assert all(t["why"] for t in out["trace"])
    assert out["resolved"] == [] and out["addresses"] == []  # a deny needs no address
    assert out["policy_source"] == "live"  # acme is in the Snapshot the daemon serves
    assert ctl.daemon.refreshes == 2  # explain changes nothing


def test_explain_path_method_and_tunnel(ctl: Ctl) -> None:
    add_rules(ctl, {"id": "no-post", "action": "deny", "methods": ["POST"]},
              {"id": "admin", "action": "deny", "path_prefixes": ["/admin"]},
              {"id": "ok", "action": "allow"})
    ask = lambda **kw: ctl("policy.explain", tenant="acme", **kw)["decision"]["rule_id"]  # noqa: E731
    assert ask(url="http://203.0.113.9/admin/x") == "admin"
    assert ask(url="http://203.0.113.9/%61dmin") == "admin"  # normalized as the data plane does
    assert ask(url="http://203.0.113.9/public", method="post") == "no-post"
    assert ask(url="https://203.0.113.9/admin") == "ok"  # inside a tunnel the path is unseen
    out = ctl("policy.explain", tenant="acme", url="203.0.113.9:443")
    assert (out["request"]["method"], out["request"]["tunnel"], out["decision"]["rule_id"]) == ("CONNECT", True, "ok")
    exc = refused(ctl, "policy.explain", {"tenant": "acme", "url": "https://203.0.113.9/", "method": "GET"})
    assert str(exc) == "method GET cannot be explained for a tunnel"


def test_explain_a_tunnel_carrying_a_protocol(ctl: Ctl) -> None:
    add_rules(ctl, {"id": "no-ssh", "action": "deny", "protocols": ["ssh"]}, {"id": "ok", "action": "allow"})
    out = ctl("policy.explain", tenant="acme", url="203.0.113.9:443", protocol="ssh")
    assert (out["request"]["protocol"], out["decision"]["rule_id"]) == ("ssh", "no-ssh")
    assert ctl("policy.explain", tenant="acme", url="203.0.113.9:443")["decision"]["rule_id"] == "ok"
    exc = refused(ctl, "policy.explain", {"tenant": "acme", "url": "203.0.113.9:443", "protocol": "gopher"})
    assert str(exc) == "unknown protocol 'gopher'"


def test_explain_user_and_source(ctl: Ctl) -> None:
    ctl("user.add", tenant="acme", name="alice", secret=SHA512)
    add_rules(ctl, {"id": "alice-ok", "action": "allow", "user": "alice", "hosts": ["news.example"]},
              {"id": "lab", "action": "allow", "sources": ["10.20.9.0/24"], "hosts": ["news.example"]},
              {"id": "no-news", "action": "deny", "hosts": ["news.example"]})
    ask = lambda **kw: ctl("policy.explain", tenant="acme", url="http://news.example/", **kw)  # noqa: E731
    assert ask()["decision"]["rule_id"] == "no-news"
    assert ask(**{"from": "10.20.9.4"})["decision"]["rule_id"] == "lab"
    assert ask(client="10.20.9.4")["decision"]["rule_id"] == "lab"
    out = ask(user="alice")
    assert out["decision"]["rule_id"] == "alice-ok" and out["request"]["user"] == "alice"
    refused(ctl, "policy.explain", {"tenant": "acme", "url": "http://news.example/", "user": "ghost"}, NotFound)
    exc = refused(ctl, "policy.explain", {"tenant": "acme", "url": "http://x.example/", "from": "10.20.9"})
    assert str(exc) == "invalid client address '10.20.9'"


def test_explain_literal_special_address(ctl: Ctl) -> None:
    out = ctl("policy.explain", tenant="acme", url="http://169.254.169.254/latest/meta-data/", **{"from": "10.20.1.5"})
    assert out["decision"]["action"] == "deny"
    assert out["decision"]["rule_id"] == "builtin:special-destination"
    assert out["resolved"] == []  # a literal address is not resolved


def test_explain_resolves_names_and_decides_per_address(ctl: Ctl) -> None:
    """DNS rebinding: a name that resolves to a forbidden address is denied (localhost here,
    resolved by the system from /etc/hosts)."""
    out = ctl("policy.explain", tenant="acme", url="http://localhost:8080/", **{"from": "10.20.1.5"})
    assert "127.0.0.1" in out["resolved"]
    assert out["resolve_error"] is None
    assert [a["address"] for a in out["addresses"]] == out["resolved"]
    assert all(a["decision"]["action"] == "deny" for a in out["addresses"])
    assert out["decision"]["rule_id"] == "builtin:special-destination"
    assert "loopback" in out["decision"]["reason"]
    # a local client may reach loopback (the guard's rule for operators on the box)
    local = ctl("policy.explain", tenant="acme", url="http://localhost:8080/")
    assert local["decision"]["action"] == "allow"
    # and a rule allowing the address by dest_cidrs opens it
    add_rules(ctl, {"id": "open-lo", "action": "allow", "dest_cidrs": ["127.0.0.0/8", "::1/128"]})
    opened = ctl("policy.explain", tenant="acme", url="http://localhost:8080/", **{"from": "10.20.1.5"})
    assert opened["decision"]["action"] == "allow" and opened["decision"]["rule_id"] == "open-lo"


def test_explain_resolution_failure_is_reported(ctl: Ctl, monkeypatch: pytest.MonkeyPatch) -> None:
    out = ctl("policy.explain", tenant="acme", url="http://no-such-host.invalid/")
    assert out["resolved"] == [] and out["addresses"] == []
    assert out["resolve_error"].startswith(("cannot resolve no-such-host.invalid", "resolving no-such-host.invalid"))
    assert out["decision"]["action"] == "allow"  # the name-level answer; the data plane fails to resolve it


def test_explain_uses_the_live_policy(ctl: Ctl, daemon: TenancyDaemon) -> None:
    """The Snapshot serving now wins over the store (they differ only while a change is applied)."""
    add_rules(ctl, {"id": "live", "action": "deny", "hosts": ["x.example"]})
    daemon.store.add_rule("acme", {"id": "stored", "action": "deny", "hosts": ["x.example"]}, position=1)
    out = ctl("policy.explain", tenant="acme", url="http://x.example/")
    assert (out["decision"]["rule_id"], out["policy_source"]) == ("live", "live")
    asyncio.run(daemon.refresh_tenants())
    assert ctl("policy.explain", tenant="acme", url="http://x.example/")["decision"]["rule_id"] == "stored"
    # a live tenant without a policy (no rule, default allow): the guard still applies
    daemon.seed(lambda st: st.add_tenant("beta"))
    out = ctl("policy.explain", tenant="beta", url="http://10.0.0.1/")
    assert (out["decision"]["action"], out["decision"]["rule_id"], out["policy_source"]) == ("allow", None, "live")
    out = ctl("policy.explain", tenant="beta", url="http://127.0.0.1/", **{"from": "10.20.1.1"})
    assert out["decision"]["rule_id"] == "builtin:special-destination"
    # a tenant the Snapshot does not serve yet: the store's policy
    daemon.store.add_tenant("gamma")
    assert ctl("policy.explain", tenant="gamma", url="http://10.0.0.1/")["policy_source"] == "store"


PROFILE = """
servers:
  - {name: http, type: http_proxy, listen: "127.0.0.1:0", escaper: pool}
escapers:
  - {name: pool, type: route_failover, primary: open, standby: closed}
  - {name: open, type: direct_fixed, resolver: system, allow_special: [169.254.0.0/16]}
  - {name: closed, type: direct_fixed, resolver: system}
resolvers:
  - {name: system, type: system}
"""


def test_explain_uses_the_first_servers_escaper_guard(tmp_path: Path) -> None:
    """Through a route escaper, the first member that resolves and guards: its allow_special opens
    the metadata range, as it would for a client of that server."""
    profile = tmp_path / "p.yaml"
    profile.write_text(PROFILE)
    with Store.open(tmp_path / "p.db") as store:
        store.add_tenant("acme")
        d = TenancyDaemon(store, str(profile))
        out = Ctl(d)("policy.explain", tenant="acme", url="http://169.254.169.254/", **{"from": "10.20.1.1"})
        asyncio.run(d.close())
    assert out["decision"]["action"] == "allow" and out["escaper"] == "open"


def test_explain_default_deny_of_the_tenant(ctl: Ctl) -> None:
    ctl("tenant.set", name="acme", default_action="deny")
    out = ctl("policy.explain", tenant="acme", url="http://203.0.113.1/")
    assert out["decision"]["action"] == "deny" and out["decision"]["rule_id"] is None
    assert out["trace"][-1]["rule_id"] == "builtin:default"


# -- arguments of every kind never crash a handler --------------------------------------------


def test_rule_round_trip() -> None:
    rule = Rule("r", "deny", hosts=("a.example",), ports=("443",), comment="c")
    assert rule_from_dict(rule_to_dict(rule)) == rule


def test_no_argument_shape_escapes_as_anything_but_an_operator_error(ctl: Ctl, daemon: TenancyDaemon) -> None:
    daemon.store.add_user("acme", "alice", SHA512)
    daemon.store.add_rule("acme", {"id": "r", "action": "deny"})
    keys = ["tenant", "name", "secret", "expires_at", "rule", "rules", "position", "id", "url", "user", "from", "method",
            "users", "replace", "auth", "rps", "max_conns", "auth_exempt"]
    values: list[Any] = [None, 0, 1, -1, 2.5, True, "", "acme", "alice", "r", "x" * 300, [], ["x"], {}, {"id": 1},
                         [{"name": 1}], [{"id": "a", "action": "deny"}, 7], "http://203.0.113.1/", SHA512, PLAIN]
    rng = random.Random(4)

    async def run_all() -> int:
        handlers = tenancy_handlers(daemon)
        ran = 0
        for cmd, _ in itertools.product(sorted(handlers), range(25)):
            args = {k: rng.choice(values) for k in rng.sample(keys, rng.randint(0, 5))}
            try:
                result = await handlers[cmd](args)
            except OperatorError as exc:
                assert PLAIN not in str(exc) and PLAIN not in (exc.hint or "")
            else:
                assert PLAIN not in repr(result)
            ran += 1
        for cmd in handlers:  # args that are not an object at all
            with pytest.raises(OperatorError):
                await handlers[cmd](["not", "a", "dict"])  # type: ignore[arg-type]
        return ran

    assert asyncio.run(run_all()) == 22 * 25


def test_the_daemon_registers_each_tenancy_command_once_from_here(tmp_path: Path) -> None:
    """One definition: every tenant, user and policy command the daemon answers is this module's
    handler (tenant.show used to be registered twice, one of them dead)."""
    from arcus.runtime.daemon import Daemon

    handlers = Daemon(None, tmp_path, tmp_path / "s.sock")._handlers()
    ours = set(tenancy_handlers(SimpleNamespace()))
    for cmd, handler in handlers.items():
        if cmd.split(".")[0] in ("tenant", "user", "policy"):
            assert cmd in ours and handler.__qualname__.startswith("tenancy_handlers."), cmd
    assert ours <= set(handlers)
    assert not [name for name in vars(Daemon) if name.startswith("_cmd_tenant")]
