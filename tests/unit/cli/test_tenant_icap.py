"""`arcus tenant set --icap-*`: a tenant's ICAP settings, checked before the store, and through the
daemon into the Snapshot the data plane reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from arcus.testing.control import TenancyDaemon
from tests.unit.cli.harness import errors, js
from tests.unit.cli.test_tenant_set import stored, tenant


@pytest.fixture
def acme(sock: Path, data_dir: Path) -> None:
    assert tenant(sock, data_dir, "add", "acme").exit_code == 0


def test_set_and_show(sock: Path, data_dir: Path, acme: None) -> None:
    result = tenant(sock, data_dir, "set", "acme", "--icap-service", "av", "--icap-fail", "closed", "--icap-sample", "0.5",
                    "--icap-max-body", "1MiB", "--icap-oversize", "refuse")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("changed tenant acme: icap service av, icap fail closed, icap sample 0.5, "
                             "icap max body 1048576, icap oversize refuse\n")
    t = stored(data_dir)
    assert (t.icap_service, t.icap_fail, t.icap_sample, t.icap_max_body, t.icap_oversize) == ("av", "closed", 0.5, 1 << 20, "refuse")
    assert "icap       av, fail closed, sample 0.5, bodies up to 1048576 bytes (larger: refuse)" in tenant(
        sock, data_dir, "show", "acme").stdout
    assert js(tenant(sock, data_dir, "set", "acme", "--no-icap", "--json"))["icap_service"] is None


@pytest.mark.parametrize(
    "args, first",
    [
        (("--icap-sample", "1.5"), "error: invalid icap_sample 1.5"),
        (("--icap-sample", "nan"), "error: invalid icap_sample nan"),
        (("--icap-sample", "inf"), "error: invalid icap_sample inf"),
        (("--rps", "0.00001"), "error: invalid rps 1e-05"),
        (("--bandwidth", "99999999999999999999999999999G"), "error: invalid bandwidth"),
        (("--icap-fail", "maybe"), "error: invalid icap fail mode 'maybe'"),
        (("--icap-oversize", "drop"), "error: invalid icap oversize action 'drop'"),
        (("--icap-max-body", "lots"), "error: invalid --icap-max-body 'lots'"),
        (("--icap-service", "a b"), "error: invalid icap service name 'a b'"),
        (("--icap-service", "av", "--no-icap"), "error: --icap-service and --no-icap contradict each other"),
    ],
)
def test_bad_values_are_one_line_and_change_nothing(sock: Path, data_dir: Path, acme: None, args, first) -> None:
    lines = errors(tenant(sock, data_dir, "set", "acme", *args))
    assert lines[0].startswith(first), lines
    assert len(lines) <= 2 and (len(lines) == 1 or lines[1].startswith("hint: "))
    assert stored(data_dir).icap_service is None and stored(data_dir).icap_sample == 1.0


@pytest.fixture
def daemon(daemon: TenancyDaemon) -> Iterator[TenancyDaemon]:
    daemon.seed(lambda st: st.add_tenant("acme", None, ["10.20.0.0/16"]))
    yield daemon


@pytest.fixture
def av_daemon(sock: Path, tmp_path: Path) -> Iterator[TenancyDaemon]:
    """A daemon whose profile has the ICAP service ``av``."""
    import arcus.profiles
    from arcus.store import Store
    from arcus.testing.control import ServerThread

    profile = tmp_path / "av.yaml"
    default = (Path(arcus.profiles.__file__).parent / "default.yaml").read_text()
    profile.write_text(default + "icap_services:\n  - name: av\n    servers: [icap://127.0.0.1:1344/avscan]\n")
    with Store.open(tmp_path / "daemon" / "arcus.db") as store:
        d = TenancyDaemon(store, str(profile))
        d.seed(lambda st: st.add_tenant("acme", None, ["10.20.0.0/16"]))
        with ServerThread(sock, d.handlers()) as server:
            yield d
            server.run(d.close())


def test_through_the_daemon_into_the_snapshot(av_daemon: TenancyDaemon, sock: Path, data_dir: Path) -> None:
    assert av_daemon.shared.snapshot.tenancy.tenants["acme"].icap is None
    out = js(tenant(sock, data_dir, "set", "acme", "--icap-service", "av", "--icap-sample", "0.25", "--json"))
    assert (out["icap_service"], out["icap_sample"]) == ("av", 0.25)
    policy = av_daemon.shared.snapshot.tenancy.tenants["acme"].icap
    assert (policy.service_name, policy.sample, policy.fail) == ("av", 0.25, "open") and policy.service is not None
    # a service the daemon's profile does not have is refused, in one line naming those it has
    lines = errors(tenant(sock, data_dir, "set", "acme", "--icap-service", "avv"))
    assert lines == ["error: the profile this daemon serves has no ICAP service 'avv'", "hint: use one of: av"]


def test_a_daemon_without_icap_services_refuses_any(daemon: TenancyDaemon, sock: Path, data_dir: Path) -> None:
    lines = errors(tenant(sock, data_dir, "set", "acme", "--icap-service", "av"))
    assert lines == ["error: the profile this daemon serves has no ICAP service 'av'",
                     "hint: add it under icap_services: in the profile and reload first"]
    assert daemon.shared.snapshot.tenancy.tenants["acme"].icap is None


@pytest.mark.parametrize("args", [("--icap-sample", "nan"), ("--rps", "0.00001")])
def test_bad_values_through_the_daemon_are_one_line_too(daemon: TenancyDaemon, sock: Path, data_dir: Path, args) -> None:
    """Checked before anything is sent: nan is not JSON, and the daemon's answer would be a traceback."""
    lines = errors(tenant(sock, data_dir, "set", "acme", *args))
    assert lines[0].startswith("error: invalid "), lines
    assert len(lines) == 2 and lines[1].startswith("hint: ")
    assert daemon.shared.snapshot.tenancy.tenants["acme"].icap is None
