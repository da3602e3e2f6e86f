"""The compiled policy: ``decide()`` on the hot path, ``explain()`` for operators.

Order of evaluation: the rules of the request's user (in their order), then the tenant's rules;
the first rule whose conditions all match decides, except ``report`` rules, which are recorded
and let evaluation go on. Then the secure default: an allowed request to a special-purpose
address (loopback, this box, link-local and cloud metadata, multicast... as the profile's
:class:`~arcus.policy.egress.EgressGuard` says) is denied, unless the allowing rule names that
address in its ``dest_cidrs``; a request no rule decided gets the tenant's default action.

Speed: a policy of a thousand host rules must not cost a thousand checks per request. Each
segment (one user's rules, the tenant's rules) keeps a :class:`~arcus.policy.hosts.HostIndex`:
exact and child-domain patterns are found by dict probes on the host and its parent domains,
giving a bit mask of rule positions; rules without a host condition and rules with globs or
regexes are always candidates. The candidates are then walked lowest bit first (rule order), and
only they get their other conditions checked. ``explain()`` walks every rule plainly and says
why; the tests hold both to a brute-force reference.

DNS rebinding: see ``Decision.needs_address`` and ``docs/policy.md``. The policy never resolves;
the caller decides again with each address it will connect to.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from arcus.errors import OperatorError
from arcus.policy.compiler import CompiledRule, compile_rule
from arcus.policy.egress import EgressGuard
from arcus.policy.hosts import MAX_HOST_LENGTH, HostIndex, normalize_host
from arcus.policy.model import (
    ALLOW,
    DEFAULT,
    DENY,
    INVALID_ADDRESS,
    INVALID_HOST,
    REDIRECT,
    SPECIAL_DESTINATION,
    Decision,
    Request,
    Rule,
    TraceEntry,
)
from arcus.policy.nets import Address, parse_address
from arcus.policy.times import describe_local, minute_of_week
from arcus.policy.urlpath import normalize_path

_NO, _YES, _ADDR, _PROTO = 0, 1, 2, 3  # a rule's outcome; _ADDR: all but dest_cidrs match, address
# unknown; _PROTO: all but protocols match, the tunnel's protocol not known yet
_UNSET: object = object()
_LIST_LIMIT = 5
GUARD_CACHE_SIZE = 4096


class _Facts:
    """A request in the form rules compare against, computed once and lazily per request."""

    __slots__ = ("ctx", "host", "addrs", "texts", "method", "port", "_client", "_path", "_local")

    def __init__(self, ctx: Request, host: str | None, addrs: list[Address], texts: list[str]) -> None:
        self.ctx = ctx
        self.host = host
        self.addrs = addrs
        self.texts = texts
        method = ctx.method
        if method is None and ctx.is_tunnel:
            method = "CONNECT"
        self.method = method.upper() if isinstance(method, str) else None
        port = ctx.port
        self.port = port if type(port) is int else -1  # noqa: E721 - bool and others match no port
        self._client: object = _UNSET
        self._path: object = _UNSET
        self._local: dict[ZoneInfo, datetime] | None = None

    def client(self) -> Address | None:
        if self._client is _UNSET:
            ip = self.ctx.client_ip
            self._client = parse_address(ip) if isinstance(ip, str) else None
        return self._client  # type: ignore[return-value]

    def path(self) -> str | None:
        if self._path is _UNSET:
            path = self.ctx.path
            self._path = None if self.ctx.is_tunnel or not isinstance(path, str) else normalize_path(path)
        return self._path  # type: ignore[return-value]

    def local(self, zone: ZoneInfo) -> datetime:
        cache = self._local
        if cache is None:
            cache = self._local = {}
        local = cache.get(zone)
        if local is None:
            now = self.ctx.now
            if now.tzinfo is None:
                now = now.replace(tzinfo=timezone.utc)
            local = cache[zone] = now.astimezone(zone)
        return local


def _rest(c: CompiledRule, f: _Facts) -> int:
    """The rule's conditions other than the host (the caller checked it), cheapest first."""
    methods = c.methods
    if methods is not None and f.method not in methods:
        return _NO
    ports = c.ports
    if ports is not None and f.port not in ports:
        return _NO
    sources = c.sources
    if sources is not None:
        client = f.client()
        if client is None or client not in sources:
            return _NO
    paths = c.paths
    if paths is not None:
        path = f.path()
        if path is None or not path.startswith(paths):
            return _NO
    windows = c.times
    if windows is not None:
        minute = minute_of_week(f.local(c.zone))
        for window in windows:
            if minute in window:
                break
        else:
            return _NO
    pending = False
    protocols = c.protocols
    if protocols is not None:
        protocol = f.ctx.protocol
        if protocol is None:
            if not f.ctx.is_tunnel:
                return _NO  # a plain request carries no tunnel protocol
            pending = True
        elif protocol not in protocols:
            return _NO
    dest = c.dest
    if dest is not None:
        if not f.addrs:
            return _ADDR
        for addr in f.addrs:
            if addr in dest:
                return _PROTO if pending else _YES
        return _NO
    return _PROTO if pending else _YES


