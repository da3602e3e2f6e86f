"""`arcus policy`: a tenant's ordered rules: add, list, rm, move, explain.

A rule is checked by the policy compiler here, before anything is sent or stored, so that a
mistake is refused with the rule and field at fault whether or not a daemon runs (the daemon
compiles the tenant's whole policy again before it keeps the rule). With no daemon, ``add``
compiles the stored policy with the new rule, and ``explain`` evaluates the stored policy
locally with an egress guard of this box's addresses (the profile's ``allow_special`` ranges
are only known to the daemon). ``docs/policy.md`` is the rule language; ``docs/cli.md`` the
commands.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket as socketlib
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from arcus.cli._common import DataDirOpt, JsonOpt, SocketOpt, console, errors_to_exit, make_table, note, print_json
from arcus.cli.tenant import run_or_store
from arcus.errors import AlreadyExists, OperatorError
from arcus.names import validate_name
from arcus.policy import Decision, Policy, Request, Rule, compile_policy
from arcus.policy.egress import EgressGuard
from arcus.store import Store

app = typer.Typer(no_args_is_help=True, help="Manage a tenant's policy: ordered allow/deny/redirect/report rules.")

TenantArg = Annotated[str, typer.Argument(metavar="TENANT", help="Tenant name", show_default=False)]
RuleIdArg = Annotated[str, typer.Argument(metavar="RULE_ID", help="Rule id ([A-Za-z0-9._-])", show_default=False)]

RULE_FIELDS = tuple(f.name for f in dataclasses.fields(Rule))
_TUPLE_FIELDS = frozenset(f.name for f in dataclasses.fields(Rule) if f.name not in
                          ("id", "action", "timezone", "redirect_to", "comment", "user"))
ACTION_HINT = "give exactly one of --allow, --deny, --report, --redirect URL (or --deny-host / --allow-host PATTERN)"
RESOLVE_TIMEOUT = 5.0
DEFAULT_CLIENT = "127.0.0.1"


def _tenant(name: str) -> None:
    validate_name("tenant", name)


def rule_from_dict(d: dict[str, Any]) -> Rule:
    """A stored or wire rule dict (lists for tuples; maybe extra keys such as "position") -> Rule."""
    kwargs: dict[str, Any] = {}
    for key in RULE_FIELDS:
        if key in d:
            value = d[key]
            kwargs[key] = tuple(value) if key in _TUPLE_FIELDS and isinstance(value, list) else value
    return Rule(**kwargs)


def rule_to_dict(rule: Rule) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(rule).items()}


def _numbered(rules: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**{k: v for k, v in r.items() if k != "position"}, "position": i} for i, r in enumerate(rules, start=1)]


def conditions_text(r: dict[str, Any]) -> str:
    """The conditions of a rule in one line, in the order the engine reads them."""
    parts: list[str] = []
    for key, label in (("hosts", "host"), ("dest_cidrs", "dest"), ("ports", "port"), ("sources", "from"),
                       ("methods", "method"), ("path_prefixes", "path")):
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
        f"{len(rules)} rule{'s' if len(rules) != 1 else ''} of tenant {tenant} (user rules are read first)",
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


def _check_alone(rule: Rule) -> None:
    """Compile the rule by itself: every field error, named, before the network or the store."""
    compile_policy([rule], guard=None)


def _insert_checked(st: Store, tenant: str, rule: Rule, position: int | None) -> dict[str, Any]:
    """The no-daemon ``policy.add``: compile the stored policy with the rule where it will go."""
    t = st.get_tenant(tenant)
    stored = st.list_rules(tenant)
    if any(r.get("id") == rule.id for r in stored):
        raise AlreadyExists(f"rule {rule.id!r} already exists in tenant {tenant!r}",
                            hint=f"choose another id, or remove it first with `arcus policy rm {tenant} {rule.id}`")
    rules = [rule_from_dict(r) for r in stored]
    at = len(rules) if position is None else min(max(position - 1, 0), len(rules))
    rules.insert(at, rule)
    compile_policy(rules, guard=None, default_action=t.default_action)
    pos = st.add_rule(tenant, rule_to_dict(rule), position=position)
    saved = next(r for r in st.list_rules(tenant) if r.get("id") == rule.id)
    return {"rule": {k: v for k, v in saved.items() if k != "position"}, "position": pos}


@app.command()
@errors_to_exit
def add(
    tenant: TenantArg,
    rule_id: RuleIdArg,
    allow: Annotated[bool, typer.Option("--allow", help="Action: let matching requests through")] = False,
    deny: Annotated[bool, typer.Option("--deny", help="Action: refuse them (403 block page, SOCKS refusal)")] = False,
    report: Annotated[bool, typer.Option("--report", help="Action: log a match, decide nothing (try a rule first)")] = False,
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
        "--path", metavar="PREFIX", help="URL path prefix (plain HTTP only)", show_default=False)] = None,
    times: Annotated[list[str] | None, typer.Option(
        "--time", metavar="WINDOW", help="Time window, e.g. 'mon-fri 08:00-18:00'", show_default=False)] = None,
    tz: Annotated[str | None, typer.Option(
        "--tz", metavar="ZONE", help="Time zone of --time windows (IANA name) [default: UTC]",
        show_default=False)] = None,
    user: Annotated[str | None, typer.Option(
        "--user", metavar="NAME", help="Make it a rule of this user only (read before the tenant's rules)",
        show_default=False)] = None,
    comment: Annotated[str | None, typer.Option(
        "--comment", metavar="TEXT", help="One line, shown in reasons and on the block page", show_default=False)] = None,
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
        timezone=tz if tz is not None else "UTC",
        redirect_to=redirect,
        comment=comment or "",
        user=user,
    )
    _check_alone(rule)
    args: dict[str, Any] = {"tenant": tenant, "rule": rule_to_dict(rule)}
    if position is not None:
        args["position"] = position
    result = run_or_store(
        socket, data_dir, "policy.add", args, lambda st: _insert_checked(st, tenant, rule, position), writes=True
    )
    if json:
        print_json(result)
        return
    r = result.get("rule", {})
    print(f"added rule {r.get('id', rule_id)} to tenant {tenant} at position {result.get('position')}: "
          f"{action_text(r)} {conditions_text(r)}")


# -- list, rm, move -------------------------------------------------------------------------


@app.command("list")
@errors_to_exit
def list_(tenant: TenantArg, socket: SocketOpt = None, data_dir: DataDirOpt = None, json: JsonOpt = False) -> None:
    """A tenant's rules in the order they are read (user rules first for their user)."""
    _tenant(tenant)
    result = run_or_store(
        socket, data_dir, "policy.list", {"tenant": tenant}, lambda st: _numbered(st.list_rules(tenant)), writes=False
    )
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

    def direct(st: Store) -> dict[str, Any]:
        st.remove_rule(tenant, rule_id)
        return {"removed": rule_id}

    result = run_or_store(socket, data_dir, "policy.rm", {"tenant": tenant, "id": rule_id}, direct, writes=True)
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

    def direct(st: Store) -> list[dict[str, Any]]:
        st.move_rule(tenant, rule_id, position)
        return _numbered(st.list_rules(tenant))

    result = run_or_store(
        socket, data_dir, "policy.move", {"tenant": tenant, "id": rule_id, "position": position}, direct, writes=True
    )
    if json:
        print_json(result)
        return
    print(f"moved rule {rule_id} of tenant {tenant} to position {position}")
    _rules_table(tenant, result)


