"""`arcus ctl`: talk to the running daemon (health, stats, reload, conns, kill, shutdown).

Every command is one control call and a formatter. Exit codes are for scripts: 0 done,
1 the daemon refused (an error reply) or the request failed, 3 no daemon is running.
With ``--json`` stdout always holds one JSON value, failures included: ``{"error": {"code",
"message", "hint"?}}`` (the control protocol's error object); ``health`` with no daemon keeps its
own shape, ``{"status": "not_running", "socket": PATH, "error": {...}}``. The one-line error and
hint still go to stderr.
"""

from __future__ import annotations

import functools
import json as jsonlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Group
from rich.live import Live

from arcus import paths
from arcus.cli._common import (
    COUNTER_COLUMNS,
    JsonOpt,
    SocketOpt,
    console,
    counter_cells,
    errors_to_exit,
    fail,
    human_bytes,
    human_duration,
    make_table,
    print_json,
)
from arcus.control.client import ControlClient, DaemonNotRunning
from arcus.control.protocol import ControlError
from arcus.errors import OperatorError

app = typer.Typer(no_args_is_help=True, help="Control the running daemon over its socket.")

P = ParamSpec("P")
R = TypeVar("R")


def error_object(exc: OperatorError) -> dict[str, Any]:
    """The error as the control protocol carries it: ``{"code", "message", "hint"?}``."""
    if isinstance(exc, ControlError):
        return exc.to_dict()
    return ControlError(exc.code, exc.message, exc.hint).to_dict()


def ctl_command(func: Callable[P, R]) -> Callable[P, R]:
    """The error boundary of a ctl command (``errors_to_exit``), and with ``--json`` the error
    also on stdout as ``{"error": {...}}``: a script reading stdout always gets JSON."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except OperatorError as exc:
            if kwargs.get("json"):
                print_json({"error": error_object(exc)})
            raise

    return errors_to_exit(wrapper)


def _call(socket: Path | None, cmd: str, args: dict[str, Any] | None = None) -> Any:
    with ControlClient(paths.socket_path(socket)) as client:
        return client.call(cmd, args)


# -- commands ----------------------------------------------------------------------------


@app.command()
@ctl_command
def health(socket: SocketOpt = None, json: JsonOpt = False) -> None:
    """Is the daemon up? Exit 0 if it answers, 3 if it is not running."""
    try:
        result = _call(socket, "health")
    except DaemonNotRunning as exc:
        if json:
            print_json({"status": "not_running", "socket": str(exc.path), "error": error_object(exc)})
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
    for p in result.get("problems") or []:
        out.print(f"  problem: {p.get('detail', p.get('problem'))} ({p.get('count')} in the last minute)")
    servers = result.get("servers") or []
    if servers:
        table = make_table("servers", ("server", "type", "listen"))
        for s in servers:
            table.add_row(str(s.get("name", "")), str(s.get("type", "")), ", ".join(s.get("listen") or []) or "-")
        out.print(table)


@app.command()
@ctl_command
def stats(
    socket: SocketOpt = None,
    json: JsonOpt = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh in place (JSON: one line per update) until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between updates with --watch.", min=0.05)] = 1.0,
) -> None:
    """Counters per server and per tenant: connections, requests, bytes each way, errors."""
    if not watch:
        result = _call(socket, "stats")
        if json:
            print_json(result)
        else:
            console().print(_stats_view(result))
        return
    with ControlClient(paths.socket_path(socket)) as client:
        updates = client.stream("stats.watch", {"interval": interval}, idle_timeout=interval + 10)
        try:
            if json:
                for result in updates:  # one compact line per update, flushed: a pipe sees each
                    sys.stdout.write(jsonlib.dumps(result, sort_keys=True) + "\n")
                    sys.stdout.flush()
                return
            with Live(console=console(), auto_refresh=False) as live:
                for result in updates:
                    live.update(_stats_view(result), refresh=True)
        except KeyboardInterrupt:
            pass
        finally:
            updates.close()


def _stats_view(result: dict[str, Any]) -> Group:
    parts: list[Any] = [
        f"generation {result.get('generation', '?')}, up {human_duration(float(result.get('uptime', 0)))}"
    ]
    for group, label in (("servers", "server"), ("tenants", "tenant")):
        table = make_table(group, (label, *COUNTER_COLUMNS), right=COUNTER_COLUMNS[:-1])
        for name, counters in sorted((result.get(group) or {}).items()):
            table.add_row(name, *counter_cells(counters or {}))
        parts.append(table)
    return Group(*parts)


@app.command()
@ctl_command
def reload(socket: SocketOpt = None, json: JsonOpt = False) -> None:
    """Rebuild the snapshot from profile and store; a bad profile is refused, the old one keeps serving."""
    result = _call(socket, "reload")
    if json:
        print_json(result)
        return
    print(f"reloaded: now serving generation {result.get('generation', '?')}")


@app.command()
@ctl_command
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
@ctl_command
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
@ctl_command
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


@app.command()
@ctl_command
def resolve(
    resolver: Annotated[str, typer.Argument(metavar="NAME", help="A resolver of the running profile")],
    host: Annotated[str, typer.Argument(metavar="HOST", help="The domain name to look up")],
    socket: SocketOpt = None,
    json: JsonOpt = False,
) -> None:
    """Look HOST up through the daemon's resolver NAME, its cache included (as clients would)."""
    result = _call(socket, "resolve", {"resolver": resolver, "host": host})
    if json:
        print_json(result)
        return
    addresses = ", ".join(result.get("addresses") or []) or "-"
    ttl = float(result.get("ttl") or 0)
    source = "from the cache" if result.get("cached") else f"asked in {float(result.get('elapsed') or 0) * 1000:.0f}ms"
    held = f"cached for {human_duration(ttl)}" if ttl > 0 else "not cached"
    print(f"{result.get('host', host)} via {result.get('resolver', resolver)}: {addresses} ({source}, {held})")


