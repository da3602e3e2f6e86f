"""``type: http_rproxy``: a reverse proxy choosing the upstream by the request's Host.

    - name: web
      type: http_rproxy
      listen: 0.0.0.0:443
      escaper: direct
      tls: true                       # terminate TLS; the certificate is chosen by SNI
      hosts:
        - names: [www.example.com, example.com]
          upstream: 10.0.0.5:8080
          certificate: certs/www.pem  # relative to the profile's directory
          private_key: certs/www.key
        - names: ["*.api.example.com"]  # any subdomain (not the apex)
          upstream: api.internal:443
          upstream_tls: true            # TLS to the upstream, verified
          upstream_ca: certs/internal-ca.pem
          certificate: certs/api.pem
          private_key: certs/api.key
        - names: ["*"]                  # every other host (and clients without SNI)
          ...

Certificates are loaded here, so ``arcus config check`` reports a missing or mismatched
pair at its line; the server loads them again on each reload (rotated files are picked up).
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass

from yaml.nodes import MappingNode, SequenceNode

from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.schema import ServerConfig
from arcus.config.server.tcp_stream import (
    COMMON_KEYS,
    common_ok,
    is_null,
    parse_common,
    read_host_name,
    read_path,
    read_upstream,
)
from arcus.config.yamlnodes import BadValue, Section, line_of, read_bool, read_list, scalar_text
from arcus.tls.contexts import check_pair, pair_error

TYPE = "http_rproxy"
KEYS = COMMON_KEYS + ("tls", "hosts")
HOST_KEYS = ("names", "upstream", "upstream_tls", "upstream_ca", "upstream_tls_name", "certificate", "private_key")

_LABEL = r"[a-z0-9_](?:[a-z0-9_\-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"(?:\*\.)?(?:{_LABEL}\.)*{_LABEL}|\*")


@dataclass(frozen=True, slots=True)
class RproxyHost:
    """One site: the names it answers for and where its requests go."""

    names: tuple[str, ...]  # "www.example.com" exact, "*.example.com" any subdomain, "*" anything else
    upstream: str  # "host:port"
    upstream_tls: bool = False  # TLS to the upstream, verified against upstream_ca or the system roots
    upstream_ca: str | None = None
    upstream_tls_name: str | None = None  # None: the upstream's host
    certificate: str | None = None  # PEM chain served to clients (tls: true)
    private_key: str | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class HttpRproxyConfig(ServerConfig):
    tls: bool = False  # the listener speaks TLS, with a certificate per host chosen by SNI
    hosts: tuple[RproxyHost, ...] = ()


def read_site_name(node) -> str:
    text = scalar_text(node, "a host name").lower()
    if len(text) > 253 or _NAME.fullmatch(text) is None:
        raise BadValue(f'"{text}" is not a host name, "*.domain" or "*"')
    return text


def _optional(reader):
    def read(node):
        return None if is_null(node) else reader(node)

    return read


def _check_pair(sec: Section, cert: str, key: str) -> None:
    try:
        check_pair(cert, key)
    except (ssl.SSLError, OSError) as exc:
        sec.error(f"cannot load the certificate {cert} with the key {key}: {pair_error(exc)}", sec.value_line("certificate"))


def _parse_host(node: MappingNode, ctx: Context, where: str, tls: bool) -> RproxyHost | None:
    sec = Section(node, ctx.issues, where, HOST_KEYS)
    names = sec.need("names", read_list(read_site_name, allow_empty=False))
    upstream = sec.need("upstream", read_upstream)
    upstream_tls = sec.take("upstream_tls", read_bool, False)
    upstream_ca = sec.take("upstream_ca", read_path(ctx), None)
    tls_name = sec.take("upstream_tls_name", _optional(read_host_name), None)
    cert = sec.take("certificate", read_path(ctx), None)
    key = sec.take("private_key", read_path(ctx), None)
    sec.finish()
    if not upstream_tls:
        for k, v in (("upstream_ca", upstream_ca), ("upstream_tls_name", tls_name)):
            if v is not None:
                sec.error("only used with upstream_tls: true", sec.value_line(k), key=k)
    if tls and sec.ok and (cert is None or key is None):
        missing = "certificate" if cert is None else "private_key"
        sec.error(f'missing key "{missing}": the server has tls: true, so every host needs certificate and private_key')
    if not tls and (cert is not None or key is not None):
        k = "certificate" if cert is not None else "private_key"
        sec.error("only used when the server has tls: true", sec.value_line(k), key=k)
    if sec.ok and cert is not None and key is not None:
        _check_pair(sec, cert, key)
    if not sec.ok or names is None or upstream is None:
        return None
    return RproxyHost(
        names=names,
        upstream=upstream,
        upstream_tls=upstream_tls,
        upstream_ca=upstream_ca,
        upstream_tls_name=tls_name,
        certificate=cert,
        private_key=key,
        line=line_of(node),
    )


def _parse_hosts(sec: ObjectSection, ctx: Context, tls: bool) -> tuple[RproxyHost, ...] | None:
    node = sec.value_node("hosts")
    if node is None:
        sec.error('missing key "hosts"; list the sites this server answers for (names:, upstream:)')
        return None
    if not isinstance(node, SequenceNode) or not node.value:
        sec.error("expected a non-empty list of hosts (- names: [...], upstream: host:port)", line_of(node), key="hosts")
        return None
    hosts: list[RproxyHost] = []
    seen: dict[str, int] = {}
    ok = True
    for index, element in enumerate(node.value):
        where = f"{sec.where}: hosts[{index}]"
        if not isinstance(element, MappingNode):
            sec.error("expected a mapping with names: and upstream:", line_of(element), key=f"hosts[{index}]")
            ok = False
            continue
        host = _parse_host(element, ctx, where, tls)
        if host is None:
            ok = False
            continue
        for name in host.names:
            if name in seen:
                sec.error(f'host name "{name}" is already served by the host at line {seen[name]}', host.line)
                ok = False
            else:
                seen[name] = host.line or 0
        hosts.append(host)
    if not ok:
        sec.ok = False
        return None
    return tuple(hosts)


def parse(sec: ObjectSection, ctx: Context, name: str) -> HttpRproxyConfig | None:
    common = parse_common(sec, ctx)
    tls = sec.take("tls", read_bool, False)
    hosts = _parse_hosts(sec, ctx, tls)
    if not common_ok(sec, common) or hosts is None:
        return None
    return HttpRproxyConfig(name=name, type=TYPE, line=sec.key_line("name"), tls=tls, hosts=hosts, **common)


SPEC = TypeSpec(keys=KEYS, parse=parse)
