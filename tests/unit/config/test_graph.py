"""The reference graph of a profile: text tree, Graphviz dot, JSON, and cycles refused with file:line."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from arcus.cli.app import app
from arcus.config import check_profile
from arcus.config.graph import Topology
from arcus.config.loader import parse_topology
from arcus.config.objects import Item, Reference
from arcus.errors import ConfigError

ROUTED = """\
servers:
  - name: http
    type: http_proxy
    listen: 127.0.0.1:3128
    escaper: route
  - name: plain
    type: http_proxy
    listen: ["127.0.0.1:3129", "[::1]:3129"]
    escaper: direct
escapers:
  - name: route
    type: route_upstream
    rules:
      - hosts: [.corp.example]
        escaper: failover
      - nets: [10.0.0.0/8]
        escaper: deny
    fallback: direct
  - name: failover
    type: route_failover
    primary: direct
    standby: deny
  - name: direct
    type: direct_fixed
    resolver: dns
  - name: deny
    type: dummy_deny
  - name: spare
    type: direct_fixed
    resolver: system
resolvers:
  - name: dns
    type: c_ares
    servers: [127.0.0.1:5353]
  - name: system
    type: system
  - name: unused
    type: system
"""

TEXT = """\
server http (http_proxy, 127.0.0.1:3128)
└── escaper route (route_upstream)
    ├── escaper failover (route_failover)
    │   ├── escaper direct (direct_fixed) [primary]
    │   │   └── resolver dns (c_ares)
    │   └── escaper deny (dummy_deny) [standby]
    ├── escaper deny (dummy_deny)
    └── escaper direct (direct_fixed) [fallback] (shown above)
server plain (http_proxy, 127.0.0.1:3129, [::1]:3129)
└── escaper direct (direct_fixed) (shown above)

