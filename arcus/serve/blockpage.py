"""The block page: what a browser shows for a request a policy refused (403)."""

from __future__ import annotations

import html

DEFAULT_BLOCK_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Blocked</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:3em auto">
<h1>This request was blocked</h1>
<p>{reason}</p>
<p>Rule: <code>{rule}</code><br>Tenant: <code>{tenant}</code><br>Host: <code>{host}</code><br>
Request id: <code>{request_id}</code></p>
<p>If you think this is a mistake, tell your administrator the request id.</p>
</body></html>
"""


class _Fields(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render_block_page(template: str | None, *, tenant: str, rule: str, reason: str, request_id: str, host: str) -> bytes:
    """The 403 page: the tenant's template (``str.format`` fields, values HTML-escaped) or ours.

    A template with an unknown field or a stray brace is shown with that part left as written,
    never failing the request.
    """
    fields = _Fields(
        tenant=html.escape(tenant),
        rule=html.escape(rule),
        reason=html.escape(reason),
        request_id=html.escape(request_id),
        host=html.escape(host),
    )
    try:
        return (template or DEFAULT_BLOCK_PAGE).format_map(fields).encode("utf-8")
    except (ValueError, IndexError, AttributeError):
        return DEFAULT_BLOCK_PAGE.format_map(fields).encode("utf-8")
