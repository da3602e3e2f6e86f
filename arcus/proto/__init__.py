"""Sans-io protocol parsers and builders (HTTP/1.x now; SOCKS, TLS ClientHello and ICAP later).

Nothing here does I/O, reads a clock or logs, and nothing imports Arcus above ``arcus.errors``:
each parser takes bytes and returns values or raises ``arcus.errors.ProtocolError`` naming the
side at fault and the status to answer with.
"""
