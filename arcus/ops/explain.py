"""``policy explain``: decide a request as the proxy would, with every rule looked at and why.

The caller gives the data plane's own pieces (:class:`Egress`): the resolver and egress guard
of the escaper a client meets, taken from the Snapshot the daemon serves, or built from the
profile the way the daemon builds them (no daemon). The policy is the one the daemon serves
(``served``) or, without a daemon, the store's. The name is decided first; when the decision
needs the address, the name is resolved by that resolver, the addresses are ordered by the
escaper's resolve strategy and each is decided again, as the data plane does: the refused
ones are skipped, the first allowed one is connected to, and when none is, the first refusal
is the answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import re
import urllib.parse
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from arcus.errors import EscapeError, OperatorError, ProtocolError
from arcus.names import validate_name
from arcus.ops.policies import rule_from_dict
from arcus.policy import Decision, Policy, Request, Rule, TraceEntry, compile_policy
from arcus.policy import explain as explain_policy
from arcus.policy.egress import EgressGuard
from arcus.proto import http1
from arcus.proto.sniff import PROTOCOLS
from arcus.store import Store

if TYPE_CHECKING:
    from arcus.resolve.base import Resolver

MAX_URL = 8192
DEFAULT_CLIENT = "127.0.0.1"
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}\Z")
TARGET_HINT = "give http://host[:port]/path, https://host[:port]/ or host:port (CONNECT)"
CLIENT_HINT = "give an IP address such as 10.20.1.5"


def _invalid(message: str, hint: str | None = None) -> OperatorError:
    return OperatorError(message, code="invalid", hint=hint)


@dataclasses.dataclass(frozen=True, slots=True)
class Egress:
    """Where a client's request leaves: the escaper's name, its resolver and egress guard (None
    for an escaper that does not resolve, such as a proxy escaper: its upstream resolves) and
    the order it tries addresses in."""

    escaper: str
    resolver: Resolver | None
    guard: EgressGuard | None
    strategy: str = "ipv4_first"


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """What a URL asks the proxy for: a plain HTTP request, or a tunnel (CONNECT)."""

    host: str
    port: int
    path: str | None
    is_tunnel: bool


def parse_target(url: object) -> Target:
    """``http://host[:port]/path?query`` (a request), ``https://host[:port]/...`` or
    ``host:port`` (a CONNECT tunnel: the proxy sees neither the path nor the method inside).

    The request a client sends for the URL (without its fragment) is then read by the proxy's
    own parser (``arcus.proto.http1``): the host is the one the policy sees (lowercased, an IPv6
    address in its one compressed form), and what the proxy answers with 400 (userinfo,
    percent-encoding or a backslash in the host, ``127.1``, a host that is not ASCII) is refused
    here rather than decided."""
    if not isinstance(url, str) or not url.strip():
        raise _invalid("missing URL", TARGET_HINT)
    text = url.strip()
    if len(text) > MAX_URL or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise _invalid("invalid URL: too long or containing spaces or control characters", TARGET_HINT)
    lowered = text.lower()
    if lowered.startswith("http://"):
        scheme = "http"
    elif lowered.startswith("https://"):
        scheme = "https"
    elif "://" in text:
        raise _invalid(f"unsupported URL scheme {text.split('://', 1)[0]!r}", TARGET_HINT)
    else:
        scheme = None
    try:
        parts = urllib.parse.urlsplit(text if scheme else "//" + text)
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise _invalid(f"invalid URL {text!r}: {exc}", TARGET_HINT) from None
    if not host:
        raise _invalid(f"invalid URL {text!r}: no host", TARGET_HINT)
    if scheme is None:
        if port is None or parts.path or parts.query or parts.fragment:
            raise _invalid(f"invalid target {text!r}: a bare target is host:port", TARGET_HINT)
    elif port == 0:
        raise _invalid(f"invalid URL {text!r}: port 0", TARGET_HINT)
    if not parts.netloc.isascii():
        raise _invalid(f"invalid URL {text!r}: the host is not ASCII",
                       "write an internationalized name in its A-label form (xn--...), as clients send it")
    if scheme == "http":
        sent = text.split("#", 1)[0]
        line = "GET " + "".join(c if c.isascii() else urllib.parse.quote(c) for c in sent)  # as clients send a path
    else:  # the tunnel a client opens: CONNECT to the authority
        line = f"CONNECT {parts.netloc if port is not None else parts.netloc + ':443'}"
    try:
        parsed = http1.parse_request_head(f"{line} HTTP/1.1\r\nHost: x\r\n\r\n".encode("ascii"), http1.Limits())
    except ProtocolError as exc:
        raise _invalid(f"invalid URL {text!r}: {exc.message}; the proxy answers {exc.status}", TARGET_HINT) from None
    assert parsed is not None  # a whole head
    head = parsed[0]
    assert head.host is not None and head.port is not None  # an absolute URI or an authority names both
    if scheme == "http":
        return Target(head.host, head.port, head.path.decode("ascii"), False)
    return Target(head.host, head.port, None, True)


def parse_client(value: object) -> str:
    if value is None:
        return DEFAULT_CLIENT
    if not isinstance(value, str):
        raise _invalid("the client address (from) must be text", CLIENT_HINT)
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise _invalid(f"invalid client address {value!r}", CLIENT_HINT) from None


def parse_method(value: object, target: Target) -> str:
    default = "CONNECT" if target.is_tunnel else "GET"
    if value is None:
        return default
    if not isinstance(value, str) or not _METHOD.match(value):
        raise _invalid(f"invalid method {value!r}", "give an HTTP method such as GET, POST or CONNECT")
    method = value.upper()
    if target.is_tunnel and method != "CONNECT":
        raise _invalid(
            f"method {method} cannot be explained for a tunnel",
            "an https:// URL or host:port is a CONNECT tunnel: the proxy sees neither the method nor "
            "the path inside it; use an http:// URL to explain a plain HTTP request",
        )
    return method


def parse_protocol(value: object, target: Target) -> str | None:
    """What the tunnel carries, as its first bytes would name it (``arcus.proto.sniff``)."""
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() not in PROTOCOLS:
        raise _invalid(f"unknown protocol {value!r}", f"use one of {', '.join(PROTOCOLS)}")
    if not target.is_tunnel:
        raise _invalid("a protocol is what a tunnel carries",
                       "give https://host/ or host:port (a CONNECT tunnel) with --protocol")
    return value.strip().lower()


def decision_dict(d: Decision) -> dict[str, Any]:
    return {"action": d.action, "rule_id": d.rule_id, "reason": d.reason, "reports": list(d.reports),
            "redirect_to": d.redirect_to}


def trace_list(trace: list[TraceEntry]) -> list[dict[str, Any]]:
    return [{"rule_id": t.rule_id, "matched": t.matched, "why": t.why} for t in trace]


async def resolve(egress: Egress, host: str) -> tuple[list[str], str | None]:
    """The addresses the data plane would try, in its order, or ([], why not)."""
    if egress.resolver is None:
        return [], f"escaper {egress.escaper} does not resolve names (its upstream does)"
    try:
        found = await egress.resolver.resolve(host)
    except EscapeError as exc:
        return [], exc.message
    except (OSError, UnicodeError) as exc:
        return [], f"cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}"
    # imported here: the escapers package is heavy and the CLI imports this module at start-up
    from arcus.escape.direct_fixed import order_addresses

    ordered = order_addresses(list(dict.fromkeys(found)), egress.strategy)
    if found and not ordered:
        return [], f"{host} has no address allowed by resolve strategy {egress.strategy}"
    return ordered, None


def refused_before_policy(store: Store, tenant: str, user: str | None, client: str, now: datetime) -> dict[str, str] | None:
    """What the proxy would refuse the request for before its policy is asked (the admission's
    own steps, ``arcus.tenancy``), as ``{"code", "reason"}``, or None: the tenant suspended, the
    user blocked or expired, another tenant's user from a tenant's locked ranges."""
    current = store.get_tenant(tenant)
    if user is not None:
        account = store.get_user(tenant, user)
        ip = ipaddress.ip_address(client)
        owner, width = None, -1  # the tenant whose source range holds the client most specifically
        for t in store.list_tenants():
            for cidr in t.sources:
                net = ipaddress.ip_network(cidr)
                if ip in net and net.prefixlen > width:
                    owner, width = t, net.prefixlen
        if owner is not None and owner.name != tenant and owner.lock_sources:
            return {"code": "tenant_locked",
                    "reason": f"tenant {owner.name} admits only its own users from its network ({client})"}
        if account.blocked:
            return {"code": "user_blocked", "reason": f"user {user} is blocked"}
        if account.expires_at is not None and datetime.fromisoformat(account.expires_at.replace("Z", "+00:00")) <= now:
            return {"code": "user_expired", "reason": f"the account of user {user} has expired"}
    if current.suspended:
        return {"code": "tenant_suspended", "reason": f"tenant {tenant} is suspended"}
    return None


def load(store: Store, tenant: str, user: str | None) -> tuple[list[Rule], str]:
    """The store's rules and default action of ``tenant`` (NotFound for it or for ``user``)."""
    current = store.get_tenant(tenant)
    if user is not None:
        store.get_user(tenant, user)
    return [rule_from_dict(d) for d in store.list_rules(tenant)], current.default_action


