"""Every shipped profile starts once as the real daemon and serves (or refuses) as its header says.

The listen addresses are moved to 127.0.0.1 port 0 (and the reverse profile's upstream to a test
origin); everything else is the shipped text. Clients here come from 127.0.0.1, which is not a
private LAN range: edge and school refuse them (their "outsiders" escaper), socks-gateway serves
them (it lists loopback), default serves everyone who can reach loopback.
"""

from __future__ import annotations

import re

import pytest

from arcus.config import profile_text, shipped_names
from arcus.testing.daemon import DaemonProcess
from arcus.testing.origin import Origin
from tests.integration.conftest import run_curl

LISTEN = re.compile(r"^(\s*)listen: .*$", re.MULTILINE)


def on_test_ports(name: str, origin: Origin) -> str:
    _, text = profile_text(name)
    text = LISTEN.sub(r"\g<1>listen: 127.0.0.1:0", text)
    return text.replace("upstream: 127.0.0.1:8080", f"upstream: 127.0.0.1:{origin.port}")


def status(proc) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().strip()


@pytest.mark.integration
@pytest.mark.parametrize("name", shipped_names())
def test_shipped_profile_starts_and_serves(name: str, tmp_path, curl, origin: Origin) -> None:
    with DaemonProcess(tmp_path / name, on_test_ports(name, origin)) as d:
        health = d.ctl("health")
        servers = {s["name"]: s["listen"] for s in health["servers"]}
        assert servers and all(servers.values()), health
        first = next(iter(servers.values()))[0]
        w = ("-o", "/dev/null", "-w", "%{http_code}")
        if name == "socks-gateway":
            got = run_curl(curl, "--socks5-hostname", first, *w, origin.url("/small"))
            assert status(got) == "200"
        elif name == "reverse":
            got = run_curl(curl, "-H", "Host: www.example.com", *w, f"http://{first}/small")
            assert status(got) == "200"
            assert origin.requests[-1].header("host") == "www.example.com"
        else:
            got = run_curl(curl, "-x", f"http://{first}", *w, origin.url("/small"))
            expected = "403" if name in ("edge", "school") else "200"
            assert status(got) == expected, d.log()
        if name in ("edge", "school"):
            assert not origin.requests, "a client outside the private ranges reached the origin"
