"""The CLI's and TUI's end of the control socket.

``ControlClient`` is synchronous on a plain socket (the CLI is short-lived and starts fast);
``AsyncControlClient`` is the same interface for an event loop (the TUI). Both connect on first
use, send one request at a time on one connection, and give every stream its own connection so
that ``call`` stays usable while a ``stream`` is being read.

Failures are told apart because callers act differently on them: DaemonNotRunning (nothing
answers on the socket: the tenant commands fall back to the store, ``ctl`` exits 3), an error
reply (ControlError with the daemon's code), and ControlError("timeout").
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import socket
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

from arcus.control import protocol as p

_NOT_RUNNING_ERRNOS = frozenset({errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR, errno.ENOTSOCK})


class DaemonNotRunning(p.ControlError):
    """Nothing answers on the control socket."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            p.UNAVAILABLE,
            f"arcus is not running: nothing answers on {path}",
            hint="start it with `arcus serve`, or point --socket / ARCUS_SOCKET at the running daemon's socket",
        )
        self.path = path


def _connect_error(path: Path, exc: OSError) -> p.ControlError:
    if isinstance(exc, (FileNotFoundError, ConnectionRefusedError)) or exc.errno in _NOT_RUNNING_ERRNOS:
        return DaemonNotRunning(path)
    if isinstance(exc, PermissionError):
        return p.ControlError(
            p.FORBIDDEN,
            f"permission denied on control socket {path}",
            hint="run the command as the daemon's user or as root",
        )
    if isinstance(exc, TimeoutError):
        return _timeout(path, None)
    return p.ControlError(p.UNAVAILABLE, f"cannot connect to control socket {path}: {exc.strerror or exc}")


def _timeout(path: Path, timeout: float | None) -> p.ControlError:
    within = f" within {timeout:g}s" if timeout is not None else ""
    return p.ControlError(
        p.TIMEOUT,
        f"the daemon at {path} did not answer{within}",
        hint="it may be overloaded or stuck; `arcus ctl health` tells whether it is alive",
    )


def _closed(path: Path) -> p.ControlError:
    return p.ControlError(p.UNAVAILABLE, f"the daemon at {path} closed the connection before replying")


def _too_long(path: Path) -> p.ControlError:
    return p.ControlError(p.TOO_LARGE, f"the daemon at {path} sent a reply longer than {p.MAX_REPLY_LINE} bytes")


def _check_reply(reply: p.Reply, rid: int, path: Path) -> None:
    if reply.error is not None and reply.id is None:
        raise reply.error  # a connection-level error (forbidden, too_large) has no id
    if reply.id != rid:
        raise p.ControlError(p.INTERNAL, f"the daemon at {path} answered request {reply.id}, expected {rid}")


def _stream_mismatch(cmd: str) -> p.ControlError:
    return p.ControlError(p.BAD_REQUEST, f"{cmd!r} is a stream", hint="read it with stream(), not call()")


def _not_a_stream(cmd: str) -> p.ControlError:
    return p.ControlError(p.BAD_REQUEST, f"{cmd!r} is not a stream", hint="read it with call(), not stream()")


class _LineSocket:
    """A blocking Unix socket that reads bounded lines."""

    def __init__(self, path: Path, timeout: float | None) -> None:
        self.path = path
        self._buf = bytearray()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            sock.close()
            raise _connect_error(path, exc) from None
        self._sock = sock

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def send(self, data: bytes, timeout: float | None) -> None:
        try:
            self._sock.sendall(data)
        except TimeoutError:
            raise _timeout(self.path, timeout) from None
        except OSError as exc:
            raise self._said_why() or _closed(self.path) from exc

    def _said_why(self) -> p.ControlError | None:
        """The error a daemon sent before closing on us (forbidden), if it is still readable."""
        try:
            self._sock.settimeout(0.5)
            reply = p.decode_reply(self.readline(0.5))
        except (p.ControlError, OSError):
            return None
        return reply.error

    def readline(self, timeout: float | None) -> bytes:
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[: nl + 1])
                del self._buf[: nl + 1]
                return line
            if len(self._buf) > p.MAX_REPLY_LINE:
                raise _too_long(self.path)
            try:
                chunk = self._sock.recv(262144)
            except TimeoutError:
                raise _timeout(self.path, timeout) from None
            except OSError as exc:
                raise _closed(self.path) from exc
            if not chunk:
                raise _closed(self.path)
            self._buf += chunk

    def close(self) -> None:
        self._sock.close()


