"""The one harness of the CLI tests: CliRunner invocation, a temp store and socket, and a daemon.

- ``sock`` is a socket path in a short temp directory (AF_UNIX paths are short) where no daemon
  answers until the ``daemon`` fixture starts one: the daemon's real tenancy handlers on a real
  ControlServer (:class:`arcus.testing.control.ServerThread`) over its own store
  (``tmp_path/daemon``), with a real Snapshot refreshed after each change
  (:class:`arcus.testing.control.TenancyDaemon`);
- ``data_dir`` is where the CLI's no-daemon path keeps its store;
- ``invoke(*args)`` runs ``arcus`` as a user would, asserting it ended through the CLI's error
  boundary (no traceback); ``run(sock, data_dir, *args)`` adds the socket and the data dir; ``js`` asserts success and parses ``--json``;
  ``errors`` asserts exit 1, nothing on stdout, and returns the stderr lines (error, hint).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from arcus.cli.app import app
from arcus.errors import OperatorError
from arcus.store import Store
from arcus.testing.control import ServerThread, TenancyDaemon

# glibc's sha256-crypt test vector: "Hello world!" with salt "saltstring" (docs/users-and-limits.md).
SHA256_CRYPT = "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"
SHA256_PW = "Hello world!"


def cheap_hash(password: str) -> str:
    """A real, verifiable scrypt secret at a low cost (ln=4), so tests do not pay 0.3 s per user."""
    if not password:
        raise OperatorError("the password is empty", hint="choose a non-empty password")
    salt = os.urandom(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=16, r=8, p=1, dklen=32)

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode().rstrip("=")

    return f"$scrypt$ln=4,r=8,p=1${b64(salt)}${b64(key)}"


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="arcus-cli-") as d:
        yield Path(d)


@pytest.fixture
def sock(sock_dir: Path) -> Path:
    return sock_dir / "arcus.sock"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def daemon(sock: Path, tmp_path: Path) -> Iterator[TenancyDaemon]:
    with Store.open(tmp_path / "daemon" / "arcus.db") as store:
        d = TenancyDaemon(store)
        with ServerThread(sock, d.handlers()) as server:
            yield d
            server.run(d.close())


def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    """``arcus ARGS`` through CliRunner; it must end through the CLI's error boundary."""
    result = CliRunner().invoke(app, list(args), input=input, env=env)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def run(sock: Path, data_dir: Path, *args: str, input: str | None = None) -> Result:
    """``arcus ARGS`` against the socket ``sock`` (a daemon or nothing) and the store in ``data_dir``."""
    return invoke(*args, "--socket", str(sock), "--data-dir", str(data_dir), input=input)


def js(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def errors(result: Result) -> list[str]:
    """The stderr lines of a refusal: exit code 1, nothing on stdout."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    return result.stderr.splitlines()


def note(sock: Path, data_dir: Path, *, writes: bool) -> str:
    """What the no-daemon path says on stderr."""
    what = "changed the store at {} directly" if writes else "read the store at {} directly"
    return f"note: no daemon running at {sock}; " + what.format(data_dir / "arcus.db") + "\n"
