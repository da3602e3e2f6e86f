"""The ``protocols`` condition: tunnels only, left for the first bytes at admission
(``needs_protocol``), decided once the protocol is known; validation and explain traces; and the
admission's ``TunnelCheck`` (host rules on the TLS server name of a tunnel to an address)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from arcus.errors import OperatorError
from arcus.policy import Request, Rule, compile_policy, explain
from arcus.policy.egress import EgressGuard
from arcus.tenancy.admission import TunnelCheck

NOW = datetime(2024, 5, 7, 7, 14, tzinfo=timezone.utc)


def tunnel(host: str = "bastion.example", port: int = 443, **kw: object) -> Request:
    return Request(host, port, "10.20.1.7", now=NOW, method="CONNECT", is_tunnel=True, **kw)  # type: ignore[arg-type]


NO_SSH = Rule("no-ssh-on-443", "deny", ports=("443",), protocols=("ssh",))


def test_admission_leaves_a_protocol_rule_for_the_first_bytes() -> None:
    p = compile_policy([NO_SSH], guard=None)
    d = p.decide(tunnel())
    assert (d.action, d.rule_id, d.needs_protocol) == ("allow", None, True)
    assert p.decide(tunnel(protocol="ssh")).rule_id == "no-ssh-on-443"
    assert p.decide(tunnel(protocol="tls")).action == "allow"
    assert p.decide(tunnel(port=22, protocol="ssh")).action == "allow"  # the other conditions still hold
    assert not p.decide(tunnel(port=22)).needs_protocol  # a rule that cannot match is not pending


def test_a_plain_request_never_matches_a_protocols_condition() -> None:
    p = compile_policy([Rule("no-http", "deny", protocols=("http",))], guard=None)
    d = p.decide(Request("www.example.com", 80, "10.20.1.7", now=NOW, method="GET", path="/"))
    assert (d.action, d.needs_protocol) == ("allow", False)


def test_protocol_rules_keep_rule_order_and_reports() -> None:
    p = compile_policy([
        Rule("watch-tls", "report", protocols=("tls",)),
        Rule("allow-bastion", "allow", hosts=("bastion.example",), protocols=("ssh",)),
        Rule("no-ssh", "deny", protocols=("ssh", "rdp")),
    ], guard=None)
    assert p.decide(tunnel(protocol="ssh")).rule_id == "allow-bastion"
    assert p.decide(tunnel("other.example", protocol="ssh")).rule_id == "no-ssh"
    assert p.decide(tunnel("other.example", protocol="rdp")).rule_id == "no-ssh"
    assert p.decide(tunnel(protocol="tls")).reports == ("watch-tls",)


def test_a_pending_protocol_and_a_pending_address_are_both_said() -> None:
    p = compile_policy([Rule("no-ssh-lan", "deny", dest_cidrs=("10.0.0.0/8",), protocols=("ssh",))], guard=None)
    d = p.decide(tunnel())
    assert d.needs_address  # the address decides first; per address the protocol is still pending
    d = p.decide(tunnel(dest_ip="10.1.2.3"))
    assert d.needs_protocol and d.action == "allow"
    assert p.decide(tunnel(dest_ip="10.1.2.3", protocol="ssh")).action == "deny"


@pytest.mark.parametrize(("value", "message"), [
    (("telnet",), "rule 'r': protocols: unknown protocol 'telnet'"),
    ("ssh", "rule 'r': protocols: expected a list of values, not one string"),
])
def test_bad_protocols_are_refused_naming_the_field(value: object, message: str) -> None:
    with pytest.raises(OperatorError) as err:
        compile_policy([Rule("r", "deny", protocols=value)], guard=None)  # type: ignore[arg-type]
    assert err.value.message == message


def test_protocol_names_are_case_insensitive() -> None:
    p = compile_policy([Rule("r", "deny", protocols=(" SSH",))], guard=None)
    assert p.decide(tunnel(protocol="ssh")).action == "deny"


def test_explain_says_why() -> None:
    p = compile_policy([NO_SSH], guard=None)
    d, trace = explain(p, tunnel())
    assert d.needs_protocol
    assert trace[0].why == "protocol unknown until the tunnel's first bytes, needed for ssh"
    _, trace = explain(p, tunnel(protocol="tls"))
    assert trace[0].why == "protocol tls not in ssh"
    _, trace = explain(p, tunnel(protocol="ssh"))
    assert trace[0].matched and "protocol ssh in ssh" in trace[0].why
    _, trace = explain(p, Request("h.example", 443, "10.0.0.1", now=NOW, method="GET", path="/"))
    assert "a plain request carries no tunnel protocol" in trace[0].why


def test_tunnel_check_applies_host_rules_to_the_sni_of_a_tunnel_to_an_address() -> None:
    p = compile_policy([
        Rule("no-casino", "deny", hosts=("*.casino.example",)),
        Rule("lab", "allow", dest_cidrs=("127.0.0.0/8",)),
    ], guard=EgressGuard())
    ctx = tunnel("127.0.0.1")
    assert p.decide(ctx).rule_id == "lab"  # admission: an address, no name to match
    check = TunnelCheck(p, ctx)
    assert check("tls", "www.casino.example").rule_id == "no-casino"
    d = check("tls", "docs.example")
    assert (d.action, d.rule_id) == ("allow", "lab")  # the address still opens loopback by dest_cidrs
    assert check("unknown", None).rule_id == "lab"


def test_tunnel_check_keeps_the_name_of_a_tunnel_to_a_name() -> None:
    p = compile_policy([Rule("no-casino", "deny", hosts=("*.casino.example",))], guard=None)
    check = TunnelCheck(p, tunnel("www.example.com"))
    assert check("tls", "www.casino.example").action == "allow"  # the CONNECT named its host: that decides
