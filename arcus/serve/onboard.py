"""The onboarding page: ``http://arcus.invalid/`` through the proxy gives a client its tenant's CA.

A client of a tenant that browses (plain HTTP, through ``http_proxy``) to the reserved name
:data:`~arcus.tls.install.ONBOARD_HOST` is answered by the proxy itself, never by an upstream:

- ``/``: a page naming the tenant and its CA (subject, SHA-256 fingerprint), links to ``/ca.pem``
  and ``/ca.der``, and the install steps for Windows, macOS, Linux, Firefox, Android and iOS
  (``arcus.tls.install``: the text ``arcus ca export`` prints too);
- ``/ca.pem`` (``application/x-pem-file``) and ``/ca.der`` (``application/x-x509-ca-cert``,
  which Android and iOS offer to install): the certificate ``arcus ca export --tenant T`` gives;
- anything else: 404; a method other than GET or HEAD: 405.

Whose CA: the request is identified like any other (``Gate.authenticate``: the listener's
tenant, the client's address, a trusted ``X-Tenant-ID``, proxy credentials, verified), so a
client that must log in gets a 407 first. The policy is not asked: the page leaves nothing, and
the CA certificate is what the tenant's clients are meant to have. A tenant with its own CA gets
it; any other the box's; with no CA at all the page says so (503).

The CA files are read in a worker thread (``asyncio.to_thread``), never on the event loop; the
request is recorded like any other (host ``arcus.invalid``, status, bytes).
"""

from __future__ import annotations

import asyncio
import html
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from arcus.errors import ArcusError, ErrorCode
from arcus.proto import http1
from arcus.tls.ca import colon_hex, fingerprint
from arcus.tls.castore import CAStore
from arcus.tls.install import INSTALL_STEPS, ONBOARD_HOST

log = logging.getLogger("arcus.serve")

PEM_TYPE = b"application/x-pem-file"
DER_TYPE = b"application/x-x509-ca-cert"
HTML_TYPE = b"text/html; charset=utf-8"
TEXT_TYPE = b"text/plain; charset=utf-8"


def wanted(req: http1.RequestHead) -> bool:
    """Whether ``req`` is for the onboarding page (``http://arcus.invalid[:80]/...``)."""
    return req.form == "absolute" and req.host in ONBOARD_NAMES and req.scheme == b"http" and req.port in (80, None)


ONBOARD_NAMES = frozenset({ONBOARD_HOST, ONBOARD_HOST + "."})
"""The onboarding host as a client may write it (a trailing dot names the same host)."""


@dataclass(frozen=True, slots=True)
class Page:
    status: int
    body: bytes
    content_type: bytes = HTML_TYPE


def serve(conn: Any, ex: Any) -> None:
    """Answer ``ex`` (on ``conn``, an ``HttpProxyConnection``) with the page, once the request's
    tenant and user are settled; a refusal of the gate (407, 403...) is answered as usual."""
    req = ex.req
    claims, refused = conn.routing.claims(conn, req)
    if refused is not None:
        conn.m.admitted(refused)
        return
    gate = conn.gate
    assert gate is not None

    def settled(refusal: Any) -> None:
        if conn.ended:
            return
        conn.set_tenant(gate.tenant)
        conn.set_user(gate.user)
        conn.ten_stats.requests += 1
        if refusal is not None:
            conn.m.admitted(refusal)
            return
        ex.decision = "allow"
        path = req.path.decode("latin-1").split("?", 1)[0]
        conn.task = asyncio.get_running_loop().create_task(
            _answer(conn, ex, gate.tenant.name, path), name=f"arcus-onboard-{conn.id}"
        )

    gate.authenticate(conn.snap, claims, settled)
    if gate.task is not None and not conn.ended:
        conn.deadline = 0.0  # credentials are being verified off the loop


async def _answer(conn: Any, ex: Any, tenant: str, path: str) -> None:
    method = ex.req.method
    try:
        if method not in (b"GET", b"HEAD"):
            page = Page(405, b"405 Method Not Allowed\nthe onboarding page answers GET only\n", TEXT_TYPE)
        else:
            page = await asyncio.to_thread(render, conn.shared.data_dir, tenant, path)
    except Exception:  # noqa: BLE001 - a bug must answer, not hang the client
        log.exception("the onboarding page failed")
        page = Page(500, b"500 Internal Server Error\nthe onboarding page failed; see the proxy's log\n", TEXT_TYPE)
    conn.task = None
    if conn.ended:
        return
    extra = [(b"Allow", b"GET, HEAD")] if page.status == 405 else [(b"Cache-Control", b"no-store")]
    conn.m.answered(lambda keep_alive: ex.answer(
        page.status, ErrorCode.INTERNAL, "", keep_alive, body=page.body, content_type=page.content_type,
        extra=extra, error=page.status == 500,
    ))


def render(data_dir: Path | None, tenant: str, path: str) -> Page:
    """The page at ``path`` for ``tenant`` (blocking: file reads; run it in a thread)."""
    if path not in ("/", "/ca.pem", "/ca.der", "/ca.crt"):
        return Page(404, b"404 Not Found\nthe onboarding page has /, /ca.pem and /ca.der\n", TEXT_TYPE)
    if data_dir is None:
        return _no_ca(tenant, "this proxy has no data directory")
    try:
        cert, owner = CAStore(data_dir).trust_anchor(tenant)
    except ArcusError as exc:
        return _no_ca(tenant, str(exc))
    if path == "/ca.pem":
        return Page(200, cert.public_bytes(serialization.Encoding.PEM), PEM_TYPE)
    if path in ("/ca.der", "/ca.crt"):
        return Page(200, cert.public_bytes(serialization.Encoding.DER), DER_TYPE)
    whose = f"the CA of tenant {tenant}" if owner is not None else f"the box's CA (tenant {tenant} has none of its own)"
    steps = "".join(
        f"<h3>{html.escape(title)}</h3><ol>" + "".join(f"<li>{html.escape(s)}</li>" for s in items) + "</ol>"
        for title, items in INSTALL_STEPS
    )
    body = (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Arcus CA</title></head><body>"
        f"<h1>Trust {html.escape(whose)}</h1>"
        "<p>This proxy inspects HTTPS for your organisation. Install its certificate once:</p>"
        f"<p><a id=\"pem\" href=\"http://{ONBOARD_HOST}/ca.pem\">ca.pem</a> (PEM) &middot; "
        f"<a id=\"der\" href=\"http://{ONBOARD_HOST}/ca.der\">ca.der</a> (DER)</p>"
        f"<p>Subject: {html.escape(cert.subject.rfc4514_string())}<br>"
        f"SHA-256 fingerprint: <code id=\"fingerprint\">{colon_hex(fingerprint(cert))}</code></p>"
        f"{steps}</body></html>\n"
    )
    return Page(200, body.encode())


def _no_ca(tenant: str, why: str) -> Page:
    body = (
        f"503 Service Unavailable\nno CA for tenant {tenant}: {why}\n"
        "(the proxy's operator creates one with `arcus ca init`, or `arcus ca init --tenant NAME`)\n"
    )
    return Page(503, body.encode(), TEXT_TYPE)
