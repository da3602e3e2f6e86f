"""The profile loader: one bad file per error kind, asserting the exact ``file:line: message``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from arcus.config import check_profile, load_profile, parse_profile, profile_text
from arcus.config.schema import HttpLimits, Timeouts
from arcus.errors import ConfigError

VALID = """\
servers:
  - name: http
    type: http_proxy
    listen: 127.0.0.1:3128
    escaper: direct
escapers:
  - name: direct
    type: direct_fixed
    resolver: system
  - name: deny
    type: dummy_deny
resolvers:
  - name: system
    type: system
"""


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def issues(tmp_path: Path, text: str) -> list[str]:
    """Every issue of ``text`` as ``file:line: message``, with the temp path shortened to ``P``."""
    path = write(tmp_path, text)
    return [str(i).replace(path, "P", 1) for i in check_profile(path)]


# --- what loads ---------------------------------------------------------------------------------


def test_embedded_default_loads_with_http_server_on_loopback_3128() -> None:
    profile = load_profile(None)
    assert profile.source == "<embedded:default>"
    (server,) = profile.servers
    assert (server.name, server.type, server.listen, server.escaper) == ("http", "http_proxy", (("127.0.0.1", 3128),), "direct")
    _, text = profile_text(None)
    assert server.line == text.splitlines().index("  - name: http") + 1  # below the comment header
    assert profile.escaper("direct").type == "direct_fixed"
    assert profile.escaper("direct").resolver == "system"
    assert profile.escaper("deny").type == "dummy_deny"
    assert profile.resolver("system").timeout == 5.0
    assert load_profile("default") == profile
    assert check_profile("default") == []


def test_valid_profile_from_a_path_keeps_lines_and_source(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    profile = load_profile(path)
    assert profile.source == path
    assert [s.line for s in profile.servers] == [2]
    assert [e.line for e in profile.escapers] == [7, 10]
    assert [r.line for r in profile.resolvers] == [13]
    assert profile.servers[0].timeouts == Timeouts()
    assert profile.servers[0].limits == HttpLimits()


def test_server_timeouts_and_limits_override_the_global_ones_key_by_key(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, VALID + """\
timeouts:
  client_idle: 5s
  upstream_connect: 500ms
limits:
  max_headers: 50
"""))
    assert profile.servers[0].timeouts == Timeouts(client_idle=5.0, upstream_connect=0.5)
    text = VALID.replace("    escaper: direct\n", """\
    escaper: direct
    timeouts:
      client_idle: 2m
      tunnel_idle: 1h
    limits:
      max_header_bytes: 1MiB
""") + "timeouts:\n  client_idle: 5s\n  upstream_connect: 3\n"
    server = load_profile(write(tmp_path, text)).servers[0]
    assert server.timeouts == Timeouts(client_idle=120.0, upstream_connect=3.0, tunnel_idle=3600.0)
    assert server.limits == HttpLimits(max_header_bytes=1024 * 1024)


def test_global_sections_may_come_after_the_servers(tmp_path: Path) -> None:
    text = "timeouts:\n  client_header: 7s\n" + VALID
    assert load_profile(write(tmp_path, text)).servers[0].timeouts.client_header == 7.0


def test_listen_forms_and_port_zero(tmp_path: Path) -> None:
    text = VALID.replace(
        "listen: 127.0.0.1:3128",
        'listen: ["127.0.0.1:0", "[::1]:0", "localhost:8080", "[0:0::1]:0"]',
    ).replace("escapers:", "  - name: second\n    type: http_proxy\n    listen: 127.0.0.1:0\n    escaper: deny\nescapers:")
    profile = load_profile(write(tmp_path, text))
    assert profile.servers[0].listen == (("127.0.0.1", 0), ("::1", 0), ("localhost", 8080), ("::1", 0))
    assert profile.servers[1].listen == (("127.0.0.1", 0),)


def test_resolver_defaults_to_the_only_one(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, VALID.replace("    resolver: system\n", "")))
    assert profile.escaper("direct").resolver == "system"


def test_escaper_options(tmp_path: Path) -> None:
    text = VALID.replace("    resolver: system\n", """\
    resolver: system
    bind: 2001:db8::1
    resolve_strategy: ipv6_only
    allow_special: [10.1.2.3/8, "fd00::/8"]
    loopback_for_local_clients: false
