"""The control protocol: JSON lines over a Unix socket, defined once for daemon, CLI and TUI.

A request is one line::

    {"v": 1, "id": 7, "cmd": "tenant.add", "args": {"name": "acme"}}

and its reply one line with the same id::

    {"id": 7, "ok": true, "result": {...}}
    {"id": 7, "ok": false, "error": {"code": "not_found", "message": "...", "hint": "..."}}

A streaming command (``stats.watch``) answers with many replies carrying the same id and
``"more": true``; the daemon ends the stream with ``{"id": 7, "ok": true, "result": null,
"more": false}`` or an error reply. The client ends it by closing the connection, or by
sending its next request (the daemon then sends the end marker and answers that request).

This module is sans-io: it turns bytes into messages and messages into bytes, and names the
error codes and commands. It never touches a socket, so the server, both clients and the tests
share one definition of the wire format.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Final

from arcus.errors import OperatorError

VERSION: Final = 1
MAX_LINE: Final = 1024 * 1024
"""Longest request line the daemon reads (bytes, newline excluded). Longer -> too_large, close."""
MAX_REPLY_LINE: Final = 64 * 1024 * 1024
"""Longest reply line a client reads: replies (a `conns` listing) can be larger than requests."""

# Error codes. Stable: scripts match on them, the CLI maps them to exit codes.
BAD_REQUEST: Final = "bad_request"  # not a well-formed request (bytes, JSON, missing id/cmd, bad args)
UNKNOWN_COMMAND: Final = "unknown_command"  # well-formed, but the daemon has no such command
INVALID: Final = "invalid"  # arguments well-formed but refused (bad name, bad CIDR, bad profile)
NOT_FOUND: Final = "not_found"  # the named thing does not exist
EXISTS: Final = "exists"  # the named thing exists already (or another daemon owns the socket)
TOO_LARGE: Final = "too_large"  # request line longer than MAX_LINE; the connection is closed
INTERNAL: Final = "internal"  # a bug in the daemon; logged there with its traceback
UNAVAILABLE: Final = "unavailable"  # no daemon answers, or it went away mid-request
FORBIDDEN: Final = "forbidden"  # the peer's uid may not talk to this daemon
TIMEOUT: Final = "timeout"  # the client gave up waiting for a reply

ERROR_CODES: Final = frozenset(
    {BAD_REQUEST, UNKNOWN_COMMAND, INVALID, NOT_FOUND, EXISTS, TOO_LARGE, INTERNAL, UNAVAILABLE, FORBIDDEN, TIMEOUT}
)

# Every command the daemon answers, with one line each: the `help` command and docs/control.md
# are built from this table. Argument and result shapes are in docs/control.md.
COMMANDS: Final[dict[str, str]] = {
    "help": "list the commands this daemon answers",
    "health": "is the daemon up: pid, version, uptime, profile, generation, servers and their listeners",
    "stats": "counters per server and per tenant: connections, requests, bytes each way, errors by kind",
    "stats.watch": "stream the stats result now and then every interval (a subscriber that stops reading is dropped)",
    "events.watch": "stream what the daemon does: request and tunnel records, reloads, changes, problems (filters; bounded per subscriber)",
    "reload": "rebuild the snapshot from profile and store; refused with file:line messages if invalid",
    "conns": "live connections: id, server, tenant, client, target, age, bytes each way, state",
    "kill": "end one live connection by id",
    "shutdown": "stop the daemon, gracefully (let live connections finish) or at once",
    "tenant.add": "create a tenant with its source ranges",
    "tenant.list": "list every tenant",
    "tenant.show": "one tenant, with its usage counters when the daemon has them",
    "tenant.rm": "remove a tenant",
    "tenant.suspend": "refuse a tenant's clients (403) until resumed",
    "tenant.resume": "serve a suspended tenant's clients again",
    "tenant.set": "change a tenant's auth, policy default, block page, limits and locked source ranges",
    "user.add": "create a user of a tenant (the secret arrives hashed)",
    "user.list": "list a tenant's users (never their secrets)",
    "user.show": "one user, with usage counters",
    "user.rm": "remove a user",
    "user.passwd": "replace a user's secret (hashed)",
    "user.block": "refuse a user until unblocked",
    "user.unblock": "admit a blocked user again",
    "user.set": "change a user's expiry and limits",
    "user.import": "add (or replace) many users in one transaction",
    "policy.add": "add a rule to a tenant's policy, validated against the whole policy",
    "policy.import": "append a list of rules to a tenant's policy in one change (all or none)",
    "policy.list": "a tenant's rules in order",
    "policy.rm": "remove a rule",
    "policy.move": "move a rule to another position",
    "policy.explain": "the decision for a URL with the trace of every rule evaluated",
    "audit.tail": "stream audit events as they are written",
    "audit.stats": "audit log counters: written, dropped, queued, size",
    "resolve": "ask a resolver of the running daemon (cache included): addresses, cached, ttl",
    "escaper.list": "the running profile's escapers and what each keeps live (pool health, float addresses)",
    "escaper.show": "one escaper's live state: health of a pool's members, a direct_float's published set",
    "escaper.float.set": "replace a direct_float escaper's egress addresses, live (kept across reloads)",
}


class ControlError(OperatorError):
    """An error reply, or a failure to get one. ``code`` is one of the constants above."""

    def __init__(self, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, code=code, hint=hint)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out

    @classmethod
    def from_dict(cls, value: Any) -> ControlError:
        """The error of a reply; tolerant, because a reply comes from another process."""
        if not isinstance(value, dict):
            return cls(INTERNAL, f"daemon sent a malformed error: {value!r:.200}")
        code = value.get("code")
        message = value.get("message")
        hint = value.get("hint")
        return cls(
            code if isinstance(code, str) and code else INTERNAL,
            message if isinstance(message, str) else "daemon sent an error without a message",
            hint if isinstance(hint, str) and hint else None,
        )

    def __repr__(self) -> str:
        return f"ControlError({self.code!r}, {self.message!r}, hint={self.hint!r})"


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    cmd: str
    args: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return _dump({"v": VERSION, "id": self.id, "cmd": self.cmd, "args": self.args})

    @classmethod
    def from_message(cls, msg: dict[str, Any]) -> Request:
        """Validate a decoded message; raises ControlError(bad_request) saying what is wrong."""
        rid = request_id(msg)
        if rid is None:
            raise ControlError(BAD_REQUEST, '"id" must be an integer', hint=_EXAMPLE)
        v = msg.get("v", VERSION)
        if v != VERSION or isinstance(v, bool):
            raise ControlError(
                BAD_REQUEST, f"unsupported protocol version {v!r}", hint=f'this daemon speaks "v": {VERSION}'
            )
        cmd = msg.get("cmd")
        if not isinstance(cmd, str) or not cmd:
            raise ControlError(BAD_REQUEST, '"cmd" must be a non-empty string', hint=_EXAMPLE)
        args = msg.get("args", {})
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise ControlError(BAD_REQUEST, '"args" must be an object', hint=_EXAMPLE)
        return cls(rid, cmd, args)


_EXAMPLE = 'send one JSON object per line: {"v": 1, "id": 1, "cmd": "health", "args": {}}'


@dataclass(frozen=True, slots=True)
class Reply:
    id: int | None
    ok: bool
    result: Any = None
    error: ControlError | None = None
    more: bool | None = None
    """None for a plain reply; True for a stream item; False for the end of a stream."""

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _dump(obj: dict[str, Any]) -> bytes:
    # allow_nan=False: NaN/Infinity are not JSON and would break strict readers.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode() + b"\n"


def decode_line(line: bytes) -> dict[str, Any]:
    """One line (without or with its newline) -> a JSON object, or ControlError(bad_request)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ControlError(BAD_REQUEST, "message is not valid UTF-8", hint=_EXAMPLE) from None
    text = text.strip()
    if not text:
        raise ControlError(BAD_REQUEST, "empty message", hint=_EXAMPLE)
    try:
        msg = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ControlError(BAD_REQUEST, f"message is not JSON: {exc}"[:300], hint=_EXAMPLE) from None
    if not isinstance(msg, dict):
        raise ControlError(BAD_REQUEST, f"message must be a JSON object, not {type(msg).__name__}", hint=_EXAMPLE)
    return msg


