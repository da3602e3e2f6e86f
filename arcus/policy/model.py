"""The policy's vocabulary: a rule as the operator writes it, a request, a decision, a trace.

All frozen: a Rule comes from the store, a compiled Policy is part of an immutable Snapshot, and
a Decision may be shared between requests (the common ones are built once per rule).
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from datetime import datetime

ALLOW = "allow"
DENY = "deny"
REDIRECT = "redirect"
REPORT = "report"
ACTIONS = (ALLOW, DENY, REDIRECT, REPORT)

SPECIAL_DESTINATION = "builtin:special-destination"
INVALID_HOST = "builtin:invalid-host"
INVALID_ADDRESS = "builtin:invalid-address"
DEFAULT = "builtin:default"  # names the default in a trace; a Decision says None


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of a tenant's (or one user's) ordered policy.

    Within a rule every condition given must match (AND); within a condition any value may
    match (OR); a condition left empty matches everything. ``docs/policy.md`` describes each
    field for operators.
    """

    id: str
    action: str
    hosts: tuple[str, ...] = ()
    dest_cidrs: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    path_prefixes: tuple[str, ...] = ()
    times: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ()  # what a tunnel carries (arcus.proto.sniff.PROTOCOLS)
    timezone: str = "UTC"
    redirect_to: str | None = None
    comment: str = ""
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """What the data plane knows about one request (or tunnel) when it asks for a decision.

    ``host`` is the name the client asked for (or a literal address); ``dest_ip`` the address
    about to be connected to, once resolved. ``now`` must be timezone-aware (a naive value is
    read as UTC); the policy never reads a clock itself. ``is_tunnel`` marks CONNECT, SOCKS and
    other byte streams: their method is ``CONNECT`` unless given, and path prefixes never match.
    ``protocol`` is what a tunnel's first bytes showed (``arcus.proto.sniff``); None before they
    did (a rule with a ``protocols`` condition is then left for the decision on the first bytes)
    and for a plain request, which no ``protocols`` condition matches.
    """

    host: str | None
    port: int
    client_ip: str
    _: KW_ONLY
    now: datetime
    user: str | None = None
    method: str | None = None
    path: str | None = None
    dest_ip: str | None = None
    is_tunnel: bool = False
    protocol: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    action: str  # ALLOW, DENY or REDIRECT; REPORT never decides
    rule_id: str | None  # the deciding rule; a "builtin:..." check; None for the default
    reason: str
    reports: tuple[str, ...] = ()  # "report" rules that matched before the decision
    redirect_to: str | None = None
    needs_address: bool = False  # may change once dest_ip is known: decide again per address
    needs_protocol: bool = False  # may change once a tunnel's protocol is known: decide again then


@dataclass(frozen=True, slots=True)
class TraceEntry:
    rule_id: str
    matched: bool
    why: str
