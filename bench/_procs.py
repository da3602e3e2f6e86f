"""Processes a benchmark run owns: start pinned, wait for the port, measure, stop by PID.

Why its own module: every process the run starts must be found again and stopped, whatever
went wrong, and only by the PID we got when we started it (never by name). Every wait here has
a deadline, so a wedged peer costs a bounded amount of time and shows as "n/a" in the table.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

NOFILE = 20000  # file-descriptor limit given to every proxy, the origin and our clients


class BenchError(Exception):
    """A column cannot be measured; the message becomes "n/a: <message>" in the table."""


def raise_nofile(want: int = NOFILE) -> int:
    """Raise our own RLIMIT_NOFILE towards `want` as far as allowed; return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want and os.geteuid() == 0:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))  # root may raise the hard limit
            return want
        except (ValueError, OSError):
            pass
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_sets() -> tuple[set[int] | None, set[int] | None]:
    """(proxy core, load+origin core): {0} and {1} on a machine with two or more cores."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, {cpus[1]}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _preexec(cpus: set[int] | None, nofile: int | None):
    def setup() -> None:  # runs in the child between fork and exec
        if cpus:
            os.sched_setaffinity(0, cpus)
        if nofile:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
            except (ValueError, OSError):
                soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    return setup


@dataclass
class Proc:
    """One process we started (and, through /proc, the children it forked)."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    seen_children: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])

    def tree(self) -> list[int]:
        """This process and its descendants now alive (remembered, so stop() can reach them)."""
        pids = process_tree(self.pid)
        self.seen_children.update(p for p in pids if p != self.pid)
        return pids


_LIVE: dict[int, Proc] = {}


def spawn(
    name: str,
    argv: list[str],
    *,
    log_dir: Path,
    cpus: set[int] | None = None,
    nofile: int | None = NOFILE,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdin: int | None = subprocess.DEVNULL,
    stdout_to_log: bool = True,
) -> Proc:
    """Start argv pinned to cpus with a raised fd limit; stdout+stderr go to log_dir/name.log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "ab")
    try:
        popen = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=log if stdout_to_log else subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=cwd,
            preexec_fn=_preexec(cpus, nofile),
        )
    except OSError as exc:
        raise BenchError(f"cannot start {argv[0]}: {exc}") from exc
    finally:
        log.close()
    proc = Proc(name, popen, log_path)
    _LIVE[popen.pid] = proc
    return proc


def wait_port(proc: Proc, port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    """Poll until something accepts on host:port; fail early if proc exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited with code {proc.popen.returncode}: {proc.log_tail() or '(no output)'}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{proc.name} not listening on {host}:{port} after {timeout:.0f}s: {proc.log_tail()}")


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop(proc: Proc, grace: float = 5.0) -> None:
    """SIGTERM the process, SIGKILL it after `grace` seconds; then any child it left behind."""
    children = set(proc.seen_children)
    if proc.alive():
        children.update(p for p in process_tree(proc.pid) if p != proc.pid)
        _signal(proc.pid, signal.SIGTERM)
        try:
            proc.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal(proc.pid, signal.SIGKILL)
            try:
                proc.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
    # Children we saw (workers, helpers) must not outlive the run: same two steps, by PID.
    deadline = time.monotonic() + grace
    for pid in children:
        _signal(pid, signal.SIGTERM)
    for pid in children:
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(pid):
            _signal(pid, signal.SIGKILL)
    for pipe in (proc.popen.stdin, proc.popen.stdout):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass
    _LIVE.pop(proc.pid, None)


def stop_all() -> None:
    """Stop every process this run started and has not stopped yet (used on the way out)."""
    for proc in list(_LIVE.values()):
        stop(proc, grace=3.0)


def process_tree(root: int) -> list[int]:
    """root and every live descendant, from the ppid field of /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo and len(out) < 10000:
        pid = todo.pop()
        if _pid_alive(pid):
            out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def memory_kib(pids: list[int]) -> dict[str, int]:
    """Summed VmRSS and USS (private pages, KiB) over pids.

    RSS is what the table reports. USS (Private_Clean + Private_Dirty from smaps_rollup) is shown
    beside it because, unlike RSS or PSS, it does not move when some unrelated process on the
    machine maps or unmaps the same shared libraries.
    """
    rss = uss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
        except OSError:
            continue
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    uss += int(line.split()[1])
        except OSError:
            pass
    return {"rss_kib": rss, "uss_kib": uss}


def cpu_times(pids: list[int]) -> dict[int, float]:
    """pid -> utime+stime in seconds, for the pids alive now."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15 of stat)
    return out


def run_delay(pids: list[int]) -> dict[int, float]:
    """pid -> seconds its threads spent runnable but waiting for a CPU (/proc/PID/task/*/schedstat).

    On a core given to the proxy alone this stays near zero; when it grows, other work on the
    machine took the proxy's core and the cell's numbers are understated.
    """
    out = {}
    for pid in pids:
        total = 0
        try:
            for task in os.scandir(f"/proc/{pid}/task"):
                try:
                    total += int(Path(task.path, "schedstat").read_text().split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        except OSError:
            continue
        out[pid] = total / 1e9
    return out


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two cpu_times() samples; a process born in between counts whole."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def machine_busy(seconds: float = 1.0) -> float:
    """Percent of all CPUs busy over `seconds` (from /proc/stat): other work skews every number."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    total = total1 - total0
    return 0.0 if total <= 0 else round(100.0 * (total - (idle1 - idle0)) / total, 1)


def tcp_opens() -> tuple[int, int]:
    """(ActiveOpens, PassiveOpens) from /proc/net/snmp: connect()s and accept()s machine-wide.

    A tcpdump-free way to see how many TCP connections a measurement made (e.g. that wrk really
    reconnects for every request when the response says Connection: close).
    """
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Tcp:")]
    names, values = lines[0], lines[1]
    row = dict(zip(names[1:], values[1:]))
    return int(row["ActiveOpens"]), int(row["PassiveOpens"])


def run_bounded(
    argv: list[str], *, timeout: float, cpus: set[int] | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run a client (wrk, curl) to completion, pinned, killed if it outlives timeout."""
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            preexec_fn=_preexec(cpus, NOFILE),
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{Path(argv[0]).name} did not finish within {timeout:.0f}s") from exc
    except OSError as exc:
        raise BenchError(f"cannot run {argv[0]}: {exc}") from exc