class ControlClient:
    """Synchronous client for the CLI. Not thread-safe: one thread per client."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._conn: _LineSocket | None = None
        self._ids = itertools.count(1)

    def call(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        """Send one command and return its result; raises ControlError / DaemonNotRunning."""
        conn = self._connection()
        rid = next(self._ids)
        try:
            conn.send(p.Request(rid, cmd, dict(args or {})).encode(), self.timeout)
            reply = p.decode_reply(conn.readline(self.timeout))
            _check_reply(reply, rid, self.path)
        except BaseException:
            # Timeout, closed, malformed or interrupted: the connection may still hold a reply
            # nobody will read, so the next call starts on a fresh one. (An error *reply*
            # leaves it clean and is raised by unwrap() below.)
            self._drop()
            raise
        if reply.more is not None:
            self._drop()  # unread stream items follow on this connection
            raise _stream_mismatch(cmd)
        return reply.unwrap()

    def stream(self, cmd: str, args: dict[str, Any] | None = None, *, idle_timeout: float | None = None) -> Generator[Any, None, None]:
        """Yield each item of a streaming command until the daemon ends it.

        Connects before returning, so DaemonNotRunning is raised here and not on the first
        ``next()``. Closing the iterator (or leaving a ``for`` loop) closes its connection,
        which is how the daemon learns the stream is no longer wanted. ``idle_timeout``
        bounds the wait for each item (None: wait as long as it takes).
        """
        conn = _LineSocket(self.path, self.timeout)
        rid = next(self._ids)
        try:
            conn.send(p.Request(rid, cmd, dict(args or {})).encode(), self.timeout)
        except BaseException:
            conn.close()
            raise
        return self._items(conn, rid, cmd, idle_timeout)

    def _items(self, conn: _LineSocket, rid: int, cmd: str, idle_timeout: float | None) -> Generator[Any, None, None]:
        try:
            conn.settimeout(idle_timeout)
            while True:
                reply = p.decode_reply(conn.readline(idle_timeout))
                _check_reply(reply, rid, self.path)
                result = reply.unwrap()
                if reply.more is None:
                    raise _not_a_stream(cmd)
                if not reply.more:
                    return
                yield result
        finally:
            conn.close()

    def _connection(self) -> _LineSocket:
        if self._conn is None:
            self._conn = _LineSocket(self.path, self.timeout)
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self._drop()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _AsyncConn:
    def __init__(self, path: Path, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.path = path
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, path: Path, timeout: float | None) -> _AsyncConn:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(path), limit=p.MAX_REPLY_LINE), timeout=timeout
            )
        except TimeoutError:
            raise _timeout(path, timeout) from None
        except OSError as exc:
            raise _connect_error(path, exc) from None
        return cls(path, reader, writer)

    async def send(self, data: bytes, timeout: float | None) -> None:
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), timeout=timeout)
        except TimeoutError:
            raise _timeout(self.path, timeout) from None
        except OSError as exc:
            raise await self._said_why() or _closed(self.path) from exc

    async def _said_why(self) -> p.ControlError | None:
        """The error a daemon sent before closing on us (forbidden), if it is still readable."""
        try:
            reply = p.decode_reply(await self.readline(0.5))
        except p.ControlError:
            return None
        return reply.error

    async def readline(self, timeout: float | None) -> bytes:
        try:
            return await asyncio.wait_for(self.reader.readuntil(b"\n"), timeout=timeout)
        except TimeoutError:
            raise _timeout(self.path, timeout) from None
        except asyncio.IncompleteReadError:
            raise _closed(self.path) from None
        except asyncio.LimitOverrunError:
            raise _too_long(self.path) from None
        except OSError as exc:
            raise _closed(self.path) from exc

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), timeout=1.0)


class AsyncControlClient:
    """The same client for an event loop (the TUI). Safe to share between tasks: calls queue."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._conn: _AsyncConn | None = None
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    async def call(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        async with self._lock:
            if self._conn is None:
                self._conn = await _AsyncConn.open(self.path, self.timeout)
            conn = self._conn
            rid = next(self._ids)
            try:
                await conn.send(p.Request(rid, cmd, dict(args or {})).encode(), self.timeout)
                reply = p.decode_reply(await conn.readline(self.timeout))
                _check_reply(reply, rid, self.path)
            except BaseException:
                # Timeout, closed, malformed or cancelled mid-request: the connection may hold
                # a reply nobody will read; the next call starts clean.
                await self._drop()
                raise
            if reply.more is not None:
                await self._drop()
                raise _stream_mismatch(cmd)
            return reply.unwrap()

    async def stream(
        self, cmd: str, args: dict[str, Any] | None = None, *, idle_timeout: float | None = None
    ) -> AsyncIterator[Any]:
        """Yield each item of a streaming command, on a connection of its own.

        An async generator: ``async for item in client.stream("stats.watch")``. Connection
        errors (DaemonNotRunning) surface on the first iteration. ``aclose()`` or leaving the
        loop closes the connection, which ends the stream in the daemon.
        """
        conn = await _AsyncConn.open(self.path, self.timeout)
        rid = next(self._ids)
        try:
            await conn.send(p.Request(rid, cmd, dict(args or {})).encode(), self.timeout)
            while True:
                reply = p.decode_reply(await conn.readline(idle_timeout))
                _check_reply(reply, rid, self.path)
                result = reply.unwrap()
                if reply.more is None:
                    raise _not_a_stream(cmd)
                if not reply.more:
                    return
                yield result
        finally:
            await conn.close()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def close(self) -> None:
        await self._drop()

    async def __aenter__(self) -> AsyncControlClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def is_daemon_running(path: Path, timeout: float = 1.0) -> bool:
    """True if something accepts connections on the control socket (no request is sent)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError:
        return False
    finally:
        sock.close()
    return True
