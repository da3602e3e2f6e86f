"""`arcus tenant set` and the settings and limits `arcus tenant show` prints beside usage, with no
daemon (the store directly) and through a real control server running the daemon's handlers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from arcus.store import Store
from arcus.testing.control import TenancyDaemon
from tests.unit.cli.harness import SHA256_CRYPT, errors, js, run

TENANT_KEYS = {"name", "display_name", "sources", "suspended", "created_at", "auth", "auth_exempt", "realm",
               "default_action", "block_page", "max_conns", "rps", "bandwidth", "log_query",
               "proxy_hosts", "lock_sources", "icap_service", "icap_fail", "icap_sample", "icap_max_body", "icap_oversize", "intercept"}
PAGE = "<h1>Blocked</h1><p>{host} for {tenant}: {reason} (rule {rule}, request {request_id})</p>\n"


def tenant(sock: Path, data_dir: Path, *args: str) -> Result:
    return run(sock, data_dir, "tenant", *args)


def stored(data_dir: Path, name: str = "acme") -> Any:
    with Store.open(data_dir / "arcus.db") as store:
        return store.get_tenant(name)


@pytest.fixture
def acme(sock: Path, data_dir: Path) -> None:
    assert tenant(sock, data_dir, "add", "acme", "--source", "10.20.0.0/16").exit_code == 0


# -- set: limits --------------------------------------------------------------------------------


def test_the_issue_example(sock: Path, data_dir: Path, acme: None) -> None:
    result = tenant(sock, data_dir, "set", "acme", "--max-conns", "500", "--rps", "200", "--bandwidth", "50M")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "changed tenant acme: max conns 500, rate limit 200 req/s, bandwidth 50Mbit/s each way\n"
    )
    assert result.stderr == f"note: no daemon running at {sock}; changed the store at {data_dir / 'arcus.db'} directly\n"
    t = stored(data_dir)
    assert (t.max_conns, t.rps, t.bandwidth) == (500, 200.0, 6_250_000.0)
    lines = tenant(sock, data_dir, "show", "acme").stdout.splitlines()
    assert lines[-3:] == ["connections 500", "rate limit  200 req/s", "bandwidth   50Mbit/s each way"]


def test_units_and_unlimited(sock: Path, data_dir: Path, acme: None) -> None:
    out = js(tenant(sock, data_dir, "set", "acme", "--bandwidth", "50MB", "--rps", "12.5/s", "--max-conns", "7",
                    "--json"))
    assert set(out) == TENANT_KEYS
    assert (out["bandwidth"], out["rps"], out["max_conns"]) == (50_000_000.0, 12.5, 7)
    out = js(tenant(sock, data_dir, "set", "acme", "--bandwidth", "unlimited", "--rps", "none", "--max-conns", "off",
                    "--json"))
    assert (out["bandwidth"], out["rps"], out["max_conns"]) == (None, None, None)
    result = tenant(sock, data_dir, "set", "acme", "--rps", "unlimited")
    assert result.stdout == "changed tenant acme: rate limit unlimited\n"


@pytest.mark.parametrize(
    ("args", "lines"),
    [
        ((), ["error: nothing to change",
              "hint: give at least one of --name, --source, --no-sources, --max-conns, --rps, --bandwidth, --auth, --auth-exempt, --no-auth-exempt, "
              "--realm, --default, --block-page, --no-block-page, --log-query/--no-log-query, "
              "--proxy-host, --no-proxy-hosts, --lock-sources/--no-lock-sources, --icap-service, --no-icap, "
              "--icap-fail, --icap-sample, --icap-max-body, --icap-oversize, --intercept"]),
        (("--max-conns", "0"), ["error: invalid connection limit '0': it must be more than 0",
                                "hint: use 'unlimited' to remove the limit, or suspend the tenant to stop its traffic"]),
        (("--max-conns", "5.5"), ["error: invalid connection limit '5.5'",
                                  "hint: give a whole number of connections, e.g. 500, or 'unlimited'"]),
        (("--rps", "lots"), ["error: invalid request rate 'lots'",
                             "hint: give requests per second as a number, e.g. 200 or 12.5, or 'unlimited'"]),
        (("--bandwidth", "50Mb"), ["error: ambiguous bandwidth '50Mb': lowercase 'b' may mean bits or bytes"]),
        (("--bandwidth", "50 parsecs"), ["error: invalid bandwidth '50 parsecs'"]),
        (("--auth", "maybe"), ["error: invalid auth mode 'maybe'", "hint: use none, optional or required"]),
        (("--default", "block"), ["error: invalid default action 'block'", "hint: use allow or deny"]),
        (("--auth-exempt", "10.0.0.0/33"), ["error: invalid source range '10.0.0.0/33'"]),
        (("--auth-exempt", "10.0.0.0/8", "--no-auth-exempt"),
         ["error: --auth-exempt and --no-auth-exempt contradict each other"]),
        (("--realm", 'say "hi"'), ["error: invalid realm 'say \"hi\"'"]),
        (("--realm", "caf\u00e9"), ["error: invalid realm 'caf\u00e9'"]),
        (("--realm", "x" * 101), [f"error: invalid realm '{'x' * 101}'"]),
    ],
)
def test_errors_are_one_line_and_a_hint_before_the_store(sock: Path, data_dir: Path, args: tuple[str, ...],
                                                         lines: list[str]) -> None:
    got = errors(tenant(sock, data_dir, "set", "acme", *args))
    assert len(got) == 2 and got[1].startswith("hint: ")
    assert got[0].startswith(lines[0])
    if len(lines) == 2:
        assert got[1] == lines[1]
    assert not data_dir.exists()


def test_unknown_and_bad_tenant(sock: Path, data_dir: Path) -> None:
    assert errors(tenant(sock, data_dir, "set", "bad name", "--rps", "1"))[0] == "error: invalid tenant name 'bad name'"
    tenant(sock, data_dir, "add", "acme")
    assert errors(tenant(sock, data_dir, "set", "ghost", "--rps", "1")) == [
        "error: tenant 'ghost' does not exist", "hint: see `arcus tenant list`"]


# -- set: authentication and settings --------------------------------------------------------------


def test_auth_settings(sock: Path, data_dir: Path, acme: None) -> None:
    result = tenant(sock, data_dir, "set", "acme", "--auth", "required", "--auth-exempt", "10.20.5.7/16",
                    "--auth-exempt", "10.20.0.0/16", "--auth-exempt", "2001:db8::1/48", "--realm", "Acme proxy")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        'changed tenant acme: auth required, auth exempt 10.20.0.0/16, 2001:db8::/48, realm "Acme proxy"\n'
    )
    t = stored(data_dir)
    assert (t.auth, t.auth_exempt, t.realm) == ("required", ("10.20.0.0/16", "2001:db8::/48"), "Acme proxy")
    out = js(tenant(sock, data_dir, "set", "acme", "--no-auth-exempt", "--realm", "", "--auth", "optional", "--json"))
    assert (out["auth"], out["auth_exempt"], out["realm"]) == ("optional", [], None)


def test_default_and_log_query(sock: Path, data_dir: Path, acme: None) -> None:
    result = tenant(sock, data_dir, "set", "acme", "--default", "deny", "--log-query")
    assert result.stdout == "changed tenant acme: default deny, query strings logged\n"
    assert (stored(data_dir).default_action, stored(data_dir).log_query) == ("deny", True)
    out = js(tenant(sock, data_dir, "set", "acme", "--no-log-query", "--default", "allow", "--json"))
    assert (out["default_action"], out["log_query"]) == ("allow", False)


def test_block_page(sock: Path, data_dir: Path, acme: None, tmp_path: Path) -> None:
    page = tmp_path / "blocked.html"
    page.write_text(PAGE)
    result = tenant(sock, data_dir, "set", "acme", "--block-page", str(page))
    assert result.stdout == "changed tenant acme: block page custom\n"
    assert stored(data_dir).block_page == PAGE
    assert f"block page custom, {len(PAGE)} characters" in tenant(sock, data_dir, "show", "acme").stdout.splitlines()
    assert js(tenant(sock, data_dir, "set", "acme", "--no-block-page", "--json"))["block_page"] is None
    assert "block page built-in" in tenant(sock, data_dir, "show", "acme").stdout.splitlines()


@pytest.mark.parametrize(
    ("content", "first"),
    [
        ("<style>body { color: red }</style>", "error: block page {page}: unknown field { color}"),
        ("<p>{tenat}</p>", "error: block page {page}: unknown field {tenat}"),
        ("<p>{host:>99999}</p>", "error: block page {page}: field {host} takes no format spec or conversion"),
        ("<p>{host!r}</p>", "error: block page {page}: field {host} takes no format spec or conversion"),
        ("<p>{0}</p>", "error: block page {page}: unknown field {0}"),
        ("<p>{tenant.__class__}</p>", "error: block page {page}: unknown field {tenant.__class__}"),
        ("<p>{</p>", "error: block page {page}: expected '}' before end of string"),
        (b"<p>\xff</p>", "error: block page {page} is not UTF-8 text (byte 3)"),
        ("x" * (64 * 1024 + 1), "error: block page {page} is larger than 64 KiB"),
    ],
)
def test_a_bad_block_page_is_refused_naming_the_file(sock: Path, data_dir: Path, tmp_path: Path,
                                                     content: str | bytes, first: str) -> None:
    page = tmp_path / "page.html"
    page.write_bytes(content if isinstance(content, bytes) else content.encode())
    got = errors(tenant(sock, data_dir, "set", "acme", "--block-page", str(page)))
    assert got[0] == first.replace("{page}", str(page))
    assert len(got) == 2 and got[1].startswith("hint: ")
    assert not data_dir.exists()


def test_block_page_file_errors(sock: Path, data_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.html"
    assert errors(tenant(sock, data_dir, "set", "acme", "--block-page", str(missing))) == [
        f"error: cannot read block page {missing}: No such file or directory", "hint: give the path of an HTML file"]
    page = tmp_path / "p.html"
    page.write_text(PAGE)
    assert errors(tenant(sock, data_dir, "set", "acme", "--block-page", str(page), "--no-block-page")) == [
        "error: --block-page and --no-block-page contradict each other", "hint: give one of them"]


# -- show -----------------------------------------------------------------------------------------


def test_show_prints_settings_limits_and_counts(sock: Path, data_dir: Path, acme: None) -> None:
    with Store.open(data_dir / "arcus.db") as store:
        store.add_user("acme", "alice", SHA256_CRYPT)
        store.add_user("acme", "bob", SHA256_CRYPT)
        store.add_rule("acme", {"id": "r1", "action": "deny"})
    tenant(sock, data_dir, "set", "acme", "--auth", "required", "--auth-exempt", "10.20.9.0/24", "--max-conns", "500")
    result = tenant(sock, data_dir, "show", "acme")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[:5] == ["tenant     acme", "name       acme", "sources    10.20.0.0/16", "locked     no",
                         "suspended  no"]
    assert lines[6:] == [
        'auth       required, realm "arcus acme" (default)',
        "exempt     10.20.9.0/24",
        "proxy host -",
        "default    allow (when no rule decides)",
        "block page built-in",
        "log query  no",
        "icap       -",
        "intercept  default (as the profile's intercept: says)",
        "users      2",
        "rules      1",
        "",
        "connections 500",
        "rate limit  unlimited",
        "bandwidth   unlimited",
    ]
    assert "usage" not in result.stdout  # the store has no live counters
    out = js(tenant(sock, data_dir, "show", "acme", "--json"))
    assert set(out) == TENANT_KEYS | {"users", "rules"}
    assert (out["users"], out["rules"], out["max_conns"]) == (2, 1, 500)


# -- through the daemon -----------------------------------------------------------------------------


@pytest.fixture
def daemon(daemon: TenancyDaemon) -> Iterator[TenancyDaemon]:
    daemon.seed(lambda st: st.add_tenant("acme", None, ["10.20.0.0/16"]))
    yield daemon


def test_daemon_path_set_and_show_limits_beside_usage(daemon: TenancyDaemon, sock: Path, data_dir: Path,
                                                      tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    page.write_text(PAGE)
    result = tenant(sock, data_dir, "set", "acme", "--max-conns", "500", "--rps", "200", "--bandwidth", "50M",
                    "--auth", "optional", "--auth-exempt", "10.20.1.0/24", "--realm", "Acme", "--default", "deny",
                    "--block-page", str(page), "--log-query")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert daemon.calls == [("tenant.set", {
        "name": "acme", "max_conns": 500, "rps": 200.0, "bandwidth": 6_250_000.0, "auth": "optional",
        "auth_exempt": ["10.20.1.0/24"], "realm": "Acme", "default_action": "deny", "block_page": PAGE,
        "log_query": True,
    })]
    assert daemon.refreshes == 1
    t = daemon.store.get_tenant("acme")
    assert (t.max_conns, t.rps, t.bandwidth, t.auth, t.realm, t.block_page) == (
        500, 200.0, 6_250_000.0, "optional", "Acme", PAGE)
    live = daemon.shared.tenant_counters.get("acme")
    live.conns_active, live.conns_total, live.requests = 3, 40, 120
    result = tenant(sock, data_dir, "show", "acme")
    assert result.exit_code == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[6] == 'auth       optional, realm "Acme"'
    limits = lines.index("connections 3 / 500")
    assert lines[limits:limits + 3] == ["connections 3 / 500", "rate limit  200 req/s", "bandwidth   50Mbit/s each way"]
    rows = [[c.strip() for c in line.strip()[1:-1].split("│")] for line in lines if line.startswith("│")]
    assert rows == [["40", "3", "120", "0 B", "0 B", "-"]]
    out = js(tenant(sock, data_dir, "show", "acme", "--json"))
    assert set(out) == TENANT_KEYS | {"users", "rules", "usage"}
    assert out["usage"]["conns_active"] == 3
    assert out["bandwidth"] == 6_250_000.0
    assert not data_dir.exists()


def test_daemon_path_same_shapes_as_store_path(daemon: TenancyDaemon, sock: Path, data_dir: Path, tmp_path: Path) -> None:
    nowhere = tmp_path / "n.sock"
    tenant(nowhere, data_dir, "add", "acme", "--source", "10.20.0.0/16")
    args = ("set", "acme", "--max-conns", "9", "--bandwidth", "1G", "--auth", "required", "--json")
    drop = lambda t: {k: v for k, v in t.items() if k != "created_at"}  # noqa: E731
    assert drop(js(tenant(sock, data_dir, *args))) == drop(js(tenant(nowhere, data_dir, *args)))


def test_lock_sources(sock: Path, data_dir: Path, acme: None) -> None:
    result = tenant(sock, data_dir, "set", "acme", "--lock-sources")
    assert result.stdout == "changed tenant acme: source ranges locked to its own users\n"
    assert stored(data_dir).lock_sources is True
    assert "locked     yes: only its own users are admitted from them" in tenant(sock, data_dir, "show", "acme").stdout
    listed = js(tenant(sock, data_dir, "list", "--json"))
    assert [(t["name"], t["lock_sources"]) for t in listed] == [("acme", True), ("default", False)]
    out = js(tenant(sock, data_dir, "set", "acme", "--no-lock-sources", "--json"))
    assert out["lock_sources"] is False and stored(data_dir).lock_sources is False


def test_daemon_path_lock_sources_reaches_the_snapshot(daemon: TenancyDaemon, sock: Path, data_dir: Path) -> None:
    assert daemon.shared.snapshot.tenancy.tenants["acme"].lock_sources is False
    assert js(tenant(sock, data_dir, "set", "acme", "--lock-sources", "--json"))["lock_sources"] is True
    assert daemon.calls == [("tenant.set", {"name": "acme", "lock_sources": True})]
    assert daemon.shared.snapshot.tenancy.tenants["acme"].lock_sources is True
    assert js(tenant(sock, data_dir, "show", "acme", "--json"))["lock_sources"] is True


def test_source_ranges_and_display_name_change_after_add(sock: Path, data_dir: Path, acme: None) -> None:
    """A range moves from one tenant to another without removing either (their users and rules
    stay); a range another tenant holds is refused and nothing changes."""
    assert tenant(sock, data_dir, "add", "globex", "--source", "10.99.0.0/16").exit_code == 0
    lines = errors(tenant(sock, data_dir, "set", "globex", "--source", "10.20.0.0/16"))
    assert lines[0] == "error: source range '10.20.0.0/16' already belongs to tenant 'acme'"
    assert "arcus tenant set acme --source" in lines[1]
    assert stored(data_dir, "globex").sources == ("10.99.0.0/16",)
    result = tenant(sock, data_dir, "set", "acme", "--source", "10.21.0.0/16", "--source", "10.20.0.0/24",
                    "--name", "Acme Corp")
    assert result.stdout == 'changed tenant acme: display name "Acme Corp", source ranges 10.21.0.0/16, 10.20.0.0/24\n'
    t = stored(data_dir)
    assert (t.display_name, t.sources) == ("Acme Corp", ("10.20.0.0/24", "10.21.0.0/16"))
    out = js(tenant(sock, data_dir, "set", "globex", "--source", "10.20.0.0/16", "--source", "10.99.0.0/16", "--json"))
    assert out["sources"] == ["10.20.0.0/16", "10.99.0.0/16"]
    out = js(tenant(sock, data_dir, "set", "acme", "--no-sources", "--name", "", "--json"))
    assert (out["sources"], out["display_name"]) == ([], "acme")
    for args, first in [
        (("default", "--source", "10.1.0.0/16"), "error: the default tenant has no source ranges"),
        (("acme", "--source", "bogus"), "error: invalid source range 'bogus'"),
        (("acme", "--source", "10.0.0.0/8", "--no-sources"), "error: --source and --no-sources contradict each other"),
    ]:
        assert errors(tenant(sock, data_dir, "set", *args))[0].startswith(first)


def test_daemon_path_new_source_ranges_reach_the_snapshot(daemon: TenancyDaemon, sock: Path, data_dir: Path) -> None:
    assert daemon.shared.snapshot.tenancy.by_source("10.30.1.1").name == "default"
    out = js(tenant(sock, data_dir, "set", "acme", "--source", "10.30.0.0/16", "--json"))
    assert out["sources"] == ["10.30.0.0/16"]
    assert daemon.shared.snapshot.tenancy.by_source("10.30.1.1").name == "acme"
    assert daemon.shared.snapshot.tenancy.by_source("10.20.1.1").name == "default"
