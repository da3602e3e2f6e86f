"""`arcus ctl`: talk to the running daemon (health, stats, reload, conns, kill, shutdown).

Every command is one control call and a formatter. Exit codes are for scripts: 0 done,
1 the daemon refused (an error reply) or the request failed, 3 no daemon is running.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from arcus import paths
from arcus.cli._common import JsonOpt, SocketOpt, print_json
from arcus.control.client import ControlClient, DaemonNotRunning
from arcus.errors import OperatorError

app = typer.Typer(no_args_is_help=True, help="Control the running daemon over its socket.")

EXIT_ERROR = 1
EXIT_NOT_RUNNING = 3

P = ParamSpec("P")
R = TypeVar("R")


# -- shared by the command groups that talk to the daemon (tenant imports these) ---------


def fail(exc: OperatorError) -> typer.Exit:
    """Print ``exc`` as ``error: ...`` and ``hint: ...`` on stderr; return the Exit to raise."""
    lines = exc.message.splitlines() or [""]
    sys.stderr.write(f"error: {lines[0]}\n")
    for line in lines[1:]:  # a refused reload lists one file:line problem per line
        sys.stderr.write(f"  {line}\n")
    if exc.hint:
        sys.stderr.write(f"hint: {exc.hint}\n")
    return typer.Exit(EXIT_NOT_RUNNING if isinstance(exc, DaemonNotRunning) else EXIT_ERROR)


def errors_to_exit(func: Callable[P, R]) -> Callable[P, R]:
    """The error boundary of one command, so CliRunner and `arcus` behave alike.

    OperatorError (error replies, DaemonNotRunning, validation) becomes one line plus a
    hint and exit 1 (3 when no daemon runs); ARCUS_DEBUG=1 shows the traceback instead.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except OperatorError as exc:
            if os.environ.get("ARCUS_DEBUG") == "1":
                raise
            raise fail(exc) from None

    return wrapper


def console() -> Console:
    """A console for tables: no markup (names may contain brackets), wide when piped."""
    out = Console(markup=False, highlight=False, emoji=False)
    if not out.is_terminal:
        out = Console(markup=False, highlight=False, emoji=False, width=250)
    return out


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def errors_text(errors: dict[str, int] | None) -> str:
    items = sorted((k, v) for k, v in (errors or {}).items() if v)
    return " ".join(f"{k}={v}" for k, v in items) or "-"


COUNTER_COLUMNS = ("conns", "active", "requests", "up", "down", "errors")


def counter_cells(c: dict[str, Any]) -> list[str]:
    return [
        str(c.get("conns_total", 0)),
        str(c.get("conns_active", 0)),
        str(c.get("requests", 0)),
        human_bytes(int(c.get("bytes_up", 0))),
        human_bytes(int(c.get("bytes_down", 0))),
        errors_text(c.get("errors")),
    ]


def _call(socket: Path | None, cmd: str, args: dict[str, Any] | None = None) -> Any:
    with ControlClient(paths.socket_path(socket)) as client:
        return client.call(cmd, args)


def make_table(title: str, columns: Iterable[str], right: Iterable[str] = ()) -> Table:
    table = Table(title=title, title_justify="left")
    right_set = set(right)
    for col in columns:
        table.add_column(col, justify="right" if col in right_set else "left")
    return table


# -- commands ----------------------------------------------------------------------------


@app.command()
def health(socket: SocketOpt = None, json: JsonOpt = False) -> None:
    """Is the daemon up? Exit 0 if it answers, 3 if it is not running."""
    path = paths.socket_path(socket)
    try:
        with ControlClient(path) as client:
            result = client.call("health")
    except DaemonNotRunning as exc:
        if json:
            print_json({"status": "not_running", "socket": str(path)})
        raise fail(exc) from None
    except OperatorError as exc:
        raise fail(exc) from None
    if json:
        print_json(result)
        return
    out = console()
    status = result.get("status", "ok")
    state = "is running" if status == "ok" else f"is running ({status})"
    out.print(
        f"arcus {result.get('version', '?')} {state}: pid {result.get('pid', '?')}, "
        f"up {human_duration(float(result.get('uptime', 0)))}, profile {result.get('profile', '?')}, "
        f"generation {result.get('generation', '?')}"
    )
    servers = result.get("servers") or []
    if servers:
        table = make_table("servers", ("server", "type", "listen"))
        for s in servers:
            table.add_row(str(s.get("name", "")), str(s.get("type", "")), ", ".join(s.get("listen") or []) or "-")
        out.print(table)


@app.command()
@errors_to_exit
def stats(socket: SocketOpt = None, json: JsonOpt = False) -> None:
    """Counters per server and per tenant: connections, requests, bytes each way, errors."""
    result = _call(socket, "stats")
    if json:
        print_json(result)
        return
    out = console()
    out.print(
        f"generation {result.get('generation', '?')}, up {human_duration(float(result.get('uptime', 0)))}"
    )
    for group, label in (("servers", "server"), ("tenants", "tenant")):
        table = make_table(group, (label, *COUNTER_COLUMNS), right=COUNTER_COLUMNS[:-1])
        for name, counters in sorted((result.get(group) or {}).items()):
            table.add_row(name, *counter_cells(counters or {}))
        out.print(table)


@app.command()
@errors_to_exit
def reload(socket: SocketOpt = None, json: JsonOpt = False) -> None:
    """Rebuild the snapshot from profile and store; a bad profile is refused, the old one keeps serving."""
    result = _call(socket, "reload")
    if json:
        print_json(result)
        return
    print(f"reloaded: now serving generation {result.get('generation', '?')}")


@app.command()
@errors_to_exit
def conns(socket: SocketOpt = None, json: JsonOpt = False) -> None:
    """Live connections: id, server, tenant, client, target, age, bytes each way, state."""
    result = _call(socket, "conns")
    if json:
        print_json(result)
        return
    if not result:
        print("no live connections")
        return
    columns = ("id", "server", "tenant", "client", "target", "age", "up", "down", "state")
    table = make_table(f"{len(result)} live connection{'s' if len(result) != 1 else ''}", columns,
                   right=("id", "age", "up", "down"))
    for c in result:
        table.add_row(
            str(c.get("id", "")),
            str(c.get("server", "")),
            str(c.get("tenant", "")),
            str(c.get("client", "")),
            str(c.get("target") or "-"),
            human_duration(float(c.get("age", 0))),
            human_bytes(int(c.get("bytes_up", 0))),
            human_bytes(int(c.get("bytes_down", 0))),
            str(c.get("state", "")),
        )
    console().print(table)


@app.command()
@errors_to_exit
def kill(
    conn_id: Annotated[int, typer.Argument(metavar="ID", help="Connection id, as `arcus ctl conns` shows it")],
    socket: SocketOpt = None,
    json: JsonOpt = False,
) -> None:
    """End one live connection."""
    result = _call(socket, "kill", {"id": conn_id})
    if json:
        print_json(result)
        return
    print(f"killed connection {result.get('killed', conn_id)}")


@app.command()
@errors_to_exit
def shutdown(
    graceful: Annotated[
        bool, typer.Option("--graceful", help="Stop accepting, let live connections finish (bounded by the profile)")
    ] = False,
    socket: SocketOpt = None,
    json: JsonOpt = False,
) -> None:
    """Stop the daemon."""
    result = _call(socket, "shutdown", {"graceful": graceful})
    if json:
        print_json(result)
        return
    how = "gracefully: live connections may finish" if result.get("graceful", graceful) else "now"
    print(f"daemon is shutting down {how}")
