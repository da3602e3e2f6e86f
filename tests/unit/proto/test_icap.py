"""ICAP messages (arcus.proto.icap): built requests, parsed answers, hostile input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arcus.errors import ProtocolError
from arcus.proto import icap

RES_HDR = b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\n\r\n"
# what c-icap 0.5.10's virus_scan answers for EICAR (X-Violations-Found folded over TAB lines)
INFECTED = (
    b"ICAP/1.0 200 OK\r\n"
    b"Server: C-ICAP/0.5.10\r\n"
    b"Connection: keep-alive\r\n"
    b'ISTag: "CI0001-1-clamd-1"\r\n'
    b"X-Infection-Found: Type=0; Resolution=2; Threat=Eicar-Test-Signature.UNOFFICIAL;\r\n"
    b"X-Violations-Found: 1\r\n\teicar.com\r\n\tEicar-Test-Signature.UNOFFICIAL\r\n\t0\r\n\t0\r\n"
    b"Encapsulated: res-hdr=0, res-body=%d\r\n\r\n" % len(RES_HDR)
) + RES_HDR + b"b\r\n<html>virus\r\n2\r\n\x00\x00\r\n0\r\n\r\n"


def events_of(data: bytes, step: int | None = None) -> list:
    p = icap.ResponseParser()
    if step is None:
        return p.feed(data)
    out = []
    for i in range(0, len(data), step):
        out.extend(p.feed(data[i : i + step]))
    return out


def merged(events: list) -> list:
    """Body pieces joined, so a byte-at-a-time parse compares equal to a whole one."""
    out: list = []
    for e in events:
        if isinstance(e, icap.Body) and out and isinstance(out[-1], icap.Body):
            out[-1] = icap.Body(out[-1].data + e.data)
        else:
            out.append(e)
    return out


# --- requests ----------------------------------------------------------------------------------


def test_build_respmod_offsets_point_at_each_part():
    req = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
    res = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
    out = icap.build_request(b"RESPMOD", b"icap://s/av", [(b"Host", b"s"), (b"Preview", b"0")], req_hdr=req, res_hdr=res, body=b"res-body")
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"RESPMOD icap://s/av ICAP/1.0\r\n")
    encap = next(line for line in head.split(b"\r\n") if line.startswith(b"Encapsulated:"))
    parts = icap.parse_encapsulated(encap.split(b":", 1)[1].strip())
    assert parts == [(b"req-hdr", 0), (b"res-hdr", len(req)), (b"res-body", len(req) + len(res))]
    assert rest == req + res


def test_build_reqmod_without_body_says_null_body_and_options_says_nothing():
    out = icap.build_request(b"REQMOD", b"icap://s/av", [], req_hdr=b"GET / HTTP/1.1\r\n\r\n")
    assert b"Encapsulated: req-hdr=0, null-body=18\r\n" in out
    assert b"Encapsulated" not in icap.build_request(b"OPTIONS", b"icap://s/av", [(b"Host", b"s")])


def test_chunks_and_the_last_chunk_with_ieof():
    assert icap.chunk(b"hello") == b"5\r\nhello\r\n"
    assert icap.chunk(b"") == b""  # never a last-chunk by accident
    assert icap.last_chunk() == b"0\r\n\r\n"
    assert icap.last_chunk(True) == b"0; ieof\r\n\r\n"


# --- answers -----------------------------------------------------------------------------------


def test_infected_answer_unfolds_tab_continuations_and_names_the_threat():
    ev = merged(events_of(INFECTED))
    head = ev[0]
    assert isinstance(head, icap.Head) and head.status == 200 and head.keep_alive
    assert head.get(b"x-violations-found") == b"1 eicar.com Eicar-Test-Signature.UNOFFICIAL 0 0"
    assert icap.threat(head) == "Eicar-Test-Signature.UNOFFICIAL"
    assert ev[1] == icap.Encapsulated(b"res-hdr", RES_HDR)
    assert ev[2] == icap.Body(b"<html>virus\x00\x00")
    assert ev[3] == icap.End(False)
    assert len(ev) == 4


def test_threat_from_violations_alone():
    head = icap.ResponseParser().feed(
        b"ICAP/1.0 200 OK\r\nX-Violations-Found: 1\r\n\tf\r\n\tWorm.X\r\n\t0\r\n\t0\r\nEncapsulated: null-body=0\r\n\r\n"
    )[0]
    assert icap.threat(head) == "Worm.X"
    assert icap.threat(icap.Head(200, b"OK", [])) is None


@pytest.mark.parametrize("step", [1, 2, 7, 64])
def test_byte_at_a_time_gives_the_same_events(step):
    assert merged(events_of(INFECTED, step)) == merged(events_of(INFECTED))


def test_100_then_204_then_trailing_bytes_wait_for_the_next_message():
    p = icap.ResponseParser()
    ev = p.feed(b"ICAP/1.0 100 Continue\r\n\r\nICAP/1.0 204 No Content\r\nISTag: x\r\n\r\nICAP/1.0 2")
    assert [type(e) for e in ev] == [icap.Head, icap.End, icap.Head, icap.End]
    assert (ev[0].status, ev[2].status) == (100, 204)
    assert p.pending
    ev = p.feed(b"04 No Content\r\n\r\n")
    assert ev[0].status == 204 and not p.pending


def test_null_body_answer_and_a_connection_close():
    ev = icap.ResponseParser().feed(
        b"ICAP/1.0 200 OK\r\nConnection: close\r\nEncapsulated: res-hdr=0, null-body=%d\r\n\r\n%s" % (len(RES_HDR), RES_HDR)
    )
    assert not ev[0].keep_alive
    assert ev[1:] == [icap.Encapsulated(b"res-hdr", RES_HDR), icap.End()]


def test_chunk_decoder_for_http_bodies_with_extensions_and_trailers():
    d = icap.ChunkDecoder()
    pieces, used = d.feed(b"3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: v\r\n\r\nNEXT")
    assert b"".join(pieces) == b"abcde" and d.done and not d.ieof
    assert used == len(b"3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: v\r\n\r\n")


# --- hostile input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, message",
    [
        (b"HTTP/1.1 200 OK\r\n\r\n", "malformed status line"),
        (b"ICAP/1.0 200 OK\r\n\tfolded first\r\n\r\n", "continuation line before any header"),
        (b"ICAP/1.0 200 OK\r\nno colon\r\n\r\n", "malformed header line"),
        (b"ICAP/1.0 200 OK\r\n\r\n", "a 200 without Encapsulated"),
        (b"ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=10, res-body=5\r\n\r\n", "go backwards"),
        (b"ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0\r\n\r\n", "must end with a body part"),
        (b"ICAP/1.0 200 OK\r\nEncapsulated: res-body=0, res-hdr=3\r\n\r\n", "a part after its body"),
        (b"ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=3, null-body=9\r\n\r\n", "start at offset 0"),
        (b"ICAP/1.0 200 OK\r\nEncapsulated: evil=0, null-body=-1\r\n\r\n", "malformed Encapsulated"),
        (b"ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, null-body=999999999\r\n\r\n", "encapsulated heads longer"),
        (b"ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=5\r\n\r\nHTTP/", "does not end where Encapsulated says"),
        (b"ICAP/1.0 200 OK\r\nEncapsulated: res-body=0\r\n\r\nzz\r\n", "malformed chunk size"),
        (b"ICAP/1.0 200 OK\r\nEncapsulated: res-body=0\r\n\r\nffffffffffffffff\r\n", "larger than 1 TiB"),
        (b"ICAP/1.0 200 OK\r\nEncapsulated: res-body=0\r\n\r\n2\r\nabc\r\n", "longer than its size"),
        (b"ICAP/1.0 200 OK\r\nEncapsulated: res-body=0\r\n\r\n2\nab\r\n", "not ended by CRLF"),
        (b"ICAP/1.0 200 OK\r\nEncapsulated: res-body=0\r\n\r\n" + b"1" * 2000, "chunk line too long"),
        (b"ICAP/1.0 200 OK\r\nX: " + b"a" * 70000, "longer than 65536"),
    ],
)
def test_hostile_answers_are_the_servers_fault(data, message):
    with pytest.raises(ProtocolError) as exc:
        icap.ResponseParser().feed(data)
    assert message in exc.value.message
    assert exc.value.side == "upstream" and exc.value.status == 502


def test_too_many_header_fields():
    with pytest.raises(ProtocolError, match="more than 100"):
        icap.ResponseParser().feed(b"ICAP/1.0 204 No Content\r\n" + b"X: 1\r\n" * 101 + b"\r\n")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.integers(1, 40))
def test_arbitrary_bytes_raise_only_the_protocol_error(data, step):
    p = icap.ResponseParser()
    try:
        for i in range(0, len(data), step):
            p.feed(data[i : i + step])
    except ProtocolError:
        pass


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_arbitrary_bodies_after_a_valid_head(data):
    p = icap.ResponseParser()
    try:
        p.feed(b"ICAP/1.0 200 OK\r\nEncapsulated: res-body=0\r\n\r\n" + data)
    except ProtocolError:
        pass


# --- OPTIONS -----------------------------------------------------------------------------------

C_ICAP_OPTIONS = (
    b"ICAP/1.0 200 OK\r\nMethods: RESPMOD, REQMOD\r\nService: C-ICAP/0.5.10 server - Antivirus\r\n"
    b'ISTag: "CI0001-1-clamd-1"\r\nTransfer-Preview: *\r\nOptions-TTL: 3600\r\nDate: x\r\nPreview: 1024\r\n'
    b"Allow: 204\r\nX-Include: X-Client-IP, X-Authenticated-User\r\nEncapsulated: null-body=0\r\n\r\n"
)


def test_options_of_c_icap():
    head = icap.ResponseParser().feed(C_ICAP_OPTIONS)[0]
    o = icap.parse_options(head)
    assert o.methods == {"RESPMOD", "REQMOD"}
    assert (o.preview, o.ttl, o.allow_204, o.istag, o.max_connections) == (1024, 3600.0, True, "CI0001-1-clamd-1", None)
    assert o.transfer("exe") == "preview"


def test_options_transfer_lists():
    head = icap.ResponseParser().feed(
        b"ICAP/1.0 200 OK\r\nMethods: RESPMOD\r\nMax-Connections: 4\r\nTransfer-Preview: exe, html\r\n"
        b"Transfer-Ignore: jpg, GIF\r\nTransfer-Complete: *\r\nEncapsulated: null-body=0\r\n\r\n"
    )[0]
    o = icap.parse_options(head)
    assert o.max_connections == 4 and o.preview is None and not o.allow_204
    assert (o.transfer("gif"), o.transfer("exe"), o.transfer("zip")) == ("ignore", "preview", "complete")


@pytest.mark.parametrize(
    "extra, message",
    [(b"Preview: -1\r\n", "malformed Preview"), (b"Max-Connections: 0\r\n", "malformed Max-Connections"),
     (b"Options-TTL: 1e9\r\n", "malformed Options-TTL")],
)
def test_options_with_bad_numbers(extra, message):
    head = icap.ResponseParser().feed(b"ICAP/1.0 200 OK\r\nMethods: RESPMOD\r\n" + extra + b"Encapsulated: null-body=0\r\n\r\n")[0]
    with pytest.raises(ProtocolError, match=message):
        icap.parse_options(head)


def test_options_refused():
    head = icap.ResponseParser().feed(b"ICAP/1.0 404 Service not found\r\n\r\n")[0]
    with pytest.raises(ProtocolError, match="OPTIONS answered 404"):
        icap.parse_options(head)


@settings(max_examples=200)
@given(st.lists(st.binary(min_size=0, max_size=50), max_size=8), st.booleans(), st.integers(1, 30))
def test_chunks_decode_back_to_the_body_however_they_are_split(pieces, ieof, step):
    stream = b"".join(icap.chunk(p) for p in pieces) + icap.last_chunk(ieof) + b"NEXT"
    d = icap.ChunkDecoder()
    out, used_total = [], 0
    for i in range(0, len(stream), step):
        if d.done:
            break
        got, used = d.feed(stream[i : i + step])
        out.extend(got)
        used_total += used
    assert d.done and b"".join(out) == b"".join(pieces) and d.ieof == ieof
    assert stream[used_total:] == b"NEXT"
