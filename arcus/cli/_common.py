"""Options shared by every command group, as Annotated aliases."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

SocketOpt = Annotated[
    Path | None,
    typer.Option("--socket", help="Control socket of the daemon [env: ARCUS_SOCKET]", show_default=False),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Where the store lives [env: ARCUS_DATA_DIR]", show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")]


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def note(message: str) -> None:
    """A side remark for a person (stderr, so --json output stays clean)."""
    sys.stderr.write(message + "\n")
