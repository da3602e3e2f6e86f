"""The few exceptions that change how a failure is handled.

- OperatorError: the operator asked for something that cannot be done (unknown tenant,
  duplicate name, bad CIDR). Carries a stable ``code`` for the control protocol and a
  ``hint`` saying what to do instead. The CLI prints it as one line, never a traceback.
- ConfigError: a profile is wrong. Carries every problem found as ``file:line: message``.
- ProtocolError: a peer broke the protocol. Says which side was wrong and the HTTP status
  to answer with (when the client was wrong).
"""

from __future__ import annotations

from dataclasses import dataclass


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

    ``code`` is the stable error name shown to clients in ``X-Arcus-Error`` and counted in
    stats (``upstream_connect``, ``upstream_timeout``, ``resolve_failed``, ``denied``...);
    ``status`` the HTTP status to answer with; ``side`` whose fault it was: "upstream",
    "forbidden" or "internal".
    """

    def __init__(self, message: str, *, code: str, status: int = 502, side: str = "upstream") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.side = side