async def explain(
    store: Store,
    tenant: str,
    target: Target,
    *,
    egress: Egress,
    client: str = DEFAULT_CLIENT,
    method: str | None = None,
    protocol: str | None = None,
    user: str | None = None,
    served: Mapping[str, Policy | None] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The explanation of one request for ``tenant``.

    ``served``: the policies the daemon serves, by tenant (None: no rule, default allow); None
    when there is no daemon (the store's rules are explained). The store is read and the policy
    compiled (every pattern parsed) in a worker thread: the daemon's event loop keeps serving.
    """
    validate_name("tenant", tenant)
    if user is not None:
        validate_name("user", user)
    method = parse_method(method, target)
    protocol = parse_protocol(protocol, target)

    when = now or datetime.now(timezone.utc)

    def prepare() -> tuple[Policy, str, dict[str, str] | None]:
        policy, source = compile_for(load(store, tenant, user), tenant, egress, served)
        return policy, source, refused_before_policy(store, tenant, user, client, when)

    policy, source, refused = await asyncio.to_thread(prepare)
    request = Request(target.host, target.port, client, now=when, user=user,
                      method=method, path=target.path, is_tunnel=target.is_tunnel, protocol=protocol)
    decision, trace = explain_policy(policy, request)
    resolved: list[str] = []
    resolve_error: str | None = None
    per_address: list[dict[str, Any]] = []
    if decision.needs_address:
        resolved, resolve_error = await resolve(egress, target.host)
        outcomes = [explain_policy(policy, dataclasses.replace(request, dest_ip=addr)) for addr in resolved]
        per_address = [
            {"address": addr, "decision": decision_dict(d), "trace": trace_list(tr)}
            for addr, (d, tr) in zip(resolved, outcomes)
        ]
        allowed = [o for o in outcomes if o[0].action == "allow"]
        if allowed or outcomes:
            decision, trace = (allowed or outcomes)[0]
    policy_decision = decision_dict(decision)
    if refused is not None:  # the rules are still shown: what they would say once admitted
        policy_decision = {"action": "deny", "rule_id": None, "reason": refused["reason"], "reports": [],
                           "redirect_to": None, "refused": refused["code"]}
    return {
        "tenant": tenant,
        "request": {"host": target.host, "port": target.port, "method": method, "path": target.path,
                    "tunnel": target.is_tunnel, "protocol": protocol, "client": client, "user": user},
        "decision": policy_decision,
        "policy_decision": decision_dict(decision),
        "refused": refused,
        "trace": trace_list(trace),
        "resolved": resolved,
        "addresses": per_address,
        "resolve_error": resolve_error,
        "policy_source": source,
        "escaper": egress.escaper,
    }


def compile_for(
    stored: tuple[list[Rule], str], tenant: str, egress: Egress, served: Mapping[str, Policy | None] | None
) -> tuple[Policy, str]:
    """The policy to explain, compiled with the escaper's egress guard, and where it came from."""
    rules, default_action = stored
    source = "store"
    if served is not None and tenant in served:
        source = "live"
        live = served[tenant]
        rules, default_action = ([], "allow") if live is None else (list(live.rules), live.default_action)
    return compile_policy(rules, guard=egress.guard, default_action=default_action), source
