"""The few exceptions that change how a failure is handled.

- OperatorError: the operator asked for something that cannot be done (unknown tenant,
  duplicate name, bad CIDR). Carries a stable ``code`` for the control protocol and a
  ``hint`` saying what to do instead. The CLI prints it as one line, never a traceback.
- ConfigError: a profile is wrong. Carries every problem found as ``file:line: message``.
- ProtocolError: a peer broke the protocol. Says which side was wrong and the HTTP status
  to answer with (when the client was wrong).
- EscapeError: a request could not leave the box; carries an ``ErrorCode``.

``ErrorCode`` is the one table of the data plane's error codes: the stable string (stats,
audit, ``X-Arcus-Error``, access log), whose fault it was, the HTTP status and the SOCKS reply
each protocol answers with. Servers never map codes to sides or replies themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Side(StrEnum):
    """Whose fault a failure was (STYLE: errors say whose fault it was)."""

    CLIENT = "client"
    UPSTREAM = "upstream"
    FORBIDDEN = "forbidden"
    INTERNAL = "internal"


# SOCKS5 reply codes (RFC 1928 6); kept here, below ``proto``, so the table can name them.
SOCKS5_GENERAL_FAILURE = 1
SOCKS5_NOT_ALLOWED = 2
SOCKS5_NETWORK_UNREACHABLE = 3
SOCKS5_HOST_UNREACHABLE = 4
SOCKS5_CONNECTION_REFUSED = 5
SOCKS5_TTL_EXPIRED = 6
SOCKS5_COMMAND_NOT_SUPPORTED = 7
SOCKS4_REJECTED = 91  # SOCKS4 has one failure reply for everything we refuse

_C, _U, _F, _I = Side.CLIENT, Side.UPSTREAM, Side.FORBIDDEN, Side.INTERNAL


class ErrorCode(StrEnum):
    """value, side, HTTP status, SOCKS5 reply. The value is a stable contract: never rename one."""

    side: Side
    status: int
    socks5: int

    def __new__(cls, value: str, side: Side, status: int, socks5: int = SOCKS5_GENERAL_FAILURE) -> "ErrorCode":
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.side = side
        obj.status = status
        obj.socks5 = socks5
        return obj

    @property
    def socks4(self) -> int:
        return SOCKS4_REJECTED

    # the client's fault
    BAD_REQUEST = ("bad_request", _C, 400)
    CLIENT_BAD_REQUEST = ("client_bad_request", _C, 400)
    URI_TOO_LONG = ("uri_too_long", _C, 414)
    HEADER_TOO_LARGE = ("header_too_large", _C, 431)
    VERSION_NOT_SUPPORTED = ("version_not_supported", _C, 505)
    NOT_A_PROXY_REQUEST = ("not_a_proxy_request", _C, 400)
    NO_SNI = ("no_sni", _C, 400)
    UNKNOWN_HOST = ("unknown_host", _C, 404)
    MISDIRECTED = ("misdirected", _C, 421)
    UNSUPPORTED = ("unsupported", _C, 501, SOCKS5_COMMAND_NOT_SUPPORTED)
    CLIENT_TIMEOUT = ("client_timeout", _C, 408)
    CLIENT_ABORTED = ("client_aborted", _C, 400)
    TUNNEL_IDLE = ("tunnel_idle", _C, 408)
    CLIENT_TLS = ("client_tls", _C, 400)  # a client refused our certificate or broke TLS (interception, a TLS listener)
    AUTH_REQUIRED = ("auth_required", _C, 407, SOCKS5_NOT_ALLOWED)
    AUTH_THROTTLED = ("auth_throttled", _C, 429)
    RATE_LIMITED = ("rate_limited", _C, 429)
    USER_CONN_LIMIT = ("user_conn_limit", _C, 503)
    TENANT_CONN_LIMIT = ("tenant_conn_limit", _C, 503)
    # refused by the operator's rules
    DENIED = ("denied", _F, 403, SOCKS5_NOT_ALLOWED)
    REDIRECTED = ("redirected", _F, 302)  # a tunnel turns it into DENIED
    TENANT_SUSPENDED = ("tenant_suspended", _F, 403, SOCKS5_NOT_ALLOWED)
    TENANT_LOCKED = ("tenant_locked", _F, 403, SOCKS5_NOT_ALLOWED)
    USER_BLOCKED = ("user_blocked", _F, 403, SOCKS5_NOT_ALLOWED)
    USER_EXPIRED = ("user_expired", _F, 403, SOCKS5_NOT_ALLOWED)
    UNKNOWN_TENANT = ("unknown_tenant", _F, 403, SOCKS5_NOT_ALLOWED)
    ICAP_BLOCKED = ("icap_blocked", _F, 403, SOCKS5_NOT_ALLOWED)  # the ICAP service found a threat (the block page names it)
    ICAP_TOO_LARGE = ("icap_too_large", _F, 403, SOCKS5_NOT_ALLOWED)  # a body beyond the tenant's ICAP bound, refused
    # the destination leads back into this daemon, again and again (arcus.escape.hops): 508 Loop Detected
    LOOP_DETECTED = ("loop_detected", _F, 508, SOCKS5_NOT_ALLOWED)
    # the upstream's (or the network's) fault
    UPSTREAM_CONNECT = ("upstream_connect", _U, 502, SOCKS5_CONNECTION_REFUSED)
    UPSTREAM_TIMEOUT = ("upstream_timeout", _U, 504, SOCKS5_TTL_EXPIRED)
    UPSTREAM_CLOSED = ("upstream_closed", _U, 502)
    UPSTREAM_BAD_RESPONSE = ("upstream_bad_response", _U, 502)
    UPSTREAM_TLS = ("upstream_tls", _U, 502)
    UPSTREAM_PROTOCOL = ("upstream_protocol", _U, 502)
    UPSTREAM_AUTH = ("upstream_auth", _U, 502)  # an upstream proxy refused our credentials
    UPSTREAM_DENIED = ("upstream_denied", _U, 403, SOCKS5_NOT_ALLOWED)  # an upstream proxy refused the destination
    RESOLVE_FAILED = ("resolve_failed", _U, 502, SOCKS5_HOST_UNREACHABLE)
    RESOLVE_TIMEOUT = ("resolve_timeout", _U, 502, SOCKS5_HOST_UNREACHABLE)  # the resolver, not the origin, timed out
    ICAP_FAILED = ("icap_failed", _U, 503)  # no ICAP server answered, and the tenant fails closed
    # ours
    SERVER_BUSY = ("server_busy", _I, 503)
    BOX_CONN_LIMIT = ("box_conn_limit", _I, 503)
    INTERNAL = ("internal", _I, 500)

    @classmethod
    def for_client_status(cls, status: int) -> "ErrorCode":
        """The code of a client protocol error answered with ``status`` (a ProtocolError's hint)."""
        return _CLIENT_BY_STATUS.get(status, ErrorCode.BAD_REQUEST)


_CLIENT_BY_STATUS = {
    414: ErrorCode.URI_TOO_LONG,
    431: ErrorCode.HEADER_TOO_LARGE,
    505: ErrorCode.VERSION_NOT_SUPPORTED,
}


class ArcusError(Exception):
    """Base of Arcus' own errors."""


class OperatorError(ArcusError):
    def __init__(self, message: str, *, code: str = "invalid", hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.hint = hint


class NotFound(OperatorError):
    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, code="not_found", hint=hint)


class AlreadyExists(OperatorError):
    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, code="exists", hint=hint)


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}"