""")
    escaper = load_profile(write(tmp_path, text)).escaper("direct")
    assert escaper.bind == "2001:db8::1"
    assert escaper.resolve_strategy == "ipv6_only"
    assert escaper.allow_special == ("10.0.0.0/8", "fd00::/8")
    assert escaper.loopback_for_local_clients is False


def test_log_runtime_and_resolver_keys(tmp_path: Path) -> None:
    text = VALID + """\
    timeout: 2s
    cache_ttl: 5m
    negative_ttl: 1.5s
    max_entries: 100
log:
  level: debug
  target: /var/log/arcus.log
  access: false
runtime:
  graceful_timeout: 45s
"""
    profile = load_profile(write(tmp_path, text))
    r = profile.resolver("system")
    assert (r.timeout, r.cache_ttl, r.negative_ttl, r.max_entries) == (2.0, 300.0, 1.5, 100)
    assert (profile.log.level, profile.log.target, profile.log.access) == ("debug", "/var/log/arcus.log", False)
    assert profile.runtime.graceful_timeout == 45.0


def test_yaml_merge_keys_share_settings(tmp_path: Path) -> None:
    # An anchor must come before its alias, so the global section goes first here.
    text = "timeouts: &fast\n  client_idle: 1s\n  client_header: 2s\n" + VALID.replace("    escaper: direct\n", """\
    escaper: direct
    timeouts:
      <<: *fast
      client_idle: 9s
