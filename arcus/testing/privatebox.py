"""A private network namespace and a private ``/run`` for tests that need the defaults.

``arcus serve`` with no options listens on 127.0.0.1:3128 and, as root, puts its control socket
at ``/run/arcus/arcus.sock``. A test of exactly that must not meet (or disturb) a daemon the
developer left running: inside the box, 127.0.0.1:3128 is the box's own, and ``/run`` is a
directory of the test's (``run_dir`` on the host side), so the default socket is
``run_dir/arcus/arcus.sock`` as seen from outside.

    with PrivateBox(tmp_path) as box:
        box.command("curl", ...)      # argv that runs inside the box
        box.host_path("/run/arcus/arcus.sock")

Needs root (``unshare``, ``nsenter``, ``ip``); ``PrivateBox.unavailable()`` says why not.
One process (``cat``, holding the namespaces) lives as long as the box.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SETUP = 'ip link set lo up && mount --bind "$1" /run && echo ready && exec cat >/dev/null'


class PrivateBox:
    def __init__(self, workdir: Path) -> None:
        self.run_dir = Path(workdir) / "run"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.holder: subprocess.Popen | None = None

    @staticmethod
    def unavailable() -> str | None:
        """Why a box cannot be made here, or None."""
        if os.geteuid() != 0:
            return "needs root for a private network namespace and /run (unshare --net --mount)"
        for tool in ("unshare", "nsenter", "ip"):
            if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
                return f"{tool} is not installed (scripts/system-deps.sh installs it)"
        return None

    def start(self) -> PrivateBox:
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", SETUP, "box", str(self.run_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self.holder.stdout is not None and self.holder.stderr is not None
        line = self.holder.stdout.readline()  # bounded: the setup either prints or exits
        if line.strip() != "ready":
            self.close()
            raise RuntimeError(f"cannot make a private network namespace: {self.holder.stderr.read().strip()}")
        return self

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside the box (same pid namespace: the pid is the program's own)."""
        assert self.holder is not None
        return ["nsenter", "--target", str(self.holder.pid), "--net", "--mount", "--", *argv]

    def host_path(self, inside: str | Path) -> Path:
        """Where a path under ``/run`` in the box is, seen from outside."""
        return self.run_dir / Path(inside).relative_to("/run")

    def close(self) -> None:
        if self.holder is not None and self.holder.poll() is None:
            assert self.holder.stdin is not None
            self.holder.stdin.close()
            try:
                self.holder.wait(10)
            except subprocess.TimeoutExpired:
                self.holder.kill()
                self.holder.wait(10)

    def __enter__(self) -> PrivateBox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
