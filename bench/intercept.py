"""Intercepted HTTPS keep-alive requests per second: Arcus against mitmproxy, in one run.

Run: .venv/bin/python bench/intercept.py [--clients 8] [--requests 2000] [--rounds 3]

Both proxies terminate the client's TLS with a leaf of their own CA and open TLS to the origin,
verified against the origin's test CA; both speak HTTP/1.1 on both sides (curl --http1.1; Arcus
offers nothing else). The origin is a private nginx with TLS on loopback serving a 100-byte
``/small``. The load is ``--clients`` curl processes, each sending ``--requests`` requests one
after another on one intercepted keep-alive connection (a URL glob: curl reuses the tunnel), and
counting the 200s it got. The proxy is pinned to the first core, curl and nginx to the second
(on a machine with two or more); each figure is the best of ``--rounds`` rounds, and the two
proxies alternate round by round so neither gets the quieter minutes. Leaves are made before
the measured rounds (a warm-up round per proxy).

mitmproxy comes from PyPI into ``bench/.venv-peers`` on first use (``mitmproxy`` is in the
``bench`` extra too); ``--no-install`` refuses to install it. Arcus runs with its access and
audit logs off (``bench/arcus-bench.yaml``'s settings), mitmdump with ``--quiet`` and
``flow_detail=0``: both compare forwarding, not logging.

The machine's load average before the run is printed with the figures: on a shared box the
figures are lower bounds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _origin import NGINX, SMALL_BODY  # noqa: E402
from _peers import ARCUS, PEERS_VENV, REPO  # noqa: E402
from _procs import BenchError, Proc, cpu_sets, free_port, raise_nofile, spawn, stop, wait_port  # noqa: E402

MITMPROXY_REQUIREMENT = "mitmproxy==11.0.2"  # the newest for Python 3.11 (12 needs 3.12)
CURL = "/usr/bin/curl"

_NGINX_TLS = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    server_tokens off;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location = /small {{
            default_type text/plain;
            return 200 "{body}";
        }}
    }}
}}
"""


def make_origin_pki(d: Path) -> tuple[Path, Path, Path]:
    """(CA file, server certificate, server key) for localhost, made with cryptography."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("bench origin CA")).issuer_name(name("bench origin CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    d.mkdir(parents=True, exist_ok=True)
    paths = (d / "ca.pem", d / "origin.pem", d / "origin.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def start_origin(tmp: Path, cert: Path, key: Path, cpus: set[int] | None) -> tuple[Proc, int]:
    if not os.access(NGINX, os.X_OK):
        raise BenchError(f"{NGINX} not found (apt-get install nginx-light)")
    prefix = tmp / "nginx"
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    for path in (tmp, prefix, cert.parent):
        path.chmod(0o755)
    key.chmod(0o644)  # nginx's workers drop privileges; a throwaway key in a private temp dir
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(_NGINX_TLS.format(prefix=prefix, port=port, cert=cert, key=key, body=SMALL_BODY.replace("\n", "\\n")))
    argv = [NGINX, "-e", str(prefix / "error.log"), "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"]
    proc = spawn("nginx", argv, log_dir=tmp / "logs", cpus=cpus)
    wait_port(proc, port, timeout=15)
    return proc, port


def ensure_mitmproxy(install: bool) -> Path:
    mitmdump = PEERS_VENV / "bin" / "mitmdump"
    if mitmdump.exists():
        return mitmdump
    if not install:
        raise BenchError(f"mitmproxy not installed in {PEERS_VENV} (run without --no-install)")
    print(f"installing {MITMPROXY_REQUIREMENT} into {PEERS_VENV} ...", file=sys.stderr, flush=True)
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True, capture_output=True, timeout=120)
    r = subprocess.run([str(python), "-m", "pip", "install", "-q", MITMPROXY_REQUIREMENT], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise BenchError(f"cannot install {MITMPROXY_REQUIREMENT}: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return mitmdump


def start_mitmproxy(tmp: Path, origin_ca: Path, cpus: set[int] | None, install: bool) -> tuple[Proc, int, Path]:
    mitmdump = ensure_mitmproxy(install)
    confdir = tmp / "mitmproxy"
    confdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        str(mitmdump), "--quiet", "--listen-host", "127.0.0.1", "--listen-port", str(port),
        "--set", f"confdir={confdir}", "--set", f"ssl_verify_upstream_trusted_ca={origin_ca}",
        "--set", "flow_detail=0", "--set", "http2=false", "--set", "connection_strategy=lazy",
    ]
    proc = spawn("mitmproxy", argv, log_dir=tmp / "logs", cpus=cpus, cwd=confdir)
    wait_port(proc, port, timeout=60)
    ca = confdir / "mitmproxy-ca-cert.pem"
    deadline = time.monotonic() + 30
    while not ca.exists():
        if time.monotonic() > deadline:
            raise BenchError("mitmproxy did not write its CA")
        time.sleep(0.1)
    return proc, port, ca


def start_arcus(tmp: Path, origin_ca: Path, cpus: set[int] | None) -> tuple[Proc, int, Path]:
    if not ARCUS.exists():
        raise BenchError(f"{ARCUS.relative_to(REPO)} not found (make setup)")
    d = tmp / "arcus"
    d.mkdir(parents=True, exist_ok=True)
    port = free_port()
    profile = d / "profile.yaml"
    profile.write_text(f"""\
