"""`arcus tenant`: add, list, show, rm, suspend, resume.

Through the running daemon when one answers on the socket (the change applies on the next
connection); otherwise straight into the store, saying so on stderr. Both paths print the
same shapes (``arcus.store.Tenant.to_dict()``), so ``--json`` output does not depend on
whether a daemon was running.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from arcus import paths
from arcus.cli._common import (
    COUNTER_COLUMNS,
    DataDirOpt,
    JsonOpt,
    SocketOpt,
    console,
    counter_cells,
    errors_to_exit,
    make_table,
    note,
    print_json,
)
from arcus.control.client import ControlClient, DaemonNotRunning
from arcus.names import validate_name
from arcus.store import Store, normalize_source

app = typer.Typer(no_args_is_help=True, help="Manage tenants: who a client belongs to, and whether it is served.")

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Tenant name ([A-Za-z0-9._-])", show_default=False)]


def _run(
    socket: Path | None,
    data_dir: Path | None,
    cmd: str,
    args: dict[str, Any],
    direct: Callable[[Store], Any],
    *,
    writes: bool,
) -> Any:
    """Send ``cmd`` to the daemon; with none running, do ``direct`` on the store and say so."""
    sock = paths.socket_path(socket)
    try:
        with ControlClient(sock) as client:
            return client.call(cmd, args)
    except DaemonNotRunning:
        pass
    store_file = paths.store_path(data_dir)
    with Store.open(store_file) as store:
        result = direct(store)
    what = "changed the store at {} directly" if writes else "read the store at {} directly"
    note(f"note: no daemon running at {sock}; " + what.format(store_file))
    return result


def _tenant_name(name: str) -> str:
    return validate_name("tenant", name)


def _show_one(t: dict[str, Any]) -> None:
    out = console()
    out.print(f"tenant     {t['name']}")
    out.print(f"name       {t.get('display_name') or t['name']}")
    out.print(f"sources    {', '.join(t.get('sources') or []) or '-'}")
    out.print(f"suspended  {'yes' if t.get('suspended') else 'no'}")
    out.print(f"created    {t.get('created_at', '')}")
    usage = t.get("usage")
    if usage is not None:
        table = make_table("usage", COUNTER_COLUMNS, right=COUNTER_COLUMNS[:-1])
        table.add_row(*counter_cells(usage))
        out.print(table)


@app.command()
@errors_to_exit
def add(
    name: NameArg,
    display_name: Annotated[
        str | None, typer.Option("--name", help="Display name, e.g. \"Acme Corp\"", show_default=False)
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option("--source", metavar="CIDR", help="Client range that identifies the tenant; repeatable"),
    ] = None,
    socket: SocketOpt = None,
    data_dir: DataDirOpt = None,
    json: JsonOpt = False,
) -> None:
    """Add a tenant; clients from its source ranges are counted under it (longest prefix wins)."""
    _tenant_name(name)
    sources = [normalize_source(s) for s in source or []]
    args: dict[str, Any] = {"name": name, "sources": sources}
    if display_name is not None:
        args["display_name"] = display_name
    result = _run(
        socket,
        data_dir,
        "tenant.add",
        args,
        lambda st: st.add_tenant(name, display_name, sources).to_dict(),
        writes=True,
    )
    if json:
        print_json(result)
        return
    ranges = ", ".join(result.get("sources") or []) or "no source ranges yet"
    print(f"added tenant {result['name']} ({result.get('display_name') or result['name']}): {ranges}")


@app.command("list")
@errors_to_exit
def list_(socket: SocketOpt = None, data_dir: DataDirOpt = None, json: JsonOpt = False) -> None:
    """List every tenant."""
    result = _run(
        socket, data_dir, "tenant.list", {}, lambda st: [t.to_dict() for t in st.list_tenants()], writes=False
    )
    if json:
        print_json(result)
        return
    if not result:
        print("no tenants")
        return
    table = make_table(f"{len(result)} tenant{'s' if len(result) != 1 else ''}",
                   ("tenant", "name", "sources", "suspended", "created"))
    for t in result:
        table.add_row(
            t["name"],
            t.get("display_name") or t["name"],
            "\n".join(t.get("sources") or []) or "-",
            "yes" if t.get("suspended") else "no",
            str(t.get("created_at", "")),
        )
    console().print(table)


@app.command()
@errors_to_exit
def show(name: NameArg, socket: SocketOpt = None, data_dir: DataDirOpt = None, json: JsonOpt = False) -> None:
    """One tenant, with its usage counters when the daemon is running."""
    _tenant_name(name)
    result = _run(
        socket, data_dir, "tenant.show", {"name": name}, lambda st: st.get_tenant(name).to_dict(), writes=False
    )
    if json:
        print_json(result)
        return
    _show_one(result)


@app.command()
@errors_to_exit
def rm(name: NameArg, socket: SocketOpt = None, data_dir: DataDirOpt = None, json: JsonOpt = False) -> None:
    """Remove a tenant; its clients fall back to `default` on their next connection."""
    _tenant_name(name)

    def direct(st: Store) -> dict[str, Any]:
        st.remove_tenant(name)
        return {"removed": name}

    result = _run(socket, data_dir, "tenant.rm", {"name": name}, direct, writes=True)
    if json:
        print_json(result)
        return
    print(f"removed tenant {result.get('removed', name)}")


def _set_suspended(name: str, suspended: bool, socket: Path | None, data_dir: Path | None, json: bool) -> None:
    _tenant_name(name)
    cmd = "tenant.suspend" if suspended else "tenant.resume"
    result = _run(
        socket, data_dir, cmd, {"name": name}, lambda st: st.set_suspended(name, suspended).to_dict(), writes=True
    )
    if json:
        print_json(result)
    elif suspended:
        print(f"suspended tenant {result['name']}: its clients get 403 until `arcus tenant resume {result['name']}`")
    else:
        print(f"resumed tenant {result['name']}")


@app.command()
@errors_to_exit
def suspend(name: NameArg, socket: SocketOpt = None, data_dir: DataDirOpt = None, json: JsonOpt = False) -> None:
    """Refuse a tenant's clients (403) until it is resumed."""
    _set_suspended(name, True, socket, data_dir, json)


@app.command()
@errors_to_exit
def resume(name: NameArg, socket: SocketOpt = None, data_dir: DataDirOpt = None, json: JsonOpt = False) -> None:
    """Serve a suspended tenant's clients again."""
    _set_suspended(name, False, socket, data_dir, json)
