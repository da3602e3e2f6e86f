"""`arcus user`: the users of a tenant: add, list, show, rm, passwd, block, unblock, set, import.

Passwords are hashed here, in the CLI process (scrypt, ``arcus.auth.secrets.hash_secret``):
only the hash travels over the control socket or reaches the store, and nothing this module
prints, in text or ``--json``, ever holds a password or a hash (users are shown with their
``secret_scheme`` instead). Like ``arcus tenant``, every command goes through the running
daemon when one answers, and calls the same :mod:`arcus.ops.users` function on the store
(saying so on stderr) when none does.

A password is asked for only once the tenant (and, for ``passwd``, the user) is known to exist,
and only on a terminal: without one, ``--password-stdin`` reads it, and its absence is one line
saying so (never Python's GetPassWarning or a bare "Aborted!").
"""

from __future__ import annotations

import json as jsonlib
import os
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer

from arcus.auth.secrets import from_g3_token, hash_secret, identify_secret
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
from arcus.cli._progress import progress
from arcus.cli.tenant import (
    bandwidth_text,
    count_text,
    describe_changes,
    limit_lines,
    rate_text,
)
from arcus.errors import OperatorError
from arcus.names import validate_name
from arcus.ops import users as ops
from arcus.units import parse_bandwidth, parse_count, parse_rate

app = typer.Typer(no_args_is_help=True, help="Manage a tenant's users: passwords, expiry, blocking, limits.")

TenantArg = Annotated[str, typer.Argument(metavar="TENANT", help="Tenant name", show_default=False)]
UserArg = Annotated[str, typer.Argument(metavar="NAME", help="User name ([A-Za-z0-9._-])", show_default=False)]
PasswordStdinOpt = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from the first line of standard input (for scripts)"),
]

NEVER_WORDS = ("never", "none")
EXPIRY_HINT = (
    "write a date such as 2027-01-31 (the user is refused from 00:00 UTC that day), "
    "a time such as 2027-01-31T18:00:00Z or 2027-01-31T18:00+02:00, or 'never'"
)
MAX_IMPORT_FILE = 64 * 1024 * 1024
IMPORT_KEYS = ("name", "password", "hash", "token", "expires")
SECRET_KEYS = ("password", "hash", "token")
IMPORT_TIMEOUT = 120.0  # the daemon writes every user in one transaction, then rebuilds


def _names(tenant: str, name: str | None = None) -> None:
    validate_name("tenant", tenant)
    if name is not None:
        validate_name("user", name)


def parse_expiry(text: str) -> str | None:
    """An expiry as operators type it -> ``YYYY-MM-DDTHH:MM:SSZ`` (UTC); ``never`` -> None.

    A date alone is its midnight UTC (the first moment the user is refused); a time without
    an offset is UTC.
    """
    value = text.strip()
    if value.lower() in NEVER_WORDS:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise OperatorError(f"invalid expiry date {text!r}", hint=EXPIRY_HINT) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    try:
        when = when.astimezone(timezone.utc)
    except OverflowError:
        raise OperatorError(f"invalid expiry date {text!r}: out of range", hint=EXPIRY_HINT) from None
    if when.year < 1970:
        raise OperatorError(f"invalid expiry date {text!r}: before 1970", hint=EXPIRY_HINT)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def expiry_text(expires_at: str | None, now: datetime | None = None) -> str:
    if expires_at is None:
        return "never"
    try:
        when = datetime.fromisoformat(expires_at)
    except ValueError:
        return expires_at
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if when <= (now or datetime.now(timezone.utc)):
        return f"{expires_at} (expired)"
    return expires_at


def interactive() -> bool:
    """Whether a person can be asked: standard input is a terminal."""
    return sys.stdin.isatty()


