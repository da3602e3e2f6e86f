"""Policy decisions: every condition, rule order, report and redirect, the secure default,
needs_address (DNS rebinding), validation messages and explain traces."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from arcus.errors import OperatorError
from arcus.policy import Decision, Request, Rule, TraceEntry, compile_policy, explain
from arcus.policy.egress import EgressGuard

UTC = timezone.utc
NOW = datetime(2024, 5, 7, 7, 14, tzinfo=UTC)  # Tuesday; 09:14 in Paris (CEST)
GUARD = EgressGuard()


def req(host: str | None = "www.example.com", port: int = 443, client: str = "10.20.1.7", **kw: object) -> Request:
    kw.setdefault("now", NOW)
    return Request(host, port, client, **kw)  # type: ignore[arg-type]


def policy(*rules: Rule, guard: EgressGuard | None = GUARD, default: str = "allow"):  # noqa: ANN201
    return compile_policy(rules, guard=guard, default_action=default)


def rule_of(p, r: Request) -> str | None:  # noqa: ANN001
    return p.decide(r).rule_id


# --- conditions -------------------------------------------------------------------------------


def test_host_forms() -> None:
    p = policy(
        Rule("exact", "deny", hosts=("exact.example",)),
        Rule("dot", "deny", hosts=(".dot.example",)),
        Rule("star", "deny", hosts=("*.star.example",)),
        Rule("glob", "deny", hosts=("*casino*",)),
        Rule("regex", "deny", hosts=("~(www|cdn)[0-9]*\\.regex\\.example",)),
    )
    assert rule_of(p, req("exact.example")) == "exact"
    assert rule_of(p, req("www.exact.example")) is None
    assert rule_of(p, req("dot.example")) == "dot"
    assert rule_of(p, req("a.b.dot.example")) == "dot"
    assert rule_of(p, req("star.example")) is None
    assert rule_of(p, req("www.star.example")) == "star"
    assert rule_of(p, req("mycasino.example")) == "glob"
    assert rule_of(p, req("CDN7.Regex.Example.")) == "regex"
    assert rule_of(p, req("cdn7.regex.example.evil")) is None
    assert rule_of(p, req("EXACT.example.")) == "exact"
    assert rule_of(p, req(None, dest_ip="93.184.216.34")) is None  # no host: host rules cannot match


def test_idn_left_as_given() -> None:
    p = policy(Rule("idn", "deny", hosts=(".bücher.example",)))
    assert rule_of(p, req("shop.bücher.example")) == "idn"
    assert rule_of(p, req("shop.xn--bcher-kva.example")) is None


def test_dest_cidrs_v4_v6_mapped_and_literal_hosts() -> None:
    p = policy(
        Rule("v4", "deny", dest_cidrs=("203.0.113.0/24",)),
        Rule("v6", "deny", dest_cidrs=("2001:db8::/32",)),
        guard=None,
    )
    assert rule_of(p, req(dest_ip="203.0.113.9")) == "v4"
    assert rule_of(p, req(dest_ip="::ffff:203.0.113.9")) == "v4"
    assert rule_of(p, req("203.0.113.9")) == "v4"  # a literal address is its own destination
    assert rule_of(p, req("[2001:db8::5]")) == "v6"
    assert rule_of(p, req(dest_ip="2001:db8:1::1")) == "v6"
    assert rule_of(p, req(dest_ip="198.51.100.1")) is None
    assert rule_of(p, req("203.0.113.9", dest_ip="198.51.100.1")) == "v4"  # either address counts


def test_ports() -> None:
    p = policy(Rule("web", "allow", ports=("80", "443", "8000-8999")), default="deny")
    assert [rule_of(p, req(port=n)) for n in (80, 443, 8000, 8500, 8999)] == ["web"] * 5
    assert [rule_of(p, req(port=n)) for n in (22, 7999, 9000, 0, 70000, -1)] == [None] * 6


def test_sources() -> None:
    p = policy(Rule("lab", "deny", sources=("10.20.0.0/16", "2001:db8:20::/48")))
    assert rule_of(p, req(client="10.20.9.9")) == "lab"
    assert rule_of(p, req(client="::ffff:10.20.9.9")) == "lab"
    assert rule_of(p, req(client="2001:db8:20::1")) == "lab"
    assert rule_of(p, req(client="10.21.0.1")) is None
    assert rule_of(p, req(client="")) is None  # a Unix socket peer has no address


def test_methods_and_connect_for_tunnels() -> None:
    p = policy(Rule("ro", "deny", methods=("POST", "put")), Rule("tun", "deny", methods=("CONNECT",)))
    assert rule_of(p, req(method="POST")) == "ro"
    assert rule_of(p, req(method="PUT")) == "ro"
    assert rule_of(p, req(method="put")) == "ro"  # methods compare without case: no dodging
    assert rule_of(p, req(method="GET")) is None
    assert rule_of(p, req(is_tunnel=True)) == "tun"  # a tunnel's method is CONNECT
    assert rule_of(p, req(method="CONNECT", is_tunnel=True)) == "tun"
    assert rule_of(p, req()) is None  # no method known: method rules do not match


def test_path_prefixes_not_for_tunnels() -> None:
    p = policy(Rule("admin", "deny", path_prefixes=("/admin/", "/wp-login.php")))
    assert rule_of(p, req(path="/admin/users")) == "admin"
    assert rule_of(p, req(path="/wp-login.php?x=1")) == "admin"
    assert rule_of(p, req(path="/%61dmin/x")) == "admin"
    assert rule_of(p, req(path="/public/../admin/x")) == "admin"
    assert rule_of(p, req(path="//admin/x")) == "admin"
    assert rule_of(p, req(path="/Admin/x")) is None  # paths are case-sensitive
    assert rule_of(p, req(path="/administrator")) is None
    assert rule_of(p, req(path="/admin/x", is_tunnel=True)) is None
    assert rule_of(p, req(path=None)) is None


def test_time_windows_in_a_zone_across_dst() -> None:
    p = policy(Rule("office", "allow", times=("mon-fri 08:00-18:00",), timezone="Europe/Paris"), default="deny")
    assert rule_of(p, req(now=datetime(2024, 1, 15, 6, 30, tzinfo=UTC))) is None  # 07:30 CET
    assert rule_of(p, req(now=datetime(2024, 7, 15, 6, 30, tzinfo=UTC))) == "office"  # 08:30 CEST
    assert rule_of(p, req(now=datetime(2024, 7, 15, 15, 59, tzinfo=UTC))) == "office"  # 17:59 CEST
    assert rule_of(p, req(now=datetime(2024, 7, 15, 16, 0, tzinfo=UTC))) is None
    assert rule_of(p, req(now=datetime(2024, 7, 13, 10, 0, tzinfo=UTC))) is None  # Saturday


def test_time_window_crossing_midnight() -> None:
    p = policy(Rule("night", "deny", times=("22:00-06:00",)))
    assert rule_of(p, req(now=datetime(2024, 5, 7, 23, 0, tzinfo=UTC))) == "night"
    assert rule_of(p, req(now=datetime(2024, 5, 8, 5, 59, tzinfo=UTC))) == "night"
    assert rule_of(p, req(now=datetime(2024, 5, 8, 6, 0, tzinfo=UTC))) is None


def test_naive_now_is_read_as_utc() -> None:
    p = policy(Rule("night", "deny", times=("22:00-06:00",)))
    assert rule_of(p, req(now=datetime(2024, 5, 7, 23, 0))) == "night"


def test_all_conditions_of_a_rule_must_match() -> None:
    p = policy(Rule("r", "deny", hosts=(".example.com",), ports=("443",), methods=("GET",)))
    assert rule_of(p, req(method="GET")) == "r"
    assert rule_of(p, req(method="POST")) is None
    assert rule_of(p, req(port=80, method="GET")) is None
    assert rule_of(p, req("example.org", method="GET")) is None


# --- actions and order ------------------------------------------------------------------------


def test_first_match_wins() -> None:
    p = policy(
        Rule("allow-docs", "allow", hosts=("docs.casino.example",)),
        Rule("block", "deny", hosts=(".casino.example",), comment="no gambling"),
    )
    assert p.decide(req("docs.casino.example")).action == "allow"
    d = p.decide(req("www.casino.example"))
    assert (d.action, d.rule_id, d.reason) == ("deny", "block", "denied by rule 'block': no gambling")


def test_report_records_and_goes_on() -> None:
    p = policy(
        Rule("try-social", "report", hosts=(".social.example",)),
        Rule("try-all-social", "report", hosts=("*social*",)),
        Rule("block-chat", "deny", hosts=("chat.social.example",)),
        Rule("late-report", "report", hosts=(".social.example",)),
    )
    d = p.decide(req("www.social.example", dest_ip="93.184.216.34"))
    assert (d.action, d.rule_id, d.reports) == ("allow", None, ("try-social", "try-all-social", "late-report"))
    d = p.decide(req("chat.social.example"))
    assert (d.action, d.rule_id, d.reports) == ("deny", "block-chat", ("try-social", "try-all-social"))


def test_redirect() -> None:
    p = policy(Rule("to-intranet", "redirect", hosts=("old.example",), redirect_to="https://intranet.example/moved"))
    assert p.decide(req("old.example")) == Decision(
        "redirect", "to-intranet", "redirected to https://intranet.example/moved by rule 'to-intranet'",
        (), "https://intranet.example/moved", False,
    )



def test_a_redirect_rule_denies_a_tunnel() -> None:
    """A tunnel cannot follow a redirect: the proxy refuses it by that rule, and the decision
    (hence explain) says deny, not redirect."""
    p = policy(Rule("moved", "redirect", hosts=("old.example",), redirect_to="https://intranet.example/moved",
                    comment="the wiki moved"))
    expected = Decision(
        "deny", "moved",
        "denied by rule 'moved': a tunnel cannot follow its redirect to https://intranet.example/moved: the wiki moved",
    )
    assert p.decide(req("old.example", is_tunnel=True)) == expected
    assert explain(p, req("old.example", is_tunnel=True)) == (expected, [TraceEntry("moved", True, "host old.example matches old.example")])
    assert p.decide(req("old.example", port=80, method="GET", path="/")).action == "redirect"

def test_user_rules_before_tenant_rules() -> None:
    p = policy(
        Rule("tenant-block", "deny", hosts=(".video.example",)),
        Rule("alice-video", "allow", hosts=(".video.example",), user="alice"),
        Rule("bob-block-all", "deny", user="bob"),
    )
    assert rule_of(p, req("www.video.example", user="alice", dest_ip="93.184.216.34")) == "alice-video"
    assert rule_of(p, req("www.video.example", user="carol")) == "tenant-block"
    assert rule_of(p, req("www.video.example")) == "tenant-block"
    assert rule_of(p, req("www.example.org", user="bob")) == "bob-block-all"
    assert rule_of(p, req("www.example.org", user="alice", dest_ip="93.184.216.34")) is None


def test_default_deny() -> None:
    p = policy(Rule("ok", "allow", hosts=(".example.com",)), default="deny")
    d = p.decide(req("example.org"))
    assert (d.action, d.rule_id, d.reason) == ("deny", None, "no rule matched; the default is deny")
    assert p.decide(req("www.example.com", dest_ip="93.184.216.34")).action == "allow"


# --- the secure default -----------------------------------------------------------------------


def test_special_destinations_denied_by_default() -> None:
    p = policy()
    d = p.decide(req("metadata.example", dest_ip="169.254.169.254"))
    assert (d.action, d.rule_id) == ("deny", "builtin:special-destination")
    assert d.reason == (
        "denied: 169.254.169.254 is in the special-purpose range 169.254.0.0/16; "
        "only a rule allowing that address by dest_cidrs opens it"
    )
    assert rule_of(p, req("127.0.0.1")) == "builtin:special-destination"
    assert rule_of(p, req("[::1]")) == "builtin:special-destination"
    assert rule_of(p, req("x.example", dest_ip="::ffff:127.0.0.1")) == "builtin:special-destination"
    assert rule_of(p, req("x.example", dest_ip="fe80::1%eth0")) == "builtin:special-destination"
    assert p.decide(req("x.example", dest_ip="93.184.216.34")).action == "allow"


def test_guard_settings_are_honoured() -> None:
    p = policy(guard=EgressGuard(allow=["169.254.10.0/24"], own_addresses=["192.0.2.10"]))
    assert p.decide(req("x.example", dest_ip="169.254.10.1")).action == "allow"  # opened by the profile
    assert rule_of(p, req("x.example", dest_ip="192.0.2.10")) == "builtin:special-destination"
    assert p.decide(req("127.0.0.1", client="127.0.0.1")).action == "allow"  # local client to loopback
    assert rule_of(p, req("127.0.0.1", client="10.1.1.1")) == "builtin:special-destination"
    assert policy(guard=None).decide(req("127.0.0.1")).action == "allow"


def test_only_an_allow_naming_the_address_opens_it() -> None:
    p = policy(
        Rule("metadata", "allow", hosts=("metadata.internal",), dest_cidrs=("169.254.169.254/32",)),
        Rule("broad", "allow", hosts=(".example.com",)),
    )
    d = p.decide(req("metadata.internal", dest_ip="169.254.169.254"))
    assert (d.action, d.rule_id) == ("allow", "metadata")
    # A name allowed broadly that resolves to a special address (DNS rebinding) stays denied.
    assert rule_of(p, req("evil.example.com", dest_ip="169.254.169.254")) == "builtin:special-destination"
    assert rule_of(p, req("evil.example.com", dest_ip="127.0.0.1")) == "builtin:special-destination"


def test_deny_and_redirect_need_no_guard() -> None:
    p = policy(Rule("no", "deny", hosts=("x.example",)))
    assert rule_of(p, req("x.example", dest_ip="127.0.0.1")) == "no"


def test_invalid_host_and_address() -> None:
    p = policy()
    d = p.decide(req("a" * 254))
    assert (d.action, d.rule_id, d.reason) == ("deny", "builtin:invalid-host", "denied: host name longer than 253 characters")
    assert p.decide(req("a" * 253 + ".")).rule_id != "builtin:invalid-host"
    d = p.decide(req("x.example", dest_ip="not-an-ip"))
    assert (d.action, d.rule_id, d.reason) == (
        "deny", "builtin:invalid-address", "denied: destination 'not-an-ip' is not an IP address")


# --- needs_address: deciding before DNS without opening a rebinding hole ----------------------


def test_needs_address() -> None:
    p = policy(
        Rule("block-name", "deny", hosts=("blocked.example",)),
        Rule("lan-ssh", "deny", dest_cidrs=("10.0.0.0/8",), ports=("22",)),
        Rule("block-later", "deny", hosts=("later.example",)),
    )
    # Denied by name, nothing before it needs the address: decided before DNS.
    assert p.decide(req("blocked.example")).needs_address is False
    # Allowed: the resolved address may be special-purpose.
    assert p.decide(req("www.example.com")).needs_address is True
    # Port 443: the address rule before cannot match whatever the address.
    assert p.decide(req("later.example", port=443)).needs_address is False
    # Port 22: the address rule before could match once the address is known.
    d = p.decide(req("later.example", port=22))
    assert (d.rule_id, d.needs_address) == ("block-later", True)
    assert p.decide(req("later.example", port=22, dest_ip="10.1.1.1")).rule_id == "lan-ssh"
    # Known addresses: final.
    assert p.decide(req("www.example.com", dest_ip="93.184.216.34")).needs_address is False
    assert p.decide(req("93.184.216.34")).needs_address is False
    # Without a guard and without address rules, an allow is final too.
    assert policy(guard=None).decide(req("www.example.com")).needs_address is False


def test_caller_loop_defeats_rebinding() -> None:
    """The data plane's use: decide on the name, then once per address it would connect to."""
    p = policy(Rule("ok", "allow", hosts=(".example.com",)))
    first = p.decide(req("rebind.example.com"))
    assert (first.action, first.needs_address) == ("allow", True)
    resolved = ["93.184.216.34", "127.0.0.1", "169.254.169.254"]
    usable = [a for a in resolved if p.decide(req("rebind.example.com", dest_ip=a)).action == "allow"]
    assert usable == ["93.184.216.34"]


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "message", "hint"),
    [
        (Rule("bad id", "deny"), "invalid rule name 'bad id'",
         "use 1-63 characters from A-Z a-z 0-9 . _ - starting with a letter or digit"),
        (Rule("r1", "block"), "rule 'r1': action: unknown action 'block'", "use allow, deny, redirect or report"),
        (Rule("r1", "deny", hosts="example.com"), "rule 'r1': hosts: expected a list of values, not one string",
         "write hosts=('example.com',)"),
        (Rule("r1", "deny", hosts=("~(a",)),
         "rule 'r1': hosts: bad regex '(a': missing ), unterminated subpattern at position 0", None),
        (Rule("r1", "deny", hosts=("~(a+)+",)),
         "rule 'r1': hosts: a repeat inside a repeat can take exponential time", None),
        (Rule("r1", "deny", hosts=("example.com:443",)),
         "rule 'r1': hosts: host pattern 'example.com:443' has a port or is not a host name",
         "put ports in 'ports' and write the host alone, e.g. 'example.com'"),
        (Rule("r1", "deny", dest_cidrs=("10.0.0.0/33",)),
         "rule 'r1': dest_cidrs: bad range '10.0.0.0/33': '33' is not a valid netmask",
         "write an IPv4 or IPv6 range in CIDR form, e.g. 10.0.0.0/8 or 2001:db8::/32"),
        (Rule("r1", "deny", sources=("::ffff:10.0.0.0/104",)),
         "rule 'r1': sources: IPv4-mapped range '::ffff:10.0.0.0/104' is not accepted", None),
        (Rule("r1", "deny", ports=("9000-8000",)), "rule 'r1': ports: bad port range '9000-8000': start above end",
         "write a port 1-65535 or a range like 8000-8999"),
        (Rule("r1", "deny", methods=("GE T",)), "rule 'r1': methods: bad method 'GE T'", None),
        (Rule("r1", "deny", path_prefixes=("admin",)), "rule 'r1': path_prefixes: bad path prefix 'admin'",
         "write a path starting with '/', without query, e.g. /admin/"),
        (Rule("r1", "deny", times=("mon-fri 8-18",)),
         "rule 'r1': times: bad hours '8-18' in window 'mon-fri 8-18'",
         "write hours as HH:MM-HH:MM, e.g. 08:00-18:00 or 22:00-06:00"),
        (Rule("r1", "deny", timezone="Europe/Pariss"), "rule 'r1': timezone: unknown time zone 'Europe/Pariss'",
         "use an IANA zone name such as 'Europe/Paris' or 'UTC'"),
        (Rule("r1", "deny", timezone="../../etc/passwd"),
         "rule 'r1': timezone: unknown time zone '../../etc/passwd'", None),
        (Rule("r1", "redirect"), "rule 'r1': redirect_to: action redirect needs a URL",
         "give redirect_to, e.g. 'https://intranet.example/blocked'"),
        (Rule("r1", "redirect", redirect_to="https://x.example/\r\nSet-Cookie: a=b"),
         "rule 'r1': redirect_to: bad redirect URL 'https://x.example/\\r\\nSet-Cookie: a=b'", None),
        (Rule("r1", "redirect", redirect_to="javascript:alert(1)"),
         "rule 'r1': redirect_to: bad redirect URL 'javascript:alert(1)'", None),
        (Rule("r1", "deny", redirect_to="https://x.example/"),
         "rule 'r1': redirect_to: only action redirect takes a URL (action is deny)", None),
        (Rule("r1", "deny", user="bad user"), "rule 'r1': user: invalid user name 'bad user'", None),
        (Rule("r1", "deny", comment="two\nlines"),
         "rule 'r1': comment: comment must be one line of at most 500 characters", None),
    ],
)
def test_validation_messages(rule: Rule, message: str, hint: str | None) -> None:
    with pytest.raises(OperatorError) as info:
        policy(rule)
    assert info.value.message == message
    assert info.value.code == "invalid"
    assert info.value.hint
    if hint is not None:
        assert info.value.hint == hint


