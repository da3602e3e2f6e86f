"""`arcus tenant`: add, list, show, set, rm, suspend, resume.

Through the running daemon when one answers on the socket (the change applies on the next
connection); otherwise the same :mod:`arcus.ops.tenants` function the daemon calls, on the
store, saying so on stderr. Both paths print the same shapes, so ``--json`` output does not
depend on whether a daemon was running (only the daemon adds live ``usage``).
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Annotated, Any

import typer

from arcus.cli._common import (
    COUNTER_COLUMNS,
    DataDirOpt,
    JsonOpt,
    SocketOpt,
    console,
    counter_cells,
    errors_to_exit,
    make_table,
    print_json,
    run_or_store,
)
from arcus.errors import OperatorError
from arcus.names import validate_name
from arcus.ops import tenants as ops
from arcus.store import normalize_source
from arcus.store.tenants import check_settings
from arcus.config.values import parse_size
from arcus.units import format_bandwidth, parse_bandwidth, parse_count, parse_rate

app = typer.Typer(no_args_is_help=True, help="Manage tenants: who a client belongs to, and whether it is served.")

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Tenant name ([A-Za-z0-9._-])", show_default=False)]


def _tenant_name(name: str) -> str:
    return validate_name("tenant", name)


AUTH_MODES = ("none", "optional", "required")
DEFAULT_ACTIONS = ("allow", "deny")
BLOCK_PAGE_FIELDS = ("tenant", "rule", "reason", "request_id", "host")
MAX_BLOCK_PAGE = 64 * 1024
MAX_REALM = 100


def count_text(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


def rate_text(value: float | None) -> str:
    return "unlimited" if value is None else f"{value:g} req/s"


def bandwidth_text(value: float | None) -> str:
    return "unlimited" if value is None else f"{format_bandwidth(value)} each way"


def limit_lines(item: dict[str, Any], usage: dict[str, Any] | None) -> list[str]:
    """The limits of a tenant or user, the live connection count beside its limit when known.

    The rate and bandwidth lines show the limit only: the daemon counts requests and bytes,
    not a current rate.
    """
    conns = count_text(item.get("max_conns"))
    if usage is not None:
        conns = f"{usage.get('conns_active', 0)} / {conns}"
    return [
        f"connections {conns}",
        f"rate limit  {rate_text(item.get('rps'))}",
        f"bandwidth   {bandwidth_text(item.get('bandwidth'))}",
    ]


def realm_text(t: dict[str, Any]) -> str:
    realm = t.get("realm")
    return f'"{realm}"' if realm else f'"arcus {t["name"]}" (default)'


def _show_one(t: dict[str, Any]) -> None:
    out = console()
    out.print(f"tenant     {t['name']}")
    out.print(f"name       {t.get('display_name') or t['name']}")
    out.print(f"sources    {', '.join(t.get('sources') or []) or '-'}")
    locked = "yes: only its own users are admitted from them" if t.get("lock_sources") else "no"
    out.print(f"locked     {locked}")
    out.print(f"suspended  {'yes' if t.get('suspended') else 'no'}")
    out.print(f"created    {t.get('created_at', '')}")
    out.print(f"auth       {t.get('auth', 'none')}, realm {realm_text(t)}")
    out.print(f"exempt     {', '.join(t.get('auth_exempt') or []) or '-'}")
    out.print(f"proxy host {', '.join(t.get('proxy_hosts') or []) or '-'}")
    default = t.get("default_action", "allow")
    out.print(f"default    {default} (when no rule decides)")
    page = t.get("block_page")
    out.print(f"block page {'built-in' if not page else f'custom, {len(page)} characters'}")
    out.print(f"log query  {'yes' if t.get('log_query') else 'no'}")
    out.print(f"icap       {icap_text(t)}")
    out.print(f"intercept  {intercept_text(t.get('intercept'))}")
    for key in ("users", "rules"):
        if key in t:
            out.print(f"{key:<10} {t[key]}")
    usage = t.get("usage")
    out.print("")
    for line in limit_lines(t, usage):
        out.print(line)
    if usage is not None:
        table = make_table("usage", COUNTER_COLUMNS, right=COUNTER_COLUMNS[:-1])
        table.add_row(*counter_cells(usage))
        out.print(table)


def read_block_page(path: Path) -> str:
    """A block page template, read and checked: UTF-8, bounded, only the known fields.

    Checked here so that a typo (``{tenat}``) or a stray CSS brace is refused when it is set,
    not when the first client is blocked.
    """
    fields = " ".join("{" + f + "}" for f in BLOCK_PAGE_FIELDS)
    hint = f"fields: {fields}; write {{{{ and }}}} for a literal brace (CSS rules need them doubled)"
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BLOCK_PAGE + 1)
    except OSError as exc:
        raise OperatorError(f"cannot read block page {path}: {exc.strerror or exc}",
                            hint="give the path of an HTML file") from None
    if len(raw) > MAX_BLOCK_PAGE:
        raise OperatorError(f"block page {path} is larger than {MAX_BLOCK_PAGE // 1024} KiB",
                            hint="a block page is one small HTML page; link to images and styles instead")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OperatorError(f"block page {path} is not UTF-8 text (byte {exc.start})",
                            hint="save the file as UTF-8") from None
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise OperatorError(f"block page {path}: {exc}", hint=hint) from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in BLOCK_PAGE_FIELDS:
            raise OperatorError(f"block page {path}: unknown field {{{field}}}", hint=hint)
        if spec or conversion:  # {host:>999999999} would allocate at every blocked request
            raise OperatorError(f"block page {path}: field {{{field}}} takes no format spec or conversion", hint=hint)
    try:
        text.format(**{f: "x" for f in BLOCK_PAGE_FIELDS})
    except (ValueError, KeyError, IndexError, AttributeError) as exc:
        raise OperatorError(f"block page {path}: {exc}", hint=hint) from None
    return text


def check_realm(text: str) -> str | None:
    """The realm sent in ``Proxy-Authenticate: Basic realm="..."``; empty -> the default."""
    realm = text.strip()
    if not realm:
        return None
    # Printable ASCII without '"' and '\\': it is sent in a quoted header parameter.
    bad = any(not (" " <= c <= "~") or c in '"\\' for c in realm)
    if bad or len(realm) > MAX_REALM:
        raise OperatorError(
            f"invalid realm {text!r}",
            hint=f"use at most {MAX_REALM} printable ASCII characters without quotes or backslashes; "
            "'' restores the default",
        )
    return realm


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise OperatorError(f"invalid {what} {value!r}", hint="use " + ", ".join(choices[:-1]) + " or " + choices[-1])
    return value


def _icap_changes(service: str | None, no_icap: bool, fail: str | None, sample: float | None, max_body: str | None,
                  oversize: str | None) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if service is not None and no_icap:
        raise OperatorError("--icap-service and --no-icap contradict each other", hint="give one of them")
    if service is not None:
        changes["icap_service"] = validate_name("icap service", service)
    elif no_icap:
        changes["icap_service"] = None
    if fail is not None:
        changes["icap_fail"] = check_choice("icap fail mode", fail, ("open", "closed"))
    if sample is not None:
        changes["icap_sample"] = sample
    if max_body is not None:
        try:
            changes["icap_max_body"] = parse_size(max_body)
        except ValueError:
            raise OperatorError(f"invalid --icap-max-body {max_body!r}",
                                hint="give a size in bytes, or with KiB, MiB or GiB, e.g. 8MiB") from None
    if oversize is not None:
        changes["icap_oversize"] = check_choice("icap oversize action", oversize, ("pass", "refuse"))
    return changes


def icap_text(t: dict[str, Any]) -> str:
    service = t.get("icap_service")
    if not service:
        return "-"
    sample = t.get("icap_sample", 1.0)
    return (f"{service}, fail {t.get('icap_fail', 'open')}, sample {sample:g}, bodies up to "
            f"{t.get('icap_max_body', 0)} bytes (larger: {t.get('icap_oversize', 'pass')})")


INTERCEPT_SWITCH = {"on": True, "off": False, "default": None}


def parse_intercept(value: str) -> bool | None:
    """``--intercept on|off|default``: the store's switch (None: as the profile says)."""
    try:
        return INTERCEPT_SWITCH[value]
    except KeyError:
        raise OperatorError(f"invalid --intercept {value!r}: use on, off or default (as the profile says)") from None


