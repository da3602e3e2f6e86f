"""The full-text index beside the real daemon: `arcus audit index` while it serves and writes,
`audit search --text` finding requests made before and after, CSV export of the same log."""

from __future__ import annotations

import csv
import io
import json

import pytest

from arcus.testing.wait import wait_until
from tests.integration.conftest import run_curl

pytestmark = pytest.mark.integration


def _paths(daemon, *args: str) -> list[str]:
    out = daemon.arcus("audit", "search", "--json", *args)
    assert out.returncode == 0, out.stderr
    return sorted(p for p in (json.loads(line)["path"] for line in out.stdout.splitlines()) if p)


def test_index_and_text_search_beside_the_running_daemon(curl, daemon, origin):
    for path in ("/casino/odds", "/news/today"):
        r = run_curl(curl, "-x", f"http://{daemon.proxy}", origin.url(path))
        assert r.returncode == 0, r.stderr
    wait_until(lambda: len(_paths(daemon)) >= 2, timeout=10, interval=0.1, what="two audit events")

    refused = daemon.arcus("audit", "search", "--text", "casino")
    assert refused.returncode == 1 and refused.stderr.splitlines()[0].endswith("has no full-text index")

    built = daemon.arcus("audit", "index")
    assert built.returncode == 0 and built.stderr.startswith("created the full-text index; indexed "), built.stderr
    assert _paths(daemon, "--text", "casino") == ["/casino/odds"]

    r = run_curl(curl, "-x", f"http://{daemon.proxy}", origin.url("/casino/later"))
    assert r.returncode == 0, r.stderr
    # written by the daemon after the index was built: indexed by the next search
    wait_until(lambda: _paths(daemon, "--text", "casino") == ["/casino/later", "/casino/odds"],
               timeout=10, interval=0.1, what="the later request in a text search")
    assert _paths(daemon, "--text", "news") == ["/news/today"]

    exported = daemon.arcus("audit", "export", "--format", "csv")
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert {"/casino/odds", "/news/today", "/casino/later"} <= {r["path"] for r in rows}
    assert "traceback" not in (daemon.log() + exported.stderr).lower()