""")
    server = load_profile(write(tmp_path, text)).servers[0]
    assert (server.timeouts.client_idle, server.timeouts.client_header) == (9.0, 2.0)


def test_parse_profile_takes_text_and_a_label() -> None:
    assert parse_profile(VALID, "inline").source == "inline"
    with pytest.raises(ConfigError) as err:
        parse_profile("servers: []\n", "inline")
    assert str(err.value) == "inline:1: no servers defined; add at least one under servers:"


# --- YAML-level errors --------------------------------------------------------------------------


def test_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    text = VALID.replace("    escaper: direct\n", "    escaper: direct\n   bad: [\n")
    assert issues(tmp_path, text) == [
        "P:6: invalid YAML: while parsing a block collection, expected <block end>, but found '<block mapping start>'"
    ]
    text = "servers:\n  - name: a\n    type: x: y\n"
    assert issues(tmp_path, text) == ["P:3: invalid YAML: mapping values are not allowed here"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # a flow mapping never closed on line 7: PyYAML notices at line 9 (issue 11)
        ("  - name: direct\n    type: direct_fixed\n    resolver: system\n",
         "  - {name: direct, type: direct_fixed\n\n    resolver: system}\n",
         "P:7: invalid YAML: while parsing a flow mapping, expected ',' or '}', but got ':' on line 9; "
         'close the "{" opened on line 7'),
        ("  - name: direct\n", '  - name: "direct\n',
         "P:7: invalid YAML: while scanning a quoted scalar, found unexpected end of stream on line 15; "
         "close the quote opened on line 7"),
        ("    listen: 127.0.0.1:3128\n", "    listen: [127.0.0.1:3128\n",
         "P:4: invalid YAML: while parsing a flow sequence, expected ',' or ']', but got ':' on line 5; "
         'close the "[" opened on line 4'),
        ("  - name: direct\n", "  - name direct\n",
         'P:7: invalid YAML: mapping values are not allowed here on line 8: the text "name direct type" begun '
         'on line 7 runs on to it; is a ":" missing on line 7?'),
        # where PyYAML's mark is already the line to fix, it stays
        ("    type: direct_fixed\n", "   type: direct_fixed\n",
         "P:8: invalid YAML: while parsing a block collection, expected <block end>, but found '<block mapping start>'"),
        ("  - name: direct\n", "  - name: direct: x\n", "P:7: invalid YAML: mapping values are not allowed here"),
    ],
    ids=["unclosed-flow-mapping", "unclosed-quote", "unclosed-flow-sequence", "key-without-colon", "bad-indent",
         "colon-in-value"],
)
def test_yaml_syntax_error_points_at_the_line_to_fix(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in VALID
    assert issues(tmp_path, VALID.replace(old, new)) == [expected]


def test_unacceptable_character_is_located(tmp_path: Path) -> None:
    assert issues(tmp_path, "servers:\n  - name: a\x07\n") == ["P:2: invalid YAML: unacceptable character #x0007"]


def test_duplicate_keys_are_rejected_everywhere(tmp_path: Path) -> None:
    text = VALID.replace("    escaper: direct\n", "    escaper: direct\n    escaper: deny\n") + "servers: []\n"
    assert issues(tmp_path, text) == [
        'P:6: duplicate key "escaper" (first at line 5)',
        'P:16: duplicate key "servers" (first at line 1)',
        "P:16: no servers defined; add at least one under servers:",
    ]


def test_empty_file_and_wrong_top_level(tmp_path: Path) -> None:
    assert issues(tmp_path, "# nothing\n") == ["P:1: the profile is empty; it needs at least a servers: list"]
    assert issues(tmp_path, "\n- a\n- b\n") == [
        "P:2: expected a mapping at the top level (servers:, escapers:, resolvers:, ...)"
    ]


def test_recursive_alias_does_not_hang(tmp_path: Path) -> None:
    text = VALID + "log: &loop\n  level: info\n  access: *loop\n"
    assert issues(tmp_path, text) == ['P:17: log: access: expected true or false, got a mapping']


# --- unknown keys and types ---------------------------------------------------------------------


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    text = VALID.replace("    escaper: direct\n", "    escaper: direct\n    max_conections: 5\n")
    assert issues(tmp_path, text) == ['P:6: server "http": unknown key "max_conections"; did you mean "max_connections"?']


def test_unknown_key_without_a_close_one_lists_the_known_keys(tmp_path: Path) -> None:
    text = VALID.replace("  - name: deny\n    type: dummy_deny\n", "  - name: deny\n    type: dummy_deny\n    bind: 10.0.0.1\n")
    assert issues(tmp_path, text) == ['P:12: escaper "deny": unknown key "bind"; known keys: name, type']


def test_unknown_top_level_and_nested_keys(tmp_path: Path) -> None:
    text = VALID + "server: {}\ntimeouts:\n  client_idel: 5s\nlog:\n  levle: info\n"
    assert issues(tmp_path, text) == [
        'P:15: unknown key "server"; did you mean "servers"?',
        'P:17: timeouts: unknown key "client_idel"; did you mean "client_idle"?',
        'P:19: log: unknown key "levle"; did you mean "level"?',
    ]


def test_unknown_type_lists_the_known_types(tmp_path: Path) -> None:
    from arcus.config.resolver import RESOLVERS
    from arcus.config.server import SERVERS

    text = VALID.replace("type: http_proxy", "type: http_prox").replace("type: system", "type: dns-over-pigeon")
    servers = ", ".join(SERVERS.types)  # in registry order
    resolvers = ", ".join(RESOLVERS.types)
    assert "http_proxy" in SERVERS.types and "system" in RESOLVERS.types
    assert issues(tmp_path, text) == [
        f'P:3: server "http": unknown type "http_prox"; did you mean "http_proxy"? known server types: {servers}',
        f'P:14: resolver "system": unknown type "dns-over-pigeon"; known resolver types: {resolvers}',
    ]


def test_missing_name_and_type(tmp_path: Path) -> None:
    text = VALID.replace("  - name: deny\n    type: dummy_deny\n", "  - type: dummy_deny\n  - name: deny2\n")
    assert issues(tmp_path, text) == [
        'P:10: escapers[1]: missing key "name"',
        'P:11: escaper "deny2": missing key "type"',
    ]


# --- values -------------------------------------------------------------------------------------


DURATION_HINT = "write a number of seconds or a number with ms, s, m, h or d (e.g. 30s, 500ms, 5m, 7d)"


def test_bad_durations(tmp_path: Path) -> None:
    text = VALID + "    timeout: 5x\n    cache_ttl: 0s\n    negative_ttl: true\ntimeouts:\n  client_idle: -1\n  tunnel_idle: 1w\n"
    assert issues(tmp_path, text) == [
        f'P:15: resolver "system": timeout: invalid duration "5x"; {DURATION_HINT}',
        'P:16: resolver "system": cache_ttl: duration must be greater than 0, got "0s"',
        'P:17: resolver "system": negative_ttl: expected a duration such as 30s, got "true"',
        f'P:19: timeouts: client_idle: invalid duration "-1"; {DURATION_HINT}',
        f'P:20: timeouts: tunnel_idle: invalid duration "1w"; {DURATION_HINT}',
    ]


def test_bad_sizes_and_counts(tmp_path: Path) -> None:
    text = VALID + "limits:\n  max_header_bytes: 64KB\n  max_request_line: 0\n  max_headers: 0\n  max_pool_per_host: many\n"
    assert issues(tmp_path, text) == [
        'P:16: limits: max_header_bytes: invalid size "64KB"; write a number of bytes or a number with KiB, MiB or GiB (e.g. 64KiB)',
        'P:17: limits: max_request_line: size must be greater than 0, got "0"',
        "P:18: limits: max_headers: must be at least 1, got 0",
        'P:19: limits: max_pool_per_host: expected a whole number, got "many"',
    ]


def test_limits_cross_check(tmp_path: Path) -> None:
    text = VALID.replace("    escaper: direct\n", "    escaper: direct\n    limits:\n      max_request_line: 128KiB\n")
    assert issues(tmp_path, text) == [
        'P:7: server "http": limits: max_request_line (131072) cannot exceed max_header_bytes (65536), '
        "which counts the request line too"
    ]


def test_booleans_must_be_true_or_false(tmp_path: Path) -> None:
    text = VALID + "log:\n  access: yes\n"
    assert issues(tmp_path, text) == ['P:16: log: access: expected true or false, got "yes"']
    text = VALID + "log:\n  access: 'false'\n"
    assert issues(tmp_path, text) == ['P:16: log: access: expected true or false, got "false"']


def test_choices(tmp_path: Path) -> None:
    text = VALID.replace("    resolver: system\n", "    resolver: system\n    resolve_strategy: ipv4\n") + "log:\n  level: verbose\n"
    assert issues(tmp_path, text) == [
        'P:10: escaper "direct": resolve_strategy: expected one of ipv4_first, ipv6_first, ipv4_only, ipv6_only, got "ipv4"',
        'P:17: log: level: expected one of debug, info, warning, error, got "verbose"',
    ]


def test_invalid_names(tmp_path: Path) -> None:
    text = VALID.replace("name: http", "name: my server").replace("escaper: direct", "escaper: -x")
    assert issues(tmp_path, text) == [
        'P:2: servers[0]: name: invalid name "my server"; use 1-63 characters from A-Z a-z 0-9 . _ - '
        "starting with a letter or digit",
        'P:5: servers[0]: escaper: invalid name "-x"; use 1-63 characters from A-Z a-z 0-9 . _ - '
        "starting with a letter or digit",
    ]


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("3128", 'listen: invalid address "3128"; write "host:port" with an IP address or localhost, '
                 'e.g. "127.0.0.1:3128" or "[::1]:3128"'),
        ("{host: 127.0.0.1}", 'listen: expected an address such as "127.0.0.1:3128", got a mapping'),
        ("127.0.0.1", 'listen: invalid address "127.0.0.1"; write "host:port" with an IP address or localhost, '
                      'e.g. "127.0.0.1:3128" or "[::1]:3128"'),
        ("'::1:3128'", 'listen: write IPv6 addresses in brackets, e.g. "[::1]:3128"'),
        ("proxy.example:3128", 'listen: host "proxy.example" is not an IP address or localhost'),
        ("127.0.0.1:65536", "listen: port 65536 out of range 0-65535"),
        ("127.0.0.1:http", 'listen: invalid port "http" in "127.0.0.1:http"; write a number 0-65535'),
        ("'[10.0.0.1]:80'", 'listen: "10.0.0.1" in brackets is not an IPv6 address'),
        ("[]", "listen: expected a non-empty list"),
    ],
)
def test_bad_listen(tmp_path: Path, listen: str, message: str) -> None:
    text = VALID.replace("listen: 127.0.0.1:3128", f"listen: {listen}")
    assert issues(tmp_path, text) == [f'P:4: server "http": {message}']


def test_bad_listen_elements_are_each_reported_on_their_line(tmp_path: Path) -> None:
    text = VALID.replace("listen: 127.0.0.1:3128", "listen:\n      - 127.0.0.1:1\n      - 1.2.3:4\n      - 127.0.0.1:x")
    assert issues(tmp_path, text) == [
        'P:6: server "http": listen: host "1.2.3" is not an IP address or localhost',
        'P:7: server "http": listen: invalid port "x" in "127.0.0.1:x"; write a number 0-65535',
    ]


def test_bad_cidr_and_bind(tmp_path: Path) -> None:
    text = VALID.replace("    resolver: system\n", "    resolver: system\n    bind: eth0\n    allow_special:\n      - 10.0.0.0/8\n      - 10.0.0.0/33\n")
    assert issues(tmp_path, text) == [
        'P:10: escaper "direct": bind: "eth0" is not an IP address',
        'P:13: escaper "direct": allow_special: "10.0.0.0/33" is not a CIDR network (e.g. 10.0.0.0/8 or fd00::/8)',
    ]


def test_bind_family_against_resolve_strategy(tmp_path: Path) -> None:
    text = VALID.replace("    resolver: system\n", "    resolver: system\n    bind: 192.0.2.1\n    resolve_strategy: ipv6_only\n")
    assert issues(tmp_path, text) == [
        'P:10: escaper "direct": bind 192.0.2.1 is an IPv4 address but resolve_strategy is ipv6_only; '
        "bind an IPv6 address or use ipv4_only"
    ]


def test_sections_of_the_wrong_shape(tmp_path: Path) -> None:
    text = VALID.replace("escapers:\n", "escapers: direct\nx:\n") + "timeouts: 5s\n"
    # No "escaper direct is not defined": with the escapers unreadable, that would be noise.
    assert issues(tmp_path, text) == [
        "P:6: escapers: expected a list of escapers (- name: ...)",
        'P:7: unknown key "x"; known keys: servers, escapers, resolvers, timeouts, limits, log, runtime, audit, metrics, icap_services, intercept',
        "P:16: timeouts: expected a mapping of keys to values",
    ]
    assert issues(tmp_path, "servers:\n  - http\n") == ["P:2: servers[0]: expected a mapping with name: and type:"]


# --- cross-references and cross-object checks ------------------------------------------------------


def test_dangling_escaper_reference(tmp_path: Path) -> None:
    text = VALID.replace("escaper: direct", "escaper: direc")
    assert issues(tmp_path, text) == ['P:5: server "http": escaper "direc" is not defined; defined escapers: direct, deny']


def test_dangling_resolver_reference(tmp_path: Path) -> None:
    text = VALID.replace("resolver: system", "resolver: dns")
    assert issues(tmp_path, text) == [
        'P:9: escaper "direct": resolver "dns" is not defined; defined resolvers: system'
    ]


def test_missing_resolver_with_several_or_none(tmp_path: Path) -> None:
    text = VALID.replace("    resolver: system\n", "") + "  - name: other\n    type: system\n"
    assert issues(tmp_path, text) == ['P:7: escaper "direct": missing key "resolver"; defined resolvers: system, other']
    text = VALID.replace("    resolver: system\n", "").split("resolvers:")[0]
    assert issues(tmp_path, text) == [
        'P:7: escaper "direct": missing key "resolver"; no resolvers are defined; add one under resolvers:'
    ]


def test_a_broken_escaper_still_counts_as_defined(tmp_path: Path) -> None:
    text = VALID.replace("    resolver: system\n", "    resolver: system\n    bind: nope\n")
    assert issues(tmp_path, text) == ['P:10: escaper "direct": bind: "nope" is not an IP address']


def test_duplicate_names(tmp_path: Path) -> None:
    text = VALID.replace("name: deny", "name: direct")
    assert issues(tmp_path, text) == ['P:10: duplicate escaper name "direct" (first at line 7)']


def test_at_least_one_server(tmp_path: Path) -> None:
    assert issues(tmp_path, VALID.replace(VALID.split("escapers:")[0], "servers: []\n")) == [
        "P:1: no servers defined; add at least one under servers:"
    ]
    assert issues(tmp_path, "escapers: []\n") == ["P:1: no servers defined; add at least one under servers:"]


SECOND = "  - name: {name}\n    type: http_proxy\n    listen: {listen}\n    escaper: deny\nescapers:"


@pytest.mark.parametrize(
    ("first", "second", "clash"),
    [
        ("127.0.0.1:3128", "127.0.0.1:3128", "127.0.0.1:3128 conflicts with 127.0.0.1:3128"),
        ("127.0.0.1:3128", "0.0.0.0:3128", "0.0.0.0:3128 conflicts with 127.0.0.1:3128"),
        ("'[::1]:3128'", "localhost:3128", "localhost:3128 conflicts with [::1]:3128"),
        ("'[::]:3128'", "'[0::1]:3128'", "[::1]:3128 conflicts with [::]:3128"),
    ],
)
def test_two_servers_on_one_address(tmp_path: Path, first: str, second: str, clash: str) -> None:
    text = VALID.replace("listen: 127.0.0.1:3128", f"listen: {first}")
    text = text.replace("escapers:", SECOND.format(name="other", listen=second), 1)
    assert issues(tmp_path, text) == [f'P:8: server "other": listen {clash} of server "http" (line 4)']


@pytest.mark.parametrize(
    ("first", "second"),
    [("127.0.0.1:0", "127.0.0.1:0"), ("0.0.0.0:3128", "'[::]:3128'"), ("127.0.0.1:3128", "127.0.0.2:3128"),
     ("127.0.0.1:3128", "127.0.0.1:3129")],
)
def test_servers_that_can_share(tmp_path: Path, first: str, second: str) -> None:
    text = VALID.replace("listen: 127.0.0.1:3128", f"listen: {first}")
    text = text.replace("escapers:", SECOND.format(name="other", listen=second), 1)
    assert issues(tmp_path, text) == []


def test_one_server_listing_an_address_twice(tmp_path: Path) -> None:
    text = VALID.replace("listen: 127.0.0.1:3128", "listen: [127.0.0.1:80, 127.0.0.1:80]")
    assert issues(tmp_path, text) == ['P:4: server "http": listen 127.0.0.1:80 conflicts with 127.0.0.1:80 of server "http" (line 4)']


def test_every_error_of_a_file_is_reported_in_file_order(tmp_path: Path) -> None:
    text = """\
