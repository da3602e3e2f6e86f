"""Control commands for tenant settings, users and policies (issue 4).

``tenancy_handlers(daemon)`` returns the handlers the daemon registers next to its own. Each
checks its arguments (types included) and answers a bad one with an OperatorError and a hint,
never a KeyError or a TypeError; store calls run in a worker thread; after every change the
daemon rebuilds the tenant part of its Snapshot (``refresh_tenants``), so the change applies
to the next request.

Secrets arrive hashed (the CLI runs the key-derivation function, in its own process): a
``secret`` that :func:`arcus.auth.secrets.identify_secret` does not accept is refused, and no
reply, error or log line ever carries one.

The daemon object needs ``store``, ``refresh_tenants()`` and ``shared`` (``tenant_counters``,
optionally ``user_counters`` and ``snapshot``); ``own`` (the box's addresses) is used when
present. Everything else is read with fallbacks so these handlers work against a stand-in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import re
import socket
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from arcus.auth.secrets import identify_secret
from arcus.errors import AlreadyExists, OperatorError
from arcus.names import validate_name
from arcus.policy import Decision, Policy, Request, Rule, TraceEntry, compile_policy, explain
from arcus.policy.egress import EgressGuard
from arcus.stats import Counters
from arcus.store import tenants as store_tenants
from arcus.store import users as store_users

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

RULE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Rule))
LIST_FIELDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(Rule) if f.default == ()
)  # hosts, dest_cidrs, ports, sources, methods, path_prefixes, times
RULE_DEFAULTS: dict[str, Any] = {
    f.name: (list(f.default) if f.default == () else f.default)
    for f in dataclasses.fields(Rule)
    if f.default is not dataclasses.MISSING
}
USER_SET_FIELDS = ("expires_at", "max_conns", "rps", "bandwidth")
IMPORT_KEYS = ("name", "secret", "expires_at")
RESOLVE_TIMEOUT = 5.0
MAX_URL = 8192
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}\Z")


# ---------------------------------------------------------------------------- arguments


def _invalid(message: str, hint: str | None = None) -> OperatorError:
    return OperatorError(message, code="invalid", hint=hint)


def _args(args: object) -> dict[str, Any]:
    if not isinstance(args, dict):
        raise _invalid("arguments must be an object", 'send "args": {...}')
    return args


def _name(args: dict[str, Any], key: str, kind: str, example: str) -> str:
    value = args.get(key)
    if value is None:
        raise _invalid(f"missing {kind} name", f'pass {{"{key}": "{example}"}}')
    if not isinstance(value, str):
        raise _invalid(f"{kind} name must be text, got {type(value).__name__}", f'pass {{"{key}": "{example}"}}')
    return validate_name(kind, value)


def _tenant(args: dict[str, Any], key: str = "tenant") -> str:
    return _name(args, key, "tenant", "acme")


def _user(args: dict[str, Any]) -> str:
    return _name(args, "name", "user", "alice")


def _only(args: dict[str, Any], allowed: tuple[str, ...], command: str) -> None:
    for key in args:
        if key not in allowed:
            raise _invalid(f"{command}: unknown argument {key!r}", f"{command} takes: {', '.join(allowed)}")


def _secret(value: object, who: str) -> str:
    """A hashed secret identify_secret accepts; the error never quotes it."""
    hint = "send a hashed secret (`arcus user add`/`passwd` hash the password for you)"
    if not isinstance(value, str):
        raise _invalid(f"{who}: missing secret" if value is None else f"{who}: secret must be text", hint)
    try:
        identify_secret(value)
    except OperatorError as exc:
        raise _invalid(f"{who}: {exc.message}", exc.hint) from None
    return value


def _position(value: object, what: str = "position") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid(f"invalid {what} {value!r}", "give a whole number from 1 (the first rule)")
    return value


def _usage(counters: object, key: str) -> dict[str, Any]:
    """Live counters of ``key``, zeros when the counter set is missing or has none yet."""
    get = getattr(counters, "get", None)
    if get is None:
        return Counters().to_dict()
    return get(key).to_dict()


# ---------------------------------------------------------------------------- rules


def rule_from_dict(data: Mapping[str, Any]) -> Rule:
    """A Rule from a RULE dict (lists for tuple fields). Unknown fields and wrong shapes are an
    OperatorError naming the field; the values themselves are checked by ``compile_policy``."""
    if not isinstance(data, Mapping):
        raise _invalid(f"a rule must be an object of fields, got {type(data).__name__}",
                       'give at least {"id": "block-x", "action": "deny"}')
    fields: dict[str, Any] = {}
    for key, value in data.items():
        if key not in RULE_FIELDS:
            raise _invalid(f"unknown rule field {key!r}", f"rule fields: {', '.join(RULE_FIELDS)}")
        if key in LIST_FIELDS:
            if value is None:
                value = ()
            elif isinstance(value, (list, tuple)):
                value = tuple(value)
            else:
                raise _invalid(f"rule field {key!r} must be a list, got {type(value).__name__}",
                               f'write "{key}": [{value!r}]' if isinstance(value, str) else f'write "{key}": [...]')
        fields[key] = value
    for key in ("id", "action"):
        if key not in fields:
            raise _invalid(f"a rule needs {'an' if key == 'id' else 'its'} {key}",
                           'give at least {"id": "block-x", "action": "deny"}')
    return Rule(**fields)


def rule_to_dict(rule: Rule) -> dict[str, Any]:
    """The RULE dict of a Rule: every field, lists where Rule has tuples (JSON-ready)."""
    return {name: (list(getattr(rule, name)) if name in LIST_FIELDS else getattr(rule, name)) for name in RULE_FIELDS}


def _shown(data: dict[str, Any], position: int) -> dict[str, Any]:
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in RULE_DEFAULTS.items()}
    out.update(data)
    out["position"] = position
    return out


# ---------------------------------------------------------------------------- explain


def _decision_dict(d: Decision) -> dict[str, Any]:
    return {
        "action": d.action,
        "rule_id": d.rule_id,
        "reason": d.reason,
        "reports": list(d.reports),
        "redirect_to": d.redirect_to,
    }


def _trace_list(trace: list[TraceEntry]) -> list[dict[str, Any]]:
    return [{"rule_id": t.rule_id, "matched": t.matched, "why": t.why} for t in trace]


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """What a URL asks the proxy for: a plain HTTP request, or a tunnel (CONNECT)."""

    host: str
    port: int
    path: str | None
    is_tunnel: bool


def parse_target(url: object) -> Target:
    """``http://host[:port]/path?query`` (a request), ``https://host[:port]/...`` or
    ``host:port`` (a CONNECT tunnel: the proxy sees neither the path nor the method inside)."""
    hint = "give http://host[:port]/path, https://host[:port]/ or host:port (CONNECT)"
    if not isinstance(url, str) or not url.strip():
        raise _invalid("missing URL", hint)
    text = url.strip()
    if len(text) > MAX_URL or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise _invalid("invalid URL: too long or containing spaces or control characters", hint)
    lowered = text.lower()
    if lowered.startswith("http://"):
        scheme = "http"
    elif lowered.startswith("https://"):
        scheme = "https"
    elif "://" in text:
        raise _invalid(f"unsupported URL scheme {text.split('://', 1)[0]!r}", hint)
    else:
        scheme = None
    try:
        parts = urllib.parse.urlsplit(text if scheme else "//" + text)
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise _invalid(f"invalid URL {text!r}: {exc}", hint) from None
    if not host:
        raise _invalid(f"invalid URL {text!r}: no host", hint)
    if scheme is None:
        if port is None or parts.path or parts.query or parts.fragment:
            raise _invalid(f"invalid target {text!r}: a bare target is host:port", hint)
        return Target(host, port, None, True)
    if port == 0:
        raise _invalid(f"invalid URL {text!r}: port 0", hint)
    if scheme == "https":
        return Target(host, port or 443, None, True)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(host, port or 80, path, False)


def _client(args: dict[str, Any]) -> str:
    value = args.get("from", args.get("client"))
    if value is None:
        return "127.0.0.1"
    if not isinstance(value, str):
        raise _invalid("the client address (from) must be text", "give an IP address such as 10.20.1.5")
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise _invalid(f"invalid client address {value!r}", "give an IP address such as 10.20.1.5") from None


def _method(value: object, target: Target) -> str:
    default = "CONNECT" if target.is_tunnel else "GET"
    if value is None:
        return default
    if not isinstance(value, str) or not _METHOD.match(value):
        raise _invalid(f"invalid method {value!r}", "give an HTTP method such as GET, POST or CONNECT")
    method = value.upper()
    if target.is_tunnel and method != "CONNECT":
        raise _invalid(
            f"method {method} cannot be explained for a tunnel",
            "an https:// URL or host:port is a CONNECT tunnel: the proxy sees neither the method nor "
            "the path inside it; use an http:// URL to explain a plain HTTP request",
        )
    return method


def _snapshot(daemon: Any) -> Any:
    return getattr(getattr(daemon, "shared", None), "snapshot", None)


def _live_policy(daemon: Any, tenant: str) -> tuple[bool, Policy | None]:
    """(found, policy) of the Snapshot now serving; policy None: no rule, default allow."""
    tenancy = getattr(_snapshot(daemon), "tenancy", None)
    policies = getattr(tenancy, "policies", None)
    if isinstance(policies, Mapping) and tenant in policies:
        policy = policies[tenant]
        return True, policy if isinstance(policy, Policy) else None
    views = getattr(tenancy, "tenants", None)
    if isinstance(views, Mapping) and tenant in views:
        policy = getattr(views[tenant], "policy", None)
        return True, policy if isinstance(policy, Policy) else None
    return False, None


def _guard(daemon: Any) -> EgressGuard:
    """The egress guard a client meets: that of the first server's escaper, if it has one."""
    snap = _snapshot(daemon)
    escapers = getattr(snap, "escapers", None)
    servers = getattr(getattr(snap, "profile", None), "servers", ())
    if isinstance(escapers, Mapping):
        for server in servers or ():
            guard = getattr(escapers.get(getattr(server, "escaper", None)), "guard", None)
            if isinstance(guard, EgressGuard):
                return guard
    return EgressGuard(own_addresses=getattr(daemon, "own", ()) or ())


