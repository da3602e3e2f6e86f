"""Config twins of socks_proxy, intelli_proxy and http_proxy's tls: one bad file per error."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

from arcus.config import check_profile, load_profile
from arcus.config.dump import profile_to_dict
from arcus.config.server.intelli_proxy import IntelliProxyServerConfig
from arcus.config.server.socks_proxy import SocksProxyServerConfig

BASE = """\
servers:
  - name: s
    type: {type}
    listen: 127.0.0.1:1080
    escaper: direct
{extra}escapers:
  - name: direct
    type: direct_fixed
resolvers:
  - name: system
    type: system
"""


def write(tmp_path: Path, extra: str = "", type_: str = "socks_proxy") -> str:
    path = tmp_path / "p.yaml"
    path.write_text(BASE.format(type=type_, extra=textwrap.indent(textwrap.dedent(extra), "    ")))
    return str(path)


def issues(tmp_path: Path, extra: str, type_: str = "socks_proxy") -> list[str]:
    path = write(tmp_path, extra, type_)
    return [str(i).replace(path, "P", 1) for i in check_profile(path)]


def test_defaults_and_every_key(tmp_path: Path) -> None:
    (s,) = load_profile(write(tmp_path)).servers
    assert isinstance(s, SocksProxyServerConfig)
    assert (s.versions, s.udp, s.udp_idle, s.udp_bind) == ((4, 5), True, 60.0, None)
    (s,) = load_profile(write(tmp_path, "versions: [5]\nudp_idle: 90s\nudp_bind: 127.0.0.2\n")).servers
    assert (s.versions, s.udp_idle, s.udp_bind) == ((5,), 90.0, "127.0.0.2")


def test_shown_profile_loads_back_the_same(tmp_path: Path) -> None:
    import yaml

    for type_, extra in (("socks_proxy", "versions: [5]\nudp_idle: 1m\n"), ("intelli_proxy", "trusted_proxies: [10.0.0.0/8]\n")):
        profile = load_profile(write(tmp_path, extra, type_))
        again = tmp_path / "again.yaml"
        again.write_text(yaml.safe_dump(profile_to_dict(profile)))
        unlined = lambda servers: [dataclasses.replace(x, line=None) for x in servers]  # noqa: E731
        assert unlined(load_profile(str(again)).servers) == unlined(profile.servers)


def test_bad_versions(tmp_path: Path) -> None:
    assert issues(tmp_path, "versions: [4, 6]\n") == ['P:6: server "s": versions: SOCKS versions are 4 and 5, got 6']
    assert issues(tmp_path, "versions: []\n") == ['P:6: server "s": versions: expected a non-empty list']
    assert issues(tmp_path, "versions: [5, 5]\n") == ['P:6: server "s": versions: each version may be listed once']


def test_udp_keys_without_udp(tmp_path: Path) -> None:
    assert issues(tmp_path, "udp: false\nudp_idle: 5s\n") == [
        'P:7: server "s": udp_idle: only used with UDP ASSOCIATE, and udp is false'
    ]
    assert issues(tmp_path, "versions: [4]\nudp_bind: 127.0.0.1\n") == [
        'P:7: server "s": udp_bind: only used with UDP ASSOCIATE, and SOCKS5 is not among versions'
    ]


def test_http_only_keys_are_unknown_to_socks(tmp_path: Path) -> None:
    assert issues(tmp_path, "trusted_proxies: [10.0.0.0/8]\n") == [
        'P:6: server "s": unknown key "trusted_proxies"; known keys: name, type, listen, escaper, timeouts, '
        "limits, max_connections, tenant, versions, udp, udp_idle, udp_bind"
    ]


def test_intelli_proxy_takes_both_sets_of_keys(tmp_path: Path) -> None:
    (s,) = load_profile(write(tmp_path, "trusted_proxies: [10.0.0.0/8]\nversions: [5]\n", "intelli_proxy")).servers
    assert isinstance(s, IntelliProxyServerConfig)
    assert s.trusted_proxies == ("10.0.0.0/8",) and s.versions == (5,)


def test_tls_needs_both_files(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("not a certificate")
    assert issues(tmp_path, "tls:\n  certificate: c.pem\n", "http_proxy") == [
        'P:7: server "s": tls: missing key "private_key"'
    ]
    assert issues(tmp_path, "tls:\n  certificate: nope.pem\n  private_key: c.pem\n", "http_proxy") == [
        f'P:7: server "s": tls: certificate: {tmp_path}/nope.pem is not a readable file'
    ]
    got = issues(tmp_path, "tls:\n  certificate: c.pem\n  private_key: c.pem\n", "http_proxy")
    assert len(got) == 1 and got[0].startswith(f'P:7: server "s": tls: certificate: cannot load the certificate {tmp_path}/c.pem')
    assert 'P:7: server "s": tls: unknown key "cert"; known keys: certificate, private_key' in issues(
        tmp_path, "tls:\n  cert: c.pem\n", "http_proxy"
    )


def test_plain_http_proxy_has_no_tls(tmp_path: Path) -> None:
    (s,) = load_profile(write(tmp_path, "", "http_proxy")).servers
    assert s.tls is None
