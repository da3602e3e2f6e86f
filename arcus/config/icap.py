"""The profile's ``icap_services:`` list: ICAP services (RFC 3507) tenants can send bodies to.

```yaml
icap_services:
  - name: av
    servers: [icap://127.0.0.1:1344/avscan, icap://10.0.0.9:1344/avscan]  # failover order
    timeout: 30s
```

Which tenant uses which service, its fail mode, sampling ratio and body bound are tenant
settings in the store (``arcus tenant set T --icap-service av ...``), not profile keys.
"""

from __future__ import annotations

from yaml.nodes import MappingNode, SequenceNode

from arcus.config.schema import IcapServer, IcapServiceConfig
from arcus.config.values import split_host_port
from arcus.config.yamlnodes import (
    BadValue,
    Section,
    line_of,
    read_duration,
    read_int,
    read_list,
    read_name,
    scalar_text,
)

KEYS = ("name", "servers", "connect_timeout", "timeout", "max_connections", "idle_timeout", "options_ttl", "retry_after")
URL_HINT = "write icap://HOST[:PORT]/SERVICE, e.g. icap://127.0.0.1:1344/avscan"


def parse_icap_url(text: str) -> IcapServer:
    """``icap://host[:port]/service`` -> IcapServer (port 1344 by default); ValueError otherwise."""
    if not text.startswith("icap://"):
        raise ValueError(f'"{text}" is not an icap:// URL; {URL_HINT}')
    rest = text[len("icap://") :]
    authority, slash, path = rest.partition("/")
    if not slash or not path or any(c in path for c in " \t\r\n?#"):
        raise ValueError(f'"{text}" names no service path; {URL_HINT}')
    if ":" in authority.removeprefix("[").partition("]")[2] or (":" in authority and not authority.startswith("[")):
        host, port_text, _ = split_host_port(authority, "ICAP server", URL_HINT)
    else:
        host, port_text = authority.strip("[]"), "1344"
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f'invalid host or port in "{text}"; {URL_HINT}')
    return IcapServer(host, int(port_text), "/" + path)


def _read_url(node) -> IcapServer:
    try:
        return parse_icap_url(scalar_text(node, "an icap:// URL"))
    except ValueError as exc:
        raise BadValue(str(exc)) from None


def parse_icap_services(top: Section) -> tuple[IcapServiceConfig, ...]:
    node = top.value_node("icap_services")
    if node is None:
        return ()
    if not isinstance(node, SequenceNode):
        top.error("expected a list of services (- name: av, servers: [icap://...])", line_of(node), key="icap_services")
        return ()
    base = IcapServiceConfig("", ())
    out: list[IcapServiceConfig] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(node.value):
        if not isinstance(item, MappingNode):
            top.error("each service is a mapping with name: and servers:", line_of(item), key="icap_services")
            continue
        sec = Section(item, top.issues, f"icap_services[{i}]", KEYS)
        name = sec.need("name", read_name)
        if name is not None:
            sec.where = f'icap service "{name}"'
            if name in seen:
                sec.error(f"defined twice (first at line {seen[name]})", sec.key_line("name"))
            seen.setdefault(name, sec.key_line("name"))
        servers = sec.need("servers", read_list(_read_url, allow_empty=False))
        config = IcapServiceConfig(
            name=name or "",
            servers=servers or (),
            connect_timeout=sec.take("connect_timeout", read_duration, base.connect_timeout),
            timeout=sec.take("timeout", read_duration, base.timeout),
            max_connections=sec.take("max_connections", read_int(1), base.max_connections),
            idle_timeout=sec.take("idle_timeout", read_duration, base.idle_timeout),
            options_ttl=sec.take("options_ttl", read_duration, base.options_ttl),
            retry_after=sec.take("retry_after", read_duration, base.retry_after),
            line=sec.line,
        )
        if sec.ok and len(set(config.servers)) != len(config.servers):
            sec.error("a server is listed twice", sec.value_line("servers"), key="servers")
        sec.finish()
        if sec.ok:
            out.append(config)
        top.ok = top.ok and sec.ok
    return tuple(out)
