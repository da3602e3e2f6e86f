"""`arcus policy`: a tenant's ordered rules: add, import, list, rm, move, explain.

A rule is checked by the policy compiler here, before anything is sent or stored, so that a
mistake is refused with the rule and field at fault before the daemon or the store is asked
(the daemon compiles the tenant's whole policy again before it keeps the rule).

With no daemon running, these commands call the same :mod:`arcus.ops.policies` functions the
daemon's handlers call, on the store: the checks, the results and the ``--json`` shapes are the
same either way. ``explain`` then evaluates the stored policy with the resolver and egress guard
of the profile given by ``--profile`` (the embedded default otherwise), built as the daemon
builds them. ``docs/policy.md`` is the rule language; ``docs/cli.md`` the commands.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from arcus.cli._common import (
    DataDirOpt,
    JsonOpt,
    ProfileOpt,
    SocketOpt,
    console,
    errors_to_exit,
    make_table,
    note,
    print_json,
    run_or_store,
)
from arcus.errors import ConfigError, OperatorError
from arcus.names import validate_name
from arcus.ops import explain as ops_explain
from arcus.ops import policies as ops
from arcus.policy import Rule
from arcus.store import Store

app = typer.Typer(no_args_is_help=True, help="Manage a tenant's policy: ordered allow/deny/redirect/report rules.")

TenantArg = Annotated[str, typer.Argument(metavar="TENANT", help="Tenant name", show_default=False)]
RuleIdArg = Annotated[str, typer.Argument(metavar="RULE_ID", help="Rule id ([A-Za-z0-9._-])", show_default=False)]

ACTION_HINT = "give exactly one of --allow, --deny, --report, --redirect URL (or --deny-host / --allow-host PATTERN)"
DEFAULT_CLIENT = ops_explain.DEFAULT_CLIENT


def _tenant(name: str) -> None:
    validate_name("tenant", name)


def conditions_text(r: dict[str, Any]) -> str:
    """The conditions of a rule in one line, in the order the engine reads them."""
    parts: list[str] = []
    for key, label in (("hosts", "host"), ("dest_cidrs", "dest"), ("ports", "port"), ("sources", "from"),
                       ("methods", "method"), ("path_prefixes", "path"), ("protocols", "protocol")):
        if r.get(key):
            parts.append(f"{label} {', '.join(r[key])}")
    if r.get("times"):
        parts.append(f"time {'; '.join(r['times'])} {r.get('timezone') or 'UTC'}")
    return "; ".join(parts) or "any request"


def action_text(r: dict[str, Any]) -> str:
    if r.get("action") == "redirect" and r.get("redirect_to"):
        return f"redirect to {r['redirect_to']}"
    return str(r.get("action", ""))


def _rules_table(tenant: str, rules: list[dict[str, Any]]) -> None:
    table = make_table(
        f"{len(rules)} rule{'s' if len(rules) != 1 else ''} of tenant {tenant} (a user's rules are read first)",
        ("#", "id", "action", "conditions", "user", "comment"),
        right=("#",),
    )
    for r in rules:
        table.add_row(str(r.get("position", "")), r["id"], action_text(r), conditions_text(r),
                      r.get("user") or "-", r.get("comment") or "")
    console().print(table)


# -- add ------------------------------------------------------------------------------------


def _choose_action(allow: bool, deny: bool, report: bool, redirect: str | None,
                   deny_host: list[str], allow_host: list[str]) -> str:
    chosen = set()
    if allow or allow_host:
        chosen.add("allow")
    if deny or deny_host:
        chosen.add("deny")
    if report:
        chosen.add("report")
    if redirect is not None:
        chosen.add("redirect")
    if len(chosen) != 1:
        what = "no action given" if not chosen else "more than one action given (" + ", ".join(sorted(chosen)) + ")"
        raise OperatorError(what, hint=ACTION_HINT)
    return chosen.pop()


@app.command()
@errors_to_exit
def add(
    tenant: TenantArg,
    rule_id: RuleIdArg,
    allow: Annotated[bool, typer.Option("--allow", help="Action: let matching requests through")] = False,
    deny: Annotated[bool, typer.Option("--deny", help="Action: refuse them (403 block page, SOCKS refusal)")] = False,
    report: Annotated[bool, typer.Option(
        "--report", help="Action: log a match, decide nothing (try a rule first)")] = False,
    redirect: Annotated[str | None, typer.Option(
        "--redirect", metavar="URL", help="Action: answer plain HTTP requests with a redirect to URL",
        show_default=False)] = None,
    deny_host: Annotated[list[str] | None, typer.Option(
        "--deny-host", metavar="PATTERN", help="Shorthand for --deny --host PATTERN; repeatable",
        show_default=False)] = None,
    allow_host: Annotated[list[str] | None, typer.Option(
        "--allow-host", metavar="PATTERN", help="Shorthand for --allow --host PATTERN; repeatable",
        show_default=False)] = None,
    host: Annotated[list[str] | None, typer.Option(
        "--host", metavar="PATTERN", help="Destination host: example.com, .example.com, *.example.com, ~regex",
        show_default=False)] = None,
    dest: Annotated[list[str] | None, typer.Option(
        "--dest", metavar="CIDR", help="Destination address range (also the address a name resolves to)",
        show_default=False)] = None,
    port: Annotated[list[str] | None, typer.Option(
        "--port", metavar="P|P-Q", help="Destination port or range", show_default=False)] = None,
    source: Annotated[list[str] | None, typer.Option(
        "--source", metavar="CIDR", help="Client address range", show_default=False)] = None,
    method: Annotated[list[str] | None, typer.Option(
        "--method", metavar="M", help="HTTP method; CONNECT for tunnels", show_default=False)] = None,
    path: Annotated[list[str] | None, typer.Option(
        "--path", metavar="PREFIX", help="URL path prefix (plain HTTP and intercepted HTTPS)", show_default=False)] = None,
    protocol: Annotated[list[str] | None, typer.Option(
        "--protocol", metavar="NAME",
        help="What a tunnel carries, from its first bytes: tls, http, http2, ssh, smtp, imap, pop3, ftp, rdp, "
             "bittorrent, dns, unknown", show_default=False)] = None,
    times: Annotated[list[str] | None, typer.Option(
        "--time", metavar="WINDOW", help="Time window, e.g. 'mon-fri 08:00-18:00'", show_default=False)] = None,
    tz: Annotated[str | None, typer.Option(
        "--tz", metavar="ZONE", help="Time zone of --time windows (IANA name) [default: UTC]",
        show_default=False)] = None,
    user: Annotated[str | None, typer.Option(
        "--user", metavar="NAME", help="Make it a rule of this user only (read before the tenant's rules)",
        show_default=False)] = None,
    comment: Annotated[str | None, typer.Option(
        "--comment", metavar="TEXT", help="One line, shown in reasons and on the block page",
        show_default=False)] = None,
    position: Annotated[int | None, typer.Option(
        "--position", metavar="N", help="Insert at this position (1 is first) [default: last]",
        show_default=False)] = None,
    socket: SocketOpt = None,
    data_dir: DataDirOpt = None,
    json: JsonOpt = False,
) -> None:
    """Add a rule to a tenant's policy. Every condition given must match; each may be repeated (any value matches)."""
    _tenant(tenant)
    action = _choose_action(allow, deny, report, redirect, deny_host or [], allow_host or [])
    if position is not None and position < 1:
        raise OperatorError(f"invalid position {position}", hint="positions start at 1 (the first rule)")
    rule = Rule(
        id=rule_id,
        action=action,
        hosts=tuple([*(deny_host or []), *(allow_host or []), *(host or [])]),
        dest_cidrs=tuple(dest or ()),
        ports=tuple(port or ()),
        sources=tuple(source or ()),
        methods=tuple(method or ()),
        path_prefixes=tuple(path or ()),
        times=tuple(times or ()),
        protocols=tuple(protocol or ()),
        timezone=tz if tz is not None else "UTC",
        redirect_to=redirect,
        comment=comment or "",
        user=user,
    )
    ops.check_alone(rule)  # every field error, named, before the daemon or the store is asked
    args: dict[str, Any] = {"tenant": tenant, "rule": ops.rule_to_dict(rule)}
    if position is not None:
        args["position"] = position
    result = run_or_store(socket, data_dir, "policy.add", args, lambda st: ops.add(st, tenant, rule, position),
                          writes=True)
    if json:
        print_json(result)
        return
    r = result.get("rule", {})
    print(f"added rule {r.get('id', rule_id)} to tenant {tenant} at position {result.get('position')}: "
          f"{action_text(r)} {conditions_text(r)}")


