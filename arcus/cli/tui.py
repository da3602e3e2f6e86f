"""`arcus tui`: the live dashboard (arcus.tui), started on the daemon's control socket.

With no daemon answering, the dashboard opens anyway, says so on its top line and keeps trying
(an operator watching a restart wants the dashboard to come back by itself); ``--no-wait``
instead exits 3 with the one-line error, like ``arcus ctl``.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from arcus import paths
from arcus.cli._common import SocketOpt, errors_to_exit
from arcus.control.client import ControlClient
from arcus.errors import OperatorError


@errors_to_exit
def tui(
    socket: SocketOpt = None,
    interval: Annotated[float, typer.Option(help="Seconds between overview updates.", min=0.05)] = 1.0,
    no_wait: Annotated[bool, typer.Option(
        "--no-wait", help="Exit (status 3) if no daemon answers at start instead of waiting for one.")] = False,
) -> None:
    """Live dashboard: overview, connections, tenants, audit tail, reload."""
    path = paths.socket_path(socket)
    if no_wait:
        with ControlClient(path, timeout=5.0) as client:
            client.call("health")  # DaemonNotRunning -> one line, exit 3
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise OperatorError("arcus tui needs a terminal",
                            hint="for scripts, use `arcus ctl stats --json` or `arcus ctl stats --watch --json`")
    from arcus.tui.app import ArcusApp  # textual is loaded only for this command

    ArcusApp(path, interval=interval).run()
