"""``type: proxy_https``: ``proxy_http`` over TLS to the upstream proxy, its certificate verified.

Keys of ``proxy_http``, and ``ca_file`` (PEM bundle the proxy's certificate must chain to;
default: the system's trusted CAs; relative to the profile's directory) and ``tls_name`` (the
name sent as SNI and verified in the certificate; default: the host of ``proxy``, which must
then be a name or an IP address the certificate lists).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from arcus.config.escaper._common import parse_upstream, profile_path
from arcus.config.escaper.proxy_http import PROXY_KEYS, UpstreamProxyConfig, read_proxy
from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.yamlnodes import BadValue, read_str

TYPE = "proxy_https"
TLS_KEYS = ("ca_file", "tls_name")
KEYS = PROXY_KEYS + TLS_KEYS


@dataclass(frozen=True, slots=True)
class ProxyHttpsEscaperConfig(UpstreamProxyConfig):
    ca_file: str | None = None  # absolute path of a PEM bundle; None: the system's CAs
    tls_name: str | None = None  # SNI and the name verified; None: the proxy's host


def read_tls(sec: ObjectSection, ctx: Context) -> dict:
    ca_file = sec.take("ca_file", read_str, None)
    if ca_file is not None:
        ca_file = profile_path(ctx, ca_file)
        if not os.path.isfile(ca_file):
            sec.error(f"ca_file: {ca_file} does not exist or is not a file", sec.value_line("ca_file"))
    tls_name = sec.take("tls_name", _read_tls_name, None)
    return dict(ca_file=ca_file, tls_name=tls_name)


def _read_tls_name(node) -> str:
    text = read_str(node)
    try:
        host = parse_upstream(f"{text}:1" if ":" not in text else f"[{text}]:1").rsplit(":", 1)[0]
    except ValueError:
        raise BadValue(f'"{text}" is not a DNS name or an IP address') from None
    return host.strip("[]")


def parse(sec: ObjectSection, ctx: Context, name: str) -> ProxyHttpsEscaperConfig | None:
    common = read_proxy(sec)
    tls = read_tls(sec, ctx)
    if not sec.ok or common is None:
        return None
    return ProxyHttpsEscaperConfig(name=name, type=TYPE, line=sec.key_line("name"), **common, **tls)


SPEC = TypeSpec(keys=KEYS, parse=parse)
