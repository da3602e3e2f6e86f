"""Intercept or splice: the decision TLS interception takes at a tunnel's first bytes.

Compiled once per Snapshot from the profile's ``intercept:`` section
(``arcus.config.intercept``) and the store's per-tenant switches (``arcus tenant set T
--intercept on|off``, which override the profile's ``enabled`` for that tenant) by
:func:`compile_intercept`; the data plane asks
``plan.for_tenant(name)`` (None: the tenant does not intercept, the tunnel is spliced without
looking further) and then ``TenantIntercept.decide(host)`` with the ClientHello's server name
(or the tunnel's host when the client sent none).

Order, first match wins: the tenant's rules, the box's rules, the shipped bypass list of
certificate-pinned applications (when ``bypass_pinned``), then *intercept*. An explicit rule
therefore overrides the bypass list (``{action: intercept, pinned: [dropbox]}``). Host patterns
are those of ``arcus.policy.hosts``; each rule's patterns go into one :class:`HostIndex`, so a
decision is a few dict probes whatever the number of rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from arcus.policy.hosts import HostIndex, PatternError, normalize_host, parse_host_pattern

# The curated bypass list: applications that pin their certificates (or their CA) and fail,
# rather than warn, behind an intercepting proxy. By category, so a rule can name one.
PINNED: dict[str, tuple[str, ...]] = {
    "apple": (".push.apple.com", ".icloud.com", ".itunes.apple.com", ".apps.apple.com", "gs.apple.com",
              "gsa.apple.com", "albert.apple.com", "captive.apple.com", ".mzstatic.com"),
    "google-play": ("android.clients.google.com", "play.googleapis.com", ".gvt1.com", "mtalk.google.com"),
    "microsoft-update": (".update.microsoft.com", ".windowsupdate.com", ".delivery.mp.microsoft.com",
                         "login.live.com", ".events.data.microsoft.com"),
    "mozilla-update": ("aus5.mozilla.org", "content-signature-2.cdn.mozilla.net", "firefox.settings.services.mozilla.com"),
    "signal": (".signal.org", ".whispersystems.org"),
    "whatsapp": (".whatsapp.net", ".whatsapp.com"),
    "dropbox": (".dropbox.com", ".dropboxapi.com"),
    "zoom": (".zoom.us",),
    "docker": ("registry-1.docker.io", "auth.docker.io"),
    "banking-apps": (".paypal.com", ".venmo.com"),
}

INTERCEPT = "intercept"
SPLICE = "splice"


@dataclass(frozen=True, slots=True)
class Decision:
    intercept: bool
    rule: str  # the rule that decided: its name, "pinned:CATEGORY" or "default"
    insecure: bool = False


DEFAULT = Decision(True, "default")


@dataclass(frozen=True, slots=True)
class _Rule:
    action: str
    name: str
    insecure: bool


class TenantIntercept:
    """One tenant's interception: its rules, CA bundle for upstreams, and the decision."""

    __slots__ = ("tenant", "upstream_ca", "rules", "index", "cache")

    def __init__(self, tenant: str, upstream_ca: str | None, rules: list[tuple[_Rule, list[Any]]]) -> None:
        self.tenant = tenant
        self.upstream_ca = upstream_ca
        self.rules = [r for r, _ in rules]
        self.index = HostIndex((i, pats) for i, (_, pats) in enumerate(rules))
        self.cache: dict[str, Decision] = {}  # host -> decision (bounded)

    def decide(self, host: str | None) -> Decision:
        if not host:
            return DEFAULT
        host = normalize_host(host)
        hit = self.cache.get(host)
        if hit is not None:
            return hit
        index = self.index
        bits = index.lookup(host)
        slow = index.slow_candidates(host) & ~bits
        i = 0
        while slow >> i:
            if slow >> i & 1 and index.slow_match(i, host):
                bits |= 1 << i
            i += 1
        decision = DEFAULT
        if bits:
            first = (bits & -bits).bit_length() - 1
            rule = self.rules[first]
            decision = Decision(rule.action == INTERCEPT, rule.name, rule.insecure)
        if len(self.cache) >= 4096:
            self.cache.clear()
        self.cache[host] = decision
        return decision


