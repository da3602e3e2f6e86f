"""Control commands for tenants, users and policies: the daemon's side of ``arcus.ops``.

``tenancy_handlers(host)`` returns the handlers the daemon registers next to its own. Each one
parses its wire arguments (types included: a bad one is an OperatorError with a hint, never a
KeyError or a TypeError), calls the one definition of the command in :mod:`arcus.ops` in a worker
thread (SQLite and key checks stay off the event loop), and after a change has the daemon
rebuild the tenant part of its Snapshot (``refresh_tenants``), so the change applies to the next
request. The CLI, with no daemon running, calls the same :mod:`arcus.ops` functions.

Secrets arrive hashed (the CLI runs the key-derivation function in its own process); no reply,
error or log line ever carries one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from arcus.config import load_profile
from arcus.control.protocol import only_args
from arcus.errors import OperatorError
from arcus.escape.base import Escaper
from arcus.escape.direct_fixed import DirectFixedEscaper
from arcus.names import validate_name
from arcus.ops import explain as ops_explain
from arcus.ops import policies as ops_policies
from arcus.ops import tenants as ops_tenants
from arcus.ops import users as ops_users
from arcus.ops.explain import Egress
from arcus.policy import Policy
from arcus.runtime.hostaddrs import own_addresses
from arcus.runtime.snapshot import StoreView, build_snapshot
from arcus.serve.context import Shared, Snapshot
from arcus.store import Store
from arcus.store.tenants import SETTINGS as TENANT_SETTINGS

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

IMPORT_KEYS = ("name", "secret", "expires_at")
EXPLAIN_ARGS = ("tenant", "url", "user", "from", "client", "method", "protocol")


class TenancyHost(Protocol):
    """What the handlers need of the daemon (:class:`arcus.runtime.daemon.Daemon` is one)."""

    store: Store | None
    shared: Shared | None

    async def refresh_tenants(self) -> int: ...


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


_only = only_args  # a tenant, user or policy command refuses an argument it does not take


def _changes(args: dict[str, Any], settings: tuple[str, ...], command: str) -> dict[str, Any]:
    changes = {k: args[k] for k in settings if k in args}
    if not changes:
        raise _invalid(f"{command}: nothing to change", f"give one or more of: {', '.join(settings)}")
    return changes


def _text_list(args: dict[str, Any], key: str, what: str) -> list[str]:
    value = args.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid(f"{key} must be a list of {what}", f'pass {{"{key}": ["10.20.0.0/16"]}}')
    return value


def _import_entries(entries: object) -> list[tuple[str, str, str | None]]:
    """The wire's ``[{name, secret, expires_at?}]`` as ``(name, secret, expires_at)``."""
    if not isinstance(entries, list):
        raise _invalid("user.import: users must be a list of {name, secret, expires_at?}",
                       'send "users": [{"name": "alice", "secret": "$scrypt$..."}]')
    out: list[tuple[str, str, str | None]] = []
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
        secret = ops_users.check_secret(entry.get("secret"), f"{where} ({name!r})")
        out.append((name, secret, entry.get("expires_at")))
    return out


# ---------------------------------------------------------------------------- the data plane's pieces


def leaf_egress(escaper: Escaper) -> Egress | None:
    """The first escaper, depth first from ``escaper``, that resolves names and guards addresses."""
    if isinstance(escaper, DirectFixedEscaper):  # direct_float is one too
        return Egress(escaper.name, escaper.resolver, escaper.guard, escaper.config.resolve_strategy)
    for nxt in escaper.next_escapers:
        found = leaf_egress(nxt)
        if found is not None:
            return found
    return None


def egress_of(snapshot: Snapshot) -> Egress:
    """The resolver and egress guard a client meets: those of the first server's escaper (a
    route or pool escaper: its first member that resolves, depth first)."""
    for server in snapshot.profile.servers:
        escaper = snapshot.escapers.get(server.escaper)
        if escaper is None:
            continue
        return leaf_egress(escaper) or Egress(escaper.name, None, None)
    return Egress("-", None, None)


def served_policies(snapshot: Snapshot) -> Mapping[str, Policy | None]:
    """The compiled policy of every tenant the Snapshot serves (None: no rule, default allow)."""
    return {name: view.policy for name, view in snapshot.tenancy.tenants.items()}


def offline_snapshot(profile_arg: str | None) -> Snapshot:
    """A Snapshot of ``profile_arg`` built as the daemon builds it, without tenants: the
    escapers, resolvers and egress guards a daemon of that profile would use. Close its
    resolvers with :func:`close_resolvers` when done."""
    profile = load_profile(profile_arg)
    return build_snapshot(0, profile, StoreView([], {}, {}), own_addresses())