@app.command()
@ctl_command
def escapers(socket: SocketOpt = None, json: JsonOpt = False) -> None:
    """The running profile's escapers and what they keep live (pool health, float addresses)."""
    result = _call(socket, "escaper.list")
    if json:
        print_json(result)
        return
    table = make_table("escapers", ("escaper", "type", "state"))
    for e in result:
        state = "; ".join(f"{k} {_state_text(v)}" for k, v in e.items() if k not in ("name", "type")) or "-"
        table.add_row(str(e.get("name")), str(e.get("type")), state)
    console().print(table)


def _state_text(value: object) -> str:
    """An escaper's live state as a person reads it: a pool's members one by one ("a up, b down
    (connect refused)"), lists joined, no Python reprs."""
    if isinstance(value, list):
        return ", ".join(_state_text(v) for v in value) or "none"
    if isinstance(value, dict):
        name = value.get("escaper") or value.get("name")
        rest = [f"{k} {_state_text(v)}" for k, v in value.items() if k not in ("escaper", "name") and v not in (None, "", 0)]
        inner = " ".join(rest)
        return f"{name} ({inner})" if name is not None and inner else str(name) if name is not None else inner
    return "-" if value is None else str(value)


@app.command("float-set")
@ctl_command
def float_set(
    escaper: Annotated[str, typer.Argument(metavar="ESCAPER", help="A direct_float escaper of the running profile")],
    addresses: Annotated[list[str], typer.Argument(metavar="ADDRESS...", help="The egress addresses to choose from")],
    socket: SocketOpt = None,
    json: JsonOpt = False,
) -> None:
    """Set the egress addresses of a direct_float escaper, live (kept across reloads)."""
    result = _call(socket, "escaper.float.set", {"escaper": escaper, "addresses": list(addresses)})
    if json:
        print_json(result)
        return
    print(f"escaper {result.get('escaper', escaper)}: egress addresses {', '.join(result.get('addresses') or []) or 'none'}")


EVENT_TYPES = ("request", "tunnel", "connection", "reload", "reload_refused", "change", "problem")