class _Segment:
    """One ordered run of rules (a user's, or the tenant's) with its indexes.

    Besides the host index, two cheap filters narrow the candidates before any rule is
    looked at: single ports and methods map to the bits of the rules that name them (rules
    without that condition, or with port ranges, stay candidates for every request), and rules
    with path prefixes drop out for tunnels and requests without a path.
    """

    __slots__ = ("rules", "index", "hostless", "port_any", "by_port", "method_any", "by_method", "pathless")

    def __init__(self, rules: Sequence[CompiledRule]) -> None:
        self.rules = tuple(rules)
        self.index = HostIndex((i, c.hosts) for i, c in enumerate(self.rules) if c.hosts)
        self.hostless = 0
        self.port_any = 0
        self.by_port: dict[int, int] = {}
        self.method_any = 0
        self.by_method: dict[str, int] = {}
        self.pathless = 0
        for i, c in enumerate(self.rules):
            bit = 1 << i
            if not c.hosts:
                self.hostless |= bit
            if c.ports is None or any(r.low != r.high for r in c.ports.ranges):
                self.port_any |= bit
            else:
                for r in c.ports.ranges:
                    self.by_port[r.low] = self.by_port.get(r.low, 0) | bit
            if c.methods is None:
                self.method_any |= bit
            else:
                for method in c.methods:
                    self.by_method[method] = self.by_method.get(method, 0) | bit
            if c.paths is None:
                self.pathless |= bit

    def candidates(self, f: _Facts) -> tuple[int, int]:
        """(candidate bits, bits whose host patterns are known to match)."""
        host = f.host
        if host is None:
            hits = 0
            cand = self.hostless
        else:
            hits = self.index.lookup(host)
            cand = self.hostless | hits | self.index.slow_candidates(host)
        if cand:
            cand &= self.port_any | self.by_port.get(f.port, 0)
        if cand:
            method = f.method
            cand &= self.method_any | (self.by_method.get(method, 0) if method is not None else 0)
        if cand and (f.ctx.is_tunnel or f.ctx.path is None):
            cand &= self.pathless
        return cand, hits


