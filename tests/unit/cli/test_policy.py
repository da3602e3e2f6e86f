"""`arcus policy`: add, list, rm, move, explain, with no daemon (the arcus.ops functions run in the
CLI over the store) and through a real control server running the daemon's handlers over its own
store and Snapshot. Explained requests use literal addresses, or names whose decision needs no address, so
that no test depends on DNS (except `localhost`, from /etc/hosts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from arcus.policy import Rule
from arcus.store import Store
from arcus.testing.control import TenancyDaemon
from tests.unit.cli.harness import SHA256_CRYPT, errors, js, run

RULE_KEYS = {"id", "action", "hosts", "dest_cidrs", "ports", "sources", "methods", "path_prefixes", "times",
             "timezone", "redirect_to", "comment", "user", "protocols"}
assert RULE_KEYS == set(Rule.__dataclass_fields__)
EXPLAIN_KEYS = {"tenant", "request", "decision", "trace", "resolved", "addresses", "resolve_error", "policy_source",
                "escaper", "policy_decision", "refused"}
ACTION_HINT = "hint: give exactly one of --allow, --deny, --report, --redirect URL (or --deny-host / --allow-host PATTERN)"


def policy(sock: Path, data_dir: Path, *args: str) -> Result:
    return run(sock, data_dir, "policy", *args)


def stored_rules(data_dir: Path, tenant: str = "acme") -> list[dict[str, Any]]:
    with Store.open(data_dir / "arcus.db") as store:
        return store.list_rules(tenant)


@pytest.fixture
def acme(sock: Path, data_dir: Path) -> None:
    assert run(sock, data_dir, "tenant", "add", "acme", "--source", "10.20.0.0/16").exit_code == 0


# -- add ----------------------------------------------------------------------------------------


def test_add_the_design_example(sock: Path, data_dir: Path, acme: None) -> None:
    result = policy(sock, data_dir, "add", "acme", "block-gambling", "--deny-host", "*.casino.example")
    assert result.exit_code == 0, result.output
    assert result.stdout == "added rule block-gambling to tenant acme at position 1: deny host *.casino.example\n"
    assert result.stderr == (
        f"note: no daemon running at {sock}; changed the store at {data_dir / 'arcus.db'} directly\n"
    )
    [rule] = stored_rules(data_dir)
    assert (rule["id"], rule["action"], rule["hosts"]) == ("block-gambling", "deny", ["*.casino.example"])


def test_add_every_condition_json_shape(sock: Path, data_dir: Path, acme: None) -> None:
    out = js(policy(
        sock, data_dir, "add", "acme", "office", "--allow", "--host", ".example.com", "--host", "~cdn[0-9]+\\.x",
        "--dest", "192.0.2.0/24", "--port", "443", "--port", "8000-8999", "--source", "10.20.0.0/16",
        "--method", "get", "--path", "/docs/", "--time", "mon-fri 08:00-18:00", "--tz", "Europe/Paris",
        "--comment", "office hours", "--json",
    ))
    assert set(out) == {"rule", "position"} and out["position"] == 1
    assert set(out["rule"]) == RULE_KEYS
    assert out["rule"] == {
        "id": "office", "action": "allow", "hosts": [".example.com", "~cdn[0-9]+\\.x"], "dest_cidrs": ["192.0.2.0/24"],
        "ports": ["443", "8000-8999"], "sources": ["10.20.0.0/16"], "methods": ["get"], "path_prefixes": ["/docs/"],
        "times": ["mon-fri 08:00-18:00"], "timezone": "Europe/Paris", "redirect_to": None, "comment": "office hours",
        "user": None, "protocols": [],
    }
    assert stored_rules(data_dir) == [out["rule"]]


def test_add_redirect_report_and_position(sock: Path, data_dir: Path, acme: None) -> None:
    policy(sock, data_dir, "add", "acme", "a", "--deny")
    policy(sock, data_dir, "add", "acme", "b", "--report", "--host", ".video.example")
    result = policy(sock, data_dir, "add", "acme", "moved", "--redirect", "https://wiki.corp.example/",
                    "--host", "wiki.old.example", "--position", "1")
    assert result.stdout == (
        "added rule moved to tenant acme at position 1: redirect to https://wiki.corp.example/ host wiki.old.example\n"
    )
    assert [r["id"] for r in stored_rules(data_dir)] == ["moved", "a", "b"]
    assert js(policy(sock, data_dir, "add", "acme", "c", "--allow", "--position", "3", "--json"))["position"] == 3
    assert [r["id"] for r in stored_rules(data_dir)] == ["moved", "a", "c", "b"]


def test_add_a_users_rule(sock: Path, data_dir: Path, acme: None) -> None:
    result = policy(sock, data_dir, "add", "acme", "alice-video", "--allow-host", ".video.example", "--user", "alice")
    assert errors(result) == [
        "error: user 'alice' of tenant 'acme' does not exist",
        "hint: add the user first (`arcus user add acme alice`), then the rule",
    ]
    with Store.open(data_dir / "arcus.db") as store:
        store.add_user("acme", "alice", SHA256_CRYPT)
    out = js(policy(sock, data_dir, "add", "acme", "alice-video", "--allow-host", ".video.example", "--user",
                    "alice", "--json"))
    assert out["rule"]["user"] == "alice" and out["rule"]["action"] == "allow"


@pytest.mark.parametrize(
    ("args", "first"),
    [
        ((), "error: no action given"),
        (("--host", "x.example"), "error: no action given"),
        (("--allow", "--deny"), "error: more than one action given (allow, deny)"),
        (("--deny-host", "a.example", "--allow-host", "b.example"), "error: more than one action given (allow, deny)"),
        (("--report", "--redirect", "https://x.example/"), "error: more than one action given (redirect, report)"),
    ],
)
def test_exactly_one_action(sock: Path, data_dir: Path, args: tuple[str, ...], first: str) -> None:
    assert errors(policy(sock, data_dir, "add", "acme", "r1", *args)) == [first, ACTION_HINT]
    assert not data_dir.exists()


def test_an_action_and_its_shorthand_agree(sock: Path, data_dir: Path, acme: None) -> None:
    out = js(policy(sock, data_dir, "add", "acme", "r1", "--deny", "--deny-host", "a.example", "--host", "b.example",
                    "--json"))
    assert (out["rule"]["action"], out["rule"]["hosts"]) == ("deny", ["a.example", "b.example"])


@pytest.mark.parametrize(
    ("args", "lines"),
    [
        (("--deny", "--port", "9000-8000"),
         ["error: rule 'r1': ports: bad port range '9000-8000': start above end",
          "hint: write a port 1-65535 or a range like 8000-8999"]),
        (("--deny-host", "example.com:443"),
         ["error: rule 'r1': hosts: host pattern 'example.com:443' has a port or is not a host name",
          "hint: put ports in 'ports' and write the host alone, e.g. 'example.com'"]),
        (("--deny", "--time", "mon-fri 8-18"),
         ["error: rule 'r1': times: bad hours '8-18' in window 'mon-fri 8-18'",
          "hint: write hours as HH:MM-HH:MM, e.g. 08:00-18:00 or 22:00-06:00"]),
        (("--deny", "--tz", "Europe/Pariss"), ["error: rule 'r1': timezone: unknown time zone 'Europe/Pariss'"]),
        (("--deny", "--dest", "10.0.0.0/33"), ["error: rule 'r1': dest_cidrs: bad range '10.0.0.0/33'"]),
        (("--deny", "--user", "bad user"), ["error: rule 'r1': user: invalid user name 'bad user'"]),
        (("--deny", "--position", "0"), ["error: invalid position 0", "hint: positions start at 1 (the first rule)"]),
    ],
)
def test_a_bad_rule_is_refused_before_the_store(sock: Path, data_dir: Path, args: tuple[str, ...],
                                                lines: list[str]) -> None:
    got = errors(policy(sock, data_dir, "add", "acme", "r1", *args))
    assert len(got) in (1, 2)
    assert got[0].startswith(lines[0])
    if len(lines) == 2:
        assert got[1] == lines[1]
    assert not data_dir.exists()


def test_bad_rule_id_and_tenant(sock: Path, data_dir: Path) -> None:
    assert errors(policy(sock, data_dir, "add", "acme", "bad id", "--deny"))[0] == "error: invalid rule name 'bad id'"
    assert errors(policy(sock, data_dir, "add", "bad tenant", "r1", "--deny"))[0] == (
        "error: invalid tenant name 'bad tenant'"
    )
    assert not data_dir.exists()
    run(sock, data_dir, "tenant", "add", "acme")
    assert errors(policy(sock, data_dir, "add", "ghost", "r1", "--deny")) == [
        "error: tenant 'ghost' does not exist", "hint: see `arcus tenant list`"]


def test_a_rule_id_is_unique_in_the_tenant(sock: Path, data_dir: Path, acme: None) -> None:
    policy(sock, data_dir, "add", "acme", "r1", "--deny")
    got = errors(policy(sock, data_dir, "add", "acme", "r1", "--allow"))
    assert got[0].startswith("error: rule 'r1' ")
    assert [r["action"] for r in stored_rules(data_dir)] == ["deny"]


# -- list, rm, move -----------------------------------------------------------------------------


def add_three(sock: Path, data_dir: Path) -> None:
    policy(sock, data_dir, "add", "acme", "block-gambling", "--deny-host", "*.casino.example", "--comment",
           "no gambling [at work]")
    policy(sock, data_dir, "add", "acme", "try-video", "--report", "--host", ".video.example", "--method", "GET")
    policy(sock, data_dir, "add", "acme", "office", "--allow", "--source", "10.20.0.0/16", "--time",
           "mon-fri 08:00-18:00", "--tz", "Europe/Paris")


def table_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip()[1:-1].split("│")] for line in text.splitlines() if line.startswith("│")]


def test_list(sock: Path, data_dir: Path, acme: None) -> None:
    result = policy(sock, data_dir, "list", "acme")
    assert result.stdout == "tenant acme has no rules: every request gets its default action\n"
    add_three(sock, data_dir)
    result = policy(sock, data_dir, "list", "acme")
    assert result.exit_code == 0
    assert result.stderr == f"note: no daemon running at {sock}; read the store at {data_dir / 'arcus.db'} directly\n"
    assert table_rows(result.stdout) == [
        ["1", "block-gambling", "deny", "host *.casino.example", "-", "no gambling [at work]"],
        ["2", "try-video", "report", "host .video.example; method GET", "-", ""],
        ["3", "office", "allow", "from 10.20.0.0/16; time mon-fri 08:00-18:00 Europe/Paris", "-", ""],
    ]
    out = js(policy(sock, data_dir, "list", "acme", "--json"))
    assert [(r["position"], r["id"]) for r in out] == [(1, "block-gambling"), (2, "try-video"), (3, "office")]
    assert all(set(r) == RULE_KEYS | {"position"} for r in out)


def test_rm(sock: Path, data_dir: Path, acme: None) -> None:
    add_three(sock, data_dir)
    result = policy(sock, data_dir, "rm", "acme", "try-video")
    assert result.stdout == "removed rule try-video from tenant acme\n"
    assert js(policy(sock, data_dir, "rm", "acme", "office", "--json")) == {"removed": "office"}
    assert [r["id"] for r in stored_rules(data_dir)] == ["block-gambling"]
    assert errors(policy(sock, data_dir, "rm", "acme", "office")) == [
        "error: rule 'office' does not exist in tenant 'acme'", "hint: see `arcus policy list acme`"]


def test_move(sock: Path, data_dir: Path, acme: None) -> None:
    add_three(sock, data_dir)
    result = policy(sock, data_dir, "move", "acme", "office", "1")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "moved rule office of tenant acme to position 1"
    assert [row[1] for row in table_rows(result.stdout)] == ["office", "block-gambling", "try-video"]
    out = js(policy(sock, data_dir, "move", "acme", "block-gambling", "3", "--json"))
    assert [(r["position"], r["id"]) for r in out] == [(1, "office"), (2, "try-video"), (3, "block-gambling")]
    assert [r["id"] for r in stored_rules(data_dir)] == ["office", "try-video", "block-gambling"]
    got = errors(policy(sock, data_dir, "move", "acme", "office", "4"))
    assert got == ["error: invalid position 4", "hint: give a position from 1 to 3 (the policy's length)"]
    assert errors(policy(sock, data_dir, "move", "acme", "office", "0")) == [
        "error: invalid position 0", "hint: positions start at 1 (the first rule)"]
    assert errors(policy(sock, data_dir, "move", "acme", "ghost", "1"))[0] == (
        "error: rule 'ghost' does not exist in tenant 'acme'"
    )


# -- explain ------------------------------------------------------------------------------------


def test_explain_a_deny_with_its_trace(sock: Path, data_dir: Path, acme: None) -> None:
    add_three(sock, data_dir)
    result = policy(sock, data_dir, "explain", "acme", "http://www.casino.example/poker?x=1", "--from", "10.20.1.7")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "request   GET www.casino.example:80/poker?x=1 from 10.20.1.7, tenant acme"
    assert lines[1] == "policy    as stored"
    assert lines[2] == "escaper   direct (its resolver and egress guard)"  # the default profile's
    assert lines[3] == "resolved  -"  # a deny by name needs no address
    assert table_rows(result.stdout) == [["block-gambling", "yes", "host www.casino.example matches *.casino.example"]]
    assert lines[-2:] == [
        "decision  deny by rule 'block-gambling'",
        "reason    denied by rule 'block-gambling': no gambling [at work]",
    ]


def test_explain_json_shape(sock: Path, data_dir: Path, acme: None) -> None:
    add_three(sock, data_dir)
    out = js(policy(sock, data_dir, "explain", "acme", "http://www.video.example/watch", "--from", "10.99.0.1",
                    "--json"))
    assert set(out) == EXPLAIN_KEYS
    assert out["tenant"] == "acme"
    assert out["request"] == {"host": "www.video.example", "port": 80, "method": "GET", "path": "/watch",
                              "tunnel": False, "protocol": None, "client": "10.99.0.1", "user": None}
    assert out["decision"]["action"] == "allow" and out["decision"]["rule_id"] is None
    assert out["decision"]["reports"] == ["try-video"]
    assert [(t["rule_id"], t["matched"]) for t in out["trace"]] == [
        ("block-gambling", False), ("try-video", True), ("office", False), ("builtin:default", True),
        ("builtin:special-destination", False),
    ]
    assert all(set(t) == {"rule_id", "matched", "why"} for t in out["trace"])


def test_explain_of_a_suspended_tenant_says_deny_before_the_policy(sock: Path, data_dir: Path, acme: None) -> None:
    r = run(sock, data_dir, "tenant", "suspend", "acme")
    assert r.exit_code == 0, r.output
    text = policy(sock, data_dir, "explain", "acme", "http://www.example/").stdout
    assert "policy    would decide allow by the tenant's default" in text
    assert "decision  deny before the policy (tenant_suspended)" in text and "tenant acme is suspended" in text


def test_explain_the_special_destination_default(sock: Path, data_dir: Path, acme: None) -> None:
    result = policy(sock, data_dir, "explain", "acme", "http://169.254.169.254/latest/meta-data/")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "request   GET 169.254.169.254:80/latest/meta-data/ from 127.0.0.1, tenant acme"
    assert lines[-2] == "decision  deny by builtin:special-destination"
    assert "169.254.169.254 is in the special-purpose range 169.254.0.0/16" in lines[-1]


def test_explain_resolves_a_name_when_the_address_matters(sock: Path, data_dir: Path, acme: None) -> None:
    out = js(policy(sock, data_dir, "explain", "acme", "localhost:8080", "--from", "10.20.1.7", "--json"))
    assert "127.0.0.1" in out["resolved"]
    assert out["request"]["tunnel"] is True and out["request"]["method"] == "CONNECT"
    assert out["decision"]["action"] == "deny" and out["decision"]["rule_id"] == "builtin:special-destination"
    assert [a["address"] for a in out["addresses"]] == out["resolved"]


def test_explain_as_a_user_reads_its_rules_first(sock: Path, data_dir: Path, acme: None) -> None:
    with Store.open(data_dir / "arcus.db") as store:
        store.add_user("acme", "alice", SHA256_CRYPT)
    policy(sock, data_dir, "add", "acme", "no-203", "--deny", "--dest", "203.0.113.0/24")
    policy(sock, data_dir, "add", "acme", "alice-203", "--allow", "--dest", "203.0.113.7", "--user", "alice")
    tenant_view = js(policy(sock, data_dir, "explain", "acme", "https://203.0.113.7/", "--json"))
    assert tenant_view["decision"]["rule_id"] == "no-203"
    alice_view = js(policy(sock, data_dir, "explain", "acme", "https://203.0.113.7/", "--user", "alice", "--json"))
    assert alice_view["decision"]["rule_id"] == "alice-203"
    assert alice_view["request"]["user"] == "alice"
    result = policy(sock, data_dir, "explain", "acme", "https://203.0.113.7/", "--user", "alice")
    assert result.stdout.splitlines()[0] == (
        "request   CONNECT 203.0.113.7:443 (tunnel) from 127.0.0.1, user alice, tenant acme"
    )
    assert errors(policy(sock, data_dir, "explain", "acme", "https://203.0.113.7/", "--user", "bob"))[0] == (
        "error: user 'bob' of tenant 'acme' does not exist"
    )


@pytest.mark.parametrize(
    ("args", "first"),
    [
        (("localhost",), "error: invalid target 'localhost': a bare target is host:port"),
        (("ftp://example.com/",), "error: unsupported URL scheme 'ftp'"),
        (("http://",), "error: invalid URL 'http://': no host"),
        (("http://example.com/", "--from", "nowhere"), "error: invalid client address 'nowhere'"),
        (("http://example.com/", "--user", "a b"), "error: invalid user name 'a b'"),
    ],
)
def test_explain_refuses_bad_input_before_anything(sock: Path, data_dir: Path, args: tuple[str, ...],
                                                   first: str) -> None:
    got = errors(policy(sock, data_dir, "explain", "acme", *args))
    assert got[0] == first and len(got) == 2 and got[1].startswith("hint: ")


def test_explain_a_method_inside_a_tunnel_is_refused(sock: Path, data_dir: Path, acme: None) -> None:
    got = errors(policy(sock, data_dir, "explain", "acme", "https://example.com/", "--method", "POST"))
    assert got[0] == "error: method POST cannot be explained for a tunnel"


# -- through the daemon ---------------------------------------------------------------------------


@pytest.fixture
def daemon(daemon: TenancyDaemon) -> Iterator[TenancyDaemon]:
    daemon.seed(lambda st: st.add_tenant("acme", None, ["10.20.0.0/16"]))
    yield daemon


def test_daemon_path_every_command(daemon: TenancyDaemon, sock: Path, data_dir: Path) -> None:
    added = js(policy(sock, data_dir, "add", "acme", "block-gambling", "--deny-host", "*.casino.example", "--json"))
    assert set(added["rule"]) == RULE_KEYS and added["position"] == 1
    assert daemon.calls[-1] == ("policy.add", {"tenant": "acme", "rule": added["rule"]})
    result = policy(sock, data_dir, "add", "acme", "office", "--allow", "--source", "10.20.0.0/16", "--position", "1")
    assert result.exit_code == 0 and result.stderr == ""
    assert daemon.calls[-1][1]["position"] == 1
    assert [r["id"] for r in js(policy(sock, data_dir, "list", "acme", "--json"))] == ["office", "block-gambling"]
    explained = js(policy(sock, data_dir, "explain", "acme", "http://www.casino.example/", "--json"))
    assert explained["decision"]["rule_id"] == "block-gambling" and explained["policy_source"] == "live"
    assert daemon.calls[-1] == ("policy.explain", {"tenant": "acme", "url": "http://www.casino.example/",
                                                   "from": "127.0.0.1"})
    moved = js(policy(sock, data_dir, "move", "acme", "office", "2", "--json"))
    assert [r["id"] for r in moved] == ["block-gambling", "office"]
    assert js(policy(sock, data_dir, "rm", "acme", "office", "--json")) == {"removed": "office"}
    assert [r["id"] for r in daemon.store.list_rules("acme")] == ["block-gambling"]
    assert [c for c, _ in daemon.calls] == ["policy.add", "policy.add", "policy.list", "policy.explain",
                                            "policy.move", "policy.rm"]
    assert daemon.refreshes == 4
    assert not data_dir.exists()


def test_daemon_path_same_shapes_as_store_path(daemon: TenancyDaemon, sock: Path, data_dir: Path, tmp_path: Path) -> None:
    nowhere = tmp_path / "n.sock"
    run(nowhere, data_dir, "tenant", "add", "acme", "--source", "10.20.0.0/16")
    for s in (sock, nowhere):
        policy(s, data_dir, "add", "acme", "block-gambling", "--deny-host", "*.casino.example")
    assert js(policy(sock, data_dir, "list", "acme", "--json")) == js(policy(nowhere, data_dir, "list", "acme", "--json"))
    args = ("explain", "acme", "http://www.casino.example/x", "--from", "10.20.1.7", "--json")
    live, stored = js(policy(sock, data_dir, *args)), js(policy(nowhere, data_dir, *args))
    assert (live.pop("policy_source"), stored.pop("policy_source")) == ("live", "store")
    assert live == stored


def test_daemon_path_refuses_a_bad_rule_without_asking(daemon: TenancyDaemon, sock: Path, data_dir: Path) -> None:
    assert errors(policy(sock, data_dir, "add", "acme", "r1", "--deny", "--port", "70000"))[0].startswith(
        "error: rule 'r1': ports:")
    assert errors(policy(sock, data_dir, "explain", "acme", "gopher://x/"))[0] == "error: unsupported URL scheme 'gopher'"
    assert daemon.calls == []


def test_explain_a_tunnel_with_the_protocol_its_first_bytes_would_show(sock: Path, data_dir: Path, acme: None) -> None:
    result = policy(sock, data_dir, "add", "acme", "no-ssh", "--deny", "--protocol", "ssh", "--port", "443")
    assert result.exit_code == 0, result.output
    assert "deny port 443; protocol ssh" in result.stdout
    before = js(policy(sock, data_dir, "explain", "acme", "93.184.216.34:443", "--json"))
    assert before["decision"]["action"] == "allow"  # at admission the protocol is not known yet
    assert before["trace"][0]["why"] == "protocol unknown until the tunnel's first bytes, needed for ssh"
    text = policy(sock, data_dir, "explain", "acme", "93.184.216.34:443", "--protocol", "SSH")
    assert text.exit_code == 0, text.output
    assert text.stdout.splitlines()[0] == "request   CONNECT 93.184.216.34:443 (tunnel carrying ssh) from 127.0.0.1, tenant acme"
    assert "decision  deny by rule 'no-ssh'" in text.stdout
    assert errors(policy(sock, data_dir, "explain", "acme", "93.184.216.34:443", "--protocol", "telnet"))[0] == \
        "error: unknown protocol 'telnet'"
    assert errors(policy(sock, data_dir, "explain", "acme", "http://x.example/", "--protocol", "ssh"))[0] == \
        "error: a protocol is what a tunnel carries"