# -- import ---------------------------------------------------------------------------------

MAX_IMPORT_FILE = 64 * 1024 * 1024
IMPORT_HINT = "give a JSON or YAML list of rules, as `arcus policy list TENANT --json` prints them"


def load_rules_file(path: str) -> list[Rule]:
    """The rules in ``path`` (``-``: stdin), a JSON or YAML list of rule objects; every error
    names the file and, for a rule, its place in the list."""
    import sys

    import yaml

    where = "stdin" if path == "-" else path
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(MAX_IMPORT_FILE + 1)
        else:
            with open(path, "rb") as f:
                raw = f.read(MAX_IMPORT_FILE + 1)
    except OSError as exc:
        raise OperatorError(f"cannot read {where}: {exc.strerror or exc}", hint=IMPORT_HINT) from None
    if len(raw) > MAX_IMPORT_FILE:
        raise OperatorError(f"{where} is larger than {MAX_IMPORT_FILE // (1024 * 1024)} MiB", hint="split it and import the parts")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise OperatorError(f"{where} is not JSON or YAML{at}: {getattr(exc, 'problem', None) or exc}", hint=IMPORT_HINT) from None
    try:
        return ops.rules_from_list(data)
    except OperatorError as exc:
        raise OperatorError(f"{where}: {exc.message}", code=exc.code, hint=exc.hint) from None