not used by any server:
escaper spare (direct_fixed)
└── resolver system (system)
resolver unused (system)
"""

DOT = """\
digraph arcus {
  rankdir=LR;
  node [fontname="Helvetica"];
  edge [fontname="Helvetica"];
  "server/http" [label="http\\nhttp_proxy\\n127.0.0.1:3128", shape=box];
  "server/plain" [label="plain\\nhttp_proxy\\n127.0.0.1:3129, [::1]:3129", shape=box];
  "escaper/route" [label="route\\nroute_upstream", shape=ellipse];
  "escaper/failover" [label="failover\\nroute_failover", shape=ellipse];
  "escaper/direct" [label="direct\\ndirect_fixed", shape=ellipse];
  "escaper/deny" [label="deny\\ndummy_deny", shape=ellipse];
  "escaper/spare" [label="spare\\ndirect_fixed", shape=ellipse];
  "resolver/dns" [label="dns\\nc_ares", shape=hexagon];
  "resolver/system" [label="system\\nsystem", shape=hexagon];
  "resolver/unused" [label="unused\\nsystem", shape=hexagon];
  "server/http" -> "escaper/route";
  "server/plain" -> "escaper/direct";
  "escaper/route" -> "escaper/failover";
  "escaper/route" -> "escaper/deny";
  "escaper/route" -> "escaper/direct" [label="fallback"];
  "escaper/failover" -> "escaper/direct" [label="primary"];
  "escaper/failover" -> "escaper/deny" [label="standby"];
  "escaper/direct" -> "resolver/dns";
  "escaper/spare" -> "resolver/system";
}
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def issues(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    return [str(i).replace(path, "P", 1) for i in check_profile(path)]


# --- rendering ----------------------------------------------------------------------------------


def test_text_tree() -> None:
    assert parse_topology(ROUTED, "p.yaml").to_text() == TEXT


def test_dot() -> None:
    assert parse_topology(ROUTED, "p.yaml").to_dot() == DOT


def test_json_lists_nodes_and_edges_with_lines() -> None:
    data = parse_topology(ROUTED, "p.yaml").to_dict()
    assert data["nodes"][0] == {"family": "server", "name": "http", "type": "http_proxy", "line": 2}
    assert {"from": ["escaper", "route"], "to": ["escaper", "failover"], "key": "escaper", "line": 15} in data["edges"]
    assert {"from": ["escaper", "route"], "to": ["escaper", "direct"], "key": "fallback", "line": 18} in data["edges"]
    assert len(data["edges"]) == 9


def test_left_out_resolver_is_drawn_to_the_only_one() -> None:
    text = """\
        servers: [{name: http, type: http_proxy, listen: "127.0.0.1:0", escaper: direct}]
        escapers: [{name: direct, type: direct_fixed}]
        resolvers: [{name: only, type: system}]
    """
    topology = parse_topology(textwrap.dedent(text), "p.yaml")
    assert [(e.source, e.target, e.key) for e in topology.edges] == [
        (("server", "http"), ("escaper", "direct"), "escaper"),
        (("escaper", "direct"), ("resolver", "only"), "resolver"),
    ]


def test_graph_of_a_broken_profile_is_its_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_topology(ROUTED.replace("fallback: direct", "fallback: nowhere"), "p.yaml")
    assert [str(i) for i in info.value.issues] == [
        'p.yaml:18: escaper "route": escaper "nowhere" is not defined; '
        "defined escapers: route, failover, direct, deny, spare"
    ]


def test_dangling_reference_is_left_out_of_the_topology() -> None:
    items = {
        "escaper": [Item("escaper", 0, "a", 1, None, 'escaper "a"', refs=[Reference("escaper", "next", "ghost", 2)])],
    }
    topology = Topology.from_items(items)
    assert topology.edges == () and [n.type for n in topology.nodes] == ["?"]
    assert topology.cycles() == []


# --- cycles -------------------------------------------------------------------------------------

BASE = """\
servers:
  - name: http
    type: http_proxy
    listen: 127.0.0.1:3128
    escaper: a
escapers:
  - name: direct
    type: direct_fixed
resolvers:
  - name: system
    type: system
"""


def failover(name: str, primary: str, standby: str = "direct") -> str:
    return f"  - name: {name}\n    type: route_failover\n    primary: {primary}\n    standby: {standby}\n"


def with_escapers(*blocks: str) -> str:
    head, tail = BASE.split("resolvers:\n")
    return head + "".join(blocks) + "resolvers:\n" + tail


def test_two_escapers_pointing_at_each_other(tmp_path: Path) -> None:
    text = with_escapers(failover("a", "b"), failover("b", "a"))
    assert issues(tmp_path, text) == [
        'P:11: escaper "a": escaper references form a cycle a -> b -> a (lines 11, 15); '
        "an escaper must not lead back to itself: point one of them elsewhere"
    ]


def test_escaper_routing_to_itself_through_a_nested_rule(tmp_path: Path) -> None:
    route = "  - name: a\n    type: route_upstream\n    rules:\n      - hosts: [x.example]\n        escaper: a\n" \
            "    fallback: direct\n"
    assert issues(tmp_path, with_escapers(route)) == [
        'P:13: escaper "a": escaper "a" refers to the escaper itself; point it at another escaper'
    ]


def test_one_issue_per_cycle_even_when_many_paths_loop(tmp_path: Path) -> None:
    # a -> b -> c -> a and b -> a: one group, reported once, by its shortest cycle from a
    text = with_escapers(failover("a", "b"), failover("b", "c", "a"), failover("c", "a"), failover("d", "e"),
                         failover("e", "d"))
    assert issues(tmp_path, text) == [
        'P:11: escaper "a": escaper references form a cycle a -> b -> a (lines 11, 16); '
        "an escaper must not lead back to itself: point one of them elsewhere",
        'P:23: escaper "d": escaper references form a cycle d -> e -> d (lines 23, 27); '
        "an escaper must not lead back to itself: point one of them elsewhere",
    ]


def test_diamond_is_not_a_cycle(tmp_path: Path) -> None:
    text = with_escapers(failover("a", "b", "c"), failover("b", "direct", "c"), failover("c", "direct", "deny"),
                         "  - name: deny\n    type: dummy_deny\n")
    assert issues(tmp_path, text) == []
    tree = parse_topology(textwrap.dedent(text), "p.yaml").to_text()
    assert tree.count("escaper c (route_failover)") == 2 and tree.count("(shown above)") == 2


def test_long_chain_neither_recurses_too_deep_nor_takes_long(tmp_path: Path) -> None:
    n = 1500  # past the recursion limit (1000)
    blocks = [failover(f"e{i}", f"e{i + 1}") for i in range(n)] + ["  - name: e%d\n    type: dummy_deny\n" % n]
    text = with_escapers(*blocks).replace("escaper: a", "escaper: e0")
    started = time.monotonic()
    topology = parse_topology(text, "p.yaml")
    tree = topology.to_text()
    # the server, n failovers, the deny, direct with its resolver once, then n - 1 "shown above"
    assert tree.count("\n") == 2 * n + 3 and tree.count("(shown above)") == n - 1
    looped = with_escapers(*blocks[:-1], failover(f"e{n}", "e0")).replace("escaper: a", "escaper: e0")
    found = issues(tmp_path, looped)
    assert len(found) == 1 and found[0].startswith('P:11: escaper "e0": escaper references form a cycle e0 -> e1 -> ')
    assert time.monotonic() - started < 20


# --- the command --------------------------------------------------------------------------------


def test_cli_graph_text_dot_json_and_error(tmp_path: Path) -> None:
    runner = CliRunner()
    path = write(tmp_path, ROUTED)
    r = runner.invoke(app, ["config", "graph", path])
    assert r.exit_code == 0 and r.stdout == TEXT
    r = runner.invoke(app, ["config", "graph", path, "--dot"])
    assert r.exit_code == 0 and r.stdout == DOT
    r = runner.invoke(app, ["config", "graph", path, "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["source"] == path
    bad = write(tmp_path, with_escapers(failover("a", "b"), failover("b", "a")))
    r = runner.invoke(app, ["config", "graph", bad])
    assert r.exit_code == 1
    assert r.stderr.startswith(f'{bad}:11: escaper "a": escaper references form a cycle a -> b -> a')
