"""Records: one bounded queue on the hot path, one writer thread, the access log written in
batches byte for byte as ``logging`` wrote it, the audit log fed, subscribers bounded."""

from __future__ import annotations

import io
import logging
import threading
import time
from pathlib import Path

import pytest

from arcus.audit.db import audit_path
from arcus.audit.query import AuditReader
from arcus.audit.records import LOG_FORMAT, AccessLog, Records, access_message
from arcus.config.schema import AuditConfig

from .factory import event, wait_for


def config(**kw) -> AuditConfig:
    kw.setdefault("retention", 1e12)
    return AuditConfig(**kw)


class Log:
    """A private logger with the daemon's line format, writing to a string (or a given handler)."""

    _n = 0

    def __init__(self, handler: logging.Handler | None = None) -> None:
        Log._n += 1
        self.logger = logging.getLogger(f"arcus_test_records.{Log._n}.access")
        self.stream = io.StringIO()
        self.handler = handler or logging.StreamHandler(self.stream)
        self.handler.setFormatter(logging.Formatter(LOG_FORMAT))
        self.logger.handlers[:] = [self.handler]
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.writes = 0
        real = self.stream.write

        def counting(text: str) -> int:
            self.writes += 1
            return real(text)

        self.stream.write = counting  # type: ignore[method-assign]

    def access(self) -> AccessLog:
        return AccessLog(self.logger)

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()


def connection_event(i: int = 0, **over):
    fields = dict(kind="connection", method="SOCKS5 CONNECT", path=None, request_id=None,
                  server="socks", server_type="socks_proxy", conn_id=40 + i)
    fields.update(over)
    return event(i, **fields)


# -- the hot path ------------------------------------------------------------------------


def test_emit_is_an_append_a_flood_drops_new_records_and_counts_them() -> None:
    records = Records(config(queue=100, batch=10))  # writer not started: the queue only fills
    events = [event(i) for i in range(20_000)]
    started = time.perf_counter()
    for e in events:
        records.emit(e)
    elapsed = time.perf_counter() - started
    assert records.queued == 100 and records.dropped == 19_900
    assert elapsed / len(events) < 20e-6, f"{elapsed / len(events) * 1e6:.1f} us per emit"


