"""`arcus tenant`: every command and its errors, with no daemon (the store directly) and through a
real control server whose handlers use a Store (the daemon path)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from typer.testing import Result

from arcus.store import Store
from arcus.testing.control import ServerThread, TenancyDaemon
from tests.unit.cli.harness import errors, js, note, run

TENANT_KEYS = {
    "name", "display_name", "sources", "suspended", "created_at",
    "auth", "auth_exempt", "realm", "default_action", "block_page", "max_conns", "rps", "bandwidth", "log_query",
    "proxy_hosts", "lock_sources", "icap_service", "icap_fail", "icap_sample", "icap_max_body", "icap_oversize", "intercept",
}
USAGE = {"conns_total": 12, "conns_active": 1, "requests": 40, "bytes_up": 2048, "bytes_down": 3 * 1024 * 1024,
         "errors": {"denied": 2}}


def tenant(sock: Path, data_dir: Path, *args: str) -> Result:
    return run(sock, data_dir, "tenant", *args)


def live_usage(daemon: TenancyDaemon, name: str) -> None:
    c = daemon.shared.tenant_counters.get(name)
    c.conns_total, c.conns_active, c.requests, c.bytes_up, c.bytes_down = 12, 1, 40, 2048, 3 * 1024 * 1024
    c.errors = Counter({"denied": 2})


# -- no daemon: the store directly ------------------------------------------------------


def test_add_writes_the_store_and_says_so(sock: Path, data_dir: Path) -> None:
    result = tenant(sock, data_dir, "add", "acme", "--name", "Acme Corp", "--source", "10.20.0.0/16",
                    "--source", "2001:db8::/48")
    assert result.exit_code == 0, result.output
    assert result.stdout == "added tenant acme (Acme Corp): 10.20.0.0/16, 2001:db8::/48\n"
    assert result.stderr == note(sock, data_dir, writes=True)
    with Store.open(data_dir / "arcus.db") as store:
        t = store.get_tenant("acme")
    assert (t.display_name, t.sources, t.suspended) == ("Acme Corp", ("10.20.0.0/16", "2001:db8::/48"), False)


def test_add_json_shape(sock: Path, data_dir: Path) -> None:
    out = js(tenant(sock, data_dir, "add", "acme", "--source", "10.20.1.7/16", "--json"))
    assert set(out) == TENANT_KEYS
    assert out["name"] == "acme" and out["display_name"] == "acme"
    assert out["sources"] == ["10.20.0.0/16"]  # normalized: host bits cleared
    assert out["suspended"] is False and isinstance(out["created_at"], str)


def test_add_without_sources(sock: Path, data_dir: Path) -> None:
    result = tenant(sock, data_dir, "add", "lab")
    assert result.stdout == "added tenant lab (lab): no source ranges yet\n"


def test_list(sock: Path, data_dir: Path) -> None:
    tenant(sock, data_dir, "add", "acme", "--name", "Acme [EU]", "--source", "10.20.0.0/16")
    result = tenant(sock, data_dir, "list")
    assert result.exit_code == 0
    assert result.stderr == note(sock, data_dir, writes=False)
    row = next(line for line in result.stdout.splitlines() if "│ acme " in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[:5] == ["acme", "Acme [EU]", "10.20.0.0/16", "no", "-"]  # brackets are text, not markup; - : interception as the profile says
    assert any("│ default " in line for line in result.stdout.splitlines())
    tenant(sock, data_dir, "set", "acme", "--intercept", "off")
    row = next(line for line in tenant(sock, data_dir, "list").stdout.splitlines() if "│ acme " in line)
    assert [c.strip() for c in row.strip("│ ").split("│")][4] == "off"


def test_list_json_shape(sock: Path, data_dir: Path) -> None:
    tenant(sock, data_dir, "add", "acme", "--source", "10.20.0.0/16")
    out = js(tenant(sock, data_dir, "list", "--json"))
    assert [t["name"] for t in out] == ["acme", "default"]
    assert all(set(t) == TENANT_KEYS for t in out)


def test_show(sock: Path, data_dir: Path) -> None:
    tenant(sock, data_dir, "add", "acme", "--name", "Acme Corp", "--source", "10.20.0.0/16")
    result = tenant(sock, data_dir, "show", "acme")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[:5] == ["tenant     acme", "name       Acme Corp", "sources    10.20.0.0/16", "locked     no",
                         "suspended  no"]
    assert "usage" not in result.stdout  # the store has no live counters
    assert result.stderr == note(sock, data_dir, writes=False)
    out = js(tenant(sock, data_dir, "show", "acme", "--json"))
    assert set(out) == TENANT_KEYS | {"users", "rules"}
    assert out["users"] == 0 and out["rules"] == 0


def test_suspend_resume(sock: Path, data_dir: Path) -> None:
    tenant(sock, data_dir, "add", "acme")
    result = tenant(sock, data_dir, "suspend", "acme")
    assert result.stdout == "suspended tenant acme: its clients get 403 until `arcus tenant resume acme`\n"
    assert result.stderr == note(sock, data_dir, writes=True)
    assert js(tenant(sock, data_dir, "show", "acme", "--json"))["suspended"] is True
    assert js(tenant(sock, data_dir, "suspend", "acme", "--json"))["suspended"] is True  # idempotent
    assert tenant(sock, data_dir, "resume", "acme").stdout == "resumed tenant acme\n"
    out = js(tenant(sock, data_dir, "resume", "acme", "--json"))
    assert set(out) == TENANT_KEYS and out["suspended"] is False


def test_rm(sock: Path, data_dir: Path) -> None:
    tenant(sock, data_dir, "add", "acme")
    result = tenant(sock, data_dir, "rm", "acme")
    assert result.stdout == "removed tenant acme\n"
    assert result.stderr == note(sock, data_dir, writes=True)
    tenant(sock, data_dir, "add", "acme")
    assert js(tenant(sock, data_dir, "rm", "acme", "--json")) == {"removed": "acme"}
    assert [t["name"] for t in js(tenant(sock, data_dir, "list", "--json"))] == ["default"]


def test_duplicate(sock: Path, data_dir: Path) -> None:
    tenant(sock, data_dir, "add", "acme")
    result = tenant(sock, data_dir, "add", "acme")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: tenant 'acme' already exists",
        "hint: choose another name, or see `arcus tenant show acme`",
    ]


@pytest.mark.parametrize("command", ["show", "rm", "suspend", "resume"])
def test_unknown_tenant(sock: Path, data_dir: Path, command: str) -> None:
    result = tenant(sock, data_dir, command, "ghost")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == ["error: tenant 'ghost' does not exist", "hint: see `arcus tenant list`"]


def test_default_cannot_be_removed(sock: Path, data_dir: Path) -> None:
    result = tenant(sock, data_dir, "rm", "default")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "error: tenant 'default' cannot be removed"
    assert result.stderr.splitlines()[1].startswith("hint: ")


@pytest.mark.parametrize("cidr", ["10.0.0.300/8", "10.0.0.0/33", "acme", "", "fe80::%eth0/64"])
def test_bad_cidr_is_refused_before_the_store_is_touched(sock: Path, data_dir: Path, cidr: str) -> None:
    result = tenant(sock, data_dir, "add", "acme", "--source", "10.1.0.0/16", "--source", cidr)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"error: invalid source range {cidr!r}")
    assert lines[1].startswith("hint: ")
    assert not data_dir.exists()


@pytest.mark.parametrize("command", ["add", "show", "rm", "suspend", "resume"])
@pytest.mark.parametrize("name", ["bad name", "a/b", "ünï", "x" * 64, ".hidden"])
def test_bad_name_is_refused_before_anything(sock: Path, data_dir: Path, command: str, name: str) -> None:
    result = tenant(sock, data_dir, command, name)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: invalid tenant name {name!r}",
        "hint: use 1-63 characters from A-Z a-z 0-9 . _ - starting with a letter or digit",
    ]
    assert not data_dir.exists()


def test_source_owned_by_another_tenant(sock: Path, data_dir: Path) -> None:
    tenant(sock, data_dir, "add", "acme", "--source", "10.20.0.0/16")
    result = tenant(sock, data_dir, "add", "globex", "--source", "10.20.0.0/16")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "error: source range '10.20.0.0/16' already belongs to tenant 'acme'"
    assert [t["name"] for t in js(tenant(sock, data_dir, "list", "--json"))] == ["acme", "default"]


# -- through the daemon -----------------------------------------------------------------


def test_daemon_path_changes_the_daemons_store_not_the_data_dir(daemon: TenancyDaemon, sock: Path, data_dir: Path) -> None:
    result = tenant(sock, data_dir, "add", "acme", "--name", "Acme Corp", "--source", "10.20.0.0/16",
                    "--source", "2001:db8::/48")
    assert result.exit_code == 0, result.output
    assert result.stdout == "added tenant acme (Acme Corp): 10.20.0.0/16, 2001:db8::/48\n"
    assert result.stderr == ""  # no note: the daemon did it
    assert daemon.store.get_tenant("acme").sources == ("10.20.0.0/16", "2001:db8::/48")
    assert [c for c, _ in daemon.calls] == ["tenant.add"]
    assert daemon.refreshes == 1  # the change is in the Snapshot the daemon serves
    assert "acme" in daemon.shared.snapshot.tenancy.tenants
    assert not data_dir.exists()


def test_daemon_path_every_command(daemon: TenancyDaemon, sock: Path, data_dir: Path) -> None:
    added = js(tenant(sock, data_dir, "add", "acme", "--source", "10.20.0.0/16", "--json"))
    assert set(added) == TENANT_KEYS
    listed = js(tenant(sock, data_dir, "list", "--json"))
    assert [t["name"] for t in listed] == ["acme", "default"]
    live_usage(daemon, "acme")
    shown = js(tenant(sock, data_dir, "show", "acme", "--json"))
    assert shown == {**added, "users": 0, "rules": 0, "usage": USAGE}
    assert js(tenant(sock, data_dir, "suspend", "acme", "--json"))["suspended"] is True
    assert daemon.store.get_tenant("acme").suspended is True
    assert js(tenant(sock, data_dir, "resume", "acme", "--json"))["suspended"] is False
    assert js(tenant(sock, data_dir, "rm", "acme", "--json")) == {"removed": "acme"}
    assert [t.name for t in daemon.store.list_tenants()] == ["default"]
    assert [c for c, _ in daemon.calls] == [
        "tenant.add", "tenant.list", "tenant.show", "tenant.suspend", "tenant.resume", "tenant.rm"]
    assert not data_dir.exists()


def test_daemon_path_show_has_usage(daemon: TenancyDaemon, sock: Path, data_dir: Path) -> None:
    tenant(sock, data_dir, "add", "acme")
    live_usage(daemon, "acme")
    result = tenant(sock, data_dir, "show", "acme")
    assert result.exit_code == 0
    assert result.stderr == ""
    row = next(line for line in result.stdout.splitlines() if "denied=2" in line)
    assert [c.strip() for c in row.strip("│ ").split("│")] == ["12", "1", "40", "2.0 KiB", "3.0 MiB", "denied=2"]


def test_daemon_path_same_shapes_as_store_path(daemon: TenancyDaemon, sock: Path, data_dir: Path, tmp_path: Path) -> None:
    via_daemon = js(tenant(sock, data_dir, "add", "acme", "--name", "A", "--source", "10.0.0.0/8", "--json"))
    nowhere = tmp_path / "n.sock"
    via_store = js(tenant(nowhere, data_dir, "add", "acme", "--name", "A", "--source", "10.0.0.0/8", "--json"))
    drop = lambda t: {k: v for k, v in t.items() if k != "created_at"}  # noqa: E731
    assert drop(via_daemon) == drop(via_store)


def test_daemon_path_errors(daemon: TenancyDaemon, sock: Path, data_dir: Path) -> None:
    tenant(sock, data_dir, "add", "acme")
    result = tenant(sock, data_dir, "add", "acme")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: tenant 'acme' already exists",
        "hint: choose another name, or see `arcus tenant show acme`",
    ]
    result = tenant(sock, data_dir, "suspend", "ghost")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["error: tenant 'ghost' does not exist", "hint: see `arcus tenant list`"]


def test_daemon_path_validates_before_sending(daemon: TenancyDaemon, sock: Path, data_dir: Path) -> None:
    assert tenant(sock, data_dir, "add", "acme", "--source", "10.0.0.0/33").exit_code == 1
    assert tenant(sock, data_dir, "add", "bad name").exit_code == 1
    assert daemon.calls == [] and daemon.refreshes == 0


def test_daemon_refusing_is_not_a_reason_to_write_the_store(sock: Path, data_dir: Path) -> None:
    """A daemon that answers with an error (here: it lacks the command) must not trigger the fallback."""
    with ServerThread(sock, {}):
        result = tenant(sock, data_dir, "add", "acme")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "error: unknown command 'tenant.add'"
    assert not data_dir.exists()


def test_names_differing_only_in_case_cannot_coexist(sock: Path, data_dir: Path) -> None:
    tenant(sock, data_dir, "add", "acme")
    assert errors(tenant(sock, data_dir, "add", "ACME")) == [
        "error: tenant 'ACME' clashes with tenant 'acme'",
        "hint: tenant names are unique regardless of case; use 'acme' or choose another name",
    ]
    assert errors(tenant(sock, data_dir, "show", "Acme")) == [
        "error: tenant 'Acme' does not exist",
        "hint: did you mean 'acme'? tenant names are matched exactly (and unique regardless of case)",
    ]
    assert [t["name"] for t in js(tenant(sock, data_dir, "list", "--json"))] == ["acme", "default"]
