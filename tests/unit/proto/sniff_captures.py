"""First bytes of real clients, captured on loopback (regenerate: ``python tests/unit/proto/sniff_captures.py``).

Each is what a listener on 127.0.0.1 received first from the client named: openssl 3.0 s_client
(``-servername www.example.com -alpn h2,http/1.1``), curl 7.88 (HTTPS to api.example.org, HTTP/1.1,
HTTP/2 with prior knowledge), the OpenSSH 9.2 client, and curl's first command after a server
greeting (SMTP, IMAP, POP3, FTP). Server greetings are not captured (no such servers on the build
box): the tests use greetings as the servers named document them.
"""

from __future__ import annotations

CAPTURED: dict[str, bytes] = {
    "openssl_s_client": bytes.fromhex(
        "160301014e0100014a0303c61a351ec15b64de0463175e7022801708386f5ad69ebe252d914fd4a22f4b9820f8013f5d"
        "faceab81b805a1ef6aa5207f1d83b0f7ea0a08fb18811a78d495d52c003e130213031301c02cc030009fcca9cca8ccaa"
        "c02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff010000c3"
        "00000014001200000f7777772e6578616d706c652e636f6d000b000403000102000a00160014001d0017001e00190018"
        "01000101010201030104002300000010000e000c02683208687474702f312e310016000000170000000d002a00280403"
        "05030603080708080809080a080b080408050806040105010601030303010302040205020602002b0009080304030303"
        "020301002d00020101003300260024001d002062e1174f3957a3e00805b96271c372942112f769fa99b4204605666186"
        "c59726"
    ),
    "curl_https": bytes.fromhex(
        "1603010200010001fc03036f36a81bf81170f1e40e67aca3e918ebe1506a26ba7c5747c79f74b3fa4edd2a20d683997c"
        "093fdb668be1bb20e84e38259aa6f5e9ebd7af790681a4b1f3f43f0e003e130213031301c02cc030009fcca9cca8ccaa"
        "c02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff01000175"
        "00000014001200000f6170692e6578616d706c652e6f7267000b000403000102000a00160014001d0017001e00190018"
        "010001010102010301040010000e000c02683208687474702f312e31001600000017000000310000000d002a00280403"
        "05030603080708080809080a080b080408050806040105010601030303010302040205020602002b0009080304030303"
        "020301002d00020101003300260024001d0020cd8b6969db5a84094f54bce9247db1381740f104724c0bd97b74e9adc1"
        "27603c001500ae0000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "00000000000000000000000000000000000000000000000000000000000000000000000000"
    ),
    "curl_http1": bytes.fromhex(
        "474554202f696e6465782e68746d6c20485454502f312e310d0a486f73743a203132372e302e302e313a33393032330d"
        "0a557365722d4167656e743a206375726c2f372e38382e310d0a4163636570743a202a2f2a0d0a0d0a"
    ),
    "curl_h2_prior_knowledge": bytes.fromhex(
        "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a000012040000000000000300000064000402000000000200"
        "00000000000408000000000001ff000100001f010500000001828486418b089d5c0b8170dc69b6c4cf7a8825b650c3ab"
        "bcf2e153032a2f2a"
    ),
    "ssh_client": bytes.fromhex(
        "5353482d322e302d4f70656e5353485f392e3270312044656269616e2d322b646562313275360d0a"
    ),
    "curl_smtp_after_greeting": bytes.fromhex(
        "45484c4f206e756c6c0d0a"
    ),
    "curl_imap_after_greeting": bytes.fromhex(
        "41303031204341504142494c4954590d0a"
    ),
    "curl_pop3_after_greeting": bytes.fromhex(
        "434150410d0a"
    ),
    "curl_ftp_after_greeting": bytes.fromhex(
        "5553455220616e6f6e796d6f75730d0a"
    ),
}

GREETINGS = {
    "smtp_client": b"220 mx.example.com ESMTP Postfix\r\n",
    "imap_client": b"* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n",
    "pop3_client": b"+OK Dovecot ready.\r\n",
    "ftp_client": b"220 (vsFTPd 3.0.3)\r\n",
}


def _capture(command: list[str], greeting: bytes = b"", timeout: float = 3.0) -> bytes:
    """What a client started with ``command`` (``{port}`` filled in) sends first to a listener."""
    import socket
    import subprocess
    import time

    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]
        proc = subprocess.Popen([a.format(port=port) for a in command], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            srv.settimeout(timeout)
            conn, _ = srv.accept()
            with conn:
                conn.sendall(greeting)
                conn.settimeout(1.0)
                got = b""
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    try:
                        data = conn.recv(65536)
                    except TimeoutError:
                        break
                    if not data:
                        break
                    got += data
                return got
        finally:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    SSH = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    found = {
        "openssl_s_client": _capture(["openssl", "s_client", "-connect", "127.0.0.1:{port}", "-servername",
                                      "www.example.com", "-alpn", "h2,http/1.1"]),
        "curl_https": _capture(["curl", "-sk", "--max-time", "2", "--resolve", "api.example.org:{port}:127.0.0.1",
                                "https://api.example.org:{port}/"]),
        "curl_http1": _capture(["curl", "-s", "--max-time", "2", "http://127.0.0.1:{port}/index.html"]),
        "curl_h2_prior_knowledge": _capture(["curl", "-s", "--max-time", "2", "--http2-prior-knowledge",
                                             "http://127.0.0.1:{port}/"]),
        "ssh_client": _capture([*SSH, "-p", "{port}", "127.0.0.1"]),
        "curl_smtp_after_greeting": _capture(["curl", "-s", "--max-time", "2", "smtp://127.0.0.1:{port}/", "--mail-from",
                                              "a@example.com", "--mail-rcpt", "b@example.com", "-T", "/dev/null"],
                                             GREETINGS["smtp_client"]),
        "curl_imap_after_greeting": _capture(["curl", "-s", "--max-time", "2", "imap://127.0.0.1:{port}/"],
                                             GREETINGS["imap_client"]),
        "curl_pop3_after_greeting": _capture(["curl", "-s", "--max-time", "2", "pop3://127.0.0.1:{port}/"],
                                             GREETINGS["pop3_client"]),
        "curl_ftp_after_greeting": _capture(["curl", "-s", "--max-time", "2", "ftp://127.0.0.1:{port}/"],
                                            GREETINGS["ftp_client"]),
    }
    for name, data in found.items():
        print(f"{name}: {len(data)} bytes {data[:60]!r}")
