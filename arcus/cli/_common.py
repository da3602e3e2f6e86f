"""Options shared by every command group, as Annotated aliases."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from arcus import paths
from arcus.control import protocol as p
from arcus.control.client import ControlClient, DaemonNotRunning
from arcus.errors import OperatorError
from arcus.units import format_duration as human_duration  # noqa: F401  (the CLI's name for it)

if TYPE_CHECKING:
    from arcus.store import Store  # imported where the store is opened: `ctl` never needs it

SocketOpt = Annotated[
    Path | None,
    typer.Option("--socket", help="Control socket of the daemon [env: ARCUS_SOCKET]", show_default=False),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Where the store lives [env: ARCUS_DATA_DIR]", show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")]
ProfileOpt = Annotated[
    str | None,
    typer.Option("--profile", help="With no daemon running: the profile whose escaper resolves and guards "
                 "(a shipped name or a YAML path) [default: the embedded default]", show_default=False),
]


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def note(message: str) -> None:
    """A side remark for a person (stderr, so --json output stays clean)."""
    sys.stderr.write(message + "\n")


EXIT_ERROR = 1
EXIT_NOT_RUNNING = 3

P = ParamSpec("P")
R = TypeVar("R")


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


def make_table(title: str, columns: Iterable[str], right: Iterable[str] = ()) -> Table:
    table = Table(title=title, title_justify="left")
    right_set = set(right)
    for col in columns:
        table.add_column(col, justify="right" if col in right_set else "left")
    return table


def run_or_store(
    socket: Path | None,
    data_dir: Path | None,
    cmd: str,
    args: dict[str, Any],
    direct: Callable[[Store], Any],
    *,
    writes: bool,
    timeout: float = 10.0,
    quiet: bool = False,
) -> Any:
    """Send ``cmd`` to the daemon; with none running, do ``direct`` (the same :mod:`arcus.ops`
    function the daemon's handler calls) on the store, and say so on stderr unless ``quiet``.

    A request longer than the control socket takes (a large ``user import``) is refused with a
    hint when a daemon runs, and goes to the store when none does.
    """
    sock = paths.socket_path(socket)
    too_long = len(p.Request(0, cmd, args).encode()) > p.MAX_LINE
    try:
        with ControlClient(sock, timeout=timeout) as client:
            if too_long:
                try:
                    client.call("help")  # is anyone there? DaemonNotRunning -> the store
                except DaemonNotRunning:
                    raise
                except p.ControlError:
                    pass  # any answer means a daemon is there
                raise OperatorError(
                    f"the request is larger than the control socket takes ({p.MAX_LINE // (1024 * 1024)} MiB)",
                    hint="split the input into smaller parts, or stop the daemon to write the store directly",
                )
            _say_if_another_store(client, sock, data_dir)
            return client.call(cmd, args)
    except DaemonNotRunning:
        pass
    from arcus.store import Store

    store_file = paths.store_path(data_dir)
    with Store.open(store_file) as store:
        result = direct(store)
    if not quiet:
        what = "changed the store at {} directly" if writes else "read the store at {} directly"
        note(f"note: no daemon running at {sock}; " + what.format(store_file))
    return result


def _say_if_another_store(client: ControlClient, sock: Path, data_dir: Path | None) -> None:
    """A data dir given (``--data-dir`` or ARCUS_DATA_DIR) while a daemon with another store
    answers: the command goes to that daemon, so say whose store it is (the operator may have
    meant a second daemon, at another ``--socket``)."""
    if data_dir is None and not os.environ.get("ARCUS_DATA_DIR"):
        return
    try:
        health = client.call("health")
    except p.ControlError:
        return
    theirs = health.get("store") if isinstance(health, dict) else None
    ours = paths.store_path(data_dir)
    if isinstance(theirs, str) and os.path.realpath(theirs) != os.path.realpath(ours):
        note(f"note: the daemon at {sock} keeps its store at {theirs}, not at {ours}: the command goes to that "
             "daemon (give the --socket of the daemon you mean, or stop this one to use the store directly)")
