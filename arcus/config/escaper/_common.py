"""Readers shared by the escaper types: upstream addresses, nested rule lists, references made
inside them, and file paths relative to the profile.

A rule list (``rules:`` of the route escapers, ``next:`` of ``route_select``) is a YAML list of
mappings, each read as its own :class:`Section` (its keys one at a time, unknown keys refused,
``where`` naming the rule's position), so every error names its line. A reference made inside a
rule (``escaper: eu``) is recorded on the object's section like a top-level one, so the loader
checks it against the defined escapers with the same message.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from typing import TypeVar

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from arcus.config.objects import Context, ObjectSection, Reference
from arcus.config.yamlnodes import BadValue, Section, line_of, read_name, scalar_text

T = TypeVar("T")
D = TypeVar("D")

_NULL = "tag:yaml.org,2002:null"
UPSTREAM_HINT = 'write "host:port" with an IP address or a DNS name, e.g. "proxy.example.net:3128" or "[2001:db8::1]:1080"'


def parse_upstream(text: str) -> str:
    """``host:port`` of an upstream (a name is allowed, unlike a listen address), normalized.

    Returns the canonical text (IPv6 in brackets, names lower-cased); port 1-65535.
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f'invalid address "{text}"; {UPSTREAM_HINT}')
        host, port_text = text[1:end], text[end + 2 :]
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(f'"{host}" in brackets is not an IPv6 address') from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f'invalid address "{text}"; {UPSTREAM_HINT}')
        if ":" in host:
            raise ValueError(f'write IPv6 addresses in brackets, e.g. "[{host}]:{port_text}"')
        try:
            host = str(ipaddress.IPv4Address(host))
        except ValueError:
            host = host.lower().rstrip(".")
            labels = host.split(".")
            if not host or len(host) > 253 or not all(
                label and len(label) <= 63 and all(c.isalnum() or c == "-" for c in label) and label.isascii()
                for label in labels
            ):
                raise ValueError(f'"{host}" is not an IP address or a DNS name; {UPSTREAM_HINT}') from None
    if not port_text.isdigit() or not port_text.isascii():
        raise ValueError(f'invalid port "{port_text}" in "{text}"; write a number 1-65535')
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} out of range 1-65535")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_upstream(text: str) -> tuple[str, int]:
    """``(host, port)`` of a normalized upstream address (IPv6 without brackets)."""
    host, _, port = text.rpartition(":")
    if host.startswith("["):
        host = host[1:-1]
    return host, int(port)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _from_text(parse: Callable[[str], T], expected: str) -> Callable[[Node], T]:
    def read(node: Node) -> T:
        text = scalar_text(node, expected)
        try:
            return parse(text)
        except ValueError as exc:
            raise BadValue(str(exc)) from None

    return read


read_upstream = _from_text(parse_upstream, 'an address such as "proxy.example.net:3128"')


def read_secret(node: Node) -> str:
    """A credential: any non-empty string up to 255 bytes (SOCKS5 and Basic both fit)."""
    text = scalar_text(node, "a string")
    if not text:
        raise BadValue("expected a non-empty string")
    if len(text.encode("utf-8", "surrogateescape")) > 255:
        raise BadValue("longer than 255 bytes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise BadValue("control characters are not allowed")
    return text


def is_null(node: Node | None) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL


def profile_path(ctx: Context, text: str) -> str:
    """A path from the profile: a relative one is taken from the profile file's directory."""
    text = os.path.expanduser(text)
    if os.path.isabs(text):
        return text
    source = ctx.issues.file
    if source.startswith("<"):  # embedded profile: relative to the working directory
        return os.path.abspath(text)
    return os.path.join(os.path.dirname(os.path.abspath(source)), text)


def read_rules(
    sec: ObjectSection,
    key: str,
    known: tuple[str, ...],
    parse_one: Callable[[Section, int], T | None],
    *,
    required: bool,
    allow_empty: bool = False,
) -> tuple[T, ...]:
    """A list of mappings under ``key``, each read by ``parse_one(section, index)``.

    ``parse_one`` reads its keys (``finish`` is called here: unknown keys are errors) and returns
    the rule, or None after recording an error. Any error marks ``sec`` not ok.
    """
    node = sec.value_node(key)
    if node is None:
        if required:
            sec.error(f'missing key "{key}"')
        return ()
    if not isinstance(node, SequenceNode):
        sec.error(f"expected a list of mappings ({', '.join(known[:2])}, ...)", line_of(node), key=key)
        return ()
    if not node.value and not allow_empty:
        sec.error("expected a non-empty list", line_of(node), key=key)
        return ()
    out: list[T] = []
    for index, element in enumerate(node.value):
        where = f"{sec.where}: {key}[{index}]"
        if not isinstance(element, MappingNode):
            sec.error(f"{key}[{index}]: expected a mapping with keys {', '.join(known)}", line_of(element))
            continue
        sub = Section(element, sec.issues, where, known)
        rule = parse_one(sub, index)
        sub.finish()
        if not sub.ok:
            sec.ok = False
        elif rule is not None:
            out.append(rule)
    return tuple(out)


def nested_reference(sec: ObjectSection, sub: Section, key: str, family: str = "escaper") -> str | None:
    """Read ``key`` of a nested rule as the name of a ``family`` object and record the reference
    on the object's section (the loader checks it like a top-level one)."""
    name = sub.need(key, read_name)
    if name is not None:
        sec.refs.append(Reference(family, key, name, sub.value_line(key)))
    return name


def take_optional(sub: Section, key: str, reader: Callable[[Node], T], default: D) -> T | D:
    """Like ``Section.take``, and an explicit null means the default (``config show`` writes
    nulls for unset nested fields)."""
    node = sub.value_node(key)
    if node is None or is_null(node):
        return default
    good, value = sub.read(key, reader, node)
    return value if good else default  # type: ignore[return-value]
