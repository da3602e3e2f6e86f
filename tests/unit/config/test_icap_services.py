"""The profile's icap_services: one bad file per error, each as file:line: message."""

from __future__ import annotations

import pytest

from arcus.config.icap import parse_icap_url
from arcus.config.loader import parse_profile
from arcus.config.schema import IcapServer
from arcus.errors import ConfigError

HEAD = """\
servers:
  - name: http
    type: http_proxy
    listen: 127.0.0.1:0
    escaper: direct
escapers:
  - name: direct
    type: direct_fixed
resolvers:
  - name: sys
    type: system
"""


def issues(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_profile(HEAD + text, "p.yaml")
    return [str(i) for i in exc.value.issues]


def test_a_good_service():
    p = parse_profile(HEAD + "icap_services:\n  - name: av\n    servers: [icap://127.0.0.1:1344/avscan, \"icap://[::1]/av\"]\n"
                      "    timeout: 5s\n    max_connections: 4\n", "p.yaml")
    (s,) = p.icap_services
    assert s.servers == (IcapServer("127.0.0.1", 1344, "/avscan"), IcapServer("::1", 1344, "/av"))
    assert (s.timeout, s.max_connections, s.line) == (5.0, 4, 13)
    assert s.servers[1].url == "icap://[::1]:1344/av"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("icap_services: {av: 1}\n", 'p.yaml:12: icap_services: expected a list of services (- name: av, servers: [icap://...])'),
        ("icap_services:\n  - name: av\n", 'p.yaml:13: icap service "av": missing key "servers"'),
        ("icap_services:\n  - name: av\n    servers: [http://x/av]\n",
         'p.yaml:14: icap service "av": servers: "http://x/av" is not an icap:// URL; write icap://HOST[:PORT]/SERVICE, e.g. icap://127.0.0.1:1344/avscan'),
        ("icap_services:\n  - name: av\n    servers: [icap://h:1344]\n",
         'p.yaml:14: icap service "av": servers: "icap://h:1344" names no service path; write icap://HOST[:PORT]/SERVICE, e.g. icap://127.0.0.1:1344/avscan'),
        ("icap_services:\n  - name: av\n    servers: [icap://h/a]\n    timout: 3s\n",
         'p.yaml:15: icap service "av": unknown key "timout"; did you mean "timeout"?'),
        ("icap_services:\n  - name: av\n    servers: [icap://h/a]\n  - name: av\n    servers: [icap://h/b]\n",
         'p.yaml:15: icap service "av": defined twice (first at line 13)'),
        ("icap_services:\n  - name: av\n    servers: [icap://h/a, icap://h/a]\n",
         'p.yaml:14: icap service "av": servers: a server is listed twice'),
        ("icap_services:\n  - name: av\n    servers: [icap://h/a]\n    max_connections: 0\n",
         'p.yaml:15: icap service "av": max_connections: must be at least 1, got 0'),
    ],
)
def test_one_error_per_file(text, expected):
    assert issues(text) == [expected]


@pytest.mark.parametrize("url", ["icap://h:0/a", "icap://h:70000/a", "icap://:1344/a", "icap://h/a b", "icap://h/"])
def test_bad_urls(url):
    with pytest.raises(ValueError):
        parse_icap_url(url)
