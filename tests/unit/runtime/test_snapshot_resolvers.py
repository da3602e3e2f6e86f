"""A reload keeps the resolvers whose configuration did not change (their cache and counters go
on) and retires the others, to be closed once their lookups are over."""

from __future__ import annotations

from pathlib import Path

from arcus.config import load_profile
from arcus.runtime.snapshot import StoreView, build_snapshot, retired_resolvers

PROFILE = """
servers:
  - {{name: http, type: http_proxy, listen: "127.0.0.1:0", escaper: direct}}
escapers:
  - {{name: direct, type: direct_fixed, resolver: dns}}
resolvers:
{blank}  - {{name: dns, type: c_ares, servers: ["127.0.0.1:5353"], timeout: {timeout}}}
  - {{name: system, type: system}}
"""


def snapshot(tmp_path: Path, previous=None, *, timeout: str = "5s", blank: str = ""):
    path = tmp_path / "p.yaml"
    path.write_text(PROFILE.format(timeout=timeout, blank=blank))
    return build_snapshot(2, load_profile(str(path)), StoreView([], {}, {}), frozenset(), previous)


def test_unchanged_resolvers_are_kept_changed_ones_are_new_and_retired(tmp_path: Path) -> None:
    first = snapshot(tmp_path)
    first.resolvers["system"].stats.lookups = 158
    same = snapshot(tmp_path, first, blank="\n\n")  # the same configuration on other lines
    assert same.resolvers["dns"] is first.resolvers["dns"] and same.resolvers["system"] is first.resolvers["system"]
    assert same.resolvers["system"].stats.lookups == 158
    assert same.escapers["direct"].resolver is first.resolvers["dns"]
    assert retired_resolvers(first, same) == []
    changed = snapshot(tmp_path, same, timeout="3s")
    assert changed.resolvers["dns"] is not same.resolvers["dns"] and changed.resolvers["system"] is same.resolvers["system"]
    assert retired_resolvers(same, changed) == [same.resolvers["dns"]]
    assert snapshot(tmp_path).resolvers["dns"] is not first.resolvers["dns"]  # no previous: all new
