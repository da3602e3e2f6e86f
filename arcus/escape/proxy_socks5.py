"""`proxy_socks5`: every connection is a SOCKS5 CONNECT (RFC 1928) through an upstream proxy,
with username/password (RFC 1929) when the profile sets them.

The destination is sent as given: a name as ATYP DOMAIN (the upstream resolves it, like
``socks5h://``), an IP literal as ATYP IPv4/IPv6.
"""

from __future__ import annotations

from arcus.errors import ErrorCode, EscapeError
from arcus.escape.tunnel import Handshake, UpstreamProxyEscaper
from arcus.proto import socks

_REPLY_TEXT = {
    socks.GENERAL_FAILURE: "general failure",
    socks.NOT_ALLOWED: "connection not allowed by ruleset",
    socks.NETWORK_UNREACHABLE: "network unreachable",
    socks.HOST_UNREACHABLE: "host unreachable",
    socks.CONNECTION_REFUSED: "connection refused",
    socks.TTL_EXPIRED: "TTL expired",
    socks.COMMAND_NOT_SUPPORTED: "command not supported",
    socks.ADDRESS_TYPE_NOT_SUPPORTED: "address type not supported",
}


class ProxySocks5Escaper(UpstreamProxyEscaper):
    type_name = "proxy_socks5"
    protocol_name = "SOCKS5"

    async def handshake(self, hs: Handshake, host: str, port: int) -> None:
        with_auth = self.username is not None and self.password is not None
        hs.write(socks.socks5_client_greeting(with_auth))
        method = await hs.read(socks.parse_method_selection)
        if method == socks.USERPASS and with_auth:
            hs.write(socks.socks5_client_userpass(self.username, self.password))  # type: ignore[arg-type]
            if not await hs.read(socks.parse_auth_status):
                raise self._fail(
                    f"upstream SOCKS5 proxy {self.proxy} ({self.name}) refused our username/password", ErrorCode.UPSTREAM_AUTH, hop=True
                )
        elif method == socks.NO_ACCEPTABLE or method != socks.NO_AUTH:
            why = "set username and password" if not with_auth else "it offers none we support"
            raise self._fail(
                f"upstream SOCKS5 proxy {self.proxy} ({self.name}) accepts none of our authentication methods ({why})",
                ErrorCode.UPSTREAM_AUTH,
                hop=True,
            )
        hs.write(socks.socks5_client_request(socks.CONNECT, host, port))
        reply = await hs.read(socks.parse_socks5_reply)
        if reply.rep != socks.SUCCEEDED:
            raise self._refusal(reply.rep, host, port)

    def _refusal(self, rep: int, host: str, port: int) -> EscapeError:
        text = _REPLY_TEXT.get(rep, f"reply code {rep}")
        said = f"upstream SOCKS5 proxy {self.proxy} ({self.name}) refused {host}:{port}: {text}"
        if rep == socks.NOT_ALLOWED:
            return self._fail(said, ErrorCode.UPSTREAM_DENIED)
        if rep == socks.TTL_EXPIRED:
            return self._fail(said, ErrorCode.UPSTREAM_TIMEOUT)
        if rep in (socks.HOST_UNREACHABLE, socks.NETWORK_UNREACHABLE, socks.CONNECTION_REFUSED):
            return self._fail(said, ErrorCode.UPSTREAM_CONNECT, socks5=rep)
        return self._fail(said, ErrorCode.UPSTREAM_PROTOCOL)