class Policy:
    """A tenant's compiled policy: immutable, shared by every connection of a Snapshot."""

    __slots__ = (
        "rules", "default_action", "_guard", "_tenant", "_tenant_only", "_users", "_default", "_guard_cache"
    )

    def __init__(
        self,
        rules: tuple[Rule, ...],
        tenant: _Segment,
        users: dict[str, _Segment],
        guard: EgressGuard | None,
        default_action: str,
    ) -> None:
        self.rules = rules
        self.default_action = default_action
        self._guard = guard
        self._tenant = tenant
        self._tenant_only = (tenant,)
        self._users = users
        self._default = Decision(default_action, None, f"no rule matched; the default is {default_action}")
        self._guard_cache: dict[str, str | None] = {}

    # --- the hot path ---------------------------------------------------------------------

    def decide(self, ctx: Request) -> Decision:
        """The decision for one request. Never raises on what a client can choose."""
        facts = self._prepare(ctx)
        if isinstance(facts, Decision):
            return facts
        host = facts.host
        reports: list[str] | None = None
        needs = needs_protocol = False
        for seg in self._segments(ctx.user):
            cand, hits = seg.candidates(facts)
            rules = seg.rules
            while cand:
                low = cand & -cand
                cand ^= low
                i = low.bit_length() - 1
                c = rules[i]
                if c.hosts and not hits & low and not seg.index.slow_match(i, host):  # type: ignore[arg-type]
                    continue
                outcome = _rest(c, facts)
                if outcome == _NO:
                    continue
                if outcome == _ADDR:
                    needs = True
                    continue
                if outcome == _PROTO:
                    needs_protocol = True
                    continue
                if c.decision is None:  # report: recorded, evaluation goes on
                    if reports is None:
                        reports = []
                    reports.append(c.rule.id)
                    continue
                return self._finish(c, facts, reports, needs, needs_protocol)
        return self._finish(None, facts, reports, needs, needs_protocol)

    def _segments(self, user: str | None) -> tuple[_Segment, ...]:
        """The user's rules (if that user has any), then the tenant's."""
        if user is not None and self._users and isinstance(user, str):
            seg = self._users.get(user)
            if seg is not None:
                return (seg, self._tenant)
        return self._tenant_only

    def _prepare(self, ctx: Request) -> _Facts | Decision:
        host = ctx.host
        addrs: list[Address] = []
        texts: list[str] = []
        if isinstance(host, str):
            host = normalize_host(host) or None
        else:
            host = None
        if host is not None:
            if len(host) > MAX_HOST_LENGTH:
                return Decision(DENY, INVALID_HOST, f"denied: host name longer than {MAX_HOST_LENGTH} characters")
            if host[-1].isdigit() or ":" in host:
                addr = parse_address(host)
                if addr is not None:
                    addrs.append(addr)
                    texts.append(host)
        dest = ctx.dest_ip
        if dest is not None:
            addr = parse_address(dest) if isinstance(dest, str) else None
            if addr is None:
                return Decision(DENY, INVALID_ADDRESS, f"denied: destination {dest!r} is not an IP address")
            if addr not in addrs:
                addrs.append(addr)
                texts.append(dest)
        return _Facts(ctx, host, addrs, texts)

    def _finish(
        self, c: CompiledRule | None, f: _Facts, reports: list[str] | None, needs: bool, needs_protocol: bool = False
    ) -> Decision:
        reports_t = tuple(reports) if reports else ()
        if c is not None:
            decision = c.decision
            assert decision is not None
            if decision.action == REDIRECT and f.ctx.is_tunnel:
                decision = _tunnel_redirect(c)
        else:
            decision = self._default
        if decision.action == ALLOW and self._guard is not None:
            if not f.addrs:
                needs = True
            else:
                why = self._special(c, f)
                if why is not None:
                    return Decision(
                        DENY, SPECIAL_DESTINATION,
                        f"denied: {why}; only a rule allowing that address by dest_cidrs opens it",
                        reports_t,
                    )
        if reports_t or needs or needs_protocol:
            return Decision(
                decision.action, decision.rule_id, decision.reason, reports_t, decision.redirect_to, needs, needs_protocol
            )
        return decision

    def _special(self, c: CompiledRule | None, f: _Facts) -> str | None:
        """Why the guard refuses one of the request's addresses (not opened by ``c``), or None."""
        for addr, text in zip(f.addrs, f.texts):
            if c is not None and c.dest is not None and addr in c.dest:
                continue
            why = self._guard_check(f.ctx.client_ip, text)
            if why is not None:
                return why
        return None

    def _guard_check(self, client: str, dest: str) -> str | None:
        """``guard.check``, remembered per destination (the guard parses with ``ipaddress``).

        The guard's answer depends on the client only to let local clients reach loopback and
        the box's own addresses, which it otherwise refuses: so the answer for a client that is
        not local (``""`` never is) is cached, and only a refusal is asked again with the real
        client. The cache is bounded and cleared when full, never evicted entry by entry.
        """
        guard = self._guard
        assert guard is not None
        cache = self._guard_cache
        why = cache.get(dest, _UNSET)
        if why is _UNSET:
            try:
                why = guard.check("", dest)
            except ValueError:  # parse_address accepted it; the guard should too
                why = f"{dest} is not an address the guard can check"
            if len(cache) >= GUARD_CACHE_SIZE:
                cache.clear()
            cache[dest] = why
        if why is None:
            return None
        if isinstance(client, str) and guard.is_local(client):
            try:
                return guard.check(client, dest)
            except ValueError:
                return why  # type: ignore[return-value]
        return why  # type: ignore[return-value]

    # --- explanations -----------------------------------------------------------------------

    def explain(self, ctx: Request) -> tuple[Decision, list[TraceEntry]]:
        """The decision and, for every rule evaluated in order, whether it matched and why."""
        facts = self._prepare(ctx)
        if isinstance(facts, Decision):
            assert facts.rule_id is not None
            return facts, [TraceEntry(facts.rule_id, True, facts.reason.removeprefix("denied: "))]
        trace: list[TraceEntry] = []
        reports: list[str] = []
        needs = needs_protocol = False
        decided: CompiledRule | None = None
        for seg in self._segments(ctx.user):
            for c in seg.rules:
                outcome, why = _explain_rule(c, facts)
                if outcome == _YES and c.decision is None:
                    reports.append(c.id)
                    why += "; report only, evaluation goes on"
                trace.append(TraceEntry(c.id, outcome == _YES, why))
                if outcome == _ADDR:
                    needs = True
                elif outcome == _PROTO:
                    needs_protocol = True
                elif outcome == _YES and c.decision is not None:
                    decided = c
                    break
            if decided is not None:
                break
        decision = self._finish(decided, facts, reports, needs, needs_protocol)
        if decided is None:
            trace.append(TraceEntry(DEFAULT, True, f"no rule matched; the default is {self.default_action}"))
        base = decided.action if decided is not None else self.default_action
        if self._guard is not None and base == ALLOW:
            trace.append(self._special_entry(decided, facts, decision))
        return decision, trace

    def _special_entry(self, c: CompiledRule | None, f: _Facts, decision: Decision) -> TraceEntry:
        if not f.addrs:
            return TraceEntry(SPECIAL_DESTINATION, False, "address unknown until resolved; decide again with each address")
        if decision.rule_id == SPECIAL_DESTINATION:
            return TraceEntry(SPECIAL_DESTINATION, True, decision.reason.removeprefix("denied: "))
        opened = []
        for addr, text in zip(f.addrs, f.texts):
            if c is not None and c.dest is not None and addr in c.dest:
                why = self._guard_check(f.ctx.client_ip, text)
                if why is not None:
                    opened.append(f"{why}, opened by dest_cidrs {c.dest.which(addr)} of rule {c.id!r}")
        if opened:
            return TraceEntry(SPECIAL_DESTINATION, False, "; ".join(opened))
        return TraceEntry(SPECIAL_DESTINATION, False, f"{_join(f.texts)} not special-purpose")