servers:
  - name: bench
    type: http_proxy
    listen: 127.0.0.1:{port}
    escaper: direct
escapers:
  - name: direct
    type: direct_fixed
    resolver: system
    allow_special: [127.0.0.0/8]
resolvers:
  - name: system
    type: system
timeouts:
  client_idle: 300s
log:
  level: warning
  target: stderr
  access: false
audit:
  enabled: false
intercept:
  enabled: true
  upstream_ca: {origin_ca}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCUS_")}
    data = d / "data"
    subprocess.run([str(ARCUS), "ca", "init", "--data-dir", str(data)], check=True, capture_output=True, env=env, timeout=60)
    ca = d / "ca.pem"
    out = subprocess.run([str(ARCUS), "ca", "export", "--format", "pem", "--data-dir", str(data)],
                         check=True, capture_output=True, text=True, env=env, timeout=60).stdout
    ca.write_text(out[out.index("-----BEGIN CERTIFICATE-----"):out.rindex("-----END CERTIFICATE-----") + 25] + "\n")
    argv = [str(ARCUS), "serve", "--profile", str(profile), "--data-dir", str(data), "--socket", str(d / "arcus.sock")]
    proc = spawn("arcus", argv, log_dir=tmp / "logs", cpus=cpus, env=env, cwd=d)
    wait_port(proc, port, timeout=30)
    return proc, port, ca


def load(port: int, ca: Path, origin_port: int, clients: int, requests: int, cpus: set[int] | None) -> tuple[float, int]:
    """(requests per second, 200s counted) of ``clients`` curl processes on keep-alive tunnels."""
    url = f"https://localhost:{origin_port}/small?[1-{requests}]"
    argv = [CURL, "-s", "--http1.1", "--cacert", str(ca), "--proxy", f"http://127.0.0.1:{port}",
            "-w", "%{http_code}\\n", url]

    def pin() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    start = time.perf_counter()
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=pin) for _ in range(clients)]
    ok = 0
    for p in procs:
        out, err = p.communicate(timeout=600)
        ok += sum(1 for line in out.decode("latin-1").splitlines() if line.endswith("200") and len(line) in (3, 103))
        if p.returncode != 0:
            raise BenchError(f"curl failed ({p.returncode}): {err.decode(errors='replace').strip()[-200:]}")
    elapsed = time.perf_counter() - start
    if ok != clients * requests:
        raise BenchError(f"{ok} of {clients * requests} requests answered 200")
    return ok / elapsed, ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=2000, help="requests per client connection")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-install", action="store_true")
    args = ap.parse_args()
    raise_nofile()
    proxy_cpu, load_cpu = cpu_sets()
    print(f"load average before the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="arcus-bench-intercept-") as t:
        tmp = Path(t)
        origin_ca, cert, key = make_origin_pki(tmp / "pki")
        started: list[Proc] = []
        try:
            nginx, origin_port = start_origin(tmp, cert, key, load_cpu)
            started.append(nginx)
            peers = {}
            for name, start in (("arcus", start_arcus), ("mitmproxy", lambda *a: start_mitmproxy(*a, not args.no_install))):
                proc, port, ca = start(tmp, origin_ca, proxy_cpu)
                started.append(proc)
                peers[name] = (port, ca)
                load(port, ca, origin_port, args.clients, 50, load_cpu)  # warm-up: leaves, pools
            best: dict[str, float] = {name: 0.0 for name in peers}
            for r in range(args.rounds):
                for name in (list(peers) if r % 2 == 0 else list(reversed(peers))):
                    port, ca = peers[name]
                    rps, _ = load(port, ca, origin_port, args.clients, args.requests, load_cpu)
                    print(f"round {r + 1} {name:10s} {rps:9.0f} req/s", flush=True)
                    best[name] = max(best[name], rps)
        finally:
            for proc in reversed(started):
                stop(proc)
    print(f"\nintercepted HTTPS keep-alive, {args.clients} clients x {args.requests} requests, best of {args.rounds}:")
    for name, rps in best.items():
        print(f"  {name:10s} {rps:9.0f} req/s")
    ratio = best["arcus"] / best["mitmproxy"] if best["mitmproxy"] else float("inf")
    print(f"  ratio arcus/mitmproxy: {ratio:.2f}x (goal >= 3x)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