servers:
  - name: http
    type: http_proxy
    listen: 127.0.0.1:3128
    escaper: direc
    escapr: x
escapers:
  - name: direct
    type: direct_fixed
    resolver: nope
    loopback_for_local_clients: on
resolvers:
  - name: system
    type: system
    timeout: 10
    timeout: 5q
runtime:
  graceful_timout: 5s
"""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert [str(i) for i in err.value.issues] == [
        f'{path}:5: server "http": escaper "direc" is not defined; defined escapers: direct',
        f'{path}:6: server "http": unknown key "escapr"; did you mean "escaper"?',
        f'{path}:10: escaper "direct": resolver "nope" is not defined; defined resolvers: system',
        f'{path}:11: escaper "direct": loopback_for_local_clients: expected true or false, got "on"',
        f'{path}:16: duplicate key "timeout" (first at line 15)',
        f'{path}:16: resolver "system": timeout: invalid duration "5q"; {DURATION_HINT}',
        f'{path}:18: runtime: unknown key "graceful_timout"; did you mean "graceful_timeout"?',
    ]
    assert str(err.value).splitlines() == [str(i) for i in err.value.issues]


def test_the_example_in_docs_profile_md_loads() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "profile.md").read_text()
    start = doc.index("```yaml", doc.index("## Example")) + len("```yaml\n")
    profile = parse_profile(doc[start : doc.index("```", start)], "docs/profile.md")
    assert [s.name for s in profile.servers] == ["http", "lan"]
    assert profile.escaper("direct").resolver == "system"
    assert profile.servers[0].timeouts.tunnel_idle == 3600.0
    assert profile.servers[1].timeouts.upstream_connect == 5.0
