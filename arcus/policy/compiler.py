"""Validate one Rule completely and turn it into matchers, before any request sees it.

Every mistake is an OperatorError naming the rule id and the field, with a hint: a Snapshot
whose policy does not compile is refused whole and the previous one keeps serving.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from arcus.errors import OperatorError
from arcus.names import validate_name
from arcus.policy.hosts import HostPattern, PatternError, parse_host_pattern
from arcus.policy.model import ACTIONS, ALLOW, DENY, REDIRECT, REPORT, Decision, Rule
from arcus.policy.nets import NetSet, PortSet, RangeError, parse_cidr, parse_port_range
from arcus.policy.times import TimeWindow, WindowError, parse_window
from arcus.policy.urlpath import normalize_path
from arcus.proto.sniff import PROTOCOLS

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_URL = re.compile(r"https?://[^\s/?#@]+(?:[/?#][^\s]*)?\Z", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
MAX_URL = 2048
MAX_COMMENT = 500

_VERB = {ALLOW: "allowed", DENY: "denied", REDIRECT: "redirected"}


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: Rule
    action: str
    hosts: tuple[HostPattern, ...]  # empty: any host
    dest: NetSet | None
    ports: PortSet | None
    sources: NetSet | None
    methods: frozenset[str] | None
    paths: tuple[str, ...] | None
    times: tuple[TimeWindow, ...] | None
    zone: ZoneInfo
    decision: Decision | None  # the plain outcome, shared by every request it decides (None: report)
    protocols: frozenset[str] | None = None  # tunnels only: decided on the first bytes

    @property
    def id(self) -> str:
        return self.rule.id


class _Fail(Exception):
    def __init__(self, message: str, hint: str | None) -> None:
        self.message = message
        self.hint = hint


def _values(rule: Rule, field: str) -> tuple[str, ...]:
    value = getattr(rule, field)
    if isinstance(value, str):
        raise _Fail("expected a list of values, not one string", f"write {field}=({value!r},)")
    try:
        values = tuple(value)
    except TypeError:
        raise _Fail(f"expected a list of values, got {type(value).__name__}", None) from None
    for item in values:
        if not isinstance(item, str):
            raise _Fail(f"expected text, got {type(item).__name__} {item!r}", None)
    return values


def _hosts(values: tuple[str, ...]) -> tuple[HostPattern, ...]:
    out = []
    for value in values:
        try:
            out.append(parse_host_pattern(value))
        except PatternError as exc:
            raise _Fail(str(exc), exc.hint) from None
    return tuple(out)


def _nets(values: tuple[str, ...]) -> NetSet | None:
    if not values:
        return None
    try:
        return NetSet(parse_cidr(v) for v in values)
    except RangeError as exc:
        raise _Fail(str(exc), exc.hint) from None


def _ports(values: tuple[str, ...]) -> PortSet | None:
    if not values:
        return None
    try:
        return PortSet(parse_port_range(v) for v in values)
    except RangeError as exc:
        raise _Fail(str(exc), exc.hint) from None


def _methods(values: tuple[str, ...]) -> frozenset[str] | None:
    if not values:
        return None
    out = set()
    for value in values:
        method = value.strip()
        if not _TOKEN.match(method):
            raise _Fail(f"bad method {value!r}", "write an HTTP method such as GET, POST or CONNECT")
        out.add(method.upper())
    return frozenset(out)


def _paths(values: tuple[str, ...]) -> tuple[str, ...] | None:
    if not values:
        return None
    out = []
    for value in values:
        if not value.startswith("/") or _CONTROL.search(value) or " " in value or "?" in value or "#" in value:
            raise _Fail(f"bad path prefix {value!r}", "write a path starting with '/', without query, e.g. /admin/")
        out.append(normalize_path(value))
    return tuple(out)


def _protocols(values: tuple[str, ...]) -> frozenset[str] | None:
    if not values:
        return None
    out = set()
    for value in values:
        name = value.strip().lower()
        if name not in PROTOCOLS:
            raise _Fail(f"unknown protocol {value!r}", f"use one of {', '.join(PROTOCOLS)}")
        out.add(name)
    return frozenset(out)


def _times(values: tuple[str, ...]) -> tuple[TimeWindow, ...] | None:
    if not values:
        return None
    try:
        return tuple(parse_window(v) for v in values)
    except WindowError as exc:
        raise _Fail(str(exc), exc.hint) from None


def _zone(name: object) -> ZoneInfo:
    hint = "use an IANA zone name such as 'Europe/Paris' or 'UTC'"
    if not isinstance(name, str) or not name:
        raise _Fail(f"unknown time zone {name!r}", hint)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _Fail(f"unknown time zone {name!r}", hint) from None


def _redirect(rule: Rule) -> str | None:
    url = rule.redirect_to
    if rule.action != REDIRECT:
        if url is not None:
            raise _Fail(f"only action redirect takes a URL (action is {rule.action})",
                        "remove redirect_to or use action redirect")
        return None
    if url is None or url == "":
        raise _Fail("action redirect needs a URL", "give redirect_to, e.g. 'https://intranet.example/blocked'")
    if not isinstance(url, str) or len(url) > MAX_URL or not _URL.match(url) or _CONTROL.search(url):
        raise _Fail(f"bad redirect URL {url!r}",
                    "write an absolute http:// or https:// URL without spaces, e.g. 'https://intranet.example/blocked'")
    return url


def _reason(rule: Rule, url: str | None) -> str:
    verb = _VERB[rule.action]
    text = f"{verb} to {url} by rule {rule.id!r}" if url else f"{verb} by rule {rule.id!r}"
    return f"{text}: {rule.comment}" if rule.comment else text


def compile_rule(rule: Rule) -> CompiledRule:
    """Validate ``rule`` and build its matchers; OperatorError names the rule and the field."""
    if not isinstance(rule, Rule):
        raise OperatorError(f"expected a Rule, got {type(rule).__name__}", code="invalid")
    validate_name("rule", rule.id)
    field = "action"
    try:
        if rule.action not in ACTIONS:
            raise _Fail(f"unknown action {rule.action!r}", "use allow, deny, redirect or report")
        field = "user"
        if rule.user is not None:
            try:
                validate_name("user", rule.user)
            except OperatorError as exc:
                raise _Fail(exc.message, exc.hint) from None
        field = "hosts"
        hosts = _hosts(_values(rule, field))
        field = "dest_cidrs"
        dest = _nets(_values(rule, field))
        field = "ports"
        ports = _ports(_values(rule, field))
        field = "sources"
        sources = _nets(_values(rule, field))
        field = "methods"
        methods = _methods(_values(rule, field))
        field = "path_prefixes"
        paths = _paths(_values(rule, field))
        field = "times"
        times = _times(_values(rule, field))
        field = "protocols"
        protocols = _protocols(_values(rule, field))
        field = "timezone"
        zone = _zone(rule.timezone)
        field = "redirect_to"
        url = _redirect(rule)
        field = "comment"
        if not isinstance(rule.comment, str) or len(rule.comment) > MAX_COMMENT or _CONTROL.search(rule.comment):
            raise _Fail(f"comment must be one line of at most {MAX_COMMENT} characters",
                        "write a short comment on one line; details belong in your change history")
    except _Fail as exc:
        raise OperatorError(f"rule {rule.id!r}: {field}: {exc.message}", code="invalid", hint=exc.hint) from None
    decision = None if rule.action == REPORT else Decision(rule.action, rule.id, _reason(rule, url), (), url, False)
    return CompiledRule(rule, rule.action, hosts, dest, ports, sources, methods, paths, times, zone, decision, protocols)
