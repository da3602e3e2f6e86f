"""A brute-force policy evaluator: the rule language read literally, rule by rule, no indexes.

It shares no matcher with the engine (``ipaddress`` instead of integer tables, string tests
instead of the host index, a plain reading of time windows), only the URL path normalizer,
which has its own tests. The engine's ``decide()`` must agree with it on every request.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from arcus.policy import Request, Rule
from arcus.policy.egress import EgressGuard
from arcus.policy.urlpath import normalize_path

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def ip(text: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(text, str):
        return None
    if ":" in text:
        text = text.split("%", 1)[0]
    else:
        if not re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,3}){3}", text):
            return None
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def norm_host(host: str) -> str:
    if host.endswith("."):
        host = host[:-1]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.lower()


def host_matches(pattern: str, host: str) -> bool:
    pattern = pattern.strip()
    if pattern.startswith("~"):
        return re.fullmatch(pattern[1:], host, re.IGNORECASE) is not None
    pattern = norm_host(pattern)
    if "*" in pattern or "?" in pattern:
        rest = pattern[2:]
        if pattern.startswith("*.") and "*" not in rest and "?" not in rest:
            return host.endswith("." + rest)
        return fnmatch.fnmatchcase(host, pattern)
    if pattern.startswith("."):
        return host == pattern[1:] or host.endswith(pattern)
    return host == pattern


def in_nets(addr: object, cidrs: tuple[str, ...]) -> bool:
    return addr is not None and any(
        addr.version == n.version and addr in n  # type: ignore[attr-defined, operator]
        for n in (ipaddress.ip_network(c.strip(), strict=False) for c in cidrs)
    )


def in_ports(port: int, specs: tuple[str, ...]) -> bool:
    for spec in specs:
        low, _, high = spec.strip().partition("-")
        if type(port) is int and int(low) <= port <= int(high or low):
            return True
    return False


def in_window(window: str, local: datetime) -> bool:
    words = window.split()
    days: set[int] | None = None
    hours = None
    for word in words:
        if ":" in word:
            hours = word
        else:
            days = set()
            for part in word.split(","):
                a, _, b = part.partition("-")
                i, j = DAYS.index(a.lower()), DAYS.index((b or a).lower())
                days.add(i)
                while i != j:
                    i = (i + 1) % 7
                    days.add(i)
    day = local.weekday()
    minute = local.hour * 60 + local.minute
    all_days = set(range(7)) if days is None else days
    if hours is None:
        return day in all_days
    for span in hours.split(","):
        start_text, end_text = span.split("-")
        sh, sm = map(int, start_text.split(":"))
        eh, em = map(int, end_text.split(":"))
        start, end = sh * 60 + sm, eh * 60 + em
        if start < end:
            if day in all_days and start <= minute < end:
                return True
        else:  # crosses midnight: belongs to the day it starts on
            if day in all_days and minute >= start:
                return True
            if (day - 1) % 7 in all_days and minute < end:
                return True
    return False


def evaluate(
    rules: list[Rule], req: Request, guard: EgressGuard | None, default_action: str = "allow"
) -> tuple[str, str | None, tuple[str, ...], str | None, bool, bool]:
    """(action, rule_id, reports, redirect_to, needs_address, needs_protocol) as the rule language says."""
    host = norm_host(req.host) if isinstance(req.host, str) else None
    host = host or None
    if host is not None and len(host) > 253:
        return ("deny", "builtin:invalid-host", (), None, False, False)
    addrs: list[tuple[object, str]] = []
    if host is not None and ip(host) is not None:
        addrs.append((ip(host), host))
    if req.dest_ip is not None:
        dest = ip(req.dest_ip)
        if dest is None:
            return ("deny", "builtin:invalid-address", (), None, False, False)
        if all(dest != a for a, _ in addrs):
            addrs.append((dest, req.dest_ip))
    method = req.method if req.method is not None else ("CONNECT" if req.is_tunnel else None)
    method = method.upper() if method is not None else None
    now = req.now if req.now.tzinfo is not None else req.now.replace(tzinfo=timezone.utc)
    order = [r for r in rules if req.user is not None and r.user == req.user]
    order += [r for r in rules if r.user is None]
    reports: list[str] = []
    needs = needs_protocol = False
    decided: Rule | None = None
    for rule in order:
        checks = [
            not rule.hosts or (host is not None and any(host_matches(p, host) for p in rule.hosts)),
            not rule.ports or in_ports(req.port, rule.ports),
            not rule.sources or in_nets(ip(req.client_ip), rule.sources),
            not rule.methods or (method is not None and method in {m.strip().upper() for m in rule.methods}),
            not rule.path_prefixes
            or (
                not req.is_tunnel
                and isinstance(req.path, str)
                and any(normalize_path(req.path).startswith(normalize_path(p)) for p in rule.path_prefixes)
            ),
            not rule.times or any(in_window(w, now.astimezone(ZoneInfo(rule.timezone))) for w in rule.times),
        ]
        if not all(checks):
            continue
        pending = False  # a protocols condition on a tunnel whose protocol is not known yet
        if rule.protocols:
            if req.protocol is None:
                if not req.is_tunnel:
                    continue
                pending = True
            elif req.protocol not in {p.strip().lower() for p in rule.protocols}:
                continue
        if rule.dest_cidrs:
            if not addrs:
                needs = True
                continue
            if not any(in_nets(a, rule.dest_cidrs) for a, _ in addrs):
                continue
        if pending:
            needs_protocol = True
            continue
        if rule.action == "report":
            reports.append(rule.id)
            continue
        decided = rule
        break
    action = decided.action if decided is not None else default_action
    rule_id = decided.id if decided is not None else None
    if action == "allow" and guard is not None:
        if not addrs:
            needs = True
        for addr, text in addrs:
            if decided is not None and in_nets(addr, decided.dest_cidrs):
                continue
            if guard.check(req.client_ip, text) is not None:
                return ("deny", "builtin:special-destination", tuple(reports), None, False, False)
    if action == "redirect" and req.is_tunnel:  # a tunnel cannot follow a redirect: the rule refuses it
        action = "deny"
    redirect = decided.redirect_to if decided is not None and action == "redirect" else None
    return (action, rule_id, tuple(reports), redirect, needs, needs_protocol)
