"""A real Arcus daemon for tests: a subprocess on port 0 with a temp store and socket.

    with DaemonProcess(tmp_path) as d:
        d.proxy            # "127.0.0.1:PORT" of the first http_proxy listener
        d.ctl("stats")     # a control command's result
        d.arcus("tenant", "add", "acme")  # run the CLI against this daemon
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from arcus.control.client import ControlClient, DaemonNotRunning

DEFAULT_PROFILE = """\
servers:
  - name: http
    type: http_proxy
    listen: 127.0.0.1:0
    escaper: direct

escapers:
  - name: direct
    type: direct_fixed
    resolver: system
  - name: deny
    type: dummy_deny

resolvers:
  - name: system
    type: system
    timeout: 5s

timeouts:
{timeouts}
log:
  level: info
  target: stderr

runtime:
  graceful_timeout: {graceful}
"""

TEST_TIMEOUTS = {
    "client_header": "5s",
    "client_idle": "10s",
    "upstream_connect": "5s",
    "upstream_response": "10s",
    "tunnel_idle": "30s",
}


def render_profile(timeouts: dict[str, str] | None = None, graceful: str = "10s") -> str:
    merged = dict(TEST_TIMEOUTS)
    merged.update(timeouts or {})
    lines = "".join(f"  {k}: {v}\n" for k, v in merged.items())
    return DEFAULT_PROFILE.format(timeouts=lines, graceful=graceful)


class DaemonProcess:
    def __init__(self, workdir: Path, profile_text: str | None = None, *, env: dict[str, str] | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.profile_path = self.workdir / "profile.yaml"
        self.profile_path.write_text(profile_text if profile_text is not None else render_profile())
        self.data_dir = self.workdir / "data"
        self.socket = self.workdir / "ctl" / "arcus.sock"
        self.log_path = self.workdir / "daemon.log"
        self.env = dict(os.environ, **(env or {}))
        self.env.pop("ARCUS_SOCKET", None)
        self.env.pop("ARCUS_DATA_DIR", None)
        self.proc: subprocess.Popen | None = None
        self._log = None

    # ------------------------------------------------------------------ process

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "arcus", *args]

    def start(self, timeout: float = 20.0) -> DaemonProcess:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(
                "serve",
                "--profile",
                str(self.profile_path),
                "--data-dir",
                str(self.data_dir),
                "--socket",
                str(self.socket),
            ),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
        )
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"arcus serve exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    self.health = self.ctl("health")
                    return self
                except DaemonNotRunning:
                    time.sleep(0.05)
            raise RuntimeError(f"arcus serve did not become ready in {timeout}s:\n{self.log()}")
        except BaseException:
            self.kill()  # a daemon that failed to start is never left running
            raise

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()

    # ------------------------------------------------------------------ talking to it

    def ctl(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        with ControlClient(self.socket, timeout=10.0) as client:
            return client.call(cmd, args)

    def listen(self, server: str = "http") -> str:
        health = self.ctl("health")
        for s in health["servers"]:
            if s["name"] == server:
                if not s["listen"]:
                    # A draining daemon has closed its listeners: read the address before the stop.
                    raise AssertionError(f"server {server} listens nowhere (daemon status {health.get('status')})")
                return s["listen"][0]
        raise KeyError(server)

    @property
    def proxy(self) -> str:
        return self.listen("http")

    @property
    def proxy_port(self) -> int:
        return int(self.proxy.rsplit(":", 1)[1])

    def arcus(self, *args: str, input: str | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess:
        """Run the real CLI against this daemon (socket and data dir filled in)."""
        return subprocess.run(
            self.command(*args),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(self.env, ARCUS_SOCKET=str(self.socket), ARCUS_DATA_DIR=str(self.data_dir)),
        )