def _tunnel_redirect(c: CompiledRule) -> Decision:
    """A redirect rule deciding a tunnel: its client expects bytes, not an HTTP answer, so the
    rule refuses it."""
    text = f"denied by rule {c.id!r}: a tunnel cannot follow its redirect to {c.rule.redirect_to}"
    return Decision(DENY, c.id, f"{text}: {c.rule.comment}" if c.rule.comment else text)


def _join(items: Iterable[str]) -> str:
    items = list(items)
    if len(items) <= _LIST_LIMIT:
        return ", ".join(items)
    return ", ".join(items[:_LIST_LIMIT]) + f" and {len(items) - _LIST_LIMIT} more"


def _explain_rule(c: CompiledRule, f: _Facts) -> tuple[int, str]:
    """Evaluate every condition of ``c`` plainly; return the outcome and a sentence."""
    ok: list[str] = []
    bad: list[str] = []
    pending = ""
    protocol_pending = ""
    ctx = f.ctx
    if c.hosts:
        patterns = _join(p.text for p in c.hosts)
        if f.host is None:
            bad.append(f"no host to match {patterns}")
        else:
            hit = next((p for p in c.hosts if p.matches(f.host)), None)
            if hit is not None:
                ok.append(f"host {f.host} matches {hit.text}")
            else:
                bad.append(f"host {f.host} matches none of {patterns}")
    if c.dest is not None:
        nets = _join(str(n) for n in c.dest.networks)
        if not f.addrs:
            pending = f"address unknown until resolved, needed for {nets}"
        else:
            for addr, text in zip(f.addrs, f.texts):
                net = c.dest.which(addr)
                if net is not None:
                    ok.append(f"address {text} in {net}")
                    break
            else:
                bad.append(f"address {_join(f.texts)} not in {nets}")
    if c.ports is not None:
        port_range = c.ports.which(f.port)
        if port_range is not None:
            ok.append(f"port {ctx.port} in {port_range}")
        else:
            bad.append(f"port {ctx.port} not in {_join(str(r) for r in c.ports.ranges)}")
    if c.sources is not None:
        nets = _join(str(n) for n in c.sources.networks)
        client = f.client()
        net = c.sources.which(client) if client is not None else None
        if net is not None:
            ok.append(f"client {ctx.client_ip} in {net}")
        elif client is None:
            bad.append(f"client {ctx.client_ip!r} is not an IP address, needed for {nets}")
        else:
            bad.append(f"client {ctx.client_ip} not in {nets}")
    if c.methods is not None:
        methods = _join(m.strip().upper() for m in c.rule.methods)
        if f.method is None:
            bad.append(f"no method to match {methods}")
        elif f.method in c.methods:
            ok.append(f"method {f.method} in {methods}")
        else:
            bad.append(f"method {f.method} not in {methods}")
    if c.paths is not None:
        prefixes = _join(c.paths)
        path = f.path()
        if ctx.is_tunnel:
            bad.append("path prefixes never match inside a tunnel")
        elif path is None:
            bad.append(f"no path to match {prefixes}")
        else:
            prefix = next((p for p in c.paths if path.startswith(p)), None)
            if prefix is not None:
                ok.append(f"path {path} starts with {prefix}")
            else:
                bad.append(f"path {path} starts with none of {prefixes}")
    if c.times is not None:
        local = f.local(c.zone)
        when = f"time {describe_local(local)} {c.rule.timezone}"
        minute = minute_of_week(local)
        window = next((w for w in c.times if minute in w), None)
        if window is not None:
            ok.append(f"{when} in {window.text}")
        else:
            bad.append(f"{when} not in {_join(w.text for w in c.times)}")
    if c.protocols is not None:
        names = _join(sorted(c.protocols))
        if ctx.protocol is None:
            if ctx.is_tunnel:
                protocol_pending = f"protocol unknown until the tunnel's first bytes, needed for {names}"
            else:
                bad.append(f"a plain request carries no tunnel protocol to match {names}")
        elif ctx.protocol in c.protocols:
            ok.append(f"protocol {ctx.protocol} in {names}")
        else:
            bad.append(f"protocol {ctx.protocol} not in {names}")
    if bad:
        return _NO, "; ".join(bad)
    if pending:
        return _ADDR, pending
    if protocol_pending:
        return _PROTO, protocol_pending
    return _YES, "; ".join(ok) if ok else "no conditions: matches every request"