class ConfigError(ArcusError):
    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class ProtocolError(ArcusError):
    """A peer sent something we cannot accept.

    ``side`` is "client" or "upstream"; ``status`` is the HTTP status to answer the client
    with (400 for a bad request, 502 for a bad upstream response).
    """

    def __init__(self, message: str, *, side: str = "client", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.side = side
        self.status = status


class EscapeError(ArcusError):
    """A request could not leave the box (or was refused on the way out).

    ``code`` (an ``ErrorCode``) says everything a server needs: the HTTP status, whose fault it
    was, the SOCKS reply. ``hop``: the escaper that could not reach its own next hop (an
    upstream proxy down, refusing our TLS or credentials) as opposed to the destination failing
    behind it; a pool (route_select) counts only these against its member. ``socks5``: a more
    precise SOCKS5 reply than the code's (a network or host unreachable, from the errno).
    ``rule``: the rule that refused, for a refusal the escaper decided itself (its egress guard:
    ``builtin:special-destination``), reported as a policy rule is.
    """

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | str,
        hop: str | None = None,
        socks5: int | None = None,
        rule: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = ErrorCode(code)  # type: ignore[call-arg]  # a lookup by value: unknown values raise
        self.hop = hop
        self.socks5 = socks5
        self.rule = rule

    @property
    def status(self) -> int:
        return self.code.status

    @property
    def side(self) -> Side:
        return self.code.side


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request or a tunnel is not served, protocol-neutral: each server answers it in its
    own terms (an HTTP status, a SOCKS reply, a TLS alert, a close).

    ``status`` is the HTTP status when it differs from the code's own (0: the code's)."""

    code: ErrorCode
    message: str
    rule: str | None = None  # the policy rule that refused
    retry_after: float = 0.0
    realm: bytes = b""  # for 407: the Proxy-Authenticate value
    redirect_to: str | None = None  # for a policy redirect (302)
    socks5: int | None = None  # a SOCKS5 reply more precise than the code's
    http_status: int = 0

    @property
    def status(self) -> int:
        return self.http_status or self.code.status

    @property
    def side(self) -> Side:
        return self.code.side

    @property
    def socks5_reply(self) -> int:
        return self.socks5 or self.code.socks5

    @classmethod
    def of(cls, exc: EscapeError) -> "Refusal":
        return cls(exc.code, exc.message, rule=exc.rule, socks5=exc.socks5)
