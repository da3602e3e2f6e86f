"""`arcus serve`: run the daemon in the foreground."""

from __future__ import annotations

from typing import Annotated

import typer

from arcus import paths
from arcus.cli._common import DataDirOpt, SocketOpt


def serve(
    profile: Annotated[
        str | None,
        typer.Option("--profile", help="A shipped profile name (default, edge, school, socks-gateway, reverse; see `arcus config list`) or a YAML file path"),
    ] = None,
    data_dir: DataDirOpt = None,
    socket: SocketOpt = None,
) -> None:
    """Run the gateway in the foreground (SIGTERM or Ctrl-C stops it gracefully, SIGHUP reloads)."""
    from arcus.runtime.main import serve as run

    raise typer.Exit(run(profile, paths.data_dir(data_dir), paths.socket_path(socket)))
