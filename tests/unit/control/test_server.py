"""A real ControlServer on a Unix socket in a temp dir, driven by the real clients and raw bytes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from arcus.control import protocol as p
from arcus.control.client import AsyncControlClient, ControlClient, DaemonNotRunning, is_daemon_running
from arcus.control.server import Handler
from arcus.errors import ConfigError, ConfigIssue, NotFound, OperatorError
from arcus.testing.control import ServerThread


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Short path: AF_UNIX paths are limited to 107 bytes and pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="arcus-ctl-") as d:
        yield Path(d)


@pytest.fixture
def path(sock_dir: Path) -> Path:
    return sock_dir / "run" / "arcus.sock"


class Events:
    def __init__(self) -> None:
        self.stream_closed = threading.Event()
        self.stream_started = threading.Event()
        self.calls: list[tuple[str, dict[str, Any]]] = []


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def handlers(events: Events) -> dict[str, Handler]:
    async def health(args: dict[str, Any]) -> Any:
        events.calls.append(("health", args))
        return {"status": "ok", "pid": os.getpid()}

    async def echo(args: dict[str, Any]) -> Any:
        return args

    async def missing(args: dict[str, Any]) -> Any:
        raise NotFound("tenant 'ghost' does not exist", hint="see `arcus tenant list`")

    async def typed(args: dict[str, Any]) -> Any:
        return {"id": p.arg(args, "id", int)}

    async def boom(args: dict[str, Any]) -> Any:
        raise ZeroDivisionError("handler bug")

    async def not_json(args: dict[str, Any]) -> Any:
        return {"when": object()}

    async def bad_profile(args: dict[str, Any]) -> Any:
        raise ConfigError([ConfigIssue("edge.yaml", 4, "unknown key 'lisen'"), ConfigIssue("edge.yaml", 9, "bad port")])

    async def slow(args: dict[str, Any]) -> Any:
        await asyncio.sleep(float(args.get("s", 5)))  # a slow handler: the behaviour under test
        return "late"

    async def count(args: dict[str, Any]) -> AsyncIterator[Any]:
        for i in range(int(args.get("n", 3))):
            yield {"i": i}

    async def forever(args: dict[str, Any]) -> AsyncIterator[Any]:
        try:
            i = 0
            while True:
                yield {"i": i}
                i += 1
                await asyncio.sleep(0.01)  # a stream that never ends, paced
        finally:
            events.stream_closed.set()

    async def silent(args: dict[str, Any]) -> AsyncIterator[Any]:
        try:
            events.stream_started.set()
            await asyncio.sleep(60)  # a stream that says nothing: the behaviour under test
            yield "never"
        finally:
            events.stream_closed.set()

    async def breaks(args: dict[str, Any]) -> AsyncIterator[Any]:
        yield 1
        raise NotFound("the thing went away")

    async def burst(args: dict[str, Any]) -> AsyncIterator[Any]:
        # n items ready at once, then how many turns the event loop took meanwhile
        turns = 0
        done = False

        async def turn() -> None:
            nonlocal turns
            while not done:
                turns += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(turn(), name="test-loop-turns")
        for i in range(int(args.get("n", 3))):
            yield {"i": i}
        done = True
        await ticker
        yield {"turns": turns}

    async def returns_stream(args: dict[str, Any]) -> Any:
        # A plain async handler that returns an async iterator (the documented Handler shape).
        return count(args)

    return {
        "health": health, "echo": echo, "missing": missing, "typed": typed, "boom": boom,
        "not_json": not_json, "bad_profile": bad_profile, "slow": slow, "count": count,
        "forever": forever, "silent": silent, "breaks": breaks, "returns_stream": returns_stream, "burst": burst,
    }


@pytest.fixture
def daemon(path: Path, handlers: dict[str, Handler]) -> Iterator[ServerThread]:
    with ServerThread(path, handlers) as d:
        yield d


class Raw:
    """A raw client socket for sending what no well-behaved client would."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(str(path))
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def at_eof(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True  # closed while our unread bytes were still in its buffer

    def close(self) -> None:
        self.sock.close()


# -- round trips ------------------------------------------------------------------------


def test_round_trip(daemon: ServerThread, path: Path) -> None:
    with ControlClient(path) as client:
        assert client.call("health") == {"status": "ok", "pid": os.getpid()}
        assert client.call("echo", {"name": "acme", "sources": ["10.0.0.0/8"]}) == {
            "name": "acme",
            "sources": ["10.0.0.0/8"],
        }


def test_replies_carry_the_request_id(daemon: ServerThread, path: Path) -> None:
    raw = Raw(path)
    raw.send(b'{"v":1,"id":41,"cmd":"echo","args":{"a":1}}\n{"v":1,"id":42,"cmd":"health"}\n')
    assert raw.reply() == {"id": 41, "ok": True, "result": {"a": 1}}
    assert raw.reply()["id"] == 42
    raw.close()


def test_many_calls_on_one_connection(daemon: ServerThread, path: Path, events: Events) -> None:
    with ControlClient(path) as client:
        for i in range(50):
            assert client.call("echo", {"i": i}) == {"i": i}


def test_help_lists_registered_commands_with_descriptions(daemon: ServerThread, path: Path) -> None:
    with ControlClient(path) as client:
        listing = client.call("help")
    by_cmd = {row["cmd"]: row["description"] for row in listing}
    assert by_cmd["health"] == p.COMMANDS["health"]
    assert "help" in by_cmd and "echo" in by_cmd
    assert "tenant.add" not in by_cmd  # only what this daemon actually answers


# -- error replies ----------------------------------------------------------------------


def test_operator_error_becomes_error_reply_and_connection_stays(daemon: ServerThread, path: Path) -> None:
    with ControlClient(path) as client:
        with pytest.raises(p.ControlError) as info:
            client.call("missing")
        assert (info.value.code, info.value.message, info.value.hint) == (
            "not_found",
            "tenant 'ghost' does not exist",
            "see `arcus tenant list`",
        )
        assert client.call("echo", {"after": True}) == {"after": True}


def test_unknown_command(daemon: ServerThread, path: Path) -> None:
    with ControlClient(path) as client:
        with pytest.raises(p.ControlError) as info:
            client.call("tenant.frobnicate")
        assert info.value.code == p.UNKNOWN_COMMAND
        assert "tenant.frobnicate" in info.value.message
        assert "help" in (info.value.hint or "")
        assert client.call("echo", {}) == {}


def test_bad_argument_is_bad_request(daemon: ServerThread, path: Path) -> None:
    with ControlClient(path) as client:
        with pytest.raises(p.ControlError) as info:
            client.call("typed", {"id": "seven"})
        assert info.value.code == p.BAD_REQUEST
        assert client.call("typed", {"id": 7}) == {"id": 7}


def test_handler_bug_is_internal_logged_and_survivable(
    daemon: ServerThread, path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="arcus.control")
    with ControlClient(path) as client:
        for cmd in ("boom", "not_json"):
            with pytest.raises(p.ControlError) as info:
                client.call(cmd)
            assert info.value.code == p.INTERNAL
            assert "handler bug" not in info.value.message  # internals stay in the daemon's log
        assert client.call("health")["status"] == "ok"
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)


