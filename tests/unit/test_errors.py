"""The one table of error codes: stable values, a side each, and the answers each protocol gives."""

from __future__ import annotations

import pytest

from arcus.errors import ErrorCode, EscapeError, Refusal, Side
from arcus.proto import socks

# the values stats, audit records and X-Arcus-Error carry: renaming one breaks users' data
STABLE = {
    "bad_request", "client_bad_request", "uri_too_long", "header_too_large", "version_not_supported",
    "not_a_proxy_request", "no_sni", "unknown_host", "misdirected", "unsupported", "client_timeout",
    "client_aborted", "tunnel_idle", "client_tls", "auth_required", "auth_throttled", "rate_limited", "user_conn_limit",
    "tenant_conn_limit", "denied", "redirected", "tenant_suspended", "tenant_locked", "user_blocked",
    "user_expired", "unknown_tenant", "upstream_connect", "upstream_timeout", "upstream_closed",
    "upstream_bad_response", "upstream_tls", "upstream_protocol", "upstream_auth", "upstream_denied",
    "resolve_failed", "resolve_timeout", "server_busy", "box_conn_limit", "internal",
    "icap_blocked", "icap_too_large", "icap_failed", "loop_detected",
}


def test_every_code_keeps_its_value_and_has_a_side_a_status_and_socks_replies() -> None:
    assert {c.value for c in ErrorCode} == STABLE
    for code in ErrorCode:
        assert isinstance(code.side, Side) and 300 <= code.status < 600 or code is ErrorCode.REDIRECTED
        assert 1 <= code.socks5 <= 8 and code.socks4 == 91
        assert ErrorCode(code.value) is code and code == code.value and f"{code}" == code.value


def test_the_sides_the_old_tables_gave_are_kept() -> None:
    # http_proxy's _SIDES and relay's SIDES, merged (they disagreed on nothing but tunnel_idle's presence)
    assert ErrorCode.TUNNEL_IDLE.side is Side.CLIENT and ErrorCode.TENANT_CONN_LIMIT.side is Side.CLIENT
    assert ErrorCode.BOX_CONN_LIMIT.side is Side.INTERNAL and ErrorCode.DENIED.side is Side.FORBIDDEN
    assert ErrorCode.RESOLVE_FAILED.side is Side.UPSTREAM


@pytest.mark.parametrize("code", list(ErrorCode))
def test_socks5_replies_match_the_protocol_modules_mapping(code: ErrorCode) -> None:
    by_code = socks.socks5_rep_for(code.value)
    expected = by_code if by_code != socks.GENERAL_FAILURE else socks.socks5_rep_for(code.status)
    if code is ErrorCode.UNSUPPORTED:
        expected = socks.COMMAND_NOT_SUPPORTED
    assert code.socks5 == expected


def test_an_unknown_code_is_refused_where_it_is_made() -> None:
    with pytest.raises(ValueError):
        EscapeError("x", code="no_such_code")


def test_a_refusal_answers_with_the_codes_status_unless_told_otherwise() -> None:
    r = Refusal(ErrorCode.AUTH_REQUIRED, "who are you")
    assert (r.status, r.side, r.socks5_reply) == (407, Side.CLIENT, socks.NOT_ALLOWED)
    assert Refusal(ErrorCode.AUTH_REQUIRED, "x", http_status=403).status == 403
    exc = EscapeError("no route", code=ErrorCode.UPSTREAM_CONNECT, socks5=socks.NETWORK_UNREACHABLE)
    assert Refusal.of(exc).socks5_reply == socks.NETWORK_UNREACHABLE and exc.status == 502
