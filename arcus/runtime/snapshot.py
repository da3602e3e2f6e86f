"""Building Snapshots: profile + store -> one immutable object the data plane reads.

Building does blocking work (reading files, SQLite, /proc, compiling policies) and so runs in a
worker thread; only the final reference swap (and the update of live limiter rates) happens on
the event loop.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from datetime import datetime, timezone
from typing import Any

from arcus.auth.tenants import TenantTable
from arcus.config.schema import Profile
from arcus.errors import OperatorError
from arcus.escape import build_escapers
from arcus.icap.stage import IcapPolicy
from arcus.policy import Rule, compile_policy
from arcus.policy.egress import HostAddresses
from arcus.policy.intercept import InterceptError, Plan, compile_intercept
from arcus.resolve import build_resolver
from arcus.serve.context import Snapshot
from arcus.tenancy.directory import Tenancy
from arcus.tenancy.views import LimitSpec, TenantView, UserView

_RULE_FIELDS = {f.name for f in dataclasses.fields(Rule)}


@dataclasses.dataclass(frozen=True)
class StoreView:
    """One consistent read of the store (what ``Store.load_all`` returns)."""

    tenants: list
    users: dict[str, list]
    rules: dict[str, list[dict]]


def load_store(store: Any) -> StoreView:
    """Read everything a Snapshot needs from the store, in one read transaction when it can."""
    load_all = getattr(store, "load_all", None)
    if load_all is not None:
        data = load_all()
        return StoreView(list(data.tenants), dict(data.users), dict(data.rules))
    return StoreView(store.list_tenants(), {}, {})


def build_snapshot(
    generation: int, profile: Profile, data: StoreView, own_addresses: HostAddresses | frozenset[str],
    previous: Snapshot | None = None,
) -> Snapshot:
    """``previous``: the Snapshot a reload replaces; its resolvers whose configuration is
    unchanged are kept (their cache and counters go on), the others are new."""
    resolvers = {r.name: _resolver(r, previous) for r in profile.resolvers}
    escapers = build_escapers(profile.escapers, resolvers, own_addresses, profile.source)
    return Snapshot(
        generation=generation,
        profile=profile,
        escapers=escapers,
        resolvers=resolvers,
        servers={s.name: s for s in profile.servers},
        tenancy=build_tenancy(profile, data),
        intercept=build_intercept(profile, intercept_switches(data)),
    )


def _resolver(config: Any, previous: Snapshot | None) -> Any:
    before = previous.resolvers.get(config.name) if previous is not None else None
    if before is not None and _same_config(before.config, config):
        return before
    return build_resolver(config)


def _same_config(a: Any, b: Any) -> bool:
    """The same configuration wherever it stands in the file (``line`` aside)."""
    return type(a) is type(b) and dataclasses.replace(a, line=None) == dataclasses.replace(b, line=None)


def retired_resolvers(old: Snapshot, new: Snapshot) -> list[Any]:
    """``old``'s resolvers that ``new`` does not keep (to be closed once their lookups are done)."""
    kept = {id(r) for r in new.resolvers.values()}
    return [r for r in old.resolvers.values() if id(r) not in kept]


def intercept_switches(data: StoreView) -> dict[str, bool]:
    """The store's per-tenant interception switches (``tenant set --intercept on|off``); a
    tenant at ``default`` is left out: the profile decides for it."""
    return {t.name: t.intercept for t in data.tenants if getattr(t, "intercept", None) is not None}


def build_intercept(profile: Profile, switches: dict[str, bool] | None = None) -> Plan:
    """The profile's ``intercept:`` compiled with the store's switches; OperatorError
    (``file:line: ...``) for a bad rule."""
    try:
        return compile_intercept(profile.intercept, switches)
    except InterceptError as exc:
        where = f"{profile.source}:{exc.line}" if exc.line else profile.source
        raise OperatorError(f"{where}: {exc}", code="invalid", hint=exc.hint or None) from None


