"""A real ICAP antivirus for the tests: a private clamd and c-icap with its virus_scan module.

The signature database is built here, from the EICAR test string, in three forms ClamAV needs to
catch it everywhere (``/work/shared/REAL-COMPONENTS.md``): an ``.hdb`` MD5 of the exact
68-byte file, an ``.ndb`` hex body signature (EICAR anywhere in a body) and a case-insensitive
``.ldb`` for EICAR inside HTML (which ClamAV normalises). Detected names end in
``.UNOFFICIAL``. Nothing is downloaded; freshclam never runs; nothing under /etc is read.

``AntivirusPeers(workdir).start()`` starts clamd (a Unix socket) and one c-icap per port asked
for; ``stop_icap(i)`` kills one c-icap (a failover or fail-mode test), ``start_icap(i)`` starts it
again on the same port. Under ``CI=true`` a missing program fails the test; elsewhere it skips.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from arcus.testing.origin import EICAR  # noqa: F401 - the one copy of the test string

PROGRAMS = ("clamd", "c-icap")
SERVICE = "avscan"  # the ICAP service path: icap://127.0.0.1:PORT/avscan


def _module_dir() -> Path | None:
    for d in (Path("/usr/lib/x86_64-linux-gnu/c_icap"), Path("/usr/lib/aarch64-linux-gnu/c_icap"), Path("/usr/lib/c_icap")):
        if (d / "virus_scan.so").exists():
            return d
    return None


def missing() -> str | None:
    """What is not installed (run scripts/system-deps.sh), or None."""
    for prog in PROGRAMS:
        if shutil.which(prog) is None and not Path(f"/usr/sbin/{prog}").exists():
            return prog
    if _module_dir() is None:
        return "c-icap's virus_scan module (libc-icap-mod-virus-scan)"
    return None


def require() -> None:
    """Skip the test when clamd or c-icap is missing; fail it under CI=true."""
    import pytest

    what = missing()
    if what is not None:
        msg = f"{what} is not installed: run scripts/system-deps.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)


def _program(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def build_signatures(db: Path) -> None:
    db.mkdir(parents=True, exist_ok=True)
    name = "Eicar-Test-Signature"
    (db / "arcus-eicar.hdb").write_text(f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:{name}\n")
    (db / "arcus-eicar.ndb").write_text(f"{name}:0:*:{EICAR.hex()}\n")
    (db / "arcus-eicar.ldb").write_text(f"{name}-Html;Target:0;0;{EICAR.hex()}::i\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check, what: str, proc: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}): {log.read_text(errors='replace')[-2000:] if log.exists() else ''}")
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not become ready in {timeout}s")


def _connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class AntivirusPeers:
    def __init__(self, workdir: Path, icap_servers: int = 1) -> None:
        self.dir = workdir
        self.ports = [_free_port() for _ in range(icap_servers)]
        self.clamd: subprocess.Popen | None = None
        self.icaps: list[subprocess.Popen | None] = [None] * icap_servers

    def url(self, i: int = 0) -> str:
        return f"icap://127.0.0.1:{self.ports[i]}/{SERVICE}"

    def start(self) -> AntivirusPeers:
        d = self.dir
        tmp = d / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        build_signatures(d / "db")
        self.sock = d / "clamd.sock"
        (d / "clamd.conf").write_text(
            f"Foreground yes\nDatabaseDirectory {d / 'db'}\nLocalSocket {self.sock}\nTemporaryDirectory {tmp}\n"
            f"LogFile {d / 'clamd.log'}\nPidFile {d / 'clamd.pid'}\nStreamMaxLength 200M\nMaxScanSize 200M\nMaxFileSize 200M\n"
        )
        self.clamd = subprocess.Popen(
            [_program("clamd"), "-c", str(d / "clamd.conf")], stdout=subprocess.DEVNULL, stderr=open(d / "clamd.err", "wb")
        )
        _wait(self.sock.exists, "clamd", self.clamd, d / "clamd.err")
        for i in range(len(self.ports)):
            self.start_icap(i)
        return self

    def _icap_conf(self, i: int) -> Path:
        d = self.dir / f"icap{i}"
        d.mkdir(exist_ok=True)
        mods = _module_dir()
        conf = d / "c-icap.conf"
        conf.write_text(
            f"PidFile {d / 'c-icap.pid'}\nCommandsSocket {d / 'c-icap.ctl'}\nTimeout 60\nMaxKeepAliveRequests 1000\n"
            f"KeepAliveTimeout 60\nStartServers 1\nMaxServers 2\nMinSpareThreads 4\nMaxSpareThreads 16\nThreadsPerChild 16\n"
            f"Port 127.0.0.1:{self.ports[i]}\nTmpDir {self.dir / 'tmp'}\nMaxMemObject 131072\nDebugLevel 1\n"
            f"ModulesDir {mods}\nServicesDir {mods}\nTemplateDir /usr/share/c_icap/templates/\nTemplateDefaultLanguage en\n"
            f"ServerLog {d / 'server.log'}\nAccessLog {d / 'access.log'}\n"
            f"Module common clamd_mod.so\nclamd_mod.ClamdSocket {self.sock}\n"
            f"Service antivirus_module virus_scan.so\nServiceAlias {SERVICE} virus_scan?allow204=on&sizelimit=off&mode=simple\n"
            f"virus_scan.DefaultEngine clamd\nvirus_scan.Allow204Responces on\nvirus_scan.MaxObjectSize 200M\n"
            f"virus_scan.ScanFileTypes TEXT DATA EXECUTABLE ARCHIVE GIF JPEG MSOFFICE\n"
        )
        return conf

    def start_icap(self, i: int) -> None:
        conf = self._icap_conf(i)
        err = conf.parent / "stderr"
        proc = subprocess.Popen(
            [_program("c-icap"), "-N", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=open(err, "wb"), start_new_session=True
        )
        self.icaps[i] = proc
        _wait(lambda: _connects(self.ports[i]), f"c-icap on port {self.ports[i]}", proc, err)

    def stop_icap(self, i: int) -> None:
        proc = self.icaps[i]
        self.icaps[i] = None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: c-icap and the children it forked
            proc.wait(10)
        deadline = time.monotonic() + 10
        while _connects(self.ports[i]) and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        for i in range(len(self.icaps)):
            self.stop_icap(i)
        if self.clamd is not None and self.clamd.poll() is None:
            self.clamd.terminate()
            try:
                self.clamd.wait(10)
            except subprocess.TimeoutExpired:
                self.clamd.kill()
                self.clamd.wait(5)

    def __enter__(self) -> AntivirusPeers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