def test_duplicate_ids_and_default_action() -> None:
    with pytest.raises(OperatorError) as info:
        policy(Rule("a", "deny"), Rule("a", "allow", user="bob"))
    assert info.value.message == "rule 'a' given twice"
    with pytest.raises(OperatorError) as info:
        policy(default="block")
    assert (info.value.message, info.value.hint) == ("unknown default action 'block'", "use allow or deny")


def test_rules_may_come_from_a_generator() -> None:
    p = compile_policy((r for r in [Rule("a", "deny", hosts=("a.example",))]), guard=None)
    assert [r.id for r in p.rules] == ["a"]
    assert p.decide(req("a.example")).rule_id == "a"


def test_one_bad_rule_refuses_the_whole_policy() -> None:
    with pytest.raises(OperatorError, match="rule 'bad'"):
        policy(Rule("good", "deny", hosts=("x.example",)), Rule("bad", "deny", ports=("99999",)))


# --- explain ----------------------------------------------------------------------------------


def test_explain_trace_exact() -> None:
    p = policy(
        Rule("block-gambling", "deny", hosts=("*.casino.example", "casino.example")),
        Rule("try-video", "report", hosts=(".video.example",), methods=("GET",)),
        Rule("web-only", "deny", ports=("1-79", "81-442", "444-65535")),
        Rule("office", "allow", times=("mon-fri 08:00-18:00",), timezone="Europe/Paris", sources=("10.20.0.0/16",)),
        Rule("never-reached", "deny"),
    )
    d, trace = explain(p, req("www.video.example", 443, method="GET", path="/watch"))
    assert (d.action, d.rule_id, d.reports, d.needs_address) == ("allow", "office", ("try-video",), True)
    assert trace == [
        TraceEntry("block-gambling", False, "host www.video.example matches none of *.casino.example, casino.example"),
        TraceEntry("try-video", True,
                   "host www.video.example matches .video.example; method GET in GET; report only, evaluation goes on"),
        TraceEntry("web-only", False, "port 443 not in 1-79, 81-442, 444-65535"),
        TraceEntry("office", True,
                   "client 10.20.1.7 in 10.20.0.0/16; time Tue 09:14 Europe/Paris in mon-fri 08:00-18:00"),
        TraceEntry("builtin:special-destination", False,
                   "address unknown until resolved; decide again with each address"),
    ]
    assert d == p.decide(req("www.video.example", 443, method="GET", path="/watch"))