@app.command()
@ctl_command
def events(
    socket: SocketOpt = None,
    json: JsonOpt = False,
    types: Annotated[list[str] | None, typer.Option("--type", "-t", help=f"Event types to show (repeatable): {', '.join(EVENT_TYPES)} [default: all but connection]", show_default=False)] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's events.")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user's events.")] = None,
    server: Annotated[str | None, typer.Option(help="Only records of this server.")] = None,
    errors: Annotated[bool, typer.Option("--errors", help="Only records that ended in an error.")] = False,
    refused: Annotated[bool, typer.Option("--refused", help="Only refusals: 403/407/429 or denied records, refused reloads.")] = False,
    buffer: Annotated[int, typer.Option(help="Events the daemon holds for this terminal before dropping it.", min=1, max=10_000)] = 1000,
) -> None:
    """Follow what the daemon does, live: requests, tunnels, reloads, changes, problems (until Ctrl-C)."""
    for t in types or ():
        if t not in EVENT_TYPES:
            raise typer.BadParameter(f"unknown event type {t!r}; choose from {', '.join(EVENT_TYPES)}", param_hint="--type")
    args: dict[str, Any] = {"buffer": buffer}
    if types:
        args["types"] = list(types)
    for key, value in (("tenant", tenant), ("user", user), ("server", server)):
        if value is not None:
            args[key] = value
    if errors:
        args["errors"] = True
    if refused:
        args["refused"] = True
    with ControlClient(paths.socket_path(socket)) as client:
        items = client.stream("events.watch", args)
        try:
            for event in items:
                if json:
                    sys.stdout.write(jsonlib.dumps(event, sort_keys=True) + "\n")
                else:
                    sys.stdout.write(event_line(event) + "\n")
                sys.stdout.flush()
                if event.get("type") == "dropped":
                    raise fail(OperatorError(
                        f"the daemon dropped this subscriber: it fell behind ({event.get('skipped')} event(s) lost)",
                        code="unavailable",
                        hint="narrow it with --type/--tenant/--errors, or raise --buffer",
                    ))
        except KeyboardInterrupt:
            pass
        finally:
            items.close()


def event_line(e: dict[str, Any]) -> str:
    """One line per event for a terminal: time, type, then what matters for that type."""
    at = str(e.get("at") or "")
    clock = at[11:23] if len(at) >= 23 else at
    kind = str(e.get("type", "?"))
    if kind in ("request", "tunnel", "connection"):
        host, port = e.get("host") or "", e.get("port")
        target = (f"[{host}]:{port}" if ":" in host else f"{host}:{port}") if host else "-"
        what = f"{e.get('method')} {target}{e.get('path') or ''}" if kind == "request" else f"{e.get('server_type') or '-'} {target}"
        user = e.get("user") or "-"
        duration = float(e.get("duration") or 0) * 1000
        tail = f"{e.get('status', 0)} {e.get('bytes_up', 0)} {e.get('bytes_down', 0)} {duration:.1f}ms {e.get('error_code') or '-'}"
        rule = f" rule={e['rule']}" if e.get("rule") else ""
        return f"{clock} {kind:<8} {e.get('tenant')}/{user} {e.get('client')} {what} {tail}{rule}"
    if kind == "reload":
        return f"{clock} reload   generation {e.get('generation')} from {e.get('profile')}"
    if kind == "reload_refused":
        return f"{clock} reload refused: " + str(e.get("message", "")).replace("\n", "; ")
    if kind == "change":
        target = " ".join(f"{k}={e[k]}" for k in ("tenant", "user", "rule") if e.get(k) is not None)
        return f"{clock} change   {e.get('cmd')} {target} (generation {e.get('generation')})"
    if kind == "problem":
        return f"{clock} problem  {e.get('problem')}: {e.get('detail')}"
    if kind == "dropped":
        return f"{clock} dropped  {e.get('reason')}: {e.get('skipped')} event(s) lost (buffer {e.get('buffer')})"
    return f"{clock} {kind} " + jsonlib.dumps({k: v for k, v in e.items() if k not in ("type", "time", "at")}, sort_keys=True)
