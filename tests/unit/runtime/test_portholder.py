"""The busy-port hint: who holds the address (real /proc, and a fake one for the parsing), and
what to do, for the embedded profile and for a file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from arcus.runtime.portholder import Holder, busy_hint, find_holder

HOLD = "import socket, sys; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); " \
       "print(s.getsockname()[1], flush=True); sys.stdin.read()"

EMBEDDED_ADVICE = ("or run on another port: `arcus config show > my.yaml`, change `listen:` in my.yaml, "
                   "then `arcus serve --profile my.yaml`")


@pytest.fixture
def other_process() -> tuple[int, int]:
    """(pid, port) of another process listening on 127.0.0.1."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.pid, int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait(10)


def test_the_holder_is_found_through_proc(other_process, tmp_path: Path) -> None:
    pid, port = other_process
    holder = find_holder("127.0.0.1", port, tmp_path / "none.sock")
    assert holder == Holder(pid, f"{sys.executable} -c {HOLD}"[:200], False)


def test_hint_for_a_file_profile_names_the_holder(other_process, tmp_path: Path) -> None:
    pid, port = other_process
    hint = busy_hint("/etc/arcus/edge.yaml", "127.0.0.1", port, tmp_path / "none.sock")
    assert hint.startswith(f"pid {pid} ({sys.executable} -c import socket")
    assert hint.endswith(" holds it; stop it, or pick a free port in /etc/arcus/edge.yaml")


def test_hint_for_the_embedded_profile_says_how_to_run_elsewhere(tmp_path: Path) -> None:
    with socket.socket() as s:  # held by this very process: found, but not "another" holder
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert busy_hint("<embedded:default>", "127.0.0.1", port, tmp_path / "none.sock") == (
            f"stop what holds it, {EMBEDDED_ADVICE}"
        )


def test_nothing_listening_is_no_holder(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening
        assert find_holder("127.0.0.1", s.getsockname()[1], tmp_path / "none.sock") is None


def fake_proc(root: Path, table: str, line: str, pid: int, cmdline: bytes) -> Path:
    (root / "net").mkdir(parents=True)
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (root / "net" / table).write_text(header + line + "\n")
    (root / str(pid) / "fd").mkdir(parents=True)
    os.symlink("socket:[424242]", root / str(pid) / "fd" / "7")
    (root / str(pid) / "cmdline").write_bytes(cmdline)
    return root


@pytest.mark.parametrize(
    ("table", "local", "host"),
    [
        ("tcp", "0100007F:0C38", "127.0.0.1"),
        ("tcp", "00000000:0C38", "127.0.0.1"),  # 0.0.0.0 holds every address
        ("tcp6", "00000000000000000000000001000000:0C38", "::1"),
        ("tcp6", "0000000000000000FFFF00000100007F:0C38", "127.0.0.1"),  # v4-mapped
    ],
)
def test_proc_net_tcp_is_read_as_the_kernel_writes_it(tmp_path: Path, table: str, local: str, host: str) -> None:
    line = f"   0: {local} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 424242 1"
    proc = fake_proc(tmp_path / "proc", table, line, 4321, b".venv/bin/python\0-m\0arcus\0serve\0")
    holder = find_holder(host, 3128, tmp_path / "none.sock", proc=proc)
    assert holder == Holder(4321, ".venv/bin/python -m arcus serve", True)


@pytest.mark.parametrize(
    ("cmdline", "is_arcus"),
    [(b"/usr/bin/arcus\0serve\0", True), (b"/opt/x/.venv/bin/arcus\0serve\0", True),
     (b"python3\0-m\0arcus\0serve\0", True), (b"/usr/sbin/tinyproxy\0-d\0", False), (b"arcusctl\0", False)],
)
def test_which_command_lines_are_arcus(tmp_path: Path, cmdline: bytes, is_arcus: bool) -> None:
    line = "   0: 0100007F:0C38 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 424242 1"
    proc = fake_proc(tmp_path / "proc", "tcp", line, 99, cmdline)
    holder = find_holder("127.0.0.1", 3128, tmp_path / "none.sock", proc=proc)
    assert holder is not None and holder.is_arcus is is_arcus


def test_a_connected_socket_on_that_port_is_not_the_holder(tmp_path: Path) -> None:
    line = "   0: 0100007F:0C38 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 424242 1"
    proc = fake_proc(tmp_path / "proc", "tcp", line, 99, b"curl\0")
    assert find_holder("127.0.0.1", 3128, tmp_path / "none.sock", proc=proc) is None
