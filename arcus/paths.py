"""Where the store and the control socket live by default.

Order of precedence everywhere: the command-line option, then the environment variable
(``ARCUS_DATA_DIR``, ``ARCUS_SOCKET``), then a per-user default (root: ``/var/lib/arcus`` and
``/run/arcus/arcus.sock``).
"""

from __future__ import annotations

import os
from pathlib import Path

STORE_FILE = "arcus.db"


def default_data_dir() -> Path:
    env = os.environ.get("ARCUS_DATA_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/arcus")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "arcus"


def default_socket_path() -> Path:
    env = os.environ.get("ARCUS_SOCKET")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/run/arcus/arcus.sock")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "arcus" / "arcus.sock"
    return Path(f"/tmp/arcus-{os.getuid()}") / "arcus.sock"


def data_dir(option: Path | None) -> Path:
    return option if option is not None else default_data_dir()


def socket_path(option: Path | None) -> Path:
    return option if option is not None else default_socket_path()


def store_path(data_dir_option: Path | None) -> Path:
    return data_dir(data_dir_option) / STORE_FILE
