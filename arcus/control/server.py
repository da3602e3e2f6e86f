"""The daemon's end of the control socket.

Runs inside the daemon's event loop. Each connection reads request lines one at a time and
answers each before reading the next, so a client sees its replies in order. Nothing a peer
sends can take the server down: bad bytes, bad JSON, unknown commands and handler bugs all
become error replies on a connection that stays usable; only an over-long line (we cannot
find where the next request starts) and a forbidden peer end the connection.

A handler that returns an async iterator streams (see :mod:`arcus.control.protocol`); while
it streams, the connection is watched so that a client closing it, or sending its next
request, ends the stream promptly even if the iterator is silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import logging
import os
import socket
import stat
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from arcus.control import protocol as p
from arcus.errors import ConfigError, OperatorError

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
"""Takes the request's args; returns a JSON-able result, or an AsyncIterator to stream."""

_PEERCRED = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}
_PROBE_TIMEOUT = 1.0
_WRITE_TIMEOUT = 10.0
"""A client that does not read its replies for this long is dropped (bounded buffers)."""
STREAM_SNDBUF = 16384
STREAM_HIGH_WATER = 16384
STREAM_WRITE_TIMEOUT = 2.0
"""A stream's subscriber (``stats.watch``, ``audit.tail``) is bounded tighter than a plain client:
the kernel's send buffer of its socket is shrunk to ``STREAM_SNDBUF`` and ours to
``STREAM_HIGH_WATER``, and once both are full a subscriber that takes nothing for
``STREAM_WRITE_TIMEOUT`` is dropped. A stream's items are made when they can be sent, so a
slow subscriber costs these buffers at most and never holds up anything but its own stream."""
BACKLOG = 1024
"""Connections the kernel queues before we accept them (capped by net.core.somaxconn). asyncio's
default of 100 refused a burst of 300 `ctl health` clients (EAGAIN); the data plane's listeners
use 1024 too."""


