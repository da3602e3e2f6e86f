"""HTTPS to the proxy (``http_proxy`` with ``tls:``), driven by curl ``--proxy https://``.

The test makes its own CA and server certificate with ``cryptography``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import socket
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from arcus.testing.daemon import DaemonProcess, render_profile
from arcus.testing.oneconn import OneConnection
from arcus.testing.wait import wait_until
from tests.integration.conftest import run_curl


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str = "Arcus test CA") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(ca_key, ca_cert, names=("localhost",), ips=("127.0.0.1",)):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    san = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def write_pair(directory: Path, key, cert, stem: str = "proxy") -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    # written to temp names and renamed, as a certificate renewal does
    tmp_c, tmp_k = cert_path.with_suffix(".tmp1"), key_path.with_suffix(".tmp2")
    tmp_c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tmp_k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.replace(tmp_k, key_path)
    os.replace(tmp_c, cert_path)
    return cert_path, key_path


def write_ca(path: Path, cert) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


TLS_SERVER = """\
  - name: https
    type: http_proxy
    listen: 127.0.0.1:0
    escaper: direct
    tls:
      certificate: proxy.pem
      private_key: proxy.key
"""


def test_curl_proxy_https_with_proxy_cacert(tmp_path, curl, origin):
    work = tmp_path / "arcus"
    work.mkdir()
    ca_key, ca = make_ca()
    write_pair(work, *issue(ca_key, ca))
    ca_file = write_ca(tmp_path / "ca.pem", ca)
    profile = render_profile().replace("servers:\n", "servers:\n" + TLS_SERVER, 1)  # paths relative to the profile
    with DaemonProcess(work, profile) as d:
        port = int(d.listen("https").rsplit(":", 1)[1])
        for host in ("127.0.0.1", "localhost"):  # by address (no SNI) and by name
            proxy = f"https://{host}:{port}"
            r = run_curl(curl, "--proxy", proxy, "--proxy-cacert", str(ca_file), origin.url("/bytes/200000"))
            assert r.returncode == 0, r.stderr
            assert r.stdout == b"b" * 200000
            # a CONNECT tunnel inside the TLS connection to the proxy
            r = run_curl(curl, "-p", "--proxy", proxy, "--proxy-cacert", str(ca_file), origin.url("/small"))
            assert r.returncode == 0, r.stderr
            assert r.stdout == b"x" * 100
        # the proxy's certificate is verified: without the CA curl refuses it
        r = run_curl(curl, "--proxy", f"https://127.0.0.1:{port}", origin.url("/small"))
        assert r.returncode in (35, 60), r.stderr
        # plain HTTP to the TLS port gets nothing useful
        r = run_curl(curl, "--proxy", f"http://127.0.0.1:{port}", origin.url("/small"))
        assert r.returncode != 0 or not r.stdout.endswith(b"x" * 100)
        stats = d.ctl("stats")["servers"]["https"]
        assert stats["requests"] == 4
        # the plain server of the same daemon is still plain
        r = run_curl(curl, "-x", f"http://{d.proxy}", origin.url("/small"))
        assert r.stdout == b"x" * 100

        # certificate renewal: new files (another CA) are served without a reload
        ca2_key, ca2 = make_ca("Arcus test CA 2")
        write_pair(work, *issue(ca2_key, ca2))
        ca2_file = write_ca(tmp_path / "ca2.pem", ca2)
        deadline = time.monotonic() + 10
        ok = False
        while time.monotonic() < deadline and not ok:
            time.sleep(0.5)
            for host in ("localhost", "127.0.0.1"):
                r = run_curl(curl, "--proxy", f"https://{host}:{port}", "--proxy-cacert", str(ca2_file), origin.url("/small"))
                ok = r.returncode == 0
        assert ok, r.stderr
        r = run_curl(curl, "--proxy", f"https://127.0.0.1:{port}", "--proxy-cacert", str(ca_file), origin.url("/small"))
        assert r.returncode in (35, 60)


def test_a_key_that_does_not_match_is_refused_at_load_with_its_line(tmp_path):
    work = tmp_path / "arcus"
    work.mkdir()
    ca_key, ca = make_ca()
    key, cert = issue(ca_key, ca)
    write_pair(work, ec.generate_private_key(ec.SECP256R1()), cert)
    profile = render_profile().replace("servers:\n", "servers:\n" + TLS_SERVER, 1)
    (work / "profile.yaml").write_text(profile)
    d = DaemonProcess(work, profile)
    r = d.arcus("config", "check", str(work / "profile.yaml"))
    assert r.returncode != 0
    line = profile.splitlines().index("      certificate: proxy.pem") + 1
    assert f"profile.yaml:{line}: server \"https\": tls: certificate: cannot load the certificate" in r.stdout + r.stderr


# ------------------------------------------------------------------ a TLS client that can half-close


class MemoryTlsClient:
    """TLS to the proxy on memory BIOs over a blocking socket: unlike ``ssl.SSLSocket`` it can
    send close_notify (a TLS half-close) and go on reading what the proxy sends."""

    def __init__(self, address: tuple[str, int], cafile: Path | None, name: str = "localhost") -> None:
        self.sock = socket.create_connection(address, timeout=10)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=name)

    def handshake(self) -> None:
        """Raises ssl.SSLError if it fails, once the alert it made is sent."""
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
            except ssl.SSLError:
                self._flush()
                raise
        self._flush()

    def _flush(self) -> None:
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if data:
            self.inc.write(data)
        else:
            self.inc.write_eof()

    def send(self, data: bytes) -> None:
        self.obj.write(data)
        self._flush()

    def close_notify(self) -> None:
        """Our side is done (TLS close_notify); reading goes on."""
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass  # the proxy's own close_notify has not come yet
        self._flush()

    def read_until(self, marker: bytes) -> bytes:
        got = b""
        while marker not in got:
            chunk = self._read()
            if not chunk:
                break
            got += chunk
        return got

    def read_to_end(self) -> bytes:
        """Everything until the proxy's close_notify, or its TCP close."""
        got = b""
        while chunk := self._read():
            got += chunk
        return got

    def _read(self) -> bytes:
        while True:
            try:
                return self.obj.read(65536)
            except ssl.SSLWantReadError:
                self._fill()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def close(self) -> None:
        self.sock.close()


