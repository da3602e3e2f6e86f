"""arcus.tls.contexts: each purpose's context, checked by real handshakes over memory BIOs."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from arcus.tls.contexts import check_pair, listener_context, origin_context, pair_error, proxy_context, upstream_context
from tests.integration.tls_peers import LocalCA


def handshake(client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, server_hostname: str | None) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Drive a client and a server TLS object against each other until both finish (or one raises)."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_side=False, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(20):
        for key, obj in (("c", client), ("s", server)):
            if not done[key]:
                try:
                    obj.do_handshake()
                    done[key] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return client, server
    raise AssertionError("handshake did not finish")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return LocalCA(tmp_path_factory.mktemp("ca"))


def test_listener_offers_http11_and_reports_the_sni_name(ca: LocalCA) -> None:
    cert, key = ca.issue("proxy.test", stem="proxy")
    seen: list[str | None] = []
    server = listener_context(str(cert), str(key), sni_callback=lambda obj, name, ctx: seen.append(name))
    assert server.minimum_version == ssl.TLSVersion.TLSv1_2
    client, _ = handshake(proxy_context(str(ca.cert_path)), server, "proxy.test")
    assert seen == ["proxy.test"]
    assert client.selected_alpn_protocol() == "http/1.1"


def test_proxy_and_origin_contexts_check_the_name(ca: LocalCA) -> None:
    cert, key = ca.issue("proxy.test", stem="named")
    server = listener_context(str(cert), str(key))
    for ctx in (proxy_context(str(ca.cert_path)), origin_context(str(ca.cert_path))):
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(ctx, server, "other.test")


def test_origin_context_without_a_bundle_refuses_a_private_ca(ca: LocalCA) -> None:
    cert, key = ca.issue("origin.test", stem="origin")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(origin_context(), listener_context(str(cert), str(key)), "origin.test")


def test_upstream_context_sends_and_verifies_its_configured_name(ca: LocalCA) -> None:
    cert, key = ca.issue("backend.test", stem="backend")
    seen: list[str | None] = []
    server = listener_context(str(cert), str(key), alpn=(), sni_callback=lambda obj, name, ctx: seen.append(name))
    # the connection was opened to an address; the configured name is what is sent and checked
    handshake(upstream_context(str(ca.cert_path), "backend.test"), server, "127.0.0.1")
    assert seen == ["backend.test"]
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(upstream_context(str(ca.cert_path), None), server, "127.0.0.1")


def test_check_pair_refuses_a_key_of_another_certificate(ca: LocalCA, tmp_path: Path) -> None:
    cert, key = ca.issue("a.test", stem="a")
    _, other_key = ca.issue("b.test", stem="b")
    check_pair(str(cert), str(key))
    with pytest.raises(ssl.SSLError) as info:
        check_pair(str(cert), str(other_key))
    assert pair_error(info.value) == "the private key does not belong to the certificate"
    with pytest.raises(OSError) as missing:  # ssl.SSLError is an OSError too
        check_pair(str(tmp_path / "none.pem"), str(key))
    assert pair_error(missing.value)
