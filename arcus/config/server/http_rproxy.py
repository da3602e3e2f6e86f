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
        - names: [app.example.com]
          upstream: [10.0.0.7:8080, 10.0.0.8:8080]   # taken in turn; one that fails is skipped for a while
          ...
        - names: ["*.api.example.com"]  # any subdomain (not the apex)
          upstream: api.internal:443
          upstream_tls: true            # TLS to the upstream, verified
          upstream_ca: certs/internal-ca.pem
          certificate: certs/api.pem
          private_key: certs/api.key
        - names: ["*"]                  # every other host (and clients without SNI)
          ...
        - names: [old.example.com]
          redirect: https://www.example.com   # answered here: 301 to it, the path and query kept
          redirect_status: 308

Certificates are loaded here, so ``arcus config check`` reports a missing or mismatched
pair at its line; the server loads them again on each reload (rotated files are picked up).
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

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
HOST_KEYS = (
    "names", "upstream", "upstream_tls", "upstream_ca", "upstream_tls_name", "certificate", "private_key",
    "redirect", "redirect_status",
)
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
HOST_FIELD = "{host}"
"""The one placeholder of a ``redirect``: the host the client asked for, without its port."""

_LABEL = r"[a-z0-9_](?:[a-z0-9_\-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"(?:\*\.)?(?:{_LABEL}\.)*{_LABEL}|\*")


@dataclass(frozen=True, slots=True)
class RproxyHost:
    """One site: the names it answers for and where its requests go."""

    names: tuple[str, ...]  # "www.example.com" exact, "*.example.com" any subdomain, "*" anything else
    # "host:port", or several ("upstream: [a:80, b:80]": taken in turn, a failed one skipped for
    # a while: arcus.serve.http_rproxy.Site); None: the site redirects
    upstream: str | tuple[str, ...] | None
    upstream_tls: bool = False  # TLS to the upstream, verified against upstream_ca or the system roots
    upstream_ca: str | None = None
    upstream_tls_name: str | None = None  # None: the upstream's host
    certificate: str | None = None  # PEM chain served to clients (tls: true)
    private_key: str | None = None
    redirect: str | None = None  # "https://www.example.com" or "https://{host}": answered with redirect_status to it
    redirect_status: int = 301
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


def read_upstreams(node) -> str | tuple[str, ...]:
    """``upstream: host:port``, or a list of them (each once) that the site takes in turn."""
    if not isinstance(node, SequenceNode):
        return read_upstream(node)
    out = read_list(read_upstream, allow_empty=False)(node)
    twice = next((u for i, u in enumerate(out) if u in out[:i]), None)
    if twice is not None:
        raise BadValue(f"{twice} is listed twice; name each upstream once")
    return out[0] if len(out) == 1 else out


def upstream_list(value: str | tuple[str, ...] | None) -> tuple[str, ...]:
    """A site's upstreams as a tuple (none for a redirecting site)."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else value


def read_redirect(node) -> str:
    """A site's ``redirect``: an absolute http(s) URL without query or fragment, whose host may
    be ``{host}`` (the request's path and query are appended when a request is answered)."""
    text = scalar_text(node, "a URL")
    hint = 'write an absolute URL such as "https://www.example.com" or "https://{host}"'
    if not text.isascii() or not text.isprintable() or " " in text:
        raise BadValue(f'"{text}": a redirect is printable ASCII without spaces; {hint}')
    try:
        parts = urlsplit(text.replace(HOST_FIELD, "example.com"))
        _ = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise BadValue(f'"{text}" is not a URL ({exc}); {hint}') from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadValue(f'"{text}" is not an absolute http or https URL; {hint}')
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise BadValue(f'"{text}": the request\'s query is appended; a redirect has none of its own (no "?" or "#")')
    if "{" in text.replace(HOST_FIELD, "") or "}" in text.replace(HOST_FIELD, ""):
        raise BadValue(f'"{text}": the only placeholder is {HOST_FIELD}, the host the client asked for')
    if parts.username is not None or "@" in parts.netloc:
        raise BadValue(f'"{text}": a redirect names no user (no "@")')
    if HOST_FIELD in text and HOST_FIELD not in urlsplit(text).netloc:
        raise BadValue(f'"{text}": {HOST_FIELD} stands for a host name: it goes where the host is ("https://{{host}}")')
    return text


def read_redirect_status(node) -> int:
    text = scalar_text(node, "an HTTP status")
    if not text.isdigit() or int(text) not in REDIRECT_STATUSES:
        raise BadValue(f'"{text}" is not a redirect status; use one of {", ".join(map(str, REDIRECT_STATUSES))}')
    return int(text)


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
    redirect = sec.take("redirect", _optional(read_redirect), None)
    redirect_status = sec.take("redirect_status", read_redirect_status, 301)
    upstream = sec.take("upstream", _optional(read_upstreams), None)
    given = {k for k in ("upstream", "redirect") if (n := sec.value_node(k)) is not None and not is_null(n)}
    if not given and sec.ok:
        sec.error('missing key "upstream" (the host:port the site forwards to), or "redirect" (a URL it sends its visitors to)')
    upstream_tls = sec.take("upstream_tls", read_bool, False)
    upstream_ca = sec.take("upstream_ca", read_path(ctx), None)
    tls_name = sec.take("upstream_tls_name", _optional(read_host_name), None)
    cert = sec.take("certificate", read_path(ctx), None)
    key = sec.take("private_key", read_path(ctx), None)
    sec.finish()
    if "redirect" in given:
        # ``arcus config show`` writes every key (null, false): only what says otherwise counts
        for k, v in (("upstream", upstream), ("upstream_tls", upstream_tls), ("upstream_ca", upstream_ca), ("upstream_tls_name", tls_name)):
            if v:
                sec.error(f"a site either forwards to an upstream or redirects, not both: remove {k} or redirect",
                          sec.value_line(k), key=k)
    elif redirect_status != 301:
        sec.error("only used with redirect:", sec.value_line("redirect_status"), key="redirect_status")
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
    if not sec.ok or names is None or (upstream is None and redirect is None):
        return None
    return RproxyHost(
        names=names,
        upstream=upstream,
        upstream_tls=upstream_tls,
        upstream_ca=upstream_ca,
        upstream_tls_name=tls_name,
        certificate=cert,
        private_key=key,
        redirect=redirect,
        redirect_status=redirect_status,
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