def client_hello(name: str = "localhost") -> bytes:
    """A real TLS ClientHello for ``name`` (to send part of)."""
    out = ssl.MemoryBIO()
    obj = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), out, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def https_daemon(tmp_path: Path, extra: str = "") -> tuple[DaemonProcess, Path]:
    """A daemon whose server ``https`` is an http_proxy over TLS (``extra``: more of its keys),
    and the CA file its clients trust."""
    work = tmp_path / "arcus"
    work.mkdir()
    ca_key, ca = make_ca()
    write_pair(work, *issue(ca_key, ca))
    profile = render_profile().replace("servers:\n", "servers:\n" + TLS_SERVER + extra, 1)
    return DaemonProcess(work, profile), write_ca(tmp_path / "ca.pem", ca)


class AnswerAfterEof(OneConnection):
    """An origin that reads its client to the end (its EOF) and only then answers what it read:
    what it sends proves the client's half-close reached it, and came after it."""

    def serve(self, conn: socket.socket) -> None:
        got = b""
        while chunk := conn.recv(65536):
            got += chunk
        conn.sendall(b"after your EOF, you said: " + got)


@pytest.mark.parametrize("over", ["tls", "tcp"])
def test_a_connect_tunnel_half_closed_by_the_client_still_gets_its_answer(tmp_path, over):
    """The client sends its bytes through the CONNECT tunnel, then ends its side: over TLS with
    close_notify, over plain TCP with shutdown(SHUT_WR). The EOF reaches the origin and the
    origin's answer, sent after it, still reaches the client; asyncio has nothing to complain
    about."""
    d, ca_file = https_daemon(tmp_path)
    origin = AnswerAfterEof()
    try:
        with d:
            t = f"127.0.0.1:{origin.port}"
            connect = f"CONNECT {t} HTTP/1.1\r\nHost: {t}\r\n\r\n".encode()
            if over == "tls":
                c = MemoryTlsClient(("127.0.0.1", int(d.listen("https").rsplit(":", 1)[1])), ca_file)
                try:
                    c.handshake()
                    c.send(connect)
                    head = c.read_until(b"\r\n\r\n")
                    assert head.startswith(b"HTTP/1.1 200"), head
                    c.send(b"ping")
                    c.close_notify()
                    data = c.read_to_end()
                finally:
                    c.close()
            else:
                with socket.create_connection(("127.0.0.1", d.proxy_port), timeout=10) as s:
                    s.sendall(connect)
                    head = b""
                    while b"\r\n\r\n" not in head:
                        head += s.recv(4096)
                    assert head.startswith(b"HTTP/1.1 200"), head
                    s.sendall(b"ping")
                    s.shutdown(socket.SHUT_WR)
                    data = b""
                    while chunk := s.recv(65536):
                        data += chunk
            assert data == b"after your EOF, you said: ping"
            server = "https" if over == "tls" else "http"
            wait_until(lambda: d.ctl("stats")["servers"][server]["conns_active"] == 0, what="the tunnel's end")
            assert "has no effect when using ssl" not in d.log()
    finally:
        origin.close()


