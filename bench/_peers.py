"""The columns of the table: how to start each proxy with a private config on a free port.

Every proxy gets the same treatment: pinned to the proxy core, fd limit raised to 20,000, its
files (config, pid, logs, data) inside the run's temp dir, no access log (squid `access_log none`,
proxy.py at WARNING, Arcus `log.access: false`), so the numbers compare forwarding, not logging.
A peer that cannot start raises BenchError and its column reads "n/a: <reason>".

One more column, `arcus-logs`, is Arcus as the default profile runs it: access log on (level
info, to stderr, which is the column's log file here) and audit log on (SQLite in the run's
temp dir). Against `arcus` in the same run it says what logging costs; it is measured for the
per-request metrics only (keepalive, newconn), where that cost lives.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from _procs import NOFILE, BenchError, Proc, free_port, spawn, stop, wait_port

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
ARCUS = REPO / ".venv" / "bin" / "arcus"
ARCUS_PROFILE = BENCH_DIR / "arcus-bench.yaml"
ARCUS_PROFILE_LISTEN = "listen: 127.0.0.1:13128"  # rewritten to the run's free port
ARCUS_PROFILE_SOCKS = "listen: 127.0.0.1:11080"  # the SOCKS5 server's, rewritten likewise
SQUID = "/usr/sbin/squid"
PEERS_VENV = BENCH_DIR / ".venv-peers"
PROXYPY_REQUIREMENT = "proxy.py==2.4.10"

COLUMNS = ("baseline", "arcus", "arcus-logs", "squid", "proxy.py")
PROXIES = ("arcus", "arcus-logs", "squid", "proxy.py")
LOG_COLUMN_METRICS = ("keepalive", "newconn")  # where arcus-logs is measured
# bench/arcus-bench.yaml's lines that turn logging off, and what the default profile has instead
ARCUS_LOGS_ON = {
    "  level: warning\n": "  level: info\n",
    "  access: false": "  access: true",
    "  enabled: false": "  enabled: true",
}
SOCKS_COLUMNS = ("baseline", "arcus")  # the columns the SOCKS5 metric applies to (squid, proxy.py: no SOCKS)


@dataclass
class Running:
    """A started proxy: where to send requests, and the process whose tree is measured."""

    name: str
    port: int
    proc: Proc
    socks_port: int | None = None  # its SOCKS5 server, if it has one


_SQUID_CONF = """\
# Private squid config for the Arcus benchmark: loopback only, no cache, no access log.
http_port 127.0.0.1:{port}
workers 1
max_filedescriptors {nofile}
pid_filename {dir}/squid.pid
coredump_dir {dir}
cache_log {dir}/cache.log
access_log none
cache_store_log none
logfile_rotate 0
cache deny all
cache_mem 0 MB
netdb_filename none
pinger_enable off
shutdown_lifetime 1 seconds
visible_hostname arcus-bench
acl localhost_src src 127.0.0.1/32
acl CONNECT method CONNECT
acl origin_port port {origin_port}
# squid refuses CONNECT to anything but 443 only when a config says so; say explicitly what is open
http_access allow CONNECT localhost_src origin_port
http_access deny CONNECT
http_access allow localhost_src
http_access deny all
"""


def _start_squid(tmp: Path, origin_port: int, cpus: set[int] | None) -> Running:
    if not os.access(SQUID, os.X_OK):
        raise BenchError(f"{SQUID} not found (apt-get install squid)")
    d = tmp / "squid"
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o777)  # squid started as root switches to its own user and still writes here
    port = free_port()
    conf = d / "squid.conf"
    conf.write_text(_SQUID_CONF.format(port=port, dir=d, nofile=NOFILE, origin_port=origin_port))
    check = subprocess.run([SQUID, "-k", "parse", "-f", str(conf)], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        errors = [l for l in check.stderr.splitlines() if "ERROR" in l or "FATAL" in l]
        raise BenchError(f"squid rejects its config: {' | '.join(errors[-3:]) or check.stderr[-300:]}")
    proc = spawn("squid", [SQUID, "-N", "-f", str(conf)], log_dir=tmp / "logs", cpus=cpus)
    return _ready("squid", proc, port)


def ensure_proxypy(install: bool) -> Path:
    """The interpreter of bench/.venv-peers, creating it with proxy.py from PyPI on first use."""
    python = PEERS_VENV / "bin" / "python"
    if python.exists():
        if subprocess.run([str(python), "-c", "import proxy"], capture_output=True, timeout=60).returncode == 0:
            return python
    if not install:
        raise BenchError(f"proxy.py not installed in {PEERS_VENV} (run without --no-install)")
    print(f"installing {PROXYPY_REQUIREMENT} into {PEERS_VENV} ...", file=sys.stderr, flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True, capture_output=True, timeout=120)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", PROXYPY_REQUIREMENT],
            check=True, capture_output=True, text=True, timeout=300,
        )
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or "").strip().splitlines()[-1:] if isinstance(exc.stderr, str) else []
        raise BenchError(f"cannot install {PROXYPY_REQUIREMENT}: {' '.join(tail) or exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"installing {PROXYPY_REQUIREMENT} timed out") from exc
    return python


def _start_proxypy(tmp: Path, origin_port: int, cpus: set[int] | None, install: bool) -> Running:
    python = ensure_proxypy(install)
    d = tmp / "proxypy"
    d.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        str(python), "-m", "proxy",
        "--hostname", "127.0.0.1", "--port", str(port),
        "--num-workers", "1", "--num-acceptors", "1",
        "--backlog", "4096",
        "--timeout", "900",  # idle tunnels must survive the RSS measurement (default drops them at 10 s)
        "--open-file-limit", str(NOFILE),
        "--log-level", "WARNING",  # its per-request access line is logged at INFO
        "--data-dir", str(d), "--pid-file", str(d / "proxy.pid"),
    ]
    proc = spawn("proxy.py", argv, log_dir=tmp / "logs", cpus=cpus, cwd=d)
    return _ready("proxy.py", proc, port)


def arcus_profile(tmp: Path, port: int, socks_port: int, name: str = "arcus") -> Path:
    text = ARCUS_PROFILE.read_text()
    for line in (ARCUS_PROFILE_LISTEN, ARCUS_PROFILE_SOCKS):
        if line not in text:
            raise BenchError(f"{ARCUS_PROFILE.name} lacks the line '{line}' the run rewrites")
    if name == "arcus-logs":
        for off, on in ARCUS_LOGS_ON.items():
            if text.count(off) != 1:
                raise BenchError(f"{ARCUS_PROFILE.name} should have the line '{off.strip()}' once: arcus-logs rewrites it")
            text = text.replace(off, on)
    out = tmp / name / "arcus-bench.yaml"
    text = text.replace(ARCUS_PROFILE_LISTEN, f"listen: 127.0.0.1:{port}")
    out.write_text(text.replace(ARCUS_PROFILE_SOCKS, f"listen: 127.0.0.1:{socks_port}"))
    return out


def _start_arcus(tmp: Path, origin_port: int, cpus: set[int] | None, name: str = "arcus") -> Running:
    if not ARCUS.exists():
        raise BenchError(f"{ARCUS.relative_to(REPO)} not found (.venv/bin/pip install -e .)")
    d = tmp / name
    d.mkdir(parents=True, exist_ok=True)
    port = free_port()
    socks_port = free_port()
    profile = arcus_profile(tmp, port, socks_port, name)
    argv = [str(ARCUS), "serve", "--profile", str(profile), "--data-dir", str(d / "data"), "--socket", str(d / "arcus.sock")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCUS_")}
    proc = spawn(name, argv, log_dir=tmp / "logs", cpus=cpus, env=env, cwd=d)
    running = _ready(name, proc, port)
    try:
        wait_port(proc, socks_port, timeout=10)
    except BenchError:
        stop(proc)
        raise
    running.socks_port = socks_port
    return running


def _ready(name: str, proc: Proc, port: int) -> Running:
    try:
        wait_port(proc, port, timeout=30)
    except BenchError:
        stop(proc)
        raise
    return Running(name, port, proc)


def start_proxy(name: str, tmp: Path, origin_port: int, cpus: set[int] | None, *, install: bool = True) -> Running:
    """Start a fresh instance of proxy `name`; raise BenchError with the reason if it cannot serve."""
    starters: dict[str, Callable[[], Running]] = {
        "arcus": lambda: _start_arcus(tmp, origin_port, cpus),
        "arcus-logs": lambda: _start_arcus(tmp, origin_port, cpus, "arcus-logs"),
        "squid": lambda: _start_squid(tmp, origin_port, cpus),
        "proxy.py": lambda: _start_proxypy(tmp, origin_port, cpus, install),
    }
    return starters[name]()


def versions() -> dict[str, str]:
    """What was measured, for the results file."""

    def first_line(argv: list[str], pattern: str = "") -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return "unavailable"
        text = (out.stdout + out.stderr).strip()
        if pattern:
            m = re.search(pattern, text)
            return m.group(0) if m else text.splitlines()[0] if text else "unknown"
        return text.splitlines()[0] if text else "unknown"

    info = {
        "squid": first_line([SQUID, "-v"], r"(?<=Version )\S+"),
        "nginx": first_line(["/usr/sbin/nginx", "-v"], r"(?<=nginx/)\S+"),
        "wrk": first_line(["wrk", "-v"], r"(?<=wrk )\S+"),
        "curl": first_line(["curl", "--version"], r"(?<=curl )\S+"),
        "kernel": os.uname().release,
    }
    python = PEERS_VENV / "bin" / "python"
    info["proxy.py"] = (
        first_line([str(python), "-m", "pip", "show", "proxy.py"], r"(?<=Version: )\S+") if python.exists() else "not installed"
    )
    info["arcus"] = first_line(["git", "-C", str(REPO), "describe", "--always", "--dirty"])
    try:
        info["cpu"] = next(
            l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")
        )
    except (OSError, StopIteration):
        info["cpu"] = "unknown"
    return info