def intercept_text(switch: bool | None) -> str:
    if switch is None:
        return "default (as the profile's intercept: says)"
    return f"{'on' if switch else 'off'} (set here; overrides the profile's enabled:)"


def describe_changes(args: dict[str, Any]) -> str:
    """One phrase per changed setting, in the order the options are listed."""
    parts: list[str] = []
    for key, value in args.items():
        if key == "display_name":
            parts.append(f'display name "{value}"' if value else "display name = its name")
        elif key == "sources":
            parts.append("source ranges " + (", ".join(value) or "none"))
        elif key == "max_conns":
            parts.append(f"max conns {count_text(value)}")
        elif key == "rps":
            parts.append(f"rate limit {rate_text(value)}")
        elif key == "bandwidth":
            parts.append(f"bandwidth {bandwidth_text(value)}")
        elif key == "auth":
            parts.append(f"auth {value}")
        elif key == "auth_exempt":
            parts.append("auth exempt " + (", ".join(value) or "none"))
        elif key == "realm":
            parts.append("realm " + (f'"{value}"' if value else "default"))
        elif key == "default_action":
            parts.append(f"default {value}")
        elif key == "block_page":
            parts.append("block page " + ("custom" if value else "built-in"))
        elif key == "log_query":
            parts.append("query strings " + ("logged" if value else "not logged"))
        elif key == "proxy_hosts":
            parts.append("proxy hosts " + (", ".join(value) or "none"))
        elif key == "lock_sources":
            parts.append("source ranges " + ("locked to its own users" if value else "open to roaming users"))
        elif key == "icap_service":
            parts.append(f"icap service {value or 'none'}")
        elif key.startswith("icap_"):
            parts.append(f"{key.replace('_', ' ')} {value}")
        elif key == "intercept":
            parts.append("TLS interception " + ("as the profile says" if value is None else "on" if value else "off"))
        elif key == "expires_at":
            parts.append(f"expires {value or 'never'}")
    return ", ".join(parts)


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
    result = run_or_store(
        socket,
        data_dir,
        "tenant.add",
        args,
        lambda st: ops.add(st, name, display_name, sources),
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
    result = run_or_store(
        socket, data_dir, "tenant.list", {}, ops.list_all, writes=False
    )
    if json:
        print_json(result)
        return
    if not result:
        print("no tenants")
        return
    table = make_table(f"{len(result)} tenant{'s' if len(result) != 1 else ''}",
                   ("tenant", "name", "sources", "suspended", "intercept", "created"))
    for t in result:
        switch = t.get("intercept")
        table.add_row(
            t["name"],
            t.get("display_name") or t["name"],
            "\n".join(t.get("sources") or []) or "-",
            "yes" if t.get("suspended") else "no",
            "-" if switch is None else "on" if switch else "off",  # -: as the profile says
            str(t.get("created_at", "")),
        )
    console().print(table)


@app.command()
@errors_to_exit
def show(name: NameArg, socket: SocketOpt = None, data_dir: DataDirOpt = None, json: JsonOpt = False) -> None:
    """One tenant: settings, limits, user and rule counts, and live usage when the daemon is running."""
    _tenant_name(name)
    result = run_or_store(
        socket, data_dir, "tenant.show", {"name": name}, lambda st: ops.show(st, name), writes=False
    )
    if json:
        print_json(result)
        return
    _show_one(result)


@app.command("set")
@errors_to_exit
def set_(
    name: NameArg,
    display_name: Annotated[str | None, typer.Option(
        "--name", metavar="TEXT", help="Display name, e.g. \"Acme Corp\"; '' for the tenant's name",
        show_default=False)] = None,
    source: Annotated[list[str] | None, typer.Option(
        "--source", metavar="CIDR", help="Client range that identifies the tenant; repeatable; replaces the list",
        show_default=False)] = None,
    no_sources: Annotated[bool, typer.Option("--no-sources", help="Empty the list of source ranges")] = False,
    max_conns: Annotated[str | None, typer.Option(
        "--max-conns", metavar="N|unlimited", help="Concurrent connections of the whole tenant",
        show_default=False)] = None,
    rps: Annotated[str | None, typer.Option(
        "--rps", metavar="R|unlimited", help="Requests per second (token bucket)", show_default=False)] = None,
    bandwidth: Annotated[str | None, typer.Option(
        "--bandwidth", metavar="B|unlimited",
        help="Each direction; 50M = 50 megabit/s, 50MB = 50 megabyte/s", show_default=False)] = None,
    auth: Annotated[str | None, typer.Option(
        "--auth", metavar="none|optional|required", help="Ask clients for a user name and password",
        show_default=False)] = None,
    auth_exempt: Annotated[list[str] | None, typer.Option(
        "--auth-exempt", metavar="CIDR", help="Client range never asked for credentials; repeatable; replaces the list",
        show_default=False)] = None,
    no_auth_exempt: Annotated[bool, typer.Option("--no-auth-exempt", help="Empty the list of exempt ranges")] = False,
    realm: Annotated[str | None, typer.Option(
        "--realm", metavar="TEXT", help="Realm shown in the password dialog; '' for the default \"arcus TENANT\"",
        show_default=False)] = None,
    default: Annotated[str | None, typer.Option(
        "--default", metavar="allow|deny", help="What happens when no policy rule decides", show_default=False)] = None,
    block_page: Annotated[Path | None, typer.Option(
        "--block-page", metavar="FILE",
        help="HTML template of the 403 page: {tenant} {rule} {reason} {request_id} {host}",
        show_default=False)] = None,
    no_block_page: Annotated[bool, typer.Option("--no-block-page", help="Go back to the built-in block page")] = False,
    log_query: Annotated[bool | None, typer.Option(
        "--log-query/--no-log-query", help="Keep URL query strings in the audit log", show_default=False)] = None,
    proxy_host: Annotated[list[str] | None, typer.Option(
        "--proxy-host", metavar="NAME",
        help="Name (SNI) this tenant's clients use for the proxy over TLS, or *.domain; repeatable; replaces the list",
        show_default=False)] = None,
    no_proxy_hosts: Annotated[bool, typer.Option("--no-proxy-hosts", help="Empty the list of proxy host names")] = False,
    lock_sources: Annotated[bool | None, typer.Option(
        "--lock-sources/--no-lock-sources",
        help="From this tenant's source ranges, admit only its own users (refuse other tenants' credentials)",
        show_default=False)] = None,
    icap_service: Annotated[str | None, typer.Option(
        "--icap-service", metavar="NAME", help="Send bodies to this ICAP service of the profile (icap_services:)",
        show_default=False)] = None,
    no_icap: Annotated[bool, typer.Option("--no-icap", help="Stop sending this tenant's bodies to ICAP")] = False,
    icap_fail: Annotated[str | None, typer.Option(
        "--icap-fail", metavar="open|closed", help="When no ICAP server answers: pass the body, or refuse (503)",
        show_default=False)] = None,
    icap_sample: Annotated[float | None, typer.Option(
        "--icap-sample", metavar="RATIO", help="Share of exchanges sent to ICAP, 0 to 1", show_default=False)] = None,
    icap_max_body: Annotated[str | None, typer.Option(
        "--icap-max-body", metavar="SIZE", help="Largest body held for a scan, e.g. 8MiB", show_default=False)] = None,
    icap_oversize: Annotated[str | None, typer.Option(
        "--icap-oversize", metavar="pass|refuse", help="A larger body: pass it unscanned, or refuse it (403)",
        show_default=False)] = None,
    intercept: Annotated[str | None, typer.Option(
        "--intercept", metavar="on|off|default",
        help="TLS interception for this tenant, overriding the profile's intercept: enabled; "
        "default: as the profile says", show_default=False)] = None,
    socket: SocketOpt = None,
    data_dir: DataDirOpt = None,
    json: JsonOpt = False,
) -> None:
    """Change a tenant's limits and settings; the daemon applies them on the next request."""
    _tenant_name(name)
    changes: dict[str, Any] = {}
    if display_name is not None:
        changes["display_name"] = display_name
    if source and no_sources:
        raise OperatorError("--source and --no-sources contradict each other",
                            hint="give the new ranges with --source (they replace the list), or --no-sources alone")
    if source:
        changes["sources"] = list(dict.fromkeys(normalize_source(c) for c in source))
    elif no_sources:
        changes["sources"] = []
    if max_conns is not None:
        changes["max_conns"] = parse_count(max_conns)
    if rps is not None:
        changes["rps"] = parse_rate(rps)
    if bandwidth is not None:
        changes["bandwidth"] = parse_bandwidth(bandwidth)
    if auth is not None:
        changes["auth"] = check_choice("auth mode", auth, AUTH_MODES)
    if auth_exempt and no_auth_exempt:
        raise OperatorError("--auth-exempt and --no-auth-exempt contradict each other",
                            hint="give the new ranges with --auth-exempt (they replace the list), "
                            "or --no-auth-exempt alone")
    if auth_exempt:
        changes["auth_exempt"] = list(dict.fromkeys(normalize_source(c) for c in auth_exempt))
    elif no_auth_exempt:
        changes["auth_exempt"] = []
    if realm is not None:
        changes["realm"] = check_realm(realm)
    if default is not None:
        changes["default_action"] = check_choice("default action", default, DEFAULT_ACTIONS)
    if block_page is not None and no_block_page:
        raise OperatorError("--block-page and --no-block-page contradict each other", hint="give one of them")
    if block_page is not None:
        changes["block_page"] = read_block_page(block_page)
    elif no_block_page:
        changes["block_page"] = None
    if log_query is not None:
        changes["log_query"] = log_query
    if proxy_host and no_proxy_hosts:
        raise OperatorError("--proxy-host and --no-proxy-hosts contradict each other", hint="give one of them")
    if proxy_host:
        changes["proxy_hosts"] = list(proxy_host)
    elif no_proxy_hosts:
        changes["proxy_hosts"] = []
    if lock_sources is not None:
        changes["lock_sources"] = lock_sources
    changes.update(_icap_changes(icap_service, no_icap, icap_fail, icap_sample, icap_max_body, icap_oversize))
    if intercept is not None:
        changes["intercept"] = parse_intercept(intercept)
    if not changes:
        raise OperatorError(
            "nothing to change",
            hint="give at least one of --name, --source, --no-sources, --max-conns, --rps, --bandwidth, --auth, --auth-exempt, --no-auth-exempt, "
            "--realm, --default, --block-page, --no-block-page, --log-query/--no-log-query, "
            "--proxy-host, --no-proxy-hosts, --lock-sources/--no-lock-sources, --icap-service, --no-icap, "
            "--icap-fail, --icap-sample, --icap-max-body, --icap-oversize, --intercept",
        )
    check_settings(changes)  # the store's checks, before anything is sent (nan is not even JSON)
    result = run_or_store(
        socket,
        data_dir,
        "tenant.set",
        {"name": name, **changes},
        lambda st: ops.change(st, name, changes),
        writes=True,
    )
    if json:
        print_json(result)
        return
    print(f"changed tenant {result.get('name', name)}: {describe_changes(changes)}")


@app.command()
@errors_to_exit
def rm(name: NameArg, socket: SocketOpt = None, data_dir: DataDirOpt = None, json: JsonOpt = False) -> None:
    """Remove a tenant; its clients fall back to `default` on their next connection."""
    _tenant_name(name)
    result = run_or_store(
        socket, data_dir, "tenant.rm", {"name": name}, lambda st: ops.remove(st, name), writes=True
    )
    if json:
        print_json(result)
        return
    print(f"removed tenant {result.get('removed', name)}")


def _set_suspended(name: str, suspended: bool, socket: Path | None, data_dir: Path | None, json: bool) -> None:
    _tenant_name(name)
    cmd = "tenant.suspend" if suspended else "tenant.resume"
    result = run_or_store(
        socket, data_dir, cmd, {"name": name}, lambda st: ops.set_suspended(st, name, suspended), writes=True
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
