"""http_rproxy's sites: several upstreams, redirects; the keys as the profile loads them (and as
`arcus config show` prints them back), one bad file per error, and where a redirect sends a
request (``redirect_location``)."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
import yaml

from arcus.config import check_profile, load_profile
from arcus.config.dump import profile_to_dict
from arcus.config.server.http_rproxy import HttpRproxyConfig
from arcus.serve.http_rproxy import redirect_location

BASE = """\
servers:
  - name: web
    type: http_rproxy
    listen: 127.0.0.1:8080
    escaper: direct
    hosts:
{hosts}escapers:
  - name: direct
    type: direct_fixed
resolvers:
  - name: system
    type: system
"""


def write(tmp_path: Path, hosts: str) -> str:
    path = tmp_path / "p.yaml"
    path.write_text(BASE.format(hosts=textwrap.indent(textwrap.dedent(hosts), "      ")))
    return str(path)


def issues(tmp_path: Path, hosts: str) -> list[str]:
    path = write(tmp_path, hosts)
    return [str(i).replace(path, "P", 1) for i in check_profile(path)]


def test_a_site_redirects_instead_of_forwarding(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        - names: [www.example.com]
          upstream: 127.0.0.1:8000
        - names: [example.com]
          redirect: https://www.example.com
        - names: ["*"]
          redirect: https://{host}/
          redirect_status: 308
    """)
    (s,) = load_profile(path).servers
    assert isinstance(s, HttpRproxyConfig)
    www, apex, rest = s.hosts
    assert (www.upstream, www.redirect) == ("127.0.0.1:8000", None)
    assert (apex.upstream, apex.redirect, apex.redirect_status) == (None, "https://www.example.com", 301)
    assert (rest.redirect, rest.redirect_status) == ("https://{host}/", 308)
    shown = profile_to_dict(load_profile(path))
    assert shown["servers"][0]["hosts"][1]["redirect"] == "https://www.example.com"
    # `arcus config show` writes every key (upstream: null on a redirect, redirect: null on the
    # others): what it shows loads again to the same sites
    again = tmp_path / "shown.yaml"
    again.write_text(yaml.safe_dump(shown))
    assert check_profile(str(again)) == []
    (t,) = load_profile(str(again)).servers
    assert isinstance(t, HttpRproxyConfig)
    assert [dataclasses.replace(h, line=None) for h in t.hosts] == [dataclasses.replace(h, line=None) for h in s.hosts]


@pytest.mark.parametrize(
    ("hosts", "want"),
    [
        ("- names: [a.test]\n", 'P:7: server "web": hosts[0]: missing key "upstream" (the host:port the site forwards to), '
                                  'or "redirect" (a URL it sends its visitors to)'),
        ("- names: [a.test]\n  redirect: ftp://b.test\n",
         'P:8: server "web": hosts[0]: redirect: "ftp://b.test" is not an absolute http or https URL; '
         'write an absolute URL such as "https://www.example.com" or "https://{host}"'),
        ("- names: [a.test]\n  redirect: /elsewhere\n",
         'P:8: server "web": hosts[0]: redirect: "/elsewhere" is not an absolute http or https URL; '
         'write an absolute URL such as "https://www.example.com" or "https://{host}"'),
        ("- names: [a.test]\n  redirect: https://b.test/?x=1\n",
         'P:8: server "web": hosts[0]: redirect: "https://b.test/?x=1": the request\'s query is appended; '
         'a redirect has none of its own (no "?" or "#")'),
        ("- names: [a.test]\n  redirect: https://b.test/{path}\n",
         'P:8: server "web": hosts[0]: redirect: "https://b.test/{path}": the only placeholder is {host}, '
         'the host the client asked for'),
        ("- names: [a.test]\n  redirect: https://b.test/{host}\n",
         'P:8: server "web": hosts[0]: redirect: "https://b.test/{host}": {host} stands for a host name: '
         'it goes where the host is ("https://{host}")'),
        ("- names: [a.test]\n  redirect: https://user@b.test\n",
         'P:8: server "web": hosts[0]: redirect: "https://user@b.test": a redirect names no user (no "@")'),
        ("- names: [a.test]\n  redirect: https://b.test:99999\n",
         'P:8: server "web": hosts[0]: redirect: "https://b.test:99999" is not a URL (Port out of range 0-65535); '
         'write an absolute URL such as "https://www.example.com" or "https://{host}"'),
        ("- names: [a.test]\n  redirect: https://b.test\n  redirect_status: 200\n",
         'P:9: server "web": hosts[0]: redirect_status: "200" is not a redirect status; use one of 301, 302, 303, 307, 308'),
        ("- names: [a.test]\n  upstream: 127.0.0.1:1\n  redirect_status: 308\n",
         'P:9: server "web": hosts[0]: redirect_status: only used with redirect:'),
        ("- names: [a.test]\n  redirect: https://b.test\n  upstream: 127.0.0.1:1\n",
         'P:9: server "web": hosts[0]: upstream: a site either forwards to an upstream or redirects, not both: '
         'remove upstream or redirect'),
    ],
)
def test_bad_redirects_are_refused_at_their_line(tmp_path: Path, hosts: str, want: str) -> None:
    assert issues(tmp_path, hosts) == [want]


def test_where_a_request_is_sent() -> None:
    assert redirect_location("https://www.example.com", "example.com", b"/a/b?c=d") == "https://www.example.com/a/b?c=d"
    assert redirect_location("https://www.example.com/", "example.com", b"/") == "https://www.example.com/"
    assert redirect_location("https://new.test/old", "x", b"/p") == "https://new.test/old/p"
    assert redirect_location("https://{host}", "shop.test", b"/cart?id=1") == "https://shop.test/cart?id=1"
    assert redirect_location("https://{host}:8443/", "::1", b"/x") == "https://[::1]:8443/x"
    # a Location is ASCII: bytes beyond it (as the request carried them) are percent-encoded
    assert redirect_location("https://{host}", "a.test", "/caf\u00e9".encode("latin-1")) == "https://a.test/caf%E9"


def test_a_site_may_have_several_upstreams(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        - names: [a.test]
          upstream: [10.0.0.1:80, "[2001:db8::1]:8080", app.internal:80]
        - names: [b.test]
          upstream: [10.0.0.9:80]
    """)
    (s,) = load_profile(path).servers
    assert isinstance(s, HttpRproxyConfig)
    assert s.hosts[0].upstream == ("10.0.0.1:80", "[2001:db8::1]:8080", "app.internal:80")
    assert s.hosts[1].upstream == "10.0.0.9:80"  # a list of one is that one
    again = tmp_path / "shown.yaml"
    again.write_text(yaml.safe_dump(profile_to_dict(load_profile(path))))
    (t,) = load_profile(str(again)).servers
    assert isinstance(t, HttpRproxyConfig)
    assert [h.upstream for h in t.hosts] == [h.upstream for h in s.hosts]


@pytest.mark.parametrize(
    ("upstream", "want"),
    [
        ("[]", 'P:8: server "web": hosts[0]: upstream: expected a non-empty list'),
        ("[10.0.0.1:80, 10.0.0.1:80]", 'P:8: server "web": hosts[0]: upstream: 10.0.0.1:80 is listed twice; name each upstream once'),
        ("[10.0.0.1:80, 10.0.0.2]", 'P:8: server "web": hosts[0]: upstream: '),
    ],
)
def test_bad_upstream_lists_are_refused_at_their_line(tmp_path: Path, upstream: str, want: str) -> None:
    found = issues(tmp_path, f"- names: [a.test]\n  upstream: {upstream}\n")
    assert len(found) == 1 and found[0].startswith(want), found