def read_password(from_stdin: bool, who: str, command: str) -> str:
    """The new password: one line of stdin, or typed twice at a hidden prompt (on stderr).

    Never returns an empty password; the caller hashes it and forgets it. ``command`` (``user
    add acme alice``) is quoted in the one-line error given when there is no terminal to ask on.
    """
    if from_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
        if not password:
            raise OperatorError(
                "no password on standard input",
                hint="give the password as the first line, e.g. `printf '%s\\n' \"$PW\" | arcus user add ...`",
            )
        return password
    if not interactive():
        raise OperatorError(
            "no terminal to ask the password on",
            hint=f"pipe it in with --password-stdin: printf '%s\\n' \"$PW\" | arcus {command} --password-stdin",
        )
    # default="" lets an empty answer through (click would ask again forever) so it is refused.
    first = typer.prompt(f"password for {who}", default="", show_default=False, hide_input=True, err=True)
    if not first:
        raise OperatorError("the password is empty", hint="choose a non-empty password")
    second = typer.prompt("same password again", default="", show_default=False, hide_input=True, err=True)
    if first != second:
        raise OperatorError("the two passwords differ", hint="run the command again and type the same password twice")
    return first


def new_secret(from_stdin: bool, who: str, command: str) -> str:
    return hash_secret(read_password(from_stdin, who, command))


def check_exists(socket: Path | None, data_dir: Path | None, tenant: str, name: str | None = None) -> None:
    """NotFound for a missing tenant (or user) before anything is asked for or hashed."""
    if name is None:
        run_or_store(socket, data_dir, "tenant.show", {"name": tenant},
                     lambda st: ops.require_tenant(st, tenant), writes=False, quiet=True)
    else:
        run_or_store(socket, data_dir, "user.show", {"tenant": tenant, "name": name},
                     lambda st: ops.show(st, tenant, name), writes=False, quiet=True)


# -- printing -------------------------------------------------------------------------------


def _show_one(u: dict[str, Any]) -> None:
    out = console()
    out.print(f"user       {u['name']}")
    out.print(f"tenant     {u['tenant']}")
    out.print(f"secret     {u.get('secret_scheme', '-')}")
    out.print(f"blocked    {'yes' if u.get('blocked') else 'no'}")
    out.print(f"expires    {expiry_text(u.get('expires_at'))}")
    out.print(f"created    {u.get('created_at', '')}")
    usage = u.get("usage")
    out.print("")
    for line in limit_lines(u, usage):
        out.print(line)
    if usage is not None:
        table = make_table("usage", COUNTER_COLUMNS, right=COUNTER_COLUMNS[:-1])
        table.add_row(*counter_cells(usage))
        out.print(table)


def _emit(result: Any, json: bool, text: Callable[[Any], str]) -> None:
    if json:
        print_json(result)
    else:
        print(text(result))


# -- commands -------------------------------------------------------------------------------


@app.command()
@errors_to_exit
def add(
    tenant: TenantArg,
    name: UserArg,
    expires: Annotated[
        str | None, typer.Option("--expires", metavar="DATE", help="Refuse the user from this date (UTC)",
                                 show_default=False)
    ] = None,
    password_stdin: PasswordStdinOpt = False,
    socket: SocketOpt = None,
    data_dir: DataDirOpt = None,
    json: JsonOpt = False,
) -> None:
    """Add a user; the password is asked twice (hidden), or read from stdin with --password-stdin."""
    _names(tenant, name)
    expires_at = parse_expiry(expires) if expires is not None else None
    check_exists(socket, data_dir, tenant)
    secret = new_secret(password_stdin, f"{name}@{tenant}", f"user add {tenant} {name}")
    args: dict[str, Any] = {"tenant": tenant, "name": name, "secret": secret}
    if expires_at is not None:
        args["expires_at"] = expires_at
    result = run_or_store(
        socket, data_dir, "user.add", args,
        lambda st: ops.add(st, tenant, name, secret, expires_at),
        writes=True,
    )

    def text(u: dict[str, Any]) -> str:
        until = f", expires {expiry_text(u.get('expires_at'))}" if u.get("expires_at") else ""
        return f"added user {u['name']} to tenant {u['tenant']}{until}"

    _emit(result, json, text)