def test_explain_default_and_special() -> None:
    p = policy(
        Rule("lan", "deny", dest_cidrs=("10.0.0.0/8",)),
        Rule("admin", "deny", path_prefixes=("/admin",)),
        Rule("meta", "allow", hosts=("meta.internal",), dest_cidrs=("169.254.169.254/32",)),
    )
    d, trace = explain(p, req("www.casino.example", 443, path="/x", dest_ip="169.254.169.254"))
    assert d.rule_id == "builtin:special-destination"
    assert trace == [
        TraceEntry("lan", False, "address 169.254.169.254 not in 10.0.0.0/8"),
        TraceEntry("admin", False, "path /x starts with none of /admin"),
        TraceEntry("meta", False, "host www.casino.example matches none of meta.internal"),
        TraceEntry("builtin:default", True, "no rule matched; the default is allow"),
        TraceEntry("builtin:special-destination", True,
                   "169.254.169.254 is in the special-purpose range 169.254.0.0/16; "
                   "only a rule allowing that address by dest_cidrs opens it"),
    ]
    d, trace = explain(p, req("meta.internal", 80, dest_ip="169.254.169.254", is_tunnel=True))
    assert d.rule_id == "meta"
    assert trace[1:] == [
        TraceEntry("admin", False, "path prefixes never match inside a tunnel"),
        TraceEntry("meta", True, "host meta.internal matches meta.internal; address 169.254.169.254 in 169.254.169.254/32"),
        TraceEntry("builtin:special-destination", False,
                   "169.254.169.254 is in the special-purpose range 169.254.0.0/16, "
                   "opened by dest_cidrs 169.254.169.254/32 of rule 'meta'"),
    ]
    d, trace = explain(p, req("x.example", dest_ip="93.184.216.34"))
    assert trace[-1] == TraceEntry("builtin:special-destination", False, "93.184.216.34 not special-purpose")