def request_id(msg: dict[str, Any]) -> int | None:
    """The message's id if it is usable in a reply (an integer), else None."""
    rid = msg.get("id")
    if isinstance(rid, bool) or not isinstance(rid, int):
        return None
    return rid


def decode_request(line: bytes) -> Request:
    return Request.from_message(decode_line(line))


def encode_result(rid: int | None, result: Any, *, more: bool | None = None) -> bytes:
    """A success reply. Raises ValueError/TypeError if ``result`` is not JSON-able."""
    msg: dict[str, Any] = {"id": rid, "ok": True, "result": result}
    if more is not None:
        msg["more"] = more
    return _dump(msg)


def encode_error(rid: int | None, error: OperatorError) -> bytes:
    err: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.hint:
        err["hint"] = error.hint
    return _dump({"id": rid, "ok": False, "error": err})


def decode_reply(line: bytes) -> Reply:
    """A reply line from the daemon; anything malformed becomes ControlError(internal)."""
    try:
        msg = decode_line(line)
    except ControlError as exc:
        raise ControlError(INTERNAL, f"daemon sent a malformed reply: {exc.message}") from None
    rid = request_id(msg)
    ok = msg.get("ok")
    if not isinstance(ok, bool):
        raise ControlError(INTERNAL, 'daemon sent a reply without "ok"')
    more = msg.get("more")
    more = more if isinstance(more, bool) else None
    if ok:
        return Reply(rid, True, msg.get("result"), None, more)
    return Reply(rid, False, None, ControlError.from_dict(msg.get("error")), more)


def finite(value: float) -> float:
    """JSON has no NaN or infinity; handlers round their floats through this."""
    return value if math.isfinite(value) else 0.0


# Argument helpers for handlers: a bad argument is the caller's fault, so it is an error reply
# (bad_request), never an internal error with a traceback in the daemon's log.

_MISSING: Any = object()


def arg(args: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
    """``args[name]`` checked to be of ``kind``; ``default`` when absent (required without one)."""
    if name not in args or args[name] is None:
        if default is _MISSING:
            raise ControlError(BAD_REQUEST, f'missing argument "{name}"')
        return default
    value = args[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        names = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
        raise ControlError(BAD_REQUEST, f'argument "{name}" must be {names}, not {_type_name(value)}')
    return value


def only_args(args: dict[str, Any] | None, allowed: tuple[str, ...], command: str, code: str = INVALID) -> None:
    """Refuse an argument ``command`` does not take (a misspelt key must not be ignored: the
    command would run as if it were not there)."""
    unknown = sorted(set(args or {}) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) or "no arguments"
        raise ControlError(code, f"{command}: unknown argument {unknown[0]!r}", hint=f"{command} takes: {takes}")


def arg_list_of_str(args: dict[str, Any], name: str, default: Any = _MISSING) -> list[str]:
    value = arg(args, name, list, default)
    if not all(isinstance(v, str) for v in value):
        raise ControlError(BAD_REQUEST, f'argument "{name}" must be a list of strings')
    return list(value)


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", float: "a number", list: "a list", dict: "an object"}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return _TYPE_NAMES.get(type(value), type(value).__name__)