@app.command("list")
@errors_to_exit
def list_(tenant: TenantArg, socket: SocketOpt = None, data_dir: DataDirOpt = None, json: JsonOpt = False) -> None:
    """List a tenant's users (never their secrets: the scheme they are stored in)."""
    _names(tenant)
    result = run_or_store(
        socket, data_dir, "user.list", {"tenant": tenant},
        lambda st: ops.list_all(st, tenant),
        writes=False,
    )
    if json:
        print_json(result)
        return
    if not result:
        print(f"tenant {tenant} has no users")
        return
    now = datetime.now(timezone.utc)
    table = make_table(
        f"{len(result)} user{'s' if len(result) != 1 else ''} of tenant {tenant}",
        ("user", "secret", "blocked", "expires", "max conns", "rate limit", "bandwidth", "created"),
    )
    for u in result:
        table.add_row(
            u["name"],
            u.get("secret_scheme", "-"),
            "yes" if u.get("blocked") else "no",
            expiry_text(u.get("expires_at"), now),
            count_text(u.get("max_conns")),
            rate_text(u.get("rps")),
            bandwidth_text(u.get("bandwidth")),
            str(u.get("created_at", "")),
        )
    console().print(table)


@app.command()
@errors_to_exit
def show(
    tenant: TenantArg, name: UserArg, socket: SocketOpt = None, data_dir: DataDirOpt = None, json: JsonOpt = False
) -> None:
    """One user, its limits, and its live usage when the daemon is running."""
    _names(tenant, name)
    result = run_or_store(
        socket, data_dir, "user.show", {"tenant": tenant, "name": name},
        lambda st: ops.show(st, tenant, name),
        writes=False,
    )
    if json:
        print_json(result)
        return
    _show_one(result)


@app.command()
@errors_to_exit
def rm(
    tenant: TenantArg, name: UserArg, socket: SocketOpt = None, data_dir: DataDirOpt = None, json: JsonOpt = False
) -> None:
    """Remove a user (and the policy rules written for it)."""
    _names(tenant, name)
    result = run_or_store(socket, data_dir, "user.rm", {"tenant": tenant, "name": name},
                          lambda st: ops.remove(st, tenant, name), writes=True)
    _emit(result, json, lambda r: f"removed user {r.get('removed', name)} from tenant {tenant}")


@app.command()
@errors_to_exit
def passwd(
    tenant: TenantArg,
    name: UserArg,
    password_stdin: PasswordStdinOpt = False,
    socket: SocketOpt = None,
    data_dir: DataDirOpt = None,
    json: JsonOpt = False,
) -> None:
    """Set a user's password (asked twice, or read from stdin with --password-stdin)."""
    _names(tenant, name)
    check_exists(socket, data_dir, tenant, name)
    secret = new_secret(password_stdin, f"{name}@{tenant}", f"user passwd {tenant} {name}")
    result = run_or_store(
        socket, data_dir, "user.passwd", {"tenant": tenant, "name": name, "secret": secret},
        lambda st: ops.passwd(st, tenant, name, secret),
        writes=True,
    )
    _emit(result, json, lambda u: f"changed the password of user {u['name']} of tenant {u['tenant']}")


def _set_blocked(tenant: str, name: str, blocked: bool, socket: Path | None, data_dir: Path | None,
                 json: bool) -> None:
    _names(tenant, name)
    result = run_or_store(
        socket, data_dir, "user.block" if blocked else "user.unblock", {"tenant": tenant, "name": name},
        lambda st: ops.set_blocked(st, tenant, name, blocked),
        writes=True,
    )
    if blocked:
        _emit(result, json, lambda u: f"blocked user {u['name']} of tenant {u['tenant']}: its logins are refused "
                                      f"until `arcus user unblock {u['tenant']} {u['name']}`")
    else:
        _emit(result, json, lambda u: f"unblocked user {u['name']} of tenant {u['tenant']}")


@app.command()
@errors_to_exit
def block(
    tenant: TenantArg, name: UserArg, socket: SocketOpt = None, data_dir: DataDirOpt = None, json: JsonOpt = False
) -> None:
    """Refuse a user's logins (403, user_blocked) until unblocked; its password is kept."""
    _set_blocked(tenant, name, True, socket, data_dir, json)


@app.command()
@errors_to_exit
def unblock(
    tenant: TenantArg, name: UserArg, socket: SocketOpt = None, data_dir: DataDirOpt = None, json: JsonOpt = False
) -> None:
    """Accept a blocked user's logins again."""
    _set_blocked(tenant, name, False, socket, data_dir, json)


