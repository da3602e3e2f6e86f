"""The README's edge-box walkthrough, on the shipped `edge` profile unchanged, in two network
namespaces this test creates and removes (``Net`` of the egress tests):

    LAN ns: client and an origin (10.200.T.2) --veth-- edge ns: the daemon (10.200.T.1)

The README's commands add the office tenant (auth required), a user and a default that refuses
unknown sources; then a LAN client gets 407 without credentials and 200 with them, and a client
on the box itself (127.0.0.1: not a private LAN range) gets 403 from the profile's outsiders
escaper. Needs root (namespaces) and ip; under CI=true their absence fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from arcus.config import profile_text
from tests.conftest import IN_CI, require_program
from tests.integration.test_egress_netns import ORIGIN_PORT, Net, curl
from tests.integration.test_tproxy import GatewayDaemon

pytestmark = pytest.mark.integration


@pytest.fixture
def lan(tmp_path):
    ip = require_program("ip")
    require_program("curl")
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("the edge walkthrough needs root (network namespaces)")
        pytest.skip("the edge walkthrough needs root")
    n = Net(ip)
    try:
        n.setup()
        n.origin(n.cl, n.cl_addr, tmp_path / "origin.log")
        yield n
    finally:
        n.close()


def test_readme_walkthrough_on_the_edge_profile(lan: Net, tmp_path) -> None:
    with GatewayDaemon(tmp_path / "edge", profile_text("edge")[1], lan) as d:
        cli = {**d.env, "ARCUS_SOCKET": str(d.socket), "ARCUS_DATA_DIR": str(d.data_dir)}

        def arcus(*args: str, input: str | None = None) -> str:
            r = subprocess.run([sys.executable, "-m", "arcus", *args], input=input, capture_output=True,
                               text=True, timeout=30, env=cli)
            assert r.returncode == 0, r.stderr
            assert "no daemon running" not in r.stderr  # every change went through the daemon
            return r.stdout

        arcus("tenant", "add", "office", "--name", "Office", "--source", f"{lan.cl_addr.rsplit('.', 1)[0]}.0/24")
        arcus("tenant", "set", "office", "--auth", "required")
        arcus("user", "add", "office", "alice", "--password-stdin", input="correct horse\n")
        arcus("tenant", "set", "default", "--default", "deny")

        url = f"http://{lan.cl_addr}:{ORIGIN_PORT}/small"
        assert curl(lan, lan.cl, url, proxy=f"{lan.box_addr}:3128") == "407"
        assert curl(lan, lan.cl, url, proxy=f"alice:correct%20horse@{lan.box_addr}:3128") == "200"
        assert curl(lan, lan.box, url, proxy="alice:correct%20horse@127.0.0.1:3128") == "403"

        stats = d.ctl("stats")
        office = stats["tenants"]["office"]
        assert office["requests"] == 2 and office["errors"] == {"auth_required": 1}
        assert stats["tenants"]["default"]["errors"] == {"denied": 1}