def _sent(rule: Rule) -> dict[str, Any]:
    """The rule's fields that are not their defaults (a smaller request than every field)."""
    return {k: v for k, v in ops.rule_to_dict(rule).items() if k in ("id", "action") or v != ops.RULE_DEFAULTS.get(k)}


@app.command("import")
@errors_to_exit
def import_(
    tenant: TenantArg,
    path: Annotated[str, typer.Argument(metavar="FILE", help="JSON or YAML list of rules; - reads stdin", show_default=False)],
    socket: SocketOpt = None,
    data_dir: DataDirOpt = None,
    json: JsonOpt = False,
) -> None:
    """Append a list of rules to a tenant's policy in one change: all of them or none.

    The file is a list of rule objects with the fields of `policy add` (`id`, `action`, `hosts`,
    `dest_cidrs`, `ports`, `methods`, `path_prefixes`, ...), as `arcus policy list TENANT --json`
    prints them (their `position` is ignored: the file's order is the order). The whole policy
    is compiled once, so thousands of rules take seconds, not one `policy add` each."""
    _tenant(tenant)
    rules = load_rules_file(path)
    for rule in rules:
        ops.check_alone(rule)  # every field error, named, before the daemon or the store is asked
    args: dict[str, Any] = {"tenant": tenant, "rules": [_sent(r) for r in rules]}
    result = run_or_store(socket, data_dir, "policy.import", args, lambda st: ops.import_rules(st, tenant, rules),
                          writes=True)
    if json:
        print_json(result)
        return
    print(f"imported {result.get('imported')} rule(s) into tenant {tenant} at positions "
          f"{result.get('first_position')}-{result.get('rules')}")


# -- list, rm, move -------------------------------------------------------------------------


@app.command("list")
@errors_to_exit
def list_(tenant: TenantArg, socket: SocketOpt = None, data_dir: DataDirOpt = None, json: JsonOpt = False) -> None:
    """A tenant's rules in the order they are read (user rules first for their user)."""
    _tenant(tenant)
    args = {"tenant": tenant}
    result = run_or_store(socket, data_dir, "policy.list", args, lambda st: ops.list_rules(st, tenant), writes=False)
    if json:
        print_json(result)
        return
    if not result:
        print(f"tenant {tenant} has no rules: every request gets its default action")
        return
    _rules_table(tenant, result)


@app.command()
@errors_to_exit
def rm(
    tenant: TenantArg, rule_id: RuleIdArg, socket: SocketOpt = None, data_dir: DataDirOpt = None,
    json: JsonOpt = False,
) -> None:
    """Remove a rule; the rules after it move up."""
    _tenant(tenant)
    validate_name("rule", rule_id)
    args = {"tenant": tenant, "id": rule_id}
    result = run_or_store(socket, data_dir, "policy.rm", args, lambda st: ops.remove(st, tenant, rule_id), writes=True)
    if json:
        print_json(result)
        return
    print(f"removed rule {result.get('removed', rule_id)} from tenant {tenant}")


@app.command()
@errors_to_exit
def move(
    tenant: TenantArg,
    rule_id: RuleIdArg,
    position: Annotated[int, typer.Argument(metavar="POSITION", help="New position, 1 is first", show_default=False)],
    socket: SocketOpt = None,
    data_dir: DataDirOpt = None,
    json: JsonOpt = False,
) -> None:
    """Move a rule to another position; prints the new order."""
    _tenant(tenant)
    validate_name("rule", rule_id)
    if position < 1:
        raise OperatorError(f"invalid position {position}", hint="positions start at 1 (the first rule)")
    args = {"tenant": tenant, "id": rule_id, "position": position}
    result = run_or_store(socket, data_dir, "policy.move", args, lambda st: ops.move(st, tenant, rule_id, position),
                          writes=True)
    if json:
        print_json(result)
        return
    print(f"moved rule {rule_id} of tenant {tenant} to position {position}")
    _rules_table(tenant, result)


# -- explain ------------------------------------------------------------------------------


def decision_text(d: dict[str, Any]) -> str:
    action = d.get("action", "?")
    if d.get("refused"):
        return f"{action} before the policy ({d['refused']})"
    if action == "redirect" and d.get("redirect_to"):
        action = f"redirect to {d['redirect_to']}"
    rule = d.get("rule_id")
    if not rule:
        by = "by the tenant's default"
    elif str(rule).startswith("builtin:"):
        by = f"by {rule}"
    else:
        by = f"by rule {rule!r}"
    reports = d.get("reports") or []
    also = f" (reported by {', '.join(reports)})" if reports else ""
    return f"{action} {by}{also}"


