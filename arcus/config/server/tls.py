"""``tls:`` of a listener: the certificate and key a server presents to its clients.

    - name: https
      type: http_proxy
      listen: 0.0.0.0:3129
      escaper: direct
      tls:
        certificate: certs/proxy.pem   # PEM chain, leaf first; relative to the profile's directory
        private_key: certs/proxy.key   # PEM key (unencrypted)

Both files are read when the profile is loaded, and the pair is checked there (a key that does
not match its certificate is an error at the ``certificate`` line). The listener builds its TLS
context from them when it is bound (``arcus.serve.tls_listen``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from arcus.config.objects import Context, ObjectSection
from arcus.config.server.tcp_stream import read_path
from arcus.tls.contexts import check_pair, pair_error

TLS_KEYS = ("certificate", "private_key")


@dataclass(frozen=True, slots=True)
class TlsListenConfig:
    certificate: str  # absolute path of the PEM chain
    private_key: str  # absolute path of the PEM key


def parse_tls(sec: ObjectSection, ctx: Context, key: str = "tls") -> TlsListenConfig | None:
    """The ``tls:`` mapping of ``sec``, or None when absent or wrong (errors recorded in ``sec``)."""
    sub = sec.section(key, TLS_KEYS)
    if sub is None:
        return None
    cert = sub.need("certificate", read_path(ctx))
    key_path = sub.need("private_key", read_path(ctx))
    if sub.ok and cert is not None and key_path is not None:
        try:
            check_pair(cert, key_path)
        except (ssl.SSLError, OSError) as exc:
            sub.error(f"cannot load the certificate {cert} with the key {key_path}: {pair_error(exc)}",
                      sub.value_line("certificate"), key="certificate")
    sub.finish()
    sec.ok = sec.ok and sub.ok
    if not sub.ok or cert is None or key_path is None:
        return None
    return TlsListenConfig(certificate=cert, private_key=key_path)