def test_a_request_followed_by_close_notify_is_answered(tmp_path, origin):
    """A client that sends its request and then close_notify (it will send nothing more) still
    reads the answer, as a plain TCP client that half-closes after its request does."""
    d, ca_file = https_daemon(tmp_path)
    with d:
        c = MemoryTlsClient(("127.0.0.1", int(d.listen("https").rsplit(":", 1)[1])), ca_file)
        try:
            c.handshake()
            c.send(f"GET {origin.url('/small')} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n\r\n".encode())
            c.close_notify()
            data = c.read_to_end()
        finally:
            c.close()
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"\r\n\r\n" + b"x" * 100), data


def test_a_failed_handshake_with_the_proxy_is_counted_recorded_and_logged(tmp_path):
    """A client whose TLS handshake with the proxy does not complete leaves one connection
    record (error side client), an access-log line, a count in the server's errors and a line
    in the daemon's log saying why; one that connects and says nothing is no error."""
    d, _ = https_daemon(tmp_path, "    timeouts:\n      client_header: 1s\n")
    with d:
        port = int(d.listen("https").rsplit(":", 1)[1])
        hello = client_hello()
        clients: dict[str, int] = {}

        def connect() -> socket.socket:
            return socket.create_connection(("127.0.0.1", port), timeout=10)

        def read_to_close(s: socket.socket) -> None:
            while s.recv(4096):
                pass

        with connect() as s:  # a connection that never says a word: closed, no error
            clients["silent"] = s.getsockname()[1]
        with connect() as s:  # plain HTTP to the TLS port
            clients["plain"] = s.getsockname()[1]
            s.sendall(b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
            read_to_close(s)
        untrusting = MemoryTlsClient(("127.0.0.1", port), None)  # trusts the system's roots, not our CA
        clients["untrusting"] = untrusting.sock.getsockname()[1]
        try:
            with pytest.raises(ssl.SSLCertVerificationError):
                untrusting.handshake()  # refuses the proxy's certificate with an alert
        finally:
            untrusting.close()
        with connect() as s:  # half a ClientHello, then gone
            clients["gone"] = s.getsockname()[1]
            s.sendall(hello[: len(hello) // 2])
        with connect() as s:  # half a ClientHello, then nothing: the proxy ends it after client_header
            clients["stalled"] = s.getsockname()[1]
            s.sendall(hello[: len(hello) // 2])
            read_to_close(s)

        want = {"plain": "client_tls", "untrusting": "client_tls", "gone": "client_aborted", "stalled": "client_timeout"}
        wait_until(lambda: d.ctl("stats")["servers"]["https"]["errors"] == {"client_tls": 2, "client_aborted": 1, "client_timeout": 1},
                   what="the failed handshakes counted")

        def records() -> dict:
            out = d.arcus("audit", "search", "--json")
            by_client = {e["client"]: e for e in map(json.loads, out.stdout.splitlines()) if e["server"] == "https"}
            got = {name: by_client.get(f"127.0.0.1:{p}") for name, p in clients.items()}
            return got if all(got.values()) else {}

        got = wait_until(records, interval=0.3, what="a record of each connection")
        why = {"plain": "HTTP_REQUEST", "untrusting": "UNKNOWN_CA", "gone": "closed", "stalled": "within 1s"}
        for name, code in want.items():
            e = got[name]
            assert (e["kind"], e["error_side"], e["error_code"], e["status"]) == ("connection", "client", code, 408 if code == "client_timeout" else 400), e
            assert why[name] in e["detail"], e  # what TLS said
        # waited its client_header window (uvloop's timers count from the loop's cached
        # millisecond clock, so a bound can end up to a few ms before its full second)
        assert got["stalled"]["duration"] >= 0.98
        assert (got["silent"]["error_code"], got["silent"]["error_side"]) == (None, None)
        # the access log: a tunnel-style line for each failure; none for the silent connection,
        # whose record was written before theirs
        for name, code in want.items():
            line = rf" 127\.0\.0\.1:{clients[name]} default http_proxy - (400|408) 0 0 [0-9.]+ms {code}\b"
            wait_until(lambda line=line: re.search(line, d.log()), what=f"the access-log line of {name}")
        log = d.log()
        assert f"127.0.0.1:{clients['silent']} " not in log
        # the daemon's log says why
        for name, code in want.items():
            assert re.search(rf"127\.0\.0\.1:{clients[name]}: TLS handshake with server https failed \({code}\): .*{why[name]}", log), name