async def _resolve(host: str, port: int) -> tuple[list[str], str | None]:
    """Addresses of ``host`` in the resolver's order, or ([], why not); bounded in time."""
    try:
        infos = await asyncio.wait_for(
            asyncio.to_thread(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM), RESOLVE_TIMEOUT
        )
    except TimeoutError:
        return [], f"resolving {host} took longer than {RESOLVE_TIMEOUT:g}s"
    except (OSError, UnicodeError) as exc:
        return [], f"cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}"
    out: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        if addr not in out:
            out.append(addr)
    return out, None


# ---------------------------------------------------------------------------- handlers


def tenancy_handlers(daemon: Any) -> dict[str, Handler]:
    """The tenant-settings, user and policy commands, bound to ``daemon``."""

    store_call = asyncio.to_thread

    def store() -> Any:
        return daemon.store

    async def changed() -> None:
        await daemon.refresh_tenants()

    # -- tenants ------------------------------------------------------------------------

    async def tenant_set(args: dict) -> dict:
        args = _args(args)
        name = _tenant(args, "name")
        _only(args, ("name",) + store_tenants.SETTINGS, "tenant.set")
        changes = {k: args[k] for k in store_tenants.SETTINGS if k in args}
        if not changes:
            raise _invalid("tenant.set: nothing to change", f"give one or more of: {', '.join(store_tenants.SETTINGS)}")
        tenant = await store_call(lambda: store().set_tenant(name, **changes))
        await changed()
        return tenant.to_dict()

    async def tenant_show(args: dict) -> dict:
        args = _args(args)
        name = _tenant(args, "name")

        def read() -> tuple[Any, int, int]:
            s = store()
            tenant = s.get_tenant(name)
            return tenant, len(s.list_users(name)), len(s.list_rules(name))

        tenant, users, rules = await store_call(read)
        out = tenant.to_dict()
        out["usage"] = _usage(getattr(getattr(daemon, "shared", None), "tenant_counters", None), name)
        out["users"] = users
        out["rules"] = rules
        return out

    # -- users --------------------------------------------------------------------------

    async def user_add(args: dict) -> dict:
        args = _args(args)
        tenant, name = _tenant(args), _user(args)
        _only(args, ("tenant", "name", "secret", "expires_at"), "user.add")
        secret = _secret(args.get("secret"), store_users.who(tenant, name))
        expires = args.get("expires_at")
        user = await store_call(lambda: store().add_user(tenant, name, secret, expires_at=expires))
        await changed()
        return user.to_dict()

    async def user_list(args: dict) -> list[dict]:
        args = _args(args)
        tenant = _tenant(args)
        return [u.to_dict() for u in await store_call(store().list_users, tenant)]

    async def user_show(args: dict) -> dict:
        args = _args(args)
        tenant, name = _tenant(args), _user(args)
        user = await store_call(store().get_user, tenant, name)
        out = user.to_dict()
        out["usage"] = _usage(getattr(getattr(daemon, "shared", None), "user_counters", None), f"{tenant}/{name}")
        return out

    async def user_rm(args: dict) -> dict:
        args = _args(args)
        tenant, name = _tenant(args), _user(args)
        await store_call(store().remove_user, tenant, name)
        await changed()
        return {"removed": name}

    async def _set_user(tenant: str, name: str, **changes: Any) -> dict:
        user = await store_call(lambda: store().set_user(tenant, name, **changes))
        await changed()
        return user.to_dict()

    async def user_passwd(args: dict) -> dict:
        args = _args(args)
        tenant, name = _tenant(args), _user(args)
        _only(args, ("tenant", "name", "secret"), "user.passwd")
        secret = _secret(args.get("secret"), store_users.who(tenant, name))
        return await _set_user(tenant, name, secret=secret)

    async def user_block(args: dict) -> dict:
        args = _args(args)
        return await _set_user(_tenant(args), _user(args), blocked=True)

    async def user_unblock(args: dict) -> dict:
        args = _args(args)
        return await _set_user(_tenant(args), _user(args), blocked=False)

    async def user_set(args: dict) -> dict:
        args = _args(args)
        tenant, name = _tenant(args), _user(args)
        for key in ("secret", "blocked"):
            if key in args:
                raise _invalid(
                    f"user.set: {key} is not set here",
                    "use user.passwd for the secret, user.block / user.unblock for blocking",
                )
        _only(args, ("tenant", "name") + USER_SET_FIELDS, "user.set")
        changes = {k: args[k] for k in USER_SET_FIELDS if k in args}
        if not changes:
            raise _invalid("user.set: nothing to change", f"give one or more of: {', '.join(USER_SET_FIELDS)}")
        return await _set_user(tenant, name, **changes)

    async def user_import(args: dict) -> dict:
        args = _args(args)
        tenant = _tenant(args)
        _only(args, ("tenant", "users", "replace"), "user.import")
        entries = args.get("users")
        if not isinstance(entries, list):
            raise _invalid("user.import: users must be a list of {name, secret, expires_at?}",
                           'send "users": [{"name": "alice", "secret": "$scrypt$..."}]')
        if len(entries) > store_users.MAX_IMPORT:
            raise _invalid(f"user.import: more than {store_users.MAX_IMPORT} users",
                           "split the file and import it in parts")
        replace = args.get("replace", False)
        if not isinstance(replace, bool):
            raise _invalid("user.import: replace must be true or false", 'pass "replace": true or false')

        def check_and_import() -> int:
            checked: list[tuple[str, str, str | None]] = []
            for number, entry in enumerate(entries, start=1):
                where = f"user import entry {number}"
                if not isinstance(entry, dict):
                    raise _invalid(f"{where}: expected an object {{name, secret, expires_at?}}",
                                   'write each entry as {"name": "alice", "secret": "$scrypt$..."}')
                for key in entry:
                    if key not in IMPORT_KEYS:
                        raise _invalid(f"{where}: unknown key {key!r}", f"entries take: {', '.join(IMPORT_KEYS)}")
                name = entry.get("name")
                if not isinstance(name, str):
                    raise _invalid(f"{where}: missing user name", 'give "name": "alice"')
                try:
                    validate_name("user", name)
                except OperatorError as exc:
                    raise _invalid(f"{where}: {exc.message}", exc.hint) from None
                _secret(entry.get("secret"), f"{where} ({name!r})")
                checked.append((name, entry["secret"], entry.get("expires_at")))
            return store().import_users(tenant, checked, replace=replace)

        count = await store_call(check_and_import)
        await changed()
        return {"imported": count}

    # -- policies -----------------------------------------------------------------------

    async def policy_add(args: dict) -> dict:
        args = _args(args)
        tenant = _tenant(args)
        _only(args, ("tenant", "rule", "position"), "policy.add")
        rule = rule_from_dict(args.get("rule"))
        position = args.get("position")
        if position is not None:
            position = _position(position)

        def check_and_add() -> int:
            s = store()
            t = s.get_tenant(tenant)
            rules = [rule_from_dict(d) for d in s.list_rules(tenant)]
            if any(r.id == rule.id for r in rules):
                raise AlreadyExists(
                    f"rule {rule.id!r} already exists in tenant {tenant}",
                    hint=f"pick another id, or remove it first with `arcus policy rm {tenant} {rule.id}`",
                )
            at = len(rules) if position is None else min(position - 1, len(rules))
            rules.insert(at, rule)
            compile_policy(rules, guard=None, default_action=t.default_action)
            return s.add_rule(tenant, rule_to_dict(rule), position=position)

        stored_at = await store_call(check_and_add)
        await changed()
        return {"rule": rule_to_dict(rule), "position": stored_at}

    async def _listed(tenant: str) -> list[dict]:
        rules = await store_call(store().list_rules, tenant)
        return [_shown(d, i) for i, d in enumerate(rules, start=1)]

    async def policy_list(args: dict) -> list[dict]:
        args = _args(args)
        return await _listed(_tenant(args))

    async def policy_rm(args: dict) -> dict:
        args = _args(args)
        tenant = _tenant(args)
        rule_id = _name(args, "id", "rule", "block-x")
        await store_call(store().remove_rule, tenant, rule_id)
        await changed()
        return {"removed": rule_id}

    async def policy_move(args: dict) -> list[dict]:
        args = _args(args)
        tenant = _tenant(args)
        rule_id = _name(args, "id", "rule", "block-x")
        if "position" not in args:
            raise _invalid("policy.move: missing position", 'pass {"position": 1} to make it the first rule')
        position = _position(args.get("position"))
        await store_call(store().move_rule, tenant, rule_id, position)
        await changed()
        return await _listed(tenant)

    async def policy_explain(args: dict) -> dict:
        args = _args(args)
        tenant = _tenant(args)
        _only(args, ("tenant", "url", "user", "from", "client", "method"), "policy.explain")
        target = parse_target(args.get("url"))
        client = _client(args)
        method = _method(args.get("method"), target)
        user = args.get("user")
        if user is not None:
            user = _name(args, "user", "user", "alice")

        def load() -> tuple[list[Rule], str]:
            s = store()
            t = s.get_tenant(tenant)
            if user is not None:
                s.get_user(tenant, user)
            return [rule_from_dict(d) for d in s.list_rules(tenant)], t.default_action

        rules, default_action = await store_call(load)
        found, live = _live_policy(daemon, tenant)
        source = "store"
        if found:
            source = "live"
            if live is None:
                rules, default_action = [], "allow"
            else:
                rules, default_action = list(live.rules), live.default_action
        # compiling parses every pattern of the tenant's policy: off the event loop
        policy = await store_call(
            lambda: compile_policy(rules, guard=_guard(daemon), default_action=default_action)
        )
        request = Request(
            target.host,
            target.port,
            client,
            now=datetime.now(timezone.utc),
            user=user,
            method=method,
            path=target.path,
            is_tunnel=target.is_tunnel,
        )
        decision, trace = explain(policy, request)
        resolved: list[str] = []
        resolve_error: str | None = None
        per_address: list[dict[str, Any]] = []
        if decision.needs_address:
            resolved, resolve_error = await _resolve(target.host, target.port)
            outcomes = [explain(policy, dataclasses.replace(request, dest_ip=addr)) for addr in resolved]
            per_address = [
                {"address": addr, "decision": _decision_dict(d), "trace": _trace_list(tr)}
                for addr, (d, tr) in zip(resolved, outcomes)
            ]
            # As the data plane does: the addresses refused are skipped, the first one allowed
            # is connected to; when none is allowed, the first refusal is the answer.
            allowed = [o for o in outcomes if o[0].action == "allow"]
            if allowed or outcomes:
                decision, trace = (allowed or outcomes)[0]
        return {
            "tenant": tenant,
            "request": {
                "host": target.host,
                "port": target.port,
                "method": method,
                "path": target.path,
                "tunnel": target.is_tunnel,
                "client": client,
                "user": user,
            },
            "decision": _decision_dict(decision),
            "trace": _trace_list(trace),
            "resolved": resolved,
            "addresses": per_address,
            "resolve_error": resolve_error,
            "policy_source": source,
        }

    return {
        "tenant.set": tenant_set,
        "tenant.show": tenant_show,
        "user.add": user_add,
        "user.list": user_list,
        "user.show": user_show,
        "user.rm": user_rm,
        "user.passwd": user_passwd,
        "user.block": user_block,
        "user.unblock": user_unblock,
        "user.set": user_set,
        "user.import": user_import,
        "policy.add": policy_add,
        "policy.list": policy_list,
        "policy.rm": policy_rm,
        "policy.move": policy_move,
        "policy.explain": policy_explain,
    }


__all__ = [
    "RULE_FIELDS",
    "Target",
    "parse_target",
    "rule_from_dict",
    "rule_to_dict",
    "tenancy_handlers",
]