@app.command("set")
@errors_to_exit
def set_(
    tenant: TenantArg,
    name: UserArg,
    expires: Annotated[str | None, typer.Option(
        "--expires", metavar="DATE|never", help="Refuse the user from this date (UTC); 'never' removes it",
        show_default=False)] = None,
    max_conns: Annotated[str | None, typer.Option(
        "--max-conns", metavar="N|unlimited", help="Concurrent connections of this user", show_default=False)] = None,
    rps: Annotated[str | None, typer.Option(
        "--rps", metavar="R|unlimited", help="Requests per second of this user", show_default=False)] = None,
    bandwidth: Annotated[str | None, typer.Option(
        "--bandwidth", metavar="B|unlimited", help="Each direction; 50M = 50 megabit/s, 50MB = 50 megabyte/s",
        show_default=False)] = None,
    socket: SocketOpt = None,
    data_dir: DataDirOpt = None,
    json: JsonOpt = False,
) -> None:
    """Change a user's expiry and limits; the daemon applies them on the next request."""
    _names(tenant, name)
    changes: dict[str, Any] = {}
    if expires is not None:
        changes["expires_at"] = parse_expiry(expires)
    if max_conns is not None:
        changes["max_conns"] = parse_count(max_conns)
    if rps is not None:
        changes["rps"] = parse_rate(rps)
    if bandwidth is not None:
        changes["bandwidth"] = parse_bandwidth(bandwidth)
    if not changes:
        raise OperatorError("nothing to change", hint="give at least one of --expires, --max-conns, --rps, --bandwidth")
    result = run_or_store(
        socket, data_dir, "user.set", {"tenant": tenant, "name": name, **changes},
        lambda st: ops.change(st, tenant, name, changes),
        writes=True,
    )
    _emit(result, json, lambda u: f"changed user {u['name']} of tenant {u['tenant']}: {describe_changes(changes)}")


# -- import ---------------------------------------------------------------------------------


def _entry_error(where: str, exc: OperatorError) -> OperatorError:
    return OperatorError(f"{where}: {exc.message}", code=exc.code, hint=exc.hint)


def load_import_file(path: Path) -> list[dict[str, Any]]:
    """Read and check ``path`` whole: a JSON list of users. Returns entries ready to hash.

    Each returned entry has ``name``, ``expires_at`` and either ``secret`` (a stored form,
    checked with identify_secret) or ``password`` (to be hashed). Errors name the file and the
    entry (1-based, and its user name once known) and never quote a password or a hash.
    """
    try:
        size = path.stat().st_size
        if size > MAX_IMPORT_FILE:
            raise OperatorError(f"{path} is larger than {MAX_IMPORT_FILE // (1024 * 1024)} MiB",
                                hint="split it and import the parts one by one")
        raw = path.read_bytes()
    except OSError as exc:
        raise OperatorError(f"cannot read {path}: {exc.strerror or exc}", hint="give the path of a JSON file") from None
    try:
        data = jsonlib.loads(raw)
    except UnicodeDecodeError:
        raise OperatorError(f"{path} is not UTF-8 text", hint="save it as UTF-8 JSON") from None
    except ValueError as exc:
        # The message of json.JSONDecodeError holds no document text, only the position.
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, jsonlib.JSONDecodeError) else ""
        msg = exc.msg if isinstance(exc, jsonlib.JSONDecodeError) else "not JSON"
        raise OperatorError(f"{path} is not valid JSON{where}: {msg}", hint=_IMPORT_HINT) from None
    if not isinstance(data, list):
        raise OperatorError(f"{path}: expected a JSON list of users, got a JSON {_json_kind(data)}", hint=_IMPORT_HINT)
    if not data:
        raise OperatorError(f"{path} holds no users", hint=_IMPORT_HINT)
    entries: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for number, item in enumerate(data, start=1):
        where = f"{path}: entry {number}"
        if not isinstance(item, Mapping):
            raise OperatorError(f"{where}: expected an object, got a JSON {_json_kind(item)}", hint=_IMPORT_HINT)
        name = item.get("name")
        if not isinstance(name, str):
            raise OperatorError(f"{where}: 'name' is missing or not text", hint=_IMPORT_HINT)
        try:
            validate_name("user", name)
        except OperatorError as exc:
            raise _entry_error(where, exc) from None
        where = f"{where} ({name})"
        if name in seen:
            raise OperatorError(f"{where}: user given again (first as entry {seen[name]})", hint="give each user once")
        seen[name] = number
        for key in item:
            if key not in IMPORT_KEYS:
                raise OperatorError(f"{where}: unknown key {str(key)[:40]!r}", hint=_IMPORT_HINT)
        given = [k for k in SECRET_KEYS if item.get(k) is not None]
        if len(given) != 1:
            what = "one of" if not given else "only one of"
            raise OperatorError(f"{where}: give {what} 'password', 'hash' or 'token'", hint=_IMPORT_HINT)
        expires = item.get("expires")
        entry: dict[str, Any] = {"name": name, "expires_at": None}
        try:
            if expires is not None:
                if not isinstance(expires, str):
                    raise OperatorError(f"'expires' must be text, got a JSON {_json_kind(expires)}", hint=EXPIRY_HINT)
                entry["expires_at"] = parse_expiry(expires)
            kind = given[0]
            value = item[kind]
            if kind == "password":
                if not isinstance(value, str) or not value:
                    raise OperatorError("'password' must be non-empty text", hint=_IMPORT_HINT)
                entry["password"] = value
            elif kind == "hash":
                if not isinstance(value, str):
                    raise OperatorError("'hash' must be text", hint=_IMPORT_HINT)
                identify_secret(value)
                entry["secret"] = value
            else:
                entry["secret"] = from_g3_token(value)
        except OperatorError as exc:
            raise _entry_error(where, exc) from None
        entries.append(entry)
    return entries


