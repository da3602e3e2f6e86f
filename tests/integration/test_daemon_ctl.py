"""`arcus ctl` as an operator drives it: the real CLI against the real daemon, real curl and raw
sockets through the proxy, and raw bytes on the control socket."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from arcus.config import profile_text
from arcus.control.client import ControlClient, DaemonNotRunning
from arcus.testing.daemon import DaemonProcess, render_profile
from arcus.testing.privatebox import PrivateBox
from arcus.testing.wait import wait_until
from tests.conftest import IN_CI, require_program
from tests.integration.conftest import run_curl

pytestmark = pytest.mark.integration


def open_tunnel(proxy: str, target: str, timeout: float = 5.0) -> socket.socket:
    """A raw CONNECT through the proxy, established and left open."""
    host, port = proxy.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = s.recv(4096)
        assert data, head
        head += data
    assert head.startswith(b"HTTP/1.1 200 "), head
    return s


def recv_until(s: socket.socket, marker: bytes, limit: int = 1 << 20) -> bytes:
    out = b""
    while marker not in out and len(out) < limit:
        data = s.recv(65536)
        if not data:
            break
        out += data
    return out


# ---------------------------------------------------------------------------------- commands


def test_health_stats_conns_reload_with_and_without_json(curl, daemon, origin):
    assert run_curl(curl, "-x", f"http://{daemon.proxy}", origin.url("/small")).returncode == 0

    r = daemon.arcus("ctl", "health", "--json")
    assert r.returncode == 0, r.stderr
    health = json.loads(r.stdout)
    assert health["status"] == "ok"
    assert health["pid"] == daemon.proc.pid
    assert health["generation"] == 1
    assert health["profile"] == str(daemon.profile_path)
    assert health["store"] == str(daemon.data_dir / "arcus.db")
    assert health["servers"] == [
        {"name": "http", "type": "http_proxy", "escaper": "direct", "listen": [daemon.proxy]}
    ]
    r = daemon.arcus("ctl", "health")
    assert r.returncode == 0, r.stderr
    assert f"is running: pid {daemon.proc.pid}" in r.stdout
    assert daemon.proxy in r.stdout and "http_proxy" in r.stdout

    r = daemon.arcus("ctl", "stats", "--json")
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    server = stats["servers"]["http"]
    assert server["requests"] == 1 and server["conns_total"] == 1 and server["conns_active"] == 0
    assert server["bytes_down"] == 100
    assert server["errors"] == {}
    assert stats["tenants"]["default"]["requests"] == 1
    assert stats["generation"] == 1
    r = daemon.arcus("ctl", "stats")
    assert r.returncode == 0, r.stderr
    for needle in ("servers", "tenants", "http", "default", "requests", "100 B"):
        assert needle in r.stdout

    r = daemon.arcus("ctl", "conns", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []
    r = daemon.arcus("ctl", "conns")
    assert (r.returncode, r.stdout) == (0, "no live connections\n")

    r = daemon.arcus("ctl", "reload", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"generation": 2}
    r = daemon.arcus("ctl", "reload")
    assert (r.returncode, r.stdout) == (0, "reloaded: now serving generation 3\n")
    assert daemon.ctl("health")["generation"] == 3


def test_conns_lists_a_live_tunnel_and_kill_ends_it(daemon, origin):
    assert daemon.arcus("tenant", "add", "acme", "--source", "127.0.0.0/8").returncode == 0
    target = f"127.0.0.1:{origin.port}"
    tunnel = open_tunnel(daemon.proxy, target)
    bystander = open_tunnel(daemon.proxy, target)
    try:
        tunnel.sendall(b"GET /small HTTP/1.1\r\nHost: origin\r\n\r\n")
        assert recv_until(tunnel, b"x" * 100).endswith(b"x" * 100)
        client = "127.0.0.1:%d" % tunnel.getsockname()[1]

        r = daemon.arcus("ctl", "conns", "--json")
        assert r.returncode == 0, r.stderr
        conns = {c["client"]: c for c in json.loads(r.stdout)}
        assert set(conns) == {client, "127.0.0.1:%d" % bystander.getsockname()[1]}
        mine = conns[client]
        assert mine["tenant"] == "acme"
        assert mine["target"] == target
        assert mine["server"] == "http"
        assert mine["state"] == "tunnel"
        assert mine["bytes_up"] > 0 and mine["bytes_down"] > 100
        assert mine["age"] >= 0
        r = daemon.arcus("ctl", "conns")
        assert r.returncode == 0, r.stderr
        assert "2 live connections" in r.stdout
        assert client in r.stdout and target in r.stdout and "acme" in r.stdout and "tunnel" in r.stdout

        r = daemon.arcus("ctl", "kill", str(mine["id"]))
        assert (r.returncode, r.stdout) == (0, f"killed connection {mine['id']}\n"), r.stderr
        tunnel.settimeout(5)
        assert tunnel.recv(1) == b""  # EOF: the proxy ended it

        remaining = daemon.ctl("conns")
        assert [c["client"] for c in remaining] == ["127.0.0.1:%d" % bystander.getsockname()[1]]
        assert daemon.ctl("stats")["tenants"]["acme"]["conns_active"] == 1
        # the other tunnel still works
        bystander.sendall(b"GET /small HTTP/1.1\r\nHost: origin\r\n\r\n")
        assert recv_until(bystander, b"x" * 100).endswith(b"x" * 100)

        r = daemon.arcus("ctl", "kill", str(remaining[0]["id"]), "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == {"killed": remaining[0]["id"]}
        bystander.settimeout(5)
        assert bystander.recv(1) == b""
        wait_until(lambda: daemon.ctl("conns") == [], what="no live connection")
    finally:
        tunnel.close()
        bystander.close()


def test_kill_of_an_unknown_id_fails_with_a_hint(daemon):
    r = daemon.arcus("ctl", "kill", "4242")
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.splitlines() == ["error: no live connection 4242", "hint: see `arcus ctl conns`"]
    r = daemon.arcus("ctl", "kill", "abc")
    assert r.returncode == 2  # usage error from the argument parser
    assert "Traceback" not in r.stderr


def test_commands_without_a_daemon_exit_3_saying_not_running(tmp_path):
    d = DaemonProcess(tmp_path / "arcus")  # never started
    r = d.arcus("ctl", "health")
    assert r.returncode == 3
    assert r.stdout == ""
    assert "not running" in r.stderr and str(d.socket) in r.stderr
    assert r.stderr.startswith("error: ")
    assert "Traceback" not in r.stderr
    r = d.arcus("ctl", "health", "--json")
    assert r.returncode == 3
    out = json.loads(r.stdout)
    assert (out["status"], out["socket"], out["error"]["code"]) == ("not_running", str(d.socket), "unavailable")
    r = d.arcus("ctl", "stats", "--json")
    assert r.returncode == 3
    assert json.loads(r.stdout)["error"]["message"] == f"arcus is not running: nothing answers on {d.socket}"
    commands = [("stats",), ("conns",), ("reload",), ("kill", "1"), ("shutdown",), ("shutdown", "--graceful")]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda args: d.arcus("ctl", *args), commands))
    for args, r in zip(commands, results):
        assert r.returncode == 3, (args, r.stderr)
        assert "not running" in r.stderr and "Traceback" not in r.stderr


def test_socket_option_and_environment_variable(daemon, tmp_path):
    env = dict(daemon.env, ARCUS_SOCKET=str(tmp_path / "nothing.sock"))
    base = daemon.command("ctl", "health", "--json")
    r = subprocess.run(base, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 3  # ARCUS_SOCKET is where it looks
    r = subprocess.run([*base, "--socket", str(daemon.socket)], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr  # --socket wins over the environment
    assert json.loads(r.stdout)["pid"] == daemon.proc.pid
    env["ARCUS_SOCKET"] = str(daemon.socket)
    r = subprocess.run(base, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pid"] == daemon.proc.pid


def test_control_socket_is_private(daemon):
    st = os.lstat(daemon.socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.getuid()


def _python_for(user_args: list[str]) -> str | None:
    """An interpreter the other user can run (ours may live under a private home)."""
    for candidate in (os.path.realpath(sys.executable), "/usr/bin/python3"):
        if not os.path.exists(candidate):
            continue
        probe = subprocess.run([*user_args, candidate, "-c", "print(1)"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return candidate
    return None


PEER_CLIENT = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print(json.dumps({"connect": exc.errno}))
    raise SystemExit(0)
try:
    s.sendall(b'{"v":1,"id":1,"cmd":"health"}\n')
except BrokenPipeError:
    pass  # the daemon may refuse us before we have written: its reply is still there to read
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(json.dumps({"replies": [json.loads(l) for l in data.splitlines() if l.strip()]}))
"""


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a client as another uid")
def test_a_peer_with_another_uid_is_refused(tmp_path):
    setpriv = require_program("setpriv")  # util-linux: on every Debian system
    as_nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    python = _python_for(as_nobody)
    if python is None:
        _busy("no interpreter the nobody user can run (the peer check is also covered by tests/unit/control/test_server.py)")
    # /tmp, not tmp_path: the other uid must be able to reach the socket's directory
    workdir = Path(tempfile.mkdtemp(prefix="arcus-peer-", dir="/tmp"))
    try:
        os.chmod(workdir, 0o755)
        with DaemonProcess(workdir) as d:
            r = subprocess.run([*as_nobody, python, "-c", PEER_CLIENT, str(d.socket)], capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stderr
            assert "connect" in json.loads(r.stdout)  # the 0700 directory and 0600 socket stop it first

            # An operator loosens the modes: the uid check still refuses.
            os.chmod(d.socket.parent, 0o755)
            os.chmod(d.socket, 0o666)
            r = subprocess.run([*as_nobody, python, "-c", PEER_CLIENT, str(d.socket)], capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stderr
            replies = json.loads(r.stdout)["replies"]
            assert len(replies) == 1 and replies[0]["ok"] is False
            assert replies[0]["error"]["code"] == "forbidden"
            assert "uid 65534" in replies[0]["error"]["message"]
            assert "refused" in d.log()
            assert d.ctl("health")["status"] == "ok"  # and we still may
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------- garbage


class RawControl:
    """The control socket with nothing between us and it."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> dict | None:
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        self.sock.close()


GARBAGE = [
    (b"\xff\xfe\x00binary\x01\x02\n", "bad_request"),
    (b"\x00\x00\x00\x00\n", "bad_request"),
    (b"{not json\n", "bad_request"),
    (b"[1, 2, 3]\n", "bad_request"),
    (b'"health"\n', "bad_request"),
    (b'{"v": 1, "cmd": "health"}\n', "bad_request"),
    (b'{"v": 1, "id": "7", "cmd": "health"}\n', "bad_request"),
    (b'{"v": 2, "id": 7, "cmd": "health"}\n', "bad_request"),
    (b'{"v": 1, "id": 7, "cmd": 12}\n', "bad_request"),
    (b'{"v": 1, "id": 7, "cmd": "health", "args": [1]}\n', "bad_request"),
    (b'{"v": 1, "id": 7, "cmd": "no.such.command"}\n', "unknown_command"),
    (b'{"v": 1, "id": 7, "cmd": "kill", "args": {"id": "x"}}\n', "invalid"),
    (b'{"v": 1, "id": 7, "cmd": "kill", "args": {"id": true}}\n', "invalid"),
    (b'{"v": 1, "id": 7, "cmd": "tenant.show", "args": {"name": ["a"]}}\n', "invalid"),
    (b'{"v": 1, "id": 7, "cmd": "health", "x": NaN}\n', "bad_request"),
    (b"[" * 200_000 + b"\n", "bad_request"),
]


def test_garbage_on_the_control_socket_gets_error_replies_and_the_daemon_keeps_serving(curl, daemon, origin):
    raw = RawControl(daemon.socket)
    silent = RawControl(daemon.socket)
    silent.send(b'{"v": 1, "id": 1, "cmd": "hea')  # half a request, never finished
    try:
        for payload, code in GARBAGE:
            raw.send(payload)
            reply = raw.reply()
            assert reply is not None, payload[:40]
            assert reply["ok"] is False, (payload[:40], reply)
            assert reply["error"]["code"] == code, (payload[:40], reply)
            assert reply["error"]["message"]
        # same connection, still usable, replies in order
        raw.send(b'\n\n{"v": 1, "id": 8, "cmd": "health"}\n{"v": 1, "id": 9, "cmd": "conns"}\n')
        assert (r := raw.reply())["id"] == 8 and r["ok"] and r["result"]["status"] == "ok"
        assert (r := raw.reply())["id"] == 9 and r["ok"] and isinstance(r["result"], list)

        # a line too long to find the next request in: one error, then the connection ends
        huge = RawControl(daemon.socket)
        try:
            huge.send(b"x" * (2 * 1024 * 1024))
        except OSError:
            pass  # the daemon may close before we finished writing; it answered first
        reply = huge.reply()
        assert reply is not None and reply["error"]["code"] == "too_large"
        try:
            assert huge.reply() is None
        except ConnectionResetError:
            pass  # closed with our unread bytes in its buffer: a Unix socket reports that as a reset
        huge.close()
    finally:
        raw.close()

    # others were never held up
    assert daemon.ctl("health")["status"] == "ok"
    assert run_curl(curl, "-x", f"http://{daemon.proxy}", origin.url("/small")).stdout == b"x" * 100
    silent.close()
    assert daemon.proc.poll() is None
    assert "Traceback" not in daemon.log()


def test_many_clients_that_vanish_mid_request_leave_no_trace(daemon):
    for i in range(50):
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(daemon.socket))
        s.sendall(b'{"v": 1, "id": %d, "cmd": "stats"}\n' % i if i % 2 else b'{"v": 1, "id')
        s.close()
    with ControlClient(daemon.socket, timeout=10) as c:
        assert c.call("health")["status"] == "ok"
    assert "Traceback" not in daemon.log()


# ---------------------------------------------------------------------------------- start-up


MANY_LISTENERS = render_profile().replace(
    "listen: 127.0.0.1:0", 'listen: [127.0.0.1:0, 127.0.0.2:0, 127.0.0.3:0, "[::1]:0", 127.0.0.4:0]'
)


def test_the_first_health_answer_already_lists_every_listener(tmp_path):
    """A script may run `arcus ctl health && curl ...`: health must not answer before the proxy serves."""
    for round_ in range(2):
        d = DaemonProcess(tmp_path / f"arcus{round_}", MANY_LISTENERS)
        d._log = open(d.log_path, "ab")
        d.proc = subprocess.Popen(
            d.command("serve", "--profile", str(d.profile_path), "--data-dir", str(d.data_dir), "--socket", str(d.socket)),
            stdout=d._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=d.env,
        )
        try:
            deadline = time.monotonic() + 20
            first = None
            while first is None and time.monotonic() < deadline and d.proc.poll() is None:
                try:
                    with ControlClient(d.socket, timeout=5) as c:
                        first = c.call("health")
                except DaemonNotRunning:
                    time.sleep(0.001)
            assert first is not None, d.log()
            assert len(first["servers"][0]["listen"]) == 5, first
            for addr in first["servers"][0]["listen"]:
                host, port = addr.rsplit(":", 1)
                socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
        finally:
            d.stop()
            d._log.close()


def _busy(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


class BoxDaemon(DaemonProcess):
    """The real daemon (and its CLI) inside a PrivateBox: its own 127.0.0.1:3128 and /run."""

    def __init__(self, workdir: Path, box: PrivateBox) -> None:
        super().__init__(workdir)
        self.box = box

    def command(self, *args: str) -> list[str]:
        return self.box.command(*super().command(*args))


def test_arcus_serve_with_no_profile_and_no_socket_uses_the_defaults(curl, tmp_path):
    """127.0.0.1:3128 and the default control socket, which `arcus ctl` finds by itself: in a
    network namespace and a /run of the test's own, so a daemon left running on this box (`make
    serve`) neither makes this test fail nor is disturbed by it."""
    why = PrivateBox.unavailable()
    if why is not None:
        _busy(why)
    with PrivateBox(tmp_path / "box") as box:
        d = BoxDaemon(tmp_path / "arcus", box)  # its env has no ARCUS_SOCKET
        where = subprocess.run(
            box.command(sys.executable, "-c", "from arcus.paths import default_socket_path; print(default_socket_path())"),
            capture_output=True, text=True, timeout=30, env=d.env,
        )
        assert where.stdout.strip() == "/run/arcus/arcus.sock", where.stderr  # root's default
        origin = subprocess.Popen(box.command(sys.executable, "-m", "arcus.testing.origin"),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        d._log = open(d.log_path, "ab")
        d.proc = subprocess.Popen(
            d.command("serve", "--data-dir", str(d.data_dir)),
            stdout=d._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=d.env,
        )
        d.socket = box.host_path("/run/arcus/arcus.sock")
        try:
            origin_port = int(origin.stdout.readline())
            health = None
            deadline = time.monotonic() + 20
            while health is None and time.monotonic() < deadline and d.proc.poll() is None:
                try:
                    health = d.ctl("health")
                except DaemonNotRunning:
                    time.sleep(0.05)
            assert health is not None, d.log()
            assert health["profile"] == "<embedded:default>"
            assert health["servers"][0]["listen"] == ["127.0.0.1:3128"]
            assert stat.S_IMODE(os.lstat(d.socket).st_mode) == 0o600
            r = subprocess.run(box.command(curl, "-sS", "--max-time", "20", "-x", "http://127.0.0.1:3128",
                                           f"http://127.0.0.1:{origin_port}/small"), capture_output=True, timeout=30)
            assert (r.returncode, r.stdout) == (0, b"x" * 100), r.stderr

            # a second `arcus serve` on the defaults: the port is busy, held by the first arcus
            second = subprocess.run(d.command("serve", "--data-dir", str(tmp_path / "data2")), capture_output=True,
                                    text=True, timeout=30, env=d.env, stdin=subprocess.DEVNULL)
            assert second.returncode == 1
            line = profile_text(None)[1].splitlines().index("  - name: http") + 1
            assert second.stderr.splitlines() == [
                f"error: <embedded:default>:{line}: server http cannot listen on 127.0.0.1:3128: Address already in use",
                f"hint: another arcus (pid {d.proc.pid} on control socket /run/arcus/arcus.sock) holds it; stop it "
                "(`arcus ctl shutdown --socket /run/arcus/arcus.sock`), or run on another port: "
                "`arcus config show > my.yaml`, change `listen:` in my.yaml, then `arcus serve --profile my.yaml`",
            ]

            # `arcus ctl` with neither --socket nor ARCUS_SOCKET finds it
            ctl = subprocess.run(d.command("ctl", "health", "--json"), capture_output=True, text=True, timeout=30, env=d.env)
            assert ctl.returncode == 0, ctl.stderr
            assert json.loads(ctl.stdout)["pid"] == d.proc.pid
            ctl = subprocess.run(d.command("ctl", "shutdown", "--graceful"), capture_output=True, text=True, timeout=30,
                                 env=d.env)
            assert ctl.returncode == 0, ctl.stderr
            assert d.proc.wait(20) == 0
            assert not d.socket.exists()
        finally:
            d.stop()
            d._log.close()
            origin.stdin.close()
            origin.wait(10)


def _serve(d: DaemonProcess, *extra: str) -> subprocess.CompletedProcess:
    """`arcus serve` in the foreground, expected to fail fast."""
    return subprocess.run(
        d.command("serve", "--profile", str(d.profile_path), "--data-dir", str(d.data_dir), "--socket", str(d.socket), *extra),
        capture_output=True, text=True, timeout=30, env=d.env, stdin=subprocess.DEVNULL,
    )


def test_serve_refuses_to_start_with_one_line_errors(tmp_path, daemon):
    # another daemon already owns the socket: it keeps it and keeps serving
    twin = DaemonProcess(tmp_path / "twin")
    r = subprocess.run(
        twin.command("serve", "--profile", str(twin.profile_path), "--data-dir", str(twin.data_dir), "--socket", str(daemon.socket)),
        capture_output=True, text=True, timeout=30, env=twin.env, stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 1
    assert r.stderr.splitlines()[0] == f"error: another arcus daemon is already listening on {daemon.socket}"
    assert "Traceback" not in r.stderr and "╭" not in r.stderr
    assert daemon.socket.exists() and daemon.ctl("health")["status"] == "ok"

    # the port is taken
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        port = holder.getsockname()[1]
        busy = DaemonProcess(tmp_path / "busy", render_profile().replace("127.0.0.1:0", f"127.0.0.1:{port}"))
        r = _serve(busy)
        assert r.returncode == 1
        assert r.stderr.splitlines()[0] == (
            f"error: {busy.profile_path}:2: server http cannot listen on 127.0.0.1:{port}: Address already in use"
        )
        hint = r.stderr.splitlines()[1]
        assert hint.startswith(f"hint: pid {os.getpid()} ("), hint  # this test holds it
        assert hint.endswith(f" holds it; stop it, or pick a free port in {busy.profile_path}"), hint
        assert not busy.socket.exists()  # nothing left behind
    finally:
        holder.close()

    # the port is taken by another arcus: said so, found by its control socket or through /proc
    twin = DaemonProcess(tmp_path / "twin2", render_profile().replace("127.0.0.1:0", daemon.proxy))
    for sock, told in (
        (daemon.socket, f"another arcus (pid {daemon.proc.pid} on control socket {daemon.socket}) holds it; "
                        f"stop it (`arcus ctl shutdown --socket {daemon.socket}`), "),
        (twin.socket, f"another arcus (pid {daemon.proc.pid}) holds it; stop it, "),
    ):
        twin.socket = sock
        r = _serve(twin)
        assert r.returncode == 1
        assert r.stderr.splitlines()[1] == f"hint: {told}or pick a free port in {twin.profile_path}", r.stderr
    assert daemon.ctl("health")["status"] == "ok"

    # a log file that cannot be opened
    nolog = DaemonProcess(tmp_path / "nolog", render_profile().replace("target: stderr", "target: /nonexistent/dir/a.log"))
    r = _serve(nolog)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "error: cannot open the log file /nonexistent/dir/a.log: No such file or directory",
        "hint: create its directory, or set log.target in the profile to stderr or another file",
    ]

    # a profile with an error: every problem as file:line
    bad = DaemonProcess(tmp_path / "bad", render_profile().replace("escaper: direct", "escaper: nowhere", 1))
    r = _serve(bad)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{bad.profile_path}:5: "), r.stderr
    assert "nowhere" in r.stderr and "Traceback" not in r.stderr


def test_help_describes_every_command_the_daemon_answers(daemon):
    listed = daemon.ctl("help")
    names = [c["cmd"] for c in listed]
    assert len(names) == len(set(names))
    undescribed = [c["cmd"] for c in listed if not c["description"].strip()]
    assert undescribed == [], f"commands answered without a description in control.protocol.COMMANDS: {undescribed}"
    assert {"help", "health", "tenant.show", "policy.explain", "escaper.float.set", "audit.tail"} <= set(names)