def request_text(r: dict[str, Any]) -> str:
    host = str(r.get("host", ""))
    hostport = f"[{host}]:{r.get('port')}" if ":" in host else f"{host}:{r.get('port')}"
    carries = f" carrying {r['protocol']}" if r.get("protocol") else ""
    what = f"CONNECT {hostport} (tunnel{carries})" if r.get("tunnel") else f"{r.get('method')} {hostport}{r.get('path') or ''}"
    who = f", user {r['user']}" if r.get("user") else ""
    return f"{what} from {r.get('client')}{who}"


def _print_explained(result: dict[str, Any]) -> None:
    out = console()
    out.print(f"request   {request_text(result.get('request') or {})}, tenant {result.get('tenant')}")
    source = result.get("policy_source")
    if source is not None:
        out.print("policy    " + ("as the daemon serves it now" if source == "live" else "as stored"))
    if result.get("escaper"):
        out.print(f"escaper   {result['escaper']} (its resolver and egress guard)")
    resolved = result.get("resolved") or []
    out.print(f"resolved  {', '.join(resolved) if resolved else '-'}")
    table = make_table("rules evaluated, in order", ("rule", "matched", "why"))
    for t in result.get("trace") or []:
        table.add_row(str(t.get("rule_id", "")), "yes" if t.get("matched") else "no", str(t.get("why", "")))
    out.print(table)
    addresses = result.get("addresses") or []
    if len(addresses) > 1:
        for a in addresses:
            out.print(f"address   {a.get('address')}: {decision_text(a.get('decision') or {})}")
    d = result.get("decision") or {}
    if d.get("refused"):
        out.print(f"policy    would decide {decision_text(result.get('policy_decision') or {})}")
    out.print(f"decision  {decision_text(d)}")
    out.print(f"reason    {d.get('reason', '')}")


@app.command()
@errors_to_exit
def explain(
    tenant: TenantArg,
    url: Annotated[str, typer.Argument(metavar="URL", help="http://host/path, https://host/ or host:port",
                                       show_default=False)],
    user: Annotated[str | None, typer.Option("--user", metavar="U", help="Explain as this user (its rules first)",
                                             show_default=False)] = None,
    client: Annotated[str | None, typer.Option(
        "--from", metavar="ADDR", help=f"Client address [default: {DEFAULT_CLIENT}]", show_default=False)] = None,
    method: Annotated[str | None, typer.Option(
        "--method", metavar="M", help="HTTP method of an http:// request [default: GET; CONNECT for tunnels]",
        show_default=False)] = None,
    protocol: Annotated[str | None, typer.Option(
        "--protocol", metavar="NAME", help="What the tunnel carries, as its first bytes name it (ssh, tls...) "
        "[default: not known yet, as at admission]", show_default=False)] = None,
    profile: ProfileOpt = None,
    socket: SocketOpt = None,
    data_dir: DataDirOpt = None,
    json: JsonOpt = False,
) -> None:
    """Decide a request the way the proxy would, and show every rule looked at and why."""
    _tenant(tenant)
    if user is not None:
        validate_name("user", user)
    target = ops_explain.parse_target(url)  # a bad URL, client or method is refused before anything is asked
    source = ops_explain.parse_client(client)
    ops_explain.parse_method(method, target)
    ops_explain.parse_protocol(protocol, target)
    args: dict[str, Any] = {"tenant": tenant, "url": url, "from": source}
    if user is not None:
        args["user"] = user
    if method is not None:
        args["method"] = method
    if protocol is not None:
        args["protocol"] = protocol

    def offline(st: Store) -> dict[str, Any]:
        # the daemon's code, imported only here: it is heavy and every `arcus` command loads this module
        from arcus.runtime.tenancy import close_resolvers, egress_of, offline_snapshot

        async def run() -> dict[str, Any]:
            try:
                snapshot = offline_snapshot(profile)
            except ConfigError as exc:
                raise OperatorError(f"profile refused:\n{exc}", hint="check it with `arcus config check PATH`") from None
            try:
                return await ops_explain.explain(st, tenant, target, egress=egress_of(snapshot), client=source,
                                                 method=method, protocol=protocol, user=user)
            finally:
                await close_resolvers(snapshot)

        return asyncio.run(run())

    result = run_or_store(socket, data_dir, "policy.explain", args, offline, writes=False)
    if result.get("resolve_error"):
        note(f"note: {result['resolve_error']}; explained by name only")
    if json:
        print_json(result)
        return
    _print_explained(result)