class CountingEvent(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.sets = 0

    def set(self) -> None:
        self.sets += 1
        super().set()


def test_the_writer_is_woken_once_per_full_batch_not_per_record() -> None:
    records = Records(config(batch=100))
    records._wake = wake = CountingEvent()
    for i in range(99):
        records.emit(event(i))
    assert wake.sets == 0  # a partial batch waits for the flush interval
    for i in range(99, 1000):
        records.emit(event(i))
    assert wake.sets == 1  # the batch filled once: one wake, not one per record after it


def test_enabled_only_when_someone_reads_the_records(tmp_path: Path) -> None:
    log = Log()
    log.logger.disabled = True
    records = Records(config(), log.access())
    assert records.enabled is False  # access log off, no audit, no subscriber: call sites skip the event
    log.logger.disabled = False
    records.refresh()
    assert records.enabled is True
    log.logger.setLevel(logging.WARNING)  # log.level: warning hides access lines as before
    records.refresh()
    assert records.enabled is False
    sub = records.subscribe()
    assert records.enabled is True
    sub.close()
    assert records.enabled is False
    records.apply_audit(config(flush_interval=0.01), tmp_path)
    assert records.enabled is True
    records.close()


# -- the access log ----------------------------------------------------------------------


def old_line(logger: logging.Logger, created: float, fmt: str, *args) -> str:
    """What ``logger.info(fmt, *args)`` at ``created`` printed (the data plane's old call)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, fmt, args, None)
    record.created = created
    record.msecs = int((created - int(created)) * 1000) + 0.0
    handler.handle(record)
    return stream.getvalue()


@pytest.mark.parametrize("when", [1_750_000_000.0, 1_750_000_001.999, 1_750_000_002.0405])
def test_lines_are_byte_for_byte_what_logging_wrote(when: float) -> None:
    log = Log()
    req = event(1, time=when, host="2001:db8::1", port=8080, path="/a/b?token=s3cret", status=404,
                bytes_up=123, bytes_down=4567, duration=0.01234, error_code=None, request_id="abc-1f")
    connect = event(2, time=when, method="CONNECT", path=None, host="www.example.com", port=443,
                    duration=1.5, error_code="upstream_reset", request_id="abc-20")
    tunnel = connection_event(3, time=when, host="10.1.2.3", port=22, status=0, duration=2.25)
    refused = connection_event(4, time=when, host="", port=0, error_code="client_timeout")
    quiet = connection_event(5, time=when, host="", port=0, error_code=None)  # an HTTP keep-alive connection
    n = log.access().write([req, connect, tunnel, refused, quiet])
    assert n == 4
    http = "%s %s %s %s %s%s %d %d %d %.1fms %s"
    relay = "%s %s %s %s %s %d %d %d %.1fms %s"
    expected = (
        old_line(log.logger, when, http, "abc-1f", req.client, "acme", "GET", "[2001:db8::1]:8080", "/a/b",
                 404, 123, 4567, 12.34, "-")
        + old_line(log.logger, when, http, "abc-20", connect.client, "acme", "CONNECT", "www.example.com:443", "",
                   200, 300, 5000, 1500.0, "upstream_reset")
        + old_line(log.logger, when, relay, 43, tunnel.client, "acme", "socks_proxy", "10.1.2.3:22",
                   0, 300, 5000, 2250.0, "-")
        + old_line(log.logger, when, relay, 44, refused.client, "acme", "socks_proxy", "-",
                   200, 300, 5000, 250.0, "client_timeout")
    )
    assert log.stream.getvalue() == expected
    assert "s3cret" not in expected
    assert log.writes == 1  # the batch in one write


def test_control_characters_in_a_path_are_escaped_in_the_line() -> None:
    """A path is decoded as Latin-1: a C1 byte (CSI, NEL) or a C0 one would reach a terminal or a
    line-splitting log reader as itself; it is written escaped, printable characters are kept."""
    log = Log()
    log.access().write([event(1, path="/c1\x9b31mRED\x85x\x07\x1b[2J/caf\xe9 ok")])
    (line,) = log.lines()
    assert line.endswith("/c1\\x9b31mRED\\x85x\\x07\\x1b[2J/caf\xe9 ok 200 300 5000 250.0ms -")
    assert not any(c in line for c in "\x9b\x85\x07\x1b")


def test_a_handler_of_another_format_gets_ordinary_records() -> None:
    log = Log()
    log.handler.setFormatter(logging.Formatter("%(name)s|%(levelname)s|%(message)s"))
    log.access().write([event(1, request_id="r1")])
    assert log.lines() == [f"{log.logger.name}|INFO|{access_message(event(1, request_id='r1'))}"]


def test_access_off_or_above_info_writes_nothing() -> None:
    log = Log()
    log.logger.disabled = True  # log.access: false
    assert log.access().write([event(1)]) == 0
    log.logger.disabled = False
    log.logger.setLevel(logging.WARNING)
    assert log.access().write([event(1)]) == 0
    assert log.stream.getvalue() == ""


def test_a_file_handler_closed_by_a_reload_is_reopened_by_logging(tmp_path: Path) -> None:
    path = tmp_path / "arcus.log"
    log = Log(logging.FileHandler(path))
    log.handler.close()  # setup_logging closes the old handler while a batch may be on its way
    log.access().write([event(1)])
    assert "req-1" in path.read_text()


def test_a_failing_destination_is_counted_not_raised() -> None:
    log = Log()

    def broken(text: str) -> int:
        raise OSError(28, "No space left on device")

    log.stream.write = broken  # type: ignore[method-assign]
    access = log.access()
    logging.raiseExceptions, before = False, logging.raiseExceptions
    try:
        access.write([event(1), event(2)])
    finally:
        logging.raiseExceptions = before
    assert access.failed == 2


# -- the writer thread -------------------------------------------------------------------


def test_full_batches_are_handed_on_at_once_and_the_rest_on_close() -> None:
    log = Log()
    records = Records(config(batch=50, flush_interval=60.0), log.access())
    sizes: list[int] = []
    sub = records.subscribe(lambda: sizes.append(len(sub.take()[0])))
    records.start()
    for i in range(120):
        records.emit(event(i))
    assert wait_for(lambda: len(log.lines()) == 100, timeout=10)
    time.sleep(0.2)
    assert len(log.lines()) == 100 and records.queued == 20  # the partial batch waits for the interval
    assert sizes == [50, 50] and log.writes == 2
    records.close()
    assert sizes == [50, 50, 20, 0]  # and one last notify: the subscription is closed
    assert [line.split()[4] for line in log.lines()] == [f"req-{i}" for i in range(120)]
    assert sub.closed


def test_a_partial_batch_is_written_after_the_flush_interval() -> None:
    log = Log()
    records = Records(config(batch=1000, flush_interval=0.05), log.access())
    records.start()
    try:
        records.emit(event(1))
        assert wait_for(lambda: len(log.lines()) == 1, timeout=5)
    finally:
        records.close()


def test_close_writes_everything_queued_and_later_emits_are_dropped(tmp_path: Path) -> None:
    log = Log()
    records = Records(access=log.access())
    records.apply_audit(config(flush_interval=60.0), tmp_path)
    records.start()
    for i in range(30):
        records.emit(event(i))
    started = time.monotonic()
    records.close(timeout=5)
    assert time.monotonic() - started < 5
    assert len(log.lines()) == 30
    with AuditReader(audit_path(tmp_path)) as r:
        assert r.count() == 30
    records.emit(event(99))
    assert records.dropped == 1 and records.queued == 0


def test_close_is_bounded_when_the_destination_blocks() -> None:
    gate = threading.Event()

    class Stuck(io.StringIO):
        def write(self, text: str) -> int:
            gate.wait(10)
            return super().write(text)

    log = Log(logging.StreamHandler(Stuck()))
    records = Records(config(batch=5, flush_interval=0.01), log.access())
    records.start()
    try:
        for i in range(5):
            records.emit(event(i))
        assert wait_for(lambda: records.queued == 0)  # the writer took them and is stuck writing
        for i in range(5, 12):
            records.emit(event(i))
        started = time.monotonic()
        records.close(timeout=0.3)
        assert time.monotonic() - started < 1.5
        assert records.dropped == 7 and records.queued == 0
    finally:
        gate.set()


# -- the audit log -----------------------------------------------------------------------


def test_records_reach_the_audit_log_and_its_drops_include_the_queue_s(tmp_path: Path) -> None:
    records = Records(access=Log().access())
    records.apply_audit(config(queue=10, batch=10, flush_interval=0.01), tmp_path)
    sink = records.audit
    assert sink is not None
    for i in range(25):  # writer not started yet: 10 queued, 15 refused
        records.emit(event(i))
    records.start()
    assert wait_for(lambda: sink.written == 10)
    assert wait_for(lambda: sink.stats()["dropped"] == 15)  # what `arcus audit stats` shows
    records.close()
    with AuditReader(audit_path(tmp_path)) as r:
        assert [row["request_id"] for row in r.search()] == [f"req-{i}" for i in range(10)]


def test_turning_the_audit_log_off_writes_what_was_queued_first(tmp_path: Path) -> None:
    records = Records(access=Log().access())
    records.apply_audit(config(flush_interval=60.0), tmp_path)
    records.start()
    for i in range(3):
        records.emit(event(i))
    records.apply_audit(config(enabled=False), tmp_path)
    assert records.audit is None
    with AuditReader(audit_path(tmp_path)) as r:
        assert r.count() == 3
    records.emit(event(9))
    records.close()
    with AuditReader(audit_path(tmp_path)) as r:
        assert r.count() == 3  # off means off


# -- subscribers -------------------------------------------------------------------------


def test_a_subscriber_that_does_not_read_costs_a_bounded_buffer() -> None:
    records = Records(config(batch=10, flush_interval=60.0), Log().access())
    notified = []
    slow = records.subscribe(lambda: notified.append(1), limit=10)
    fast = records.subscribe()
    for i in range(25):
        records.emit(event(i))
    records.flush()
    got, skipped = slow.take()
    assert [e.request_id for e in got] == [f"req-{i}" for i in range(10)] and skipped == 15
    assert len(fast.take()[0]) == 25
    assert len(notified) == 3  # once per batch handed on
    assert slow.take() == ([], 0)


def test_a_failing_subscriber_does_not_stop_the_writer() -> None:
    log = Log()
    records = Records(config(batch=1, flush_interval=0.01), log.access())

    def boom() -> None:
        raise RuntimeError("boom")

    records.subscribe(boom)
    records.start()
    records.emit(event(1))
    records.emit(event(2))
    assert wait_for(lambda: len(log.lines()) == 2)
    records.close()


# -- per-tenant levels, rotation, JSON (the profile's log section) ---------------------------


def test_tenant_levels_keep_the_fast_path_and_filter_per_line() -> None:
    from arcus.stats.logs import TenantLevels

    log = Log()
    log.handler.addFilter(TenantLevels(logging.INFO, {"quiet": logging.WARNING}))
    written = log.access().write([event(1, tenant="acme"), event(2, tenant="quiet"), event(3, tenant="acme")])
    assert written == 2 and log.writes == 1  # one write for the batch: the fast path
    assert [line.split(" ")[6] for line in log.lines()] == ["acme", "acme"]


def test_a_rotating_file_rotates_between_batches(tmp_path: Path) -> None:
    from logging.handlers import RotatingFileHandler

    target = tmp_path / "access.log"
    log = Log(RotatingFileHandler(target, maxBytes=2000, backupCount=2))
    access = log.access()
    for i in range(10):
        access.write([event(i * 10 + j) for j in range(5)])  # ~700 bytes a batch
    log.handler.close()
    files = [target, tmp_path / "access.log.1", tmp_path / "access.log.2"]
    assert all(f.exists() for f in files) and not (tmp_path / "access.log.3").exists()
    assert all(f.stat().st_size <= 2000 for f in files)
    assert all(len(f.read_text().splitlines()) >= 1 for f in files)


def test_json_lines_carry_the_record_without_the_query(tmp_path: Path) -> None:
    import json

    from arcus.stats.logs import JsonFormatter

    log = Log()
    log.handler.setFormatter(JsonFormatter())
    log.access().write([event(1, tenant="acme", path="/a?token=s3cret")])
    (line,) = log.lines()
    out = json.loads(line)
    assert out["logger"] == log.logger.name and out["level"] == "info" and out["tenant"] == "acme"
    assert out["type"] == "request" and out["path"] == "/a" and "s3cret" not in line


def test_an_intercepted_tunnel_and_its_decrypted_requests_say_so_in_the_line() -> None:
    """The access line of a CONNECT says what interception made of it (the record's detail), and a
    decrypted request's line carries the connection's sni: both were indistinguishable from a
    tunnel left alone and a plain HTTP request."""
    connect = event(1, method="CONNECT", path=None, protocol="tls", sni="www.example.com",
                    detail="intercepted by default", request_id="abc-1")
    spliced = connection_event(2, protocol="tls", sni="bank.example", detail="spliced by privacy")
    decrypted = event(3, path="/a?token=s3cret", sni="www.example.com", request_id="abc-3")
    plain = event(4, request_id="abc-4")
    assert access_message(connect).endswith(" - protocol=tls sni=www.example.com (intercepted by default)")
    assert access_message(spliced).endswith(" - protocol=tls sni=bank.example (spliced by privacy)")
    assert access_message(decrypted).endswith(":443/a 200 300 5000 250.0ms - sni=www.example.com")
    assert access_message(plain).endswith(" 250.0ms -")