def test_config_error_is_invalid_with_file_line_messages(daemon: ServerThread, path: Path) -> None:
    with ControlClient(path) as client, pytest.raises(p.ControlError) as info:
        client.call("bad_profile")
    assert info.value.code == p.INVALID
    assert info.value.message.splitlines() == ["edge.yaml:4: unknown key 'lisen'", "edge.yaml:9: bad port"]


@pytest.mark.parametrize(
    ("data", "rid"),
    [
        (b"\xff\xfe\xfd garbage\n", None),
        (b"\x00\x01\x02\n", None),
        (b"{not json\n", None),
        (b"[1,2,3]\n", None),
        (b"42\n", None),
        (b'{"v":1,"cmd":"health"}\n', None),
        (b'{"v":1,"id":5}\n', 5),
        (b'{"v":9,"id":6,"cmd":"health"}\n', 6),
        (b'{"v":1,"id":7,"cmd":"health","args":"x"}\n', 7),
    ],
)
def test_garbage_gets_bad_request_and_connection_stays(daemon: ServerThread, path: Path, data: bytes,
                                                       rid: int | None) -> None:
    raw = Raw(path)
    raw.send(data)
    reply = raw.reply()
    assert reply["id"] == rid and reply["ok"] is False
    assert reply["error"]["code"] == p.BAD_REQUEST
    raw.send(b'{"v":1,"id":99,"cmd":"health"}\n')
    assert raw.reply()["ok"] is True
    raw.close()


