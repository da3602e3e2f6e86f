"""Shared test material: an operator's own root and intermediate (built with cryptography), and
a loopback TLS handshake with the real ``ssl`` module."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from arcus.tls.ca import CAKey, cert_pem, key_pem, utcnow
from arcus.tls.certcache import Leaf


def make_ca(name: str, issuer: tuple[x509.Certificate, CAKey] | None = None, *, path_length: int | None = None,
            ca: bool = True, days: int = 365, start: dt.datetime | None = None) -> tuple[x509.Certificate, CAKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_cert, signer_key = issuer if issuer else (None, key)
    start = start or utcnow() - dt.timedelta(days=1)
    builder = (
        x509.CertificateBuilder().subject_name(subject)
        .issuer_name(signer_cert.subject if signer_cert else subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
    if signer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False)
    return builder.sign(signer_key, hashes.SHA256()), key


def write_pair(directory: Path, stem: str, cert: x509.Certificate, key: CAKey) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    c, k = directory / f"{stem}.pem", directory / f"{stem}.key"
    c.write_bytes(cert_pem(cert))
    k.write_bytes(key_pem(key))
    return c, k


def handshake(leaf: Leaf, trusted_pem: bytes, server_hostname: str) -> str:
    """A real TLS handshake on 127.0.0.1: a server with the leaf and its chain, a client trusting
    only ``trusted_pem``. Returns the client's view of the server's CN; raises ssl errors."""

    async def main() -> str:
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(leaf.chain_file, leaf.key_file)
        client_ctx = ssl.create_default_context(cadata=trusted_pem.decode())

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.read(1)
            except (ssl.SSLError, ConnectionError):
                pass
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname=server_hostname), 10)
            peer = writer.get_extra_info("peercert")
            writer.close()
            return dict(x[0] for x in peer["subject"])["commonName"]
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main())


class TLSServer:
    """A loopback HTTPS server (a thread, blocking sockets) that answers every request with
    ``hello from <sni>``; for real clients such as curl."""

    def __init__(self, leaf: Leaf) -> None:
        import socket
        import threading

        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(leaf.chain_file, leaf.key_file)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tls-test-server", daemon=True)

    def __enter__(self) -> "TLSServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    head = b""
                    while b"\r\n\r\n" not in head:
                        chunk = tls.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                    body = b"hello over intercepted TLS\n"
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                                % (len(body), body))
            except (OSError, ssl.SSLError):
                conn.close()  # the client refused our certificate: that is what some tests want
