"""``type: proxy_http``: leave through an upstream HTTP proxy, with a CONNECT tunnel per connection.

Keys: ``proxy`` (``host:port`` of the upstream proxy; a DNS name is resolved with ``resolver``,
which may be left out when the profile has exactly one), ``username`` and ``password`` (Basic
credentials the upstream proxy asks of *us*; a client's own credentials never go upstream).

The upstream proxy resolves the destination's name, so the tenant's per-address policy applies
to names only there (IP literals are still checked); see docs/escapers.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from arcus.config.escaper._common import is_ip, read_secret, read_upstream, split_upstream
from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.schema import EscaperConfig

TYPE = "proxy_http"
PROXY_KEYS = ("proxy", "username", "password", "resolver")
KEYS = PROXY_KEYS


@dataclass(frozen=True, slots=True)
class UpstreamProxyConfig(EscaperConfig):
    """What every proxy escaper has: where the upstream proxy is and how we log in to it."""

    proxy: str = ""  # "host:port", normalized (IPv6 in brackets)
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ProxyHttpEscaperConfig(UpstreamProxyConfig):
    pass


def read_proxy(sec: ObjectSection) -> dict | None:
    """The common keys, as constructor arguments (None when ``proxy`` is missing or bad)."""
    proxy = sec.need("proxy", read_upstream)
    resolver = None
    # A resolver is needed (and defaulted to the only one) when the proxy is given by name.
    if sec.has("resolver") or (proxy is not None and not is_ip(split_upstream(proxy)[0])):
        resolver = sec.reference("resolver", "resolver", required=False)
    username = sec.take("username", read_secret, None)
    password = sec.take("password", read_secret, None)
    if (username is None) != (password is None):
        given, missing = ("username", "password") if username is not None else ("password", "username")
        sec.error(f'{given} is set but {missing} is not; set both, or neither', sec.key_line(given))
    if username is not None and ":" in username and sec.ok:
        sec.error("username: a colon is not allowed (Basic credentials are user:password)", sec.value_line("username"))
    if proxy is None:
        return None
    return dict(proxy=proxy, resolver=resolver, username=username, password=password)


def parse(sec: ObjectSection, ctx: Context, name: str) -> ProxyHttpEscaperConfig | None:
    common = read_proxy(sec)
    if not sec.ok or common is None:
        return None
    return ProxyHttpEscaperConfig(name=name, type=TYPE, line=sec.key_line("name"), **common)


SPEC = TypeSpec(keys=KEYS, parse=parse)