def with_store(snapshot: Snapshot, generation: int, data: StoreView) -> Snapshot:
    """A Snapshot that differs only in what comes from the store: escapers and resolver caches are
    kept, and so is the interception plan (with its decision caches) unless a switch changed."""
    switches = intercept_switches(data)
    plan = snapshot.intercept
    if switches != plan.switches:  # the profile compiled once already: this cannot raise
        plan = build_intercept(snapshot.profile, switches)
    return dataclasses.replace(
        snapshot,
        generation=generation,
        tenancy=build_tenancy(snapshot.profile, data),
        intercept=plan,
    )


def rule_from_dict(d: dict) -> Rule:
    unknown = sorted(set(d) - _RULE_FIELDS)
    if unknown:
        raise OperatorError(f"unknown policy rule field {unknown[0]!r}", code="invalid")
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return Rule(**fields)


def _epoch(value: str | None) -> float | None:
    if not value:
        return None
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _limits(obj: Any) -> LimitSpec:
    return LimitSpec(getattr(obj, "max_conns", None), getattr(obj, "rps", None), getattr(obj, "bandwidth", None))


def build_tenancy(profile: Profile, data: StoreView) -> Tenancy:
    views: dict[str, TenantView] = {}
    for t in data.tenants:
        rules = [rule_from_dict(d) for d in data.rules.get(t.name, [])]
        default_action = getattr(t, "default_action", "allow")
        try:
            policy = compile_policy(rules, guard=None, default_action=default_action) if rules or default_action != "allow" else None
        except OperatorError as exc:
            raise OperatorError(f"tenant {t.name}: {exc.message}", code="invalid", hint=exc.hint) from None
        users = {
            u.name: UserView(
                tenant=t.name,
                name=u.name,
                secret=u.secret,
                blocked=bool(u.blocked),
                expires=_epoch(getattr(u, "expires_at", None)),
                limits=_limits(u),
            )
            for u in data.users.get(t.name, [])
        }
        realm = getattr(t, "realm", None) or f"arcus {t.name}"
        views[t.name] = TenantView(
            name=t.name,
            suspended=bool(t.suspended),
            auth=getattr(t, "auth", "none"),
            exempt=tuple(ipaddress.ip_network(c, strict=False) for c in getattr(t, "auth_exempt", ())),
            realm=b'Basic realm="' + realm.replace('"', "'").encode("utf-8", "replace") + b'", charset="UTF-8"',
            policy=policy,
            explicit_ids=frozenset(r.id for r in rules if r.action == "allow" and r.dest_cidrs),
            block_page=getattr(t, "block_page", None),
            log_query=bool(getattr(t, "log_query", False)),
            lock_sources=t.lock_sources,
            icap=_icap_policy(profile, t),
            users=users,
            limits=_limits(t),
        )
    rt = profile.runtime
    box = LimitSpec(rt.max_connections, rt.rps, rt.bandwidth)
    metered = [box] + [v.limits for v in views.values()] + [u.limits for v in views.values() for u in v.users.values()]
    hosts: dict[str, str] = {}
    for t in data.tenants:
        for pattern in getattr(t, "proxy_hosts", ()):
            hosts.setdefault(pattern, t.name)
    return Tenancy(
        tenants=views,
        sources=TenantTable.build(data.tenants),
        box=box,
        proxy_hosts=hosts,
        any_users=any(v.users or v.auth != "none" for v in views.values()),
        any_limits=any(m.rps is not None or m.bandwidth is not None for m in metered),
    )


def _icap_policy(profile: Profile, t: Any) -> IcapPolicy | None:
    """A tenant's ICAP settings against the profile's services. A service the profile lacks
    (removed by a reload) is kept as a policy whose every exchange is an error: the tenant's
    fail mode decides, rather than bodies passing unscanned without a word."""
    name = getattr(t, "icap_service", None)
    if not name:
        return None
    service = next((s for s in profile.icap_services if s.name == name), None)
    return IcapPolicy(
        service_name=name, service=service, fail=getattr(t, "icap_fail", "open"), sample=getattr(t, "icap_sample", 1.0),
        max_body=getattr(t, "icap_max_body", 8 << 20),
        oversize=getattr(t, "icap_oversize", "pass"),
    )