def test_blank_lines_are_ignored(daemon: ServerThread, path: Path) -> None:
    raw = Raw(path)
    raw.send(b"\n\r\n   \n" + b'{"v":1,"id":1,"cmd":"health"}\n')
    assert raw.reply()["id"] == 1
    raw.close()


def test_last_request_without_newline_is_answered(daemon: ServerThread, path: Path) -> None:
    raw = Raw(path)
    raw.send(b'{"v":1,"id":3,"cmd":"health"}')
    raw.sock.shutdown(socket.SHUT_WR)
    assert raw.reply()["id"] == 3
    raw.close()


def test_huge_line_gets_too_large_then_close(daemon: ServerThread, path: Path) -> None:
    raw = Raw(path)
    chunk = b"x" * 65536
    try:
        for _ in range(p.MAX_LINE // len(chunk) + 4):
            raw.send(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may have replied and closed before we finished sending
    reply = raw.reply()
    assert reply["ok"] is False and reply["error"]["code"] == p.TOO_LARGE
    assert raw.at_eof()
    raw.close()
    with ControlClient(path) as client:  # the server lives on
        assert client.call("health")["status"] == "ok"


def test_line_just_under_the_limit_is_read(daemon: ServerThread, path: Path) -> None:
    head = b'{"v":1,"id":1,"cmd":"echo","args":{"pad":"'
    tail = b'"}}\n'
    pad = b"y" * (p.MAX_LINE - len(head) - len(tail))
    raw = Raw(path)
    raw.send(head + pad + tail)
    reply = raw.reply()
    assert reply["ok"] is True and len(reply["result"]["pad"]) == len(pad)
    raw.close()


def test_client_vanishing_mid_request_does_not_hurt(daemon: ServerThread, path: Path) -> None:
    for _ in range(20):
        raw = Raw(path)
        raw.send(b'{"v":1,"id":1,"cmd":"slow","args":{"s":0.05}}\n{"v":1,"id":2,')
        raw.close()
    with ControlClient(path) as client:
        assert client.call("health")["status"] == "ok"


# -- the socket file --------------------------------------------------------------------


def test_socket_mode_0600_in_a_0700_dir(daemon: ServerThread, path: Path) -> None:
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


def test_stale_socket_is_replaced(path: Path, handlers: dict[str, Handler]) -> None:
    path.parent.mkdir(mode=0o700)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: what a kill -9 leaves behind
    assert path.exists() and not is_daemon_running(path)
    with pytest.raises(DaemonNotRunning):
        ControlClient(path).call("health")
    with ServerThread(path, handlers), ControlClient(path) as client:
        assert client.call("health")["status"] == "ok"


def test_second_server_refused_while_first_alive(daemon: ServerThread, path: Path,
                                                 handlers: dict[str, Handler]) -> None:
    second = ServerThread(path, handlers)
    second._thread.start()
    try:
        with pytest.raises(OperatorError) as info:
            second.run(second.server.start())
        assert info.value.code == "exists"
        assert str(path) in info.value.message
        assert "arcus ctl shutdown" in (info.value.hint or "") and "--socket" in (info.value.hint or "")
    finally:
        second.__exit__(None, None, None)
    with ControlClient(path) as client:  # the first one still owns and serves its socket
        assert client.call("health")["status"] == "ok"
    assert path.exists()


def test_regular_file_at_socket_path_is_not_removed(path: Path, handlers: dict[str, Handler]) -> None:
    path.parent.mkdir(mode=0o700)
    path.write_text("precious")
    server = ServerThread(path, handlers)
    server._thread.start()
    try:
        with pytest.raises(OperatorError) as info:
            server.run(server.server.start())
        assert info.value.code == "exists" and "not a socket" in info.value.message
    finally:
        server.__exit__(None, None, None)
    assert path.read_text() == "precious"


def test_too_long_path_is_refused(sock_dir: Path, handlers: dict[str, Handler]) -> None:
    server = ServerThread(sock_dir / ("x" * 120) / "arcus.sock", handlers)
    server._thread.start()
    try:
        with pytest.raises(OperatorError) as info:
            server.run(server.server.start())
        assert "too long" in info.value.message and "--socket" in (info.value.hint or "")
    finally:
        server.__exit__(None, None, None)


def test_close_unlinks_and_drops_idle_clients(path: Path, handlers: dict[str, Handler]) -> None:
    with ServerThread(path, handlers) as d:
        idle = Raw(path)
        client = ControlClient(path)
        assert client.call("health")["status"] == "ok"
        started = time.monotonic()
        d.run(d.server.close())
        assert time.monotonic() - started < 3
        assert not path.exists()
        assert not is_daemon_running(path)
        assert idle.at_eof()
        idle.close()
        with pytest.raises(p.ControlError) as info:
            client.call("health")  # its connection was closed by the daemon
        assert info.value.code == p.UNAVAILABLE
        with pytest.raises(DaemonNotRunning):
            client.call("health")  # and reconnecting finds no daemon
        client.close()


def test_close_does_not_remove_a_socket_another_server_bound(path: Path, handlers: dict[str, Handler]) -> None:
    with ServerThread(path, handlers) as first:
        os.unlink(path)  # someone removed our socket by hand and started another daemon
        with ServerThread(path, handlers):
            first.run(first.server.close())
            assert path.exists() and is_daemon_running(path)


# -- peers ------------------------------------------------------------------------------


def test_forbidden_peer_gets_one_error_and_close(path: Path, handlers: dict[str, Handler], events: Events) -> None:
    with ServerThread(path, handlers, allow_uids={os.getuid() + 4242}):
        with ControlClient(path) as client, pytest.raises(p.ControlError) as info:
            client.call("health")
        assert info.value.code == p.FORBIDDEN
        assert str(os.getuid()) in info.value.message
        raw = Raw(path)  # told without asking, before any request is read
        assert raw.reply() == {
            "id": None,
            "ok": False,
            "error": {
                "code": "forbidden",
                "message": f"uid {os.getuid()} may not control this daemon",
                "hint": "run the command as the daemon's user or as root",
            },
        }
        assert raw.at_eof()
        raw.close()
    assert events.calls == []  # the handler never ran


# -- client failures --------------------------------------------------------------------


def test_no_socket_is_daemon_not_running(path: Path) -> None:
    with pytest.raises(DaemonNotRunning) as info:
        ControlClient(path).call("health")
    assert info.value.code == p.UNAVAILABLE
    assert str(path) in info.value.message and "not running" in info.value.message
    assert "arcus serve" in (info.value.hint or "")
    assert not is_daemon_running(path)


def test_timeout(daemon: ServerThread, path: Path) -> None:
    with ControlClient(path, timeout=0.2) as client:
        started = time.monotonic()
        with pytest.raises(p.ControlError) as info:
            client.call("slow", {"s": 3})
        assert info.value.code == p.TIMEOUT
        assert time.monotonic() - started < 2
        assert client.call("health")["status"] == "ok"  # a fresh connection, no stale reply


# -- streams ----------------------------------------------------------------------------


def test_stream_until_the_daemon_ends_it(daemon: ServerThread, path: Path) -> None:
    with ControlClient(path) as client:
        assert list(client.stream("count", {"n": 4})) == [{"i": i} for i in range(4)]
        assert list(client.stream("returns_stream", {"n": 2})) == [{"i": 0}, {"i": 1}]
        assert list(client.stream("count", {"n": 0})) == []


def test_stream_items_that_are_ready_go_out_in_one_turn_of_the_loop(daemon: ServerThread, path: Path) -> None:
    """Items the stream has ready are written one after the other, not one per turn of the event
    loop: each took a task, a wait and a drain, three turns or more, and a loop busy with 50
    proxied connections turns slowly, so `audit tail -f` was sent 1,300 of the 19,700 events a
    second it had to show and told it skipped the rest."""
    with ControlClient(path) as client:
        items = list(client.stream("burst", {"n": 200}))
    assert items[:-1] == [{"i": i} for i in range(200)]
    assert items[-1]["turns"] < 20, items[-1]  # 200 items: a few turns, not 600


def test_stream_wire_format(daemon: ServerThread, path: Path) -> None:
    raw = Raw(path)
    raw.send(b'{"v":1,"id":8,"cmd":"count","args":{"n":2}}\n')
    assert [raw.reply() for _ in range(3)] == [
        {"id": 8, "ok": True, "result": {"i": 0}, "more": True},
        {"id": 8, "ok": True, "result": {"i": 1}, "more": True},
        {"id": 8, "ok": True, "result": None, "more": False},
    ]
    raw.send(b'{"v":1,"id":9,"cmd":"health"}\n')  # the connection serves requests again after
    assert raw.reply()["id"] == 9
    raw.close()


def test_client_closing_ends_the_stream(daemon: ServerThread, path: Path, events: Events) -> None:
    with ControlClient(path) as client:
        items = client.stream("forever")
        got = [next(items) for _ in range(3)]
        assert got == [{"i": 0}, {"i": 1}, {"i": 2}]
        items.close()  # type: ignore[attr-defined]
        assert events.stream_closed.wait(5)
        assert client.call("health")["status"] == "ok"  # call() was never blocked by the stream


def test_client_closing_ends_a_silent_stream(daemon: ServerThread, path: Path, events: Events) -> None:
    raw = Raw(path)
    raw.send(b'{"v":1,"id":1,"cmd":"silent"}\n')
    assert events.stream_started.wait(5)
    raw.close()
    assert events.stream_closed.wait(5)


def test_stream_error_ends_the_stream_with_an_error(daemon: ServerThread, path: Path) -> None:
    with ControlClient(path) as client:
        items = client.stream("breaks")
        assert next(items) == 1
        with pytest.raises(p.ControlError) as info:
            next(items)
        assert info.value.code == p.NOT_FOUND


def test_call_on_a_stream_and_stream_on_a_call_are_refused_clearly(daemon: ServerThread, path: Path) -> None:
    with ControlClient(path) as client:
        with pytest.raises(p.ControlError, match="is a stream"):
            client.call("count")
        with pytest.raises(p.ControlError, match="is not a stream"):
            list(client.stream("health"))
        assert client.call("health")["status"] == "ok"


def test_stream_raises_daemon_not_running_before_iterating(path: Path) -> None:
    with pytest.raises(DaemonNotRunning):
        ControlClient(path).stream("forever")


# -- the async client -------------------------------------------------------------------


def test_async_client(daemon: ServerThread, path: Path) -> None:
    async def scenario() -> None:
        async with AsyncControlClient(path) as client:
            assert (await client.call("health"))["status"] == "ok"
            with pytest.raises(p.ControlError) as info:
                await client.call("missing")
            assert info.value.code == p.NOT_FOUND
            results = await asyncio.gather(*(client.call("echo", {"i": i}) for i in range(20)))
            assert results == [{"i": i} for i in range(20)]
            assert [x async for x in client.stream("count", {"n": 3})] == [{"i": 0}, {"i": 1}, {"i": 2}]
            with pytest.raises(p.ControlError) as info:
                await AsyncControlClient(path, timeout=0.2).call("slow", {"s": 3})
            assert info.value.code == p.TIMEOUT
            assert (await client.call("health"))["status"] == "ok"

    asyncio.run(scenario())


def test_async_client_stream_can_be_abandoned(daemon: ServerThread, path: Path, events: Events) -> None:
    async def scenario() -> None:
        client = AsyncControlClient(path)
        stream = client.stream("forever")
        assert await anext(stream) == {"i": 0}
        await stream.aclose()  # type: ignore[attr-defined]
        await client.close()

    asyncio.run(scenario())
    assert events.stream_closed.wait(5)


def test_async_client_daemon_not_running(path: Path) -> None:
    async def scenario() -> None:
        with pytest.raises(DaemonNotRunning):
            await AsyncControlClient(path).call("health")

    asyncio.run(scenario())


def test_next_request_ends_a_stream_and_is_answered(daemon: ServerThread, path: Path, events: Events) -> None:
    raw = Raw(path)
    raw.send(b'{"v":1,"id":1,"cmd":"silent"}\n')
    assert events.stream_started.wait(5)
    raw.send(b'{"v":1,"id":2,"cmd":"health"}\n')
    assert raw.reply() == {"id": 1, "ok": True, "result": None, "more": False}
    assert raw.reply()["id"] == 2
    assert events.stream_closed.wait(5)
    raw.close()


def test_stream_item_that_is_not_json_ends_the_stream_as_internal(path: Path) -> None:
    async def bad(args: dict[str, Any]) -> AsyncIterator[Any]:
        yield 1
        yield object()
        yield 3

    with ServerThread(path, {"bad": bad}), ControlClient(path) as client:
        items = client.stream("bad")
        assert next(items) == 1
        with pytest.raises(p.ControlError) as info:
            next(items)
        assert info.value.code == p.INTERNAL
        assert client.call("help")