def compile_policy(
    rules: Sequence[Rule], *, guard: EgressGuard | None, default_action: str = ALLOW
) -> Policy:
    """Validate every rule and build the matchers; OperatorError names the rule and field.

    ``rules`` is one tenant's policy in order, user rules (``user`` set) mixed in: each user's
    rules keep their relative order and are evaluated before the tenant's rules. ``guard`` is
    the profile's egress guard (None: no special-purpose default, for callers that enforce it
    elsewhere); ``default_action`` what happens when no rule decides.
    """
    if default_action not in (ALLOW, DENY):
        raise OperatorError(f"unknown default action {default_action!r}", code="invalid", hint="use allow or deny")
    if guard is not None and not isinstance(guard, EgressGuard):
        raise OperatorError(f"expected an EgressGuard, got {type(guard).__name__}", code="invalid")
    rules = tuple(rules)  # a generator would be spent by the loop below
    seen: set[str] = set()
    tenant: list[CompiledRule] = []
    users: dict[str, list[CompiledRule]] = {}
    for rule in rules:
        compiled = compile_rule(rule)
        if rule.id in seen:
            raise OperatorError(f"rule {rule.id!r} given twice", code="invalid",
                                hint="rule ids are unique within a tenant's policy, user rules included")
        seen.add(rule.id)
        if rule.user is None:
            tenant.append(compiled)
        else:
            users.setdefault(rule.user, []).append(compiled)
    return Policy(
        rules,
        _Segment(tenant),
        {user: _Segment(compiled) for user, compiled in users.items()},
        guard,
        default_action,
    )


def explain(policy: Policy, ctx: Request) -> tuple[Decision, list[TraceEntry]]:
    """``policy.explain(ctx)``: the decision and the trace of every rule evaluated, in order."""
    return policy.explain(ctx)