async def close_resolvers(snapshot: Snapshot) -> None:
    for resolver in snapshot.resolvers.values():
        await resolver.close()


# ---------------------------------------------------------------------------- handlers


def tenancy_handlers(host: TenancyHost) -> dict[str, Handler]:
    """The tenant, user and policy commands, bound to the daemon ``host``."""

    def store() -> Store:
        assert host.store is not None, "the daemon has no store yet"
        return host.store

    def shared() -> Shared:
        assert host.shared is not None, "the daemon has no Snapshot yet"
        return host.shared

    async def read(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, store(), *args)

    async def write(fn: Callable[..., Any], *args: Any) -> Any:
        result = await asyncio.to_thread(fn, store(), *args)
        await host.refresh_tenants()
        return result

    # -- tenants ------------------------------------------------------------------------

    async def tenant_add(args: dict) -> dict:
        args = _args(args)
        name = _tenant(args, "name")
        _only(args, ("name", "display_name", "sources"), "tenant.add")
        display = args.get("display_name")
        if display is not None and not isinstance(display, str):
            raise _invalid("display_name must be text", 'pass {"display_name": "Acme Corp"}')
        return await write(ops_tenants.add, name, display, _text_list(args, "sources", "CIDR strings"))

    async def tenant_list(args: dict) -> list[dict]:
        _only(_args(args), (), "tenant.list")
        return await read(ops_tenants.list_all)

    async def tenant_show(args: dict) -> dict:
        _only(_args(args), ("name",), "tenant.show")
        name = _tenant(_args(args), "name")
        out = await read(ops_tenants.show, name)
        out["usage"] = shared().tenant_counters.get(out["name"]).to_dict()
        return out

    async def tenant_set(args: dict) -> dict:
        args = _args(args)
        name = _tenant(args, "name")
        _only(args, ("name",) + TENANT_SETTINGS, "tenant.set")
        service = args.get("icap_service")
        if isinstance(service, str):  # a typo would give the tenant an error on every exchange
            known = [s.name for s in shared().snapshot.profile.icap_services]
            if service not in known:
                raise _invalid(
                    f"the profile this daemon serves has no ICAP service {service!r}",
                    f"use one of: {', '.join(known)}" if known else "add it under icap_services: in the profile and reload first",
                )
        return await write(ops_tenants.change, name, _changes(args, TENANT_SETTINGS, "tenant.set"))

    async def tenant_rm(args: dict) -> dict:
        _only(_args(args), ("name",), "tenant.rm")
        return await write(ops_tenants.remove, _tenant(_args(args), "name"))

    async def tenant_suspend(args: dict) -> dict:
        _only(_args(args), ("name",), "tenant.suspend")
        return await write(ops_tenants.set_suspended, _tenant(_args(args), "name"), True)

    async def tenant_resume(args: dict) -> dict:
        _only(_args(args), ("name",), "tenant.resume")
        return await write(ops_tenants.set_suspended, _tenant(_args(args), "name"), False)

    # -- users --------------------------------------------------------------------------

    async def user_add(args: dict) -> dict:
        args = _args(args)
        tenant, name = _tenant(args), _user(args)
        _only(args, ("tenant", "name", "secret", "expires_at"), "user.add")
        secret = ops_users.check_secret(args.get("secret"), f"user {name!r} of tenant {tenant!r}")
        return await write(ops_users.add, tenant, name, secret, args.get("expires_at"))

    async def user_list(args: dict) -> list[dict]:
        _only(_args(args), ("tenant",), "user.list")
        return await read(ops_users.list_all, _tenant(_args(args)))

    async def user_show(args: dict) -> dict:
        args = _args(args)
        tenant, name = _tenant(args), _user(args)
        _only(args, ("tenant", "name"), "user.show")
        out = await read(ops_users.show, tenant, name)
        out["usage"] = shared().user_counters.get(f"{tenant}/{name}").to_dict()
        return out

    async def user_rm(args: dict) -> dict:
        args = _args(args)
        _only(args, ("tenant", "name"), "user.rm")
        return await write(ops_users.remove, _tenant(args), _user(args))

    async def user_passwd(args: dict) -> dict:
        args = _args(args)
        tenant, name = _tenant(args), _user(args)
        _only(args, ("tenant", "name", "secret"), "user.passwd")
        secret = ops_users.check_secret(args.get("secret"), f"user {name!r} of tenant {tenant!r}")
        return await write(ops_users.passwd, tenant, name, secret)

    async def user_block(args: dict) -> dict:
        args = _args(args)
        _only(args, ("tenant", "name"), "user.block")
        return await write(ops_users.set_blocked, _tenant(args), _user(args), True)

    async def user_unblock(args: dict) -> dict:
        args = _args(args)
        _only(args, ("tenant", "name"), "user.unblock")
        return await write(ops_users.set_blocked, _tenant(args), _user(args), False)

    async def user_set(args: dict) -> dict:
        args = _args(args)
        tenant, name = _tenant(args), _user(args)
        for key in ("secret", "blocked"):
            if key in args:
                raise _invalid(f"user.set: {key} is not set here",
                               "use user.passwd for the secret, user.block / user.unblock for blocking")
        _only(args, ("tenant", "name") + ops_users.SETTINGS, "user.set")
        return await write(ops_users.change, tenant, name, _changes(args, ops_users.SETTINGS, "user.set"))

    async def user_import(args: dict) -> dict:
        args = _args(args)
        tenant = _tenant(args)
        _only(args, ("tenant", "users", "replace"), "user.import")
        replace = args.get("replace", False)
        if not isinstance(replace, bool):
            raise _invalid("user.import: replace must be true or false", 'pass "replace": true or false')
        entries = args.get("users")
        if isinstance(entries, list) and len(entries) > ops_users.MAX_IMPORT:
            raise _invalid(f"user.import: more than {ops_users.MAX_IMPORT} users", "split the file and import it in parts")
        checked = await asyncio.to_thread(_import_entries, entries)
        return await write(lambda st: ops_users.import_users(st, tenant, checked, replace=replace))

    # -- policies -----------------------------------------------------------------------

    async def policy_add(args: dict) -> dict:
        args = _args(args)
        tenant = _tenant(args)
        _only(args, ("tenant", "rule", "position"), "policy.add")
        rule = ops_policies.rule_from_dict(args.get("rule"))
        position = args.get("position")
        if position is not None:
            ops_policies.check_position(position)
        return await write(ops_policies.add, tenant, rule, position)

    async def policy_import(args: dict) -> dict:
        args = _args(args)
        tenant = _tenant(args)
        _only(args, ("tenant", "rules"), "policy.import")
        rules = ops_policies.rules_from_list(args.get("rules"))
        return await write(ops_policies.import_rules, tenant, rules)

    async def policy_list(args: dict) -> list[dict]:
        _only(_args(args), ("tenant",), "policy.list")
        return await read(ops_policies.list_rules, _tenant(_args(args)))

    async def policy_rm(args: dict) -> dict:
        args = _args(args)
        _only(args, ("tenant", "id"), "policy.rm")
        return await write(ops_policies.remove, _tenant(args), _name(args, "id", "rule", "block-x"))

    async def policy_move(args: dict) -> list[dict]:
        args = _args(args)
        tenant = _tenant(args)
        rule_id = _name(args, "id", "rule", "block-x")
        _only(args, ("tenant", "id", "position"), "policy.move")
        if "position" not in args:
            raise _invalid("policy.move: missing position", 'pass {"position": 1} to make it the first rule')
        return await write(ops_policies.move, tenant, rule_id, ops_policies.check_position(args["position"]))

    async def policy_explain(args: dict) -> dict:
        args = _args(args)
        tenant = _tenant(args)
        _only(args, EXPLAIN_ARGS, "policy.explain")
        target = ops_explain.parse_target(args.get("url"))
        client = ops_explain.parse_client(args.get("from", args.get("client")))
        user = _name(args, "user", "user", "alice") if args.get("user") is not None else None
        snapshot = shared().snapshot
        return await ops_explain.explain(
            store(), tenant, target, egress=egress_of(snapshot), client=client, method=args.get("method"),
            protocol=args.get("protocol"), user=user, served=served_policies(snapshot),
        )

    return {
        "tenant.add": tenant_add,
        "tenant.list": tenant_list,
        "tenant.show": tenant_show,
        "tenant.set": tenant_set,
        "tenant.rm": tenant_rm,
        "tenant.suspend": tenant_suspend,
        "tenant.resume": tenant_resume,
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
        "policy.import": policy_import,
        "policy.list": policy_list,
        "policy.rm": policy_rm,
        "policy.move": policy_move,
        "policy.explain": policy_explain,
    }


__all__ = ["TenancyHost", "close_resolvers", "egress_of", "offline_snapshot", "served_policies", "tenancy_handlers"]
