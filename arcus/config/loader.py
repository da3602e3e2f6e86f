"""Load a profile: YAML text -> a validated, frozen :class:`~arcus.config.schema.Profile`.

Every problem in the file is collected (YAML syntax, duplicate keys, unknown keys, bad values,
dangling references, clashing listeners) and raised together as one ``ConfigError`` whose
issues read ``file:line: message``. Nothing here starts, binds or resolves anything, so
``arcus config check`` and a reload can call it freely.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TypeVar

from yaml.nodes import MappingNode, SequenceNode

from arcus.config.escaper import ESCAPERS
from arcus.config.graph import Topology
from arcus.config.icap import parse_icap_services
from arcus.config.intercept import parse_intercept
from arcus.config.objects import Context, Family, Item, parse_family
from arcus.config.resolver import RESOLVERS
from arcus.config.schema import EscaperConfig, HttpLimits, Profile, ResolverConfig, ServerConfig, Timeouts
from arcus.config.sections import parse_audit, parse_limits, parse_log, parse_metrics, parse_runtime, parse_timeouts
from arcus.config.server import SERVERS
from arcus.config.sources import profile_text, shipped_names
from arcus.config.values import format_addr
from arcus.config.yamlnodes import Issues, Section, compose, line_of
from arcus.errors import ConfigError, ConfigIssue

__all__ = ["FAMILIES", "check_profile", "load_profile", "parse_profile", "parse_topology", "profile_text", "shipped_names"]

FAMILIES: tuple[Family, ...] = (SERVERS, ESCAPERS, RESOLVERS)
TOP_KEYS = (
    "servers", "escapers", "resolvers", "timeouts", "limits", "log", "runtime", "audit", "metrics", "icap_services", "intercept",
)


def load_profile(name_or_path: str | None) -> Profile:
    """The profile named (None or "default": the embedded default), or ConfigError with every issue.

    Raises OperatorError (NotFound for an unknown name or a missing file) when there is no text to read.
    """
    source, text = profile_text(name_or_path)
    return parse_profile(text, source)


def check_profile(name_or_path: str | None) -> list[ConfigIssue]:
    """Every issue of the profile, in file order; empty when it loads."""
    source, text = profile_text(name_or_path)
    return _parse(text, source)[1]


def parse_profile(text: str, source: str) -> Profile:
    """Parse profile ``text``; ``source`` is the file name used in messages and ``Profile.source``."""
    profile, issues, _ = _parse(text, source)
    if issues or profile is None:
        raise ConfigError(issues)
    return profile


def parse_topology(text: str, source: str) -> Topology:
    """Who refers to whom in profile ``text`` (``arcus config graph``); ConfigError if it does not load."""
    profile, issues, parsed = _parse(text, source)
    if issues or profile is None:
        raise ConfigError(issues)
    listen = {("server", s.name): ", ".join(format_addr(h, p) for h, p in s.listen) for s in profile.servers}
    return Topology.from_items(parsed, listen)


def _parse(text: str, source: str) -> tuple[Profile | None, list[ConfigIssue], dict[str, list[Item]]]:
    issues = Issues(source)
    root = compose(text, issues)  # may report duplicate keys and still return the tree
    if root is None:
        if len(issues):
            return None, issues.sorted(), {}
        issues.add(1, "the profile is empty; it needs at least a servers: list")
        return None, issues.sorted(), {}
    if not isinstance(root, MappingNode):
        issues.add(line_of(root), "expected a mapping at the top level (servers:, escapers:, resolvers:, ...)")
        return None, issues.sorted(), {}

    top = Section(root, issues, "", TOP_KEYS)
    # Profile-wide defaults first: servers inherit them whatever the order in the file.
    ctx = Context(issues, parse_timeouts(top, Timeouts()), parse_limits(top, HttpLimits()))
    log = parse_log(top)
    runtime = parse_runtime(top)
    audit = parse_audit(top)
    metrics = parse_metrics(top)
    icap_services = parse_icap_services(top)
    intercept = parse_intercept(top)
    parsed: dict[str, list[Item]] = {}
    unreadable: set[str] = set()  # families whose section is not a list: their names are unknown
    for family in FAMILIES:
        node = top.value_node(family.plural)
        parsed[family.name] = parse_family(node, family, ctx)
        if node is not None and not isinstance(node, SequenceNode):
            unreadable.add(family.name)
    top.finish()
    _check_references(parsed, unreadable, issues)
    _check_cycles(parsed, issues)
    _check_servers(parsed["server"], top, issues)
    if len(issues):
        return None, issues.sorted(), parsed
    return (
        Profile(
            source=source,
            servers=tuple(_configs(parsed["server"], ServerConfig)),
            escapers=tuple(_configs(parsed["escaper"], EscaperConfig)),
            resolvers=tuple(_configs(parsed["resolver"], ResolverConfig)),
            log=log,
            runtime=runtime,
            audit=audit,
            metrics=metrics,
            icap_services=icap_services,
            intercept=intercept,
        ),
        [],
        parsed,
    )


def _check_references(parsed: dict[str, list[Item]], unreadable: set[str], issues: Issues) -> None:
    """Every ``key: name`` must name a defined object; a left-out one defaults to the only candidate."""
    plural = {f.name: f.plural for f in FAMILIES}
    defined = {
        family: list(dict.fromkeys(i.name for i in items if i.name is not None)) for family, items in parsed.items()
    }
    for items in parsed.values():
        for item in items:
            for ref in item.refs:
                if ref.family in unreadable:
                    continue
                names = defined.get(ref.family, [])
                available = (
                    f"defined {plural[ref.family]}: {', '.join(names)}"
                    if names
                    else f"no {plural[ref.family]} are defined; add one under {plural[ref.family]}:"
                )
                if ref.name is None:
                    if len(names) == 1:
                        if item.config is not None:
                            item.config = _replace(item.config, ref.key, names[0])
                    else:
                        issues.add(ref.line, f'{item.where}: missing key "{ref.key}"; {available}')
                elif ref.name not in names:
                    issues.add(ref.line, f'{item.where}: {ref.family} "{ref.name}" is not defined; {available}')


def _check_cycles(parsed: dict[str, list[Item]], issues: Issues) -> None:
    """No object may lead back to itself through its references (an escaper routing to itself).

    Generic over every reference the type parsers record: one issue per group of objects that
    reach each other, at the reference that starts the cycle earliest in the file.
    """
    where: dict[tuple[str, str | None], str] = {}
    for items in parsed.values():
        for item in items:
            where.setdefault((item.family, item.name), item.where)  # the first of duplicates, as the graph
    for cycle in Topology.from_items(parsed).cycles():
        first = cycle.edges[0]
        family, name = first.source
        if len(cycle.edges) == 1:
            issues.add(first.line, f'{where[first.source]}: {first.key} "{name}" refers to the {family} itself; '
                                   f"point it at another {family}")
            continue
        path = " -> ".join(cycle.names)
        lines = ", ".join(str(e.line) for e in cycle.edges)
        issues.add(first.line, f"{where[first.source]}: {family} references form a cycle {path} (lines {lines}); "
                               f"{_article(family)} {family} must not lead back to itself: point one of them elsewhere")


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


C = TypeVar("C")


def _configs(items: Sequence[Item], cls: type[C]) -> Iterator[C]:
    """The parsed configs of one family, once the profile has no issue (every item parsed)."""
    for item in items:
        if not isinstance(item.config, cls):
            raise TypeError(f"{item.where}: parsed as {type(item.config).__name__}, not a {cls.__name__}")
        yield item.config


def _replace(config: object, key: str, value: str) -> object:
    return replace(config, **{key: value})  # type: ignore[type-var]


def _check_servers(servers: list[Item], top: Section, issues: Issues) -> None:
    """At least one server, and no two listeners on the same address and port."""
    node = top.value_node("servers")
    if node is None or (isinstance(node, SequenceNode) and not node.value):
        line = top.key_line("servers") if node is not None else 1
        issues.add(line, "no servers defined; add at least one under servers:")
        return
    bound: list[tuple[str, int, str, int]] = []  # host, port, server, line
    for item in servers:
        if item.config is None:
            continue
        line = item.key_lines.get("listen", item.name_line)
        for host, port in item.config.listen:
            for other_host, other_port, other, other_line in bound:
                if port != 0 and port == other_port and _overlap(host, other_host):
                    issues.add(
                        line,
                        f"{item.where}: listen {format_addr(host, port)} conflicts with "
                        f'{format_addr(other_host, other_port)} of server "{other}" (line {other_line})',
                    )
            bound.append((host, port, item.name or "", line))


def _overlap(a: str, b: str) -> bool:
    """Would binding both hosts on one port clash? asyncio sets IPV6_V6ONLY, so families never do."""
    for x in _addresses(a):
        for y in _addresses(b):
            if x.version == y.version and (x == y or x.is_unspecified or y.is_unspecified):
                return True
    return False


def _addresses(host: str) -> Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    if host == "localhost":  # binds both loopbacks
        return (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
    return (ipaddress.ip_address(host.split("%", 1)[0]),)

