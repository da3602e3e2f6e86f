"""Hypothesis: decide() never raises on what clients choose, equals a brute-force reading of
the rules (tests/unit/policy/reference.py), and explain() reaches the same decision."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arcus.policy import Request, Rule, compile_policy
from arcus.policy.egress import EgressGuard
from tests.unit.policy.reference import evaluate

HOST_PATTERNS = [
    "example.com", ".example.com", "*.example.com", "www.example.com", "*casino*", "cas?no.example",
    ".casino.example", "~(www|cdn)[0-9]*\\.example\\.com", "~.*CASINO.*", "10.1.2.3", "127.0.0.1", "[::1]",
    "bücher.example", "xn--bcher-kva.example", "*", "EXAMPLE.ORG.", "~[a-z]+\\.org",
]
CIDRS = ["10.0.0.0/8", "10.1.2.0/24", "127.0.0.0/8", "169.254.0.0/16", "169.254.169.254", "2001:db8::/32",
         "::1/128", "0.0.0.0/0", "::/0", "192.0.2.10/32"]
PORTS = ["80", "443", "8000-8999", "1-1024", "22"]
METHODS = ["GET", "POST", "CONNECT", "delete"]
PATHS = ["/admin", "/api/", "/", "/%61pi/"]
WINDOWS = ["mon-fri 08:00-18:00", "sat,sun", "22:00-06:00", "fri 22:00-02:00", "sun 02:00-03:00"]
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"]
USERS = ["alice", "bob"]


def options(values: list[str], empty: int) -> st.SearchStrategy[tuple[str, ...]]:
    """One draw: empty ``empty`` times in (empty + choices), else one value or two."""
    choices = [(v,) for v in values] + [(a, b) for a, b in zip(values, values[1:] + values[:1])]
    return st.sampled_from([()] * (empty * len(choices) // 4 or 1) + choices)


HOSTS_OPT = st.one_of(options(HOST_PATTERNS, 4), st.lists(st.sampled_from(HOST_PATTERNS), max_size=3).map(tuple))
CONDITIONS = st.tuples(
    options(CIDRS, 12), options(PORTS, 12), options(CIDRS, 12), options(METHODS, 12), options(PATHS, 12),
    options(WINDOWS, 12),
)


@st.composite
def rules(draw: st.DrawFn) -> list[Rule]:
    count = draw(st.integers(0, 10))
    out = []
    for i in range(count):
        action = draw(st.sampled_from(["allow", "deny", "redirect", "report"]))
        dest, ports, sources, methods, paths, times = draw(CONDITIONS)
        out.append(
            Rule(
                f"r{i}",
                action,
                hosts=draw(HOSTS_OPT),
                dest_cidrs=dest,
                ports=ports,
                sources=sources,
                methods=methods,
                path_prefixes=paths,
                times=times,
                timezone=draw(st.sampled_from(ZONES)),
                redirect_to="https://intranet.example/blocked" if action == "redirect" else None,
                user=draw(st.sampled_from([None, None, *USERS])),
                protocols=draw(st.sampled_from([(), (), (), ("ssh",), ("TLS", "http"), ("unknown",)])),
            )
        )
    return out


KNOWN_HOSTS = st.sampled_from([
    "example.com", "www.example.com", "a.b.example.com", "EXAMPLE.com.", "casino.example", "www.casino.example",
    "casno.example", "mycasino.com", "CASINO", "x.casino.example.", "cdn7.example.com", "www.example.com.evil",
    "10.1.2.3", "127.0.0.1", "169.254.169.254", "::1", "[::1]", "::ffff:10.1.2.3", "2001:db8::1",
    "bücher.example", "xn--bcher-kva.example", "example.org", "x.org", "", ".", "a" * 254, "a" * 253 + ".",
    "1.2.3.4%eth0", "fe80::1%eth0", ".example.com",
])
HOSTS = st.one_of(
    KNOWN_HOSTS,
    KNOWN_HOSTS,
    KNOWN_HOSTS,
    st.none(),
    st.text(max_size=40),
    st.text(alphabet="abcegilmnorsx.-*~[]:0123456789", max_size=30),
)
ADDRESSES = st.one_of(
    st.sampled_from(["10.1.2.3", "10.9.9.9", "127.0.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1",
                     "2001:db8::5", "93.184.216.34", "192.0.2.10", "fe80::1%eth0", "0.0.0.0", "", "x", "::"]),
    st.ip_addresses().map(str),
    st.text(max_size=20),
)
ZONE_OBJECTS = [timezone.utc, ZoneInfo("Europe/Paris"), ZoneInfo("America/New_York")]


@st.composite
def requests(draw: st.DrawFn) -> Request:
    moment = datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=draw(st.integers(0, 366 * 1440)))
    return Request(
        draw(HOSTS),
        draw(st.one_of(st.sampled_from([22, 80, 443, 8080, 8999, 9000, 1024]), st.integers(-10, 70000))),
        draw(ADDRESSES),
        now=moment.astimezone(draw(st.sampled_from(ZONE_OBJECTS))),
        user=draw(st.sampled_from([None, "alice", "bob", "carol"])),
        method=draw(st.one_of(st.none(), st.sampled_from(["GET", "post", "CONNECT", "DELETE"]), st.text(max_size=8))),
        path=draw(st.one_of(st.none(), st.sampled_from(["/admin/x", "/api/v1", "/%61pi/x", "/x/../admin", "/"]),
                            st.text(max_size=20))),
        dest_ip=draw(st.one_of(st.none(), st.none(), ADDRESSES)),
        is_tunnel=draw(st.booleans()),
        protocol=draw(st.sampled_from([None, None, "ssh", "tls", "unknown"])),
    )


GUARDS = [None, EgressGuard(), EgressGuard(allow=["10.9.0.0/16"], own_addresses=["192.0.2.10"])]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules(), st.lists(requests(), min_size=1, max_size=3), st.sampled_from(GUARDS),
       st.sampled_from(["allow", "deny"]))
def test_decide_equals_reference_and_explain(
    rule_list: list[Rule], reqs: list[Request], guard: EgressGuard | None, default: str
) -> None:
    policy = compile_policy(rule_list, guard=guard, default_action=default)
    for req in reqs:
        got = policy.decide(req)
        want = evaluate(rule_list, req, guard, default)
        assert (got.action, got.rule_id, got.reports, got.redirect_to, got.needs_address, got.needs_protocol) == want, req
        explained, trace = policy.explain(req)
        assert explained == got
        assert trace, "explain always says something"
        decided = [t for t in trace if t.matched and not t.rule_id.startswith("builtin:")
                   and "report only" not in t.why]
        if got.rule_id is not None and not got.rule_id.startswith("builtin:"):
            assert decided[-1].rule_id == got.rule_id


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.integers(), st.text(max_size=50), st.one_of(st.none(), st.text(max_size=50)),
       st.one_of(st.none(), st.text(max_size=50)), st.booleans())
def test_decide_never_raises(host: str, port: int, client: str, dest: str | None, path: str | None,
                             tunnel: bool) -> None:
    policy = compile_policy(
        [
            Rule("a", "report", hosts=("*casino*", "~.*x.*")),
            Rule("b", "deny", hosts=(".example.com",), dest_cidrs=("10.0.0.0/8",), ports=("1-1024",)),
            Rule("c", "deny", sources=("10.0.0.0/8",), path_prefixes=("/admin",), times=("22:00-06:00",),
                 timezone="Europe/Paris"),
            Rule("d", "allow", methods=("GET",), user="alice"),
        ],
        guard=EgressGuard(),
    )
    req = Request(host, port, client, now=datetime(2024, 3, 31, 1, 30, tzinfo=timezone.utc), user="alice",
                  method="GET", path=path, dest_ip=dest, is_tunnel=tunnel)
    decision = policy.decide(req)
    assert decision.action in ("allow", "deny", "redirect")
    assert policy.explain(req)[0] == decision