def test_explain_stops_at_the_deciding_rule_and_skips_other_users() -> None:
    p = policy(
        Rule("bob-only", "deny", user="bob"),
        Rule("alice-first", "deny", hosts=("x.example",), user="alice"),
        Rule("tenant", "deny"),
        Rule("unreached", "allow"),
    )
    d, trace = explain(p, req("x.example", user="alice"))
    assert d.rule_id == "alice-first"
    assert trace == [TraceEntry("alice-first", True, "host x.example matches x.example")]
    _, trace = explain(p, req("y.example", user="alice", method=None))
    assert trace == [
        TraceEntry("alice-first", False, "host y.example matches none of x.example"),
        TraceEntry("tenant", True, "no conditions: matches every request"),
    ]


def test_explain_invalid_inputs() -> None:
    d, trace = explain(policy(), req("x.example", dest_ip="nope"))
    assert trace == [TraceEntry("builtin:invalid-address", True, "destination 'nope' is not an IP address")]
    assert d.rule_id == "builtin:invalid-address"


def test_explain_lists_are_shortened() -> None:
    p = policy(Rule("many", "deny", hosts=tuple(f"h{i}.example" for i in range(8))))
    _, trace = explain(p, req("x.example"))
    assert trace[0].why == (
        "host x.example matches none of h0.example, h1.example, h2.example, h3.example, h4.example and 3 more"
    )


def test_policy_keeps_the_rules_and_is_reusable() -> None:
    rules = (Rule("a", "deny", hosts=("a.example",)), Rule("b", "allow", user="bob"))
    p = policy(*rules)
    assert p.rules == rules
    assert p.default_action == "allow"
    first = p.decide(req("a.example"))
    assert p.decide(req("a.example")) == first
