"""The origin every column talks to: a private nginx on loopback, pinned with the load generator.

nginx runs from a config written into the run's temp dir (pid, logs and temp paths all inside
it), one worker, keep-alive effectively unlimited, no access log (its cost would land on the core
shared with wrk). Its stub_status counter is how the run checks, without tcpdump, that requests
sent through a proxy really reached the origin.
"""

from __future__ import annotations

import os
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from _procs import NOFILE, BenchError, Proc, free_port, spawn, stop, wait_port

NGINX = "/usr/sbin/nginx"
SMALL_BODY = "arcus-bench small response: " + "x" * 71 + "\n"  # 100 bytes
assert len(SMALL_BODY) == 100

_CONF = """\
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 16384;
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    client_header_timeout 900s;
    send_timeout 120s;
    server_tokens off;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {prefix}/www;
        location = /small {{
            default_type text/plain;
            return 200 "{body}";
        }}
        location = /nginx_status {{
            stub_status;
        }}
        location / {{
        }}
    }}
}}
"""


@dataclass
class Origin:
    port: int
    prefix: Path
    proc: Proc
    bulk_name: str
    bulk_bytes: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def status(self) -> dict[str, int]:
        """nginx stub_status: active connections and the total requests it has served."""
        try:
            with urllib.request.urlopen(self.url("/nginx_status"), timeout=5) as resp:
                text = resp.read().decode()
        except OSError as exc:
            raise BenchError(f"origin status unavailable: {exc}") from exc
        active = int(re.search(r"Active connections:\s*(\d+)", text).group(1))
        accepts, handled, requests = (int(x) for x in re.search(r"\n\s*(\d+)\s+(\d+)\s+(\d+)", text).groups())
        return {"active": active, "accepts": accepts, "requests": requests}


def _warm_page_cache(path: Path) -> None:
    """Read the file once so the first measured download does not pay for filling the page cache."""
    with open(path, "rb", buffering=0) as f:
        for _ in range(path.stat().st_size // (1 << 20) + 1):
            if not f.read(1 << 20):
                break


def start_origin(tmp: Path, *, cpus: set[int] | None, bulk_mib: int) -> Origin:
    """Write the config and the sparse bulk file under tmp/nginx and start nginx in the foreground."""
    if not os.access(NGINX, os.X_OK):
        raise BenchError(f"{NGINX} not found (apt-get install nginx-light)")
    prefix = tmp / "nginx"
    for sub in ("www", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    # nginx's workers drop to an unprivileged user when started as root: let them read the tree.
    for path in (tmp, prefix, prefix / "www"):
        path.chmod(0o755)
    bulk_name = f"bulk-{bulk_mib}m"
    bulk = prefix / "www" / bulk_name
    with open(bulk, "wb") as f:  # sparse: served from the page cache, no disk in the measurement
        f.truncate(bulk_mib * 1024 * 1024)
    bulk.chmod(0o644)
    _warm_page_cache(bulk)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(_CONF.format(prefix=prefix, port=port, body=SMALL_BODY.replace("\n", "\\n"), nofile=NOFILE))
    argv = [NGINX, "-e", str(prefix / "error.log"), "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"]
    proc = spawn("nginx", argv, log_dir=tmp / "logs", cpus=cpus)
    try:
        wait_port(proc, port, timeout=15)
    except BenchError:
        stop(proc)
        raise
    return Origin(port=port, prefix=prefix, proc=proc, bulk_name=bulk_name, bulk_bytes=bulk_mib * 1024 * 1024)
