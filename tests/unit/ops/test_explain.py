"""arcus.ops.explain with the data plane's own pieces: a Snapshot of a profile built by
build_snapshot, its escaper's resolver (the system one: `localhost` comes from /etc/hosts) and
egress guard."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from arcus.errors import NotFound, OperatorError
from arcus.ops import explain as ops
from arcus.ops.explain import Egress, parse_client, parse_method, parse_target
from arcus.policy import Rule, compile_policy
from arcus.runtime.tenancy import close_resolvers, egress_of, offline_snapshot
from arcus.serve.context import Snapshot
from arcus.store import Store

PROFILE = """
servers:
  - {name: http, type: http_proxy, listen: "127.0.0.1:0", escaper: direct}
escapers:
  - {name: direct, type: direct_fixed, resolver: system, resolve_strategy: ipv6_only}
resolvers:
  - {name: system, type: system}
"""


@pytest.fixture
def snapshot() -> Iterator[Snapshot]:
    snap = offline_snapshot(None)
    yield snap
    asyncio.run(close_resolvers(snap))


def explain(store: Store, snap: Snapshot, url: str, **kw: Any) -> dict[str, Any]:
    return asyncio.run(ops.explain(store, "acme", parse_target(url), egress=egress_of(snap), **kw))


def test_a_name_is_resolved_by_the_escapers_resolver_and_each_address_guarded(store: Store, snapshot: Snapshot) -> None:
    out = explain(store, snapshot, "http://localhost:8080/", client="10.20.1.5")
    assert out["escaper"] == "direct" and "127.0.0.1" in out["resolved"] and out["resolve_error"] is None
    assert out["decision"]["rule_id"] == "builtin:special-destination"
    assert explain(store, snapshot, "http://localhost:8080/")["decision"]["action"] == "allow"  # a local client


def test_the_escapers_resolve_strategy_orders_and_filters(store: Store, tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(PROFILE)
    snap = offline_snapshot(str(profile))
    try:
        out = explain(store, snap, "http://localhost/", client="10.20.1.5")
    finally:
        asyncio.run(close_resolvers(snap))
    assert all(":" in a for a in out["resolved"])  # ipv6_only: no 127.0.0.1


def test_an_escaper_that_does_not_resolve_says_so(store: Store) -> None:
    store.add_rule("acme", {"id": "no-lan", "action": "deny", "dest_cidrs": ["192.168.0.0/16"]})
    out = asyncio.run(ops.explain(store, "acme", parse_target("http://localhost/"), egress=Egress("up", None, None)))
    assert out["resolved"] == [] and out["resolve_error"] == "escaper up does not resolve names (its upstream does)"


def test_served_policy_wins_over_the_store(store: Store, snapshot: Snapshot) -> None:
    store.add_rule("acme", {"id": "stored", "action": "deny", "hosts": ["x.example"]})
    served = {"acme": compile_policy([Rule("live", "deny", hosts=("x.example",))], guard=None)}
    out = explain(store, snapshot, "http://x.example/", served=served)
    assert (out["decision"]["rule_id"], out["policy_source"]) == ("live", "live")
    out = explain(store, snapshot, "http://x.example/")
    assert (out["decision"]["rule_id"], out["policy_source"]) == ("stored", "store")


def test_unknown_tenant_and_user(store: Store, snapshot: Snapshot) -> None:
    with pytest.raises(NotFound):
        explain(store, snapshot, "http://x.example/", user="bob")
    with pytest.raises(NotFound):
        asyncio.run(ops.explain(store, "ghost", parse_target("http://x/"), egress=egress_of(snapshot)))


def test_argument_parsers() -> None:
    assert parse_target("example.com:22") == ops.Target("example.com", 22, None, True)
    assert parse_target("http://example.com/a?b") == ops.Target("example.com", 80, "/a?b", False)
    assert parse_client(None) == "127.0.0.1" and parse_client(" ::1 ") == "::1"
    assert parse_method(None, parse_target("https://x/")) == "CONNECT"
    for bad in (lambda: parse_target("ftp://x/"), lambda: parse_client("nowhere"),
                lambda: parse_method("POST", parse_target("https://x/"))):
        with pytest.raises(OperatorError):
            bad()


def test_what_the_admission_refuses_before_the_policy_is_the_decision(store: Store, snapshot: Snapshot) -> None:
    """A suspended tenant, a blocked or expired user, another tenant's user from a locked range:
    the proxy refuses them before its policy (403), so explain must not say allow; the policy's
    own verdict is still shown beside it."""
    from arcus.auth.secrets import hash_secret

    store.add_user("acme", "alice", hash_secret("pw-alice-1"))
    store.add_tenant("globex", "Globex", ["10.99.0.0/16"])
    out = explain(store, snapshot, "http://x.example/", user="alice", client="10.20.1.5")
    assert out["decision"]["action"] == "allow" and out["refused"] is None
    store.set_tenant("globex", lock_sources=True)
    out = explain(store, snapshot, "http://x.example/", user="alice", client="10.99.0.7")
    assert (out["decision"]["action"], out["decision"]["refused"]) == ("deny", "tenant_locked")
    assert out["policy_decision"]["action"] == "allow"
    assert explain(store, snapshot, "http://x.example/", user="alice", client="10.20.1.5")["refused"] is None
    store.set_user("acme", "alice", expires_at="2020-01-01")
    assert explain(store, snapshot, "http://x.example/", user="alice")["refused"]["code"] == "user_expired"
    store.set_user("acme", "alice", blocked=True)
    assert explain(store, snapshot, "http://x.example/", user="alice")["refused"]["code"] == "user_blocked"
    store.set_suspended("acme", True)
    out = explain(store, snapshot, "http://x.example/")
    assert out["decision"] == {"action": "deny", "rule_id": None, "reason": "tenant acme is suspended", "reports": [],
                               "redirect_to": None, "refused": "tenant_suspended"}


@pytest.mark.parametrize(
    ("url", "host", "port", "path", "tunnel"),
    [
        # the host as the proxy reads it: lowercased, IPv6 in its one compressed spelling
        ("http://[0:0:0:0:0:0:0:1]:8080/a", "::1", 8080, "/a", False),
        ("HTTP://WWW.Example.COM/", "www.example.com", 80, "/", False),
        ("[::FFFF:7f00:1]:443", "::ffff:127.0.0.1", 443, None, True),
        ("http://x.example/a?b#frag", "x.example", 80, "/a?b", False),  # a client never sends the fragment
        ("http://x.example:8080#@y.example/", "x.example", 8080, "/", False),
        ("http://x.example/%61dmin/", "x.example", 80, "/%61dmin/", False),  # the path as sent
    ],
)
def test_a_url_is_read_as_the_proxy_reads_the_request(url: str, host: str, port: int, path: str | None, tunnel: bool) -> None:
    assert parse_target(url) == ops.Target(host, port, path, tunnel)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.1/",  # numeric spellings other than the dotted quad: 400 at the proxy
        "http://0x7f.0.0.1/",
        "http://2130706433/",
        "http://www.exa%6dple.com/",  # percent-encoding in a host
        "http://evil@good.example/",  # userinfo
        "http://good.example\\@evil.example/",  # a backslash
        "http://bücher.example/",  # a host in Unicode: clients send the A-label (xn--)
        "bücher.example:443",
        "127.1:443",
    ],
)
def test_a_url_the_proxy_refuses_is_refused(url: str) -> None:
    """explain must not decide a request the proxy answers with 400: it would say allow or deny
    for something that never reaches the policy (and a rule on the spelling would look tested)."""
    with pytest.raises(OperatorError):
        parse_target(url)


def test_a_path_in_unicode_is_sent_percent_encoded() -> None:
    assert parse_target("http://x.example/café") == ops.Target("x.example", 80, "/caf%C3%A9", False)