class InterceptError(ValueError):
    """A rule cannot be compiled: ``line`` is where it was written, ``hint`` what to write."""

    def __init__(self, message: str, line: int | None, hint: str = "") -> None:
        super().__init__(message)
        self.line = line
        self.hint = hint


def _compile_rules(rules: Any, offset: int) -> list[tuple[_Rule, list[Any]]]:
    out: list[tuple[_Rule, list[Any]]] = []
    for i, r in enumerate(rules, offset):
        pats = []
        for h in r.hosts:
            try:
                pats.append(parse_host_pattern(h))
            except PatternError as exc:
                raise InterceptError(f"intercept rule {i}: {exc}", r.line, exc.hint) from None
        for cat in r.pinned:
            for name in PINNED if cat == "all" else (cat,):
                if name not in PINNED:
                    raise InterceptError(
                        f'intercept rule {i}: unknown pinned category "{cat}"', r.line,
                        "one of: all, " + ", ".join(sorted(PINNED)),
                    )
                pats.extend(parse_host_pattern(h) for h in PINNED[name])
        out.append((_Rule(r.action, r.name or f"intercept rule {i}", r.insecure), pats))
    return out


def _pinned_rules() -> list[tuple[_Rule, list[Any]]]:
    return [(_Rule(SPLICE, f"pinned:{cat}", False), [parse_host_pattern(h) for h in hosts]) for cat, hosts in PINNED.items()]


def compile_intercept(config: Any, switches: Mapping[str, bool] | None = None) -> "Plan":
    """The plan of an ``arcus.config.schema.InterceptConfig``; raises InterceptError.

    ``switches``: the store's per-tenant switch (``arcus tenant set T --intercept on|off``),
    tenant name -> on; a tenant missing from it follows the profile. A switch replaces only the
    profile's ``enabled`` for its tenant (the tenant's, else the box's): the tenant's rules,
    bypass list and upstream CA are still the profile's, and a tenant the profile does not name
    gets the box's.
    """
    switches = dict(switches or {})
    box = config.box
    box_rules = _compile_rules(box.rules, 1)
    pinned = _pinned_rules()
    tenants: dict[str, TenantIntercept] = {}
    off: set[str] = set()
    named: set[str] = set()
    for name, settings, keys in config.tenants:
        named.add(name)
        enabled = switches.get(name, settings.enabled if "enabled" in keys else box.enabled)
        if not enabled:
            off.add(name)
            continue
        bypass = settings.bypass_pinned if "bypass_pinned" in keys else box.bypass_pinned
        own = _compile_rules(settings.rules, 1)
        ca = settings.upstream_ca if "upstream_ca" in keys else box.upstream_ca
        tenants[name] = TenantIntercept(name, ca, own + box_rules + (pinned if bypass else []))
    box_plan = box_rules + (pinned if box.bypass_pinned else [])
    for name, on in switches.items():
        if name in named or on == box.enabled:
            continue  # the profile names it (done above), or the box's default already says so
        if on:
            tenants[name] = TenantIntercept(name, box.upstream_ca, box_plan)
        else:
            off.add(name)
    default = TenantIntercept("", box.upstream_ca, box_plan) if box.enabled else None
    return Plan(tenants, default, frozenset(off), switches)


class Plan:
    """Which tenants intercept, and how (immutable once compiled)."""

    __slots__ = ("tenants", "default", "off", "any", "switches")

    def __init__(self, tenants: dict[str, TenantIntercept], default: TenantIntercept | None, off: frozenset[str],
                 switches: Mapping[str, bool] | None = None) -> None:
        self.tenants = tenants
        self.default = default  # tenants not named in the profile, when the box intercepts
        self.off = off  # tenants named with enabled: false, or switched off in the store
        self.any = bool(tenants) or default is not None  # read when every tunnel is made: an attribute
        self.switches: Mapping[str, bool] = dict(switches or {})  # the store's switches it was compiled with

    def for_tenant(self, name: str) -> TenantIntercept | None:
        t = self.tenants.get(name)
        if t is not None:
            return t
        return None if name in self.off else self.default


NO_INTERCEPTION = Plan({}, None, frozenset())
