"""`arcus tenant set --intercept on|off|default`: the store's TLS interception switch, shown by
`tenant show` and `tenant list --json`, and through the daemon into the Snapshot's plan."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from arcus.control.client import ControlClient
from arcus.control.protocol import ControlError
from arcus.testing.control import TenancyDaemon
from tests.unit.cli.harness import errors, js
from tests.unit.cli.test_tenant_set import stored, tenant


@pytest.fixture
def acme(sock: Path, data_dir: Path) -> None:
    assert tenant(sock, data_dir, "add", "acme").exit_code == 0


def show_line(sock: Path, data_dir: Path) -> str:
    return next(line for line in tenant(sock, data_dir, "show", "acme").stdout.splitlines() if line.startswith("intercept"))


def test_set_show_and_list(sock: Path, data_dir: Path, acme: None) -> None:
    assert show_line(sock, data_dir) == "intercept  default (as the profile's intercept: says)"
    result = tenant(sock, data_dir, "set", "acme", "--intercept", "on")
    assert result.exit_code == 0, result.output
    assert result.stdout == "changed tenant acme: TLS interception on\n"
    assert stored(data_dir).intercept is True
    assert show_line(sock, data_dir) == "intercept  on (set here; overrides the profile's enabled:)"
    listed = {t["name"]: t["intercept"] for t in js(tenant(sock, data_dir, "list", "--json"))}
    assert listed == {"acme": True, "default": None}

    assert tenant(sock, data_dir, "set", "acme", "--intercept", "off").stdout == "changed tenant acme: TLS interception off\n"
    assert stored(data_dir).intercept is False
    assert show_line(sock, data_dir) == "intercept  off (set here; overrides the profile's enabled:)"
    assert js(tenant(sock, data_dir, "show", "acme", "--json"))["intercept"] is False

    out = js(tenant(sock, data_dir, "set", "acme", "--intercept", "default", "--json"))
    assert out["intercept"] is None and stored(data_dir).intercept is None


@pytest.mark.parametrize("value", ["maybe", "ON", "true", ""])
def test_bad_input_is_one_line_and_changes_nothing(sock: Path, data_dir: Path, acme: None, value: str) -> None:
    assert tenant(sock, data_dir, "set", "acme", "--intercept", "off").exit_code == 0
    result = tenant(sock, data_dir, "set", "acme", "--rps", "10", "--intercept", value)
    assert result.exit_code == 1 and result.stdout == ""
    assert errors(result) == [f"error: invalid --intercept {value!r}: use on, off or default (as the profile says)"]
    assert (stored(data_dir).intercept, stored(data_dir).rps) == (False, None)


@pytest.fixture
def daemon(daemon: TenancyDaemon) -> Iterator[TenancyDaemon]:
    daemon.seed(lambda st: st.add_tenant("acme", None, ["10.20.0.0/16"]))
    yield daemon


def test_through_the_daemon_into_the_snapshot(daemon: TenancyDaemon, sock: Path, data_dir: Path) -> None:
    plan = daemon.shared.snapshot.intercept  # the test daemon's profile intercepts nothing
    assert not plan.any and plan.for_tenant("acme") is None

    assert js(tenant(sock, data_dir, "set", "acme", "--intercept", "on", "--json"))["intercept"] is True
    plan = daemon.shared.snapshot.intercept
    assert plan.any and plan.for_tenant("acme") is not None and plan.for_tenant("default") is None
    assert plan.for_tenant("acme").decide("www.example.com").intercept
    assert plan.for_tenant("acme").decide("a.push.apple.com").rule == "pinned:apple"  # the profile's bypass list

    # a change of another setting keeps the compiled plan (and its decision cache)
    assert tenant(sock, data_dir, "set", "acme", "--rps", "10").exit_code == 0
    assert daemon.shared.snapshot.intercept is plan

    assert js(tenant(sock, data_dir, "set", "acme", "--intercept", "off", "--json"))["intercept"] is False
    assert daemon.shared.snapshot.intercept.for_tenant("acme") is None
    assert js(tenant(sock, data_dir, "set", "acme", "--intercept", "default", "--json"))["intercept"] is None
    assert not daemon.shared.snapshot.intercept.any
    assert daemon.store.get_tenant("acme").intercept is None and not data_dir.exists()


@pytest.mark.parametrize("value", ["maybe", "on", 1])
def test_a_bad_value_on_the_socket_is_an_error_reply_and_changes_nothing(daemon: TenancyDaemon, sock: Path,
                                                                         value: object) -> None:
    with ControlClient(sock) as client:
        client.call("tenant.set", {"name": "acme", "intercept": True})
        plan = daemon.shared.snapshot.intercept
        with pytest.raises(ControlError) as exc:
            client.call("tenant.set", {"name": "acme", "intercept": value, "rps": 5})
    assert exc.value.code == "invalid"
    assert exc.value.message.startswith(f"invalid intercept {value!r}: expected true, false or null")
    assert (daemon.store.get_tenant("acme").intercept, daemon.store.get_tenant("acme").rps) == (True, None)
    assert daemon.shared.snapshot.intercept is plan
