from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from arcus.testing.daemon import DaemonProcess
from arcus.testing.origin import Origin

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test in this directory is an integration test: mark it so (-m "not integration")."""
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def origin():
    with Origin() as o:
        yield o


@pytest.fixture
def daemon(tmp_path):
    d = DaemonProcess(tmp_path / "arcus")
    d.start()
    try:
        yield d
    finally:
        d.stop()


def run_curl(curl: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([curl, "-sS", "--max-time", "20", *args], capture_output=True, timeout=timeout)


def raw_exchange(addr: str, payload: bytes, *, timeout: float = 5.0, read_until_close: bool = True) -> bytes:
    """Send raw bytes to the proxy and read what it answers until it closes (bounded)."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(payload)
        chunks = []
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
                if not read_until_close:
                    break
        except socket.timeout:
            chunks.append(b"<timeout>")
        return b"".join(chunks)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
