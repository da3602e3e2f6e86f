"""Who holds a listen address that is taken, and what the operator can do about it.

Only used when binding failed, so it may look around, but cheaply and best-effort: it asks the
control socket this daemon would use (another arcus answers ``health`` there with its pid), then
finds the listening socket in ``/proc/net/tcp`` / ``tcp6`` and the process whose descriptors
hold its inode. Processes of other users cannot be looked into without privileges: then the
holder stays unnamed.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from arcus.control.client import ControlClient

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column
MAX_PIDS = 4096  # a bound on the walk through /proc (the box's process count, usually far less)


@dataclass(frozen=True, slots=True)
class Holder:
    pid: int | None
    command: str  # the command line, or "" when it could not be read
    is_arcus: bool
    socket: Path | None = None  # the control socket that answered, when that is how we know


def find_holder(host: str, port: int, socket_path: Path, *, proc: Path = Path("/proc")) -> Holder | None:
    """Who listens on ``host:port`` (another arcus on ``socket_path`` first), or None if unknown."""
    holder = _arcus_on_socket(socket_path)
    if holder is not None:
        return holder
    inode = _listening_inode(host, port, proc)
    if inode is None:
        return None
    pid = _pid_of_inode(inode, proc)
    if pid is None:
        return None
    command = _command_line(pid, proc)
    return Holder(pid, command, _looks_like_arcus(command))


def busy_hint(source: str, host: str, port: int, socket_path: Path) -> str:
    """The hint of a busy-port error: who holds it, and how to run on another port."""
    holder = find_holder(host, port, socket_path)
    if holder is not None and holder.is_arcus:
        where = f" on control socket {holder.socket}" if holder.socket else ""
        who = f"another arcus (pid {holder.pid}{where}) holds it"
        stop = f"stop it (`arcus ctl shutdown --socket {holder.socket}`)" if holder.socket else "stop it"
    elif holder is not None:
        who = f"pid {holder.pid} ({holder.command or 'command unknown'}) holds it"
        stop = "stop it"
    else:
        who, stop = "", "stop what holds it"
    if source.startswith("<embedded:"):
        name = source[len("<embedded:"):-1]
        show = "arcus config show" + ("" if name == "default" else f" {name}")
        other = (f"or run on another port: `{show} > my.yaml`, change `listen:` in my.yaml, "
                 "then `arcus serve --profile my.yaml`")
    else:
        other = f"or pick a free port in {source}"
    return "; ".join(part for part in (who, f"{stop}, {other}") if part)


def _arcus_on_socket(socket_path: Path) -> Holder | None:
    try:
        with ControlClient(socket_path, timeout=1.0) as client:
            health = client.call("health")
    except Exception:  # noqa: BLE001 - best effort: nothing (or nothing sane) answers there
        return None
    pid = health.get("pid") if isinstance(health, dict) else None
    if pid == os.getpid():  # a reload of this very daemon: it answers on its own socket
        return None
    return Holder(pid if isinstance(pid, int) else None, "arcus serve", True, socket_path)


def _listening_inode(host: str, port: int, proc: Path) -> int | None:
    try:
        wanted = ipaddress.ip_address(host)
    except ValueError:  # "localhost": any listener on the port will do
        wanted = None
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            addr_hex, _, port_hex = fields[1].partition(":")
            if int(port_hex, 16) != port:
                continue
            addr = _proc_address(addr_hex)
            if wanted is None or addr is None or addr.is_unspecified or _same(addr, wanted):
                inode = int(fields[9])
                if inode:
                    return inode
    return None


def _proc_address(hex_text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """/proc/net/tcp's address: 32-bit words in host byte order (little-endian here)."""
    try:
        raw = bytes.fromhex(hex_text)
    except ValueError:
        return None
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words) if len(words) in (4, 16) else None


def _same(a: ipaddress.IPv4Address | ipaddress.IPv6Address, b: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    return a == b


def _pid_of_inode(inode: int, proc: Path) -> int | None:
    target = f"socket:[{inode}]"
    try:
        pids = [int(name) for name in os.listdir(proc) if name.isdigit()][:MAX_PIDS]
    except OSError:
        return None
    own = os.getpid()
    for pid in pids:
        if pid == own:
            continue
        fd_dir = proc / str(pid) / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or another user's
            continue
        for fd in fds:
            try:
                if os.readlink(fd_dir / fd) == target:
                    return pid
            except OSError:
                continue
    return None


def _command_line(pid: int, proc: Path) -> str:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)[:200]


def _looks_like_arcus(command: str) -> bool:
    """``arcus serve ...``, ``.venv/bin/arcus serve``, ``python -m arcus serve``."""
    words = command.split()
    for i, word in enumerate(words[:4]):
        if os.path.basename(word) == "arcus" or (word == "-m" and i + 1 < len(words) and words[i + 1] == "arcus"):
            return True
    return False