_IMPORT_HINT = (
    'the file is a JSON list like [{"name": "alice", "password": "..."}, '
    '{"name": "bob", "hash": "$6$...", "expires": "2027-01-31"}, {"name": "carol", "token": {...}}]; '
    "see docs/cli.md"
)


def _json_kind(value: object) -> str:
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def hash_passwords(entries: list[dict[str, Any]], path: Path) -> list[tuple[str, str, str | None]]:
    """Hash the plain passwords (scrypt, in threads: hashlib.scrypt releases the GIL), with a
    progress bar on a terminal (:mod:`arcus.cli._progress`); return ``(name, secret, expires_at)``
    in file order."""
    todo = [i for i, e in enumerate(entries) if "password" in e]
    secrets: dict[int, str] = {}
    workers = max(1, min(4, os.cpu_count() or 1, len(todo)))
    with progress("hashing passwords", len(todo), transient=True) as tick:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="arcus-hash")
        try:
            futures = {i: pool.submit(hash_secret, entries[i]["password"]) for i in todo}
            for number, (i, future) in enumerate(futures.items(), start=1):
                try:
                    secrets[i] = future.result()
                except OperatorError as exc:
                    raise _entry_error(f"{path}: entry {i + 1} ({entries[i]['name']})", exc) from None
                tick(number)
        finally:
            # On an error or Ctrl-C, the hashes not started are dropped instead of waited for.
            pool.shutdown(wait=True, cancel_futures=True)
    return [
        (e["name"], secrets[i] if i in secrets else e["secret"], e["expires_at"]) for i, e in enumerate(entries)
    ]


@app.command("import")
@errors_to_exit
def import_(
    tenant: TenantArg,
    file: Annotated[Path, typer.Argument(metavar="FILE.json", help="JSON list of users", show_default=False)],
    replace: Annotated[bool, typer.Option(
        "--replace",
        help="Overwrite the password and expiry of users that exist (else they refuse the import)")] = False,
    socket: SocketOpt = None,
    data_dir: DataDirOpt = None,
    json: JsonOpt = False,
) -> None:
    """Add many users from a JSON file in one change: passwords, crypt/scrypt hashes or G3 tokens."""
    _names(tenant)
    entries = load_import_file(file)
    check_exists(socket, data_dir, tenant)
    users = hash_passwords(entries, file)
    wire = [{"name": n, "secret": s, **({"expires_at": e} if e is not None else {})} for n, s, e in users]
    result = run_or_store(
        socket, data_dir, "user.import", {"tenant": tenant, "users": wire, "replace": replace},
        lambda st: ops.import_users(st, tenant, users, replace=replace),
        writes=True,
        timeout=IMPORT_TIMEOUT,
    )
    n = result.get("imported", 0)
    _emit(result, json, lambda r: f"imported {n} user{'s' if n != 1 else ''} into tenant {tenant}")