class ControlServer:
    def __init__(
        self,
        path: Path,
        handlers: Mapping[str, Handler],
        *,
        log: logging.Logger | None = None,
        allow_uids: Collection[int] | None = None,
    ) -> None:
        """``allow_uids`` overrides who may talk (default: this process' uid and root)."""
        self.path = Path(path)
        self._handlers: dict[str, Handler] = dict(handlers)
        self._handlers.setdefault("help", self._help)
        self._log = log or logging.getLogger("arcus.control")
        self._allow = frozenset(allow_uids) if allow_uids is not None else frozenset({os.getuid(), 0})
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._inode: tuple[int, int] | None = None

    @property
    def serving(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is not None:
            return
        _check_path_length(self.path)
        parent = self.path.parent
        if not parent.exists():
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        await self._clear_stale_socket()
        self._server = await asyncio.start_unix_server(
            self._accept, path=str(self.path), limit=p.MAX_LINE, backlog=BACKLOG
        )
        # Bind then chmod: the window is tiny and the peer check refuses strangers anyway.
        os.chmod(self.path, 0o600)
        st = os.stat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        self._log.info("control socket listening on %s", self.path)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._conns):
            task.cancel()
        if self._conns:
            await asyncio.wait(list(self._conns), timeout=5.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), timeout=5.0)
        self._unlink_if_ours()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- start-up ------------------------------------------------------------------------

    async def _clear_stale_socket(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise OperatorError(
                f"{self.path} exists and is not a socket",
                code=p.EXISTS,
                hint="remove it, or choose another control socket with --socket",
            )
        if await _answers(self.path):
            raise OperatorError(
                f"another arcus daemon is already listening on {self.path}",
                code=p.EXISTS,
                hint="stop it with `arcus ctl shutdown`, or give this one another --socket",
            )
        self._log.info("removing stale control socket %s", self.path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _unlink_if_ours(self) -> None:
        # Another daemon may have replaced the file since (after refusing our socket as
        # stale would be a bug, but a human can rm it); never remove a socket we did not bind.
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if self._inode == (st.st_dev, st.st_ino):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    # -- connections ---------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass
        except (ConnectionError, TimeoutError):
            pass  # the client went away or stopped reading: its business, not a daemon error
        except Exception:
            self._log.exception("control connection failed")
        finally:
            self._conns.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), timeout=1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        uid = _peer_uid(writer)
        if uid is None or uid not in self._allow:
            self._log.warning("control connection from uid %s refused", uid)
            forbidden = p.ControlError(
                p.FORBIDDEN, f"uid {uid} may not control this daemon", hint="run the command as the daemon's user or as root"
            )
            await _send(writer, p.encode_error(None, forbidden))
            return
        pending: bytes | None = None
        line: bytes | None
        while True:
            if pending is not None:
                line, pending = pending, None
            else:
                try:
                    line = await _read_line(reader)
                except asyncio.LimitOverrunError:
                    await _send(writer, _TOO_LARGE)
                    return
                if line is None:
                    return
            if not line.strip():
                continue  # blank lines are harmless keep-alives (`socat` users send them)
            outcome = await self._answer(line, reader, writer)
            if outcome is _CLOSED:
                return
            assert outcome is None or isinstance(outcome, bytes)  # what a stream left behind, or nothing
            pending = outcome

    async def _answer(
        self, line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes | object | None:
        """Answer one request line. Returns what a stream left behind (see :meth:`_stream`)."""
        rid: int | None = None
        try:
            msg = p.decode_line(line)
            rid = p.request_id(msg)
            req = p.Request.from_message(msg)
            handler = self._handlers.get(req.cmd)
            if handler is None:
                raise p.ControlError(
                    p.UNKNOWN_COMMAND, f"unknown command {req.cmd!r}", hint="the `help` command lists them all"
                )
            result = handler(req.args)
            if inspect.isawaitable(result):
                result = await result
        except OperatorError as exc:
            await _send(writer, p.encode_error(rid, exc))
            return None
        except ConfigError as exc:
            await _send(writer, p.encode_error(rid, p.ControlError(p.INVALID, str(exc))))
            return None
        except Exception:
            self._log.exception("control command failed: %.200r", line)
            await _send(writer, _internal(rid))
            return None
        if isinstance(result, AsyncIterator):
            return await self._stream(rid, result, reader, writer)
        await _send(writer, _encode_result(rid, result, self._log))
        return None

    async def _stream(
        self, rid: int | None, items: AsyncIterator[Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes | object | None:
        """Send every item with ``more: true`` until the iterator ends or the client speaks.

        The client ends a stream by closing the connection, or by sending its next request
        (the stream then ends with the end marker and the request is answered). We watch the
        socket meanwhile, because an events feed can be silent for hours and a write is the
        only other way to notice a vanished client. Returns _CLOSED, the line the client sent
        (to be answered next), or None (the stream ended on our side).
        """
        _bound_stream(writer)
        watch = asyncio.create_task(_read_line(reader), name="arcus-control-stream-watch")
        pump = asyncio.create_task(self._pump(rid, items, writer), name="arcus-control-stream-pump")
        try:
            await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
            if not pump.done():  # the client spoke or left first
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
            ended = pump.done() and not pump.cancelled()  # the end marker or an error reply was sent
            if ended and pump.result() is _CLOSED:
                return _CLOSED
            if not watch.done():
                return None  # we ended the stream; the watch is cancelled below, nothing lost
            try:
                line = watch.result()
            except asyncio.LimitOverrunError:
                await _send(writer, _TOO_LARGE)
                return _CLOSED
            if line is None:
                return _CLOSED
            if not ended:
                await _send(writer, p.encode_result(rid, None, more=False))
            return line
        finally:
            if not pump.done():
                # this task was cancelled while waiting (the daemon stops, the client is killed):
                # the read of the next item goes with it, not left to a closed loop
                pump.cancel()
                with contextlib.suppress(BaseException):
                    await pump
            elif not pump.cancelled():
                # looked at, or asyncio prints "Task exception was never retrieved" on the
                # daemon's stderr (a connection error while the stop came)
                pump.exception()
            if not watch.done():
                # readuntil() consumes nothing until it has a whole line: cancelling it loses no bytes.
                watch.cancel()
                with contextlib.suppress(BaseException):
                    await watch
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def _pump(self, rid: int | None, items: AsyncIterator[Any], writer: asyncio.StreamWriter) -> object | None:
        """Write every item of the stream, then its end marker or an error reply: None, or
        _CLOSED when the subscriber stopped reading (dropped) or went away.

        The items the iterator has ready are written one after the other in one turn of the
        event loop (``anext`` of an iterator that does not wait takes none): a task, a wait and a
        drain per item took three turns or more each, and a loop busy with the data plane turns
        slowly (``audit tail -f`` beside 19,700 requests a second was sent 1,300 events a
        second). The transport's buffer is drained only past its high-water mark
        (``STREAM_HIGH_WATER``), and a subscriber that takes nothing for ``STREAM_WRITE_TIMEOUT``
        is dropped, so a slow one still costs these buffers at most."""
        transport = writer.transport
        try:
            while True:
                try:
                    item = await anext(items)
                except StopAsyncIteration:
                    await _send(writer, p.encode_result(rid, None, more=False))
                    return None
                except OperatorError as exc:
                    await _send(writer, p.encode_error(rid, exc))
                    return None
                except Exception:
                    self._log.exception("control stream failed")
                    await _send(writer, _internal(rid))
                    return None
                try:
                    data = p.encode_result(rid, item, more=True)
                except (TypeError, ValueError):
                    self._log.exception("control stream produced an item that is not JSON")
                    await _send(writer, _internal(rid))
                    return None
                if transport.is_closing():
                    return _CLOSED  # the client went away: its watch ends the stream
                writer.write(data)
                if transport.get_write_buffer_size() > STREAM_HIGH_WATER:
                    await asyncio.wait_for(writer.drain(), timeout=STREAM_WRITE_TIMEOUT)
        except TimeoutError:
            self._log.warning("control stream %s: the subscriber stopped reading; dropped", rid)
            return _CLOSED

    async def _help(self, args: dict[str, Any]) -> list[dict[str, str]]:
        return [
            {"cmd": name, "description": p.COMMANDS.get(name, "")}
            for name in sorted(self._handlers)
        ]


_CLOSED = object()
"""The connection is over (client gone, or a line too long to find the next one)."""

_TOO_LARGE = p.encode_error(
    None,
    p.ControlError(p.TOO_LARGE, f"request longer than {p.MAX_LINE} bytes", hint="send one request per line; requests are small"),
)


def _internal(rid: int | None) -> bytes:
    return p.encode_error(
        rid,
        p.ControlError(p.INTERNAL, "the daemon failed to answer this command", hint="its log has the details"),
    )


def _encode_result(rid: int | None, result: Any, log: logging.Logger) -> bytes:
    try:
        return p.encode_result(rid, result)
    except (TypeError, ValueError):
        log.exception("control command returned a result that is not JSON")
        return _internal(rid)


async def _send(writer: asyncio.StreamWriter, data: bytes, timeout: float = _WRITE_TIMEOUT) -> None:
    writer.write(data)
    await asyncio.wait_for(writer.drain(), timeout=timeout)


def _bound_stream(writer: asyncio.StreamWriter) -> None:
    """Tighter buffers for a stream's connection (see ``STREAM_SNDBUF``)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
    writer.transport.set_write_buffer_limits(high=STREAM_HIGH_WATER)


async def _read_line(reader: asyncio.StreamReader) -> bytes | None:
    """The next line, a last line without its newline, or None at end of input.

    Raises LimitOverrunError for a line longer than the reader's limit (MAX_LINE).
    """
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial if exc.partial.strip() else None


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except OSError:
        return None
    _pid, uid, _gid = _PEERCRED.unpack(raw)
    return uid


async def _answers(path: Path) -> bool:
    """Does something accept connections on ``path``? (A stale socket refuses them.)"""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout=_PROBE_TIMEOUT)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except (OSError, TimeoutError) as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        # Cannot tell (permission, full backlog): assume a live daemon rather than steal its socket.
        return True
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True


_SUN_PATH_MAX = 107


def _check_path_length(path: Path) -> None:
    if len(os.fsencode(str(path))) > _SUN_PATH_MAX:
        raise OperatorError(
            f"control socket path is too long for a Unix socket ({len(str(path))} > {_SUN_PATH_MAX} bytes): {path}",
            code=p.INVALID,
            hint="choose a shorter path with --socket or ARCUS_SOCKET",
        )