# -- explain --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """What the proxy would see of a URL: the request line's parts, or a tunnel's host and port."""

    host: str
    port: int
    method: str | None
    path: str | None
    is_tunnel: bool

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.is_tunnel:
            return f"CONNECT {host}:{self.port} (tunnel)"
        return f"{self.method} {host}:{self.port}{self.path or ''}"


_DEFAULT_PORTS = {"http": 80, "https": 443}
URL_HINT = ("give a URL such as http://example.com/path or https://example.com/ "
            "(explained as the CONNECT tunnel a browser opens), or host:port for any tunnel")


def parse_target(url: str, method: str | None) -> Target:
    """Read ``url`` as the proxy would receive it.

    ``http://`` is a plain request (method GET unless given); ``https://`` the CONNECT tunnel
    a browser opens (path unseen) unless a method other than CONNECT is given, which explains
    the request as the TLS-intercepting auditor would see it; ``host:port`` is a tunnel.
    """
    text = url.strip()
    if "://" not in text:
        text = "tunnel://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise OperatorError(f"invalid URL {url!r}: {exc}", hint=URL_HINT) from None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if not host:
        raise OperatorError(f"invalid URL {url!r}: no host", hint=URL_HINT)
    m = method.upper() if method else None
    if scheme == "tunnel":
        if port is None:
            raise OperatorError(f"invalid URL {url!r}: no scheme and no port", hint=URL_HINT)
        if parts.path or parts.query:
            raise OperatorError(f"invalid URL {url!r}: a path needs a scheme", hint=URL_HINT)
        return Target(host, port, "CONNECT", None, True)
    if scheme not in _DEFAULT_PORTS:
        raise OperatorError(f"invalid URL {url!r}: scheme {scheme!r} is not http or https", hint=URL_HINT)
    port = port if port is not None else _DEFAULT_PORTS[scheme]
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if scheme == "https" and (m is None or m == "CONNECT"):
        return Target(host, port, "CONNECT", None, True)
    if m == "CONNECT":
        return Target(host, port, "CONNECT", None, True)
    return Target(host, port, m or "GET", path, False)


def _check_client(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise OperatorError(f"invalid client address {text!r}", hint="give an IPv4 or IPv6 address, e.g. 10.20.1.7") from None


def resolve(host: str, port: int, timeout: float = RESOLVE_TIMEOUT) -> tuple[list[str], str | None]:
    """The addresses of ``host`` as the system resolver gives them, or why there are none.

    getaddrinfo cannot be cancelled, so it runs in a daemon thread that is abandoned after
    ``timeout``; the CLI then explains the name-only decision.
    """
    try:
        ipaddress.ip_address(host)
        return [host], None
    except ValueError:
        pass
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            infos = socketlib.getaddrinfo(host, port, type=socketlib.SOCK_STREAM)
            box["addrs"] = list(dict.fromkeys(str(i[4][0]).split("%", 1)[0] for i in infos))
        except (OSError, UnicodeError) as exc:
            box["error"] = getattr(exc, "strerror", None) or str(exc)

    worker = threading.Thread(target=work, name="arcus-explain-resolve", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return [], f"no answer within {timeout:g}s"
    if "error" in box:
        return [], str(box["error"])
    return box.get("addrs", []), None


def _decision_dict(d: Decision) -> dict[str, Any]:
    return {"action": d.action, "rule_id": d.rule_id, "reason": d.reason, "reports": list(d.reports),
            "redirect_to": d.redirect_to}


def explain_locally(policy: Policy, target: Target, client: str, user: str | None, tenant: str,
                    now: datetime) -> dict[str, Any]:
    """``policy.explain`` as the data plane decides: by name, then per resolved address.

    Among the addresses, the first one allowed is the one the proxy would connect to; when
    none is allowed, the first address's decision is the answer (docs/policy.md).
    """
    base = Request(target.host, target.port, client, now=now, user=user, method=target.method,
                   path=target.path, is_tunnel=target.is_tunnel)
    first = policy.decide(base)
    resolved: list[str] = []
    chosen = base
    if first.needs_address:
        resolved, why = resolve(target.host, target.port)
        if why is not None:
            note(f"note: {target.host} did not resolve ({why}); explained by name only")
        if resolved:
            per = [(a, policy.decide(dataclasses.replace(base, dest_ip=a))) for a in resolved]
            allowed = [a for a, d in per if d.action == "allow"]
            chosen = dataclasses.replace(base, dest_ip=allowed[0] if allowed else resolved[0])
    decision, trace = policy.explain(chosen)
    return {
        "tenant": tenant,
        "decision": _decision_dict(decision),
        "trace": [{"rule_id": t.rule_id, "matched": t.matched, "why": t.why} for t in trace],
        "resolved": resolved,
    }


def _explain_direct(st: Store, tenant: str, target: Target, client: str, user: str | None) -> dict[str, Any]:
    from arcus.runtime.hostaddrs import own_addresses

    t = st.get_tenant(tenant)
    rules = [rule_from_dict(r) for r in st.list_rules(tenant)]
    guard = EgressGuard(own_addresses=own_addresses())
    policy = compile_policy(rules, guard=guard, default_action=t.default_action)
    return explain_locally(policy, target, client, user, tenant, datetime.now(timezone.utc))


def decision_text(d: dict[str, Any]) -> str:
    action = d.get("action", "?")
    if action == "redirect" and d.get("redirect_to"):
        action = f"redirect to {d['redirect_to']}"
    rule = d.get("rule_id")
    by = f"by rule {rule!r}" if rule and not str(rule).startswith("builtin:") else (
        f"by {rule}" if rule else "by the tenant's default")
    reports = d.get("reports") or []
    also = f" (reported by {', '.join(reports)})" if reports else ""
    return f"{action} {by}{also}"


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
    method: Annotated[str | None, typer.Option("--method", metavar="M", help="HTTP method [default: GET; CONNECT "
                                               "for https:// and host:port]", show_default=False)] = None,
    socket: SocketOpt = None,
    data_dir: DataDirOpt = None,
    json: JsonOpt = False,
) -> None:
    """Decide a request the way the proxy would, and show every rule looked at and why."""
    _tenant(tenant)
    if user is not None:
        validate_name("user", user)
    target = parse_target(url, method)
    addr = _check_client(client) if client is not None else DEFAULT_CLIENT
    args: dict[str, Any] = {"tenant": tenant, "url": url, "from": addr}
    if user is not None:
        args["user"] = user
    if method is not None:
        args["method"] = method.upper()
    result = run_or_store(
        socket, data_dir, "policy.explain", args,
        lambda st: _explain_direct(st, tenant, target, addr, user),
        writes=False,
    )
    if json:
        print_json(result)
        return
    out = console()
    who = f", user {user}" if user else ""
    out.print(f"request   {target.describe()} from {addr}{who}, tenant {tenant}")
    resolved = result.get("resolved") or []
    out.print(f"resolved  {', '.join(resolved) if resolved else '-'}")
    table = make_table("rules evaluated, in order", ("rule", "matched", "why"))
    for t in result.get("trace") or []:
        table.add_row(str(t.get("rule_id", "")), "yes" if t.get("matched") else "no", str(t.get("why", "")))
    out.print(table)
    d = result.get("decision") or {}
    out.print(f"decision  {decision_text(d)}")
    out.print(f"reason    {d.get('reason', '')}")

