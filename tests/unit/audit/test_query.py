"""Reading audit.db: filters, order and limit, tail, follow, times as people write them."""

from __future__ import annotations

import sqlite3
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arcus.audit.query import AuditReader, Filters, check_decision, parse_status, parse_when, search
from arcus.audit.sink import AuditSink
from arcus.config.schema import AuditConfig
from arcus.errors import NotFound, OperatorError

from .factory import NOW, event, fill


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audit") / "audit.db"
    fill(path, [
        event(0, tenant="acme", user="alice", host="example.com"),
        event(1, tenant="acme", user="bob", host="www.example.com", decision="deny", rule="no-www", status=403),
        event(2, tenant="acme", user=None, host="a.b.example.com", status=407, decision=None),
        event(3, tenant="globex", user="alice", host="badexample.com", status=429, decision=None),
        event(4, tenant="globex", user="carol", host="example.org", status=404),
        event(5, tenant="globex", user="carol", host="example.com.evil", status=502, error_side="upstream",
              error_code="upstream_connect"),
        event(6, tenant="acme", user="alice", host="EXAMPLE.com.", status=200),
        event(7, kind="connection", tenant="acme", user="alice", host="", port=0, method=None, path=None,
              status=0, decision=None),
    ])
    return path


def rids(rows) -> list[int]:
    return [int(r["request_id"].split("-")[1]) for r in rows]


class Steps:
    """How much SQLite work a reader's queries do: virtual-machine steps, in hundreds, counted
    by the connection's progress handler (``steps.reset()`` returns the count so far)."""

    def __init__(self, reader: AuditReader) -> None:
        self.count = 0
        reader._conn.set_progress_handler(self._step, 100)

    def _step(self) -> int:
        self.count += 1
        return 0  # go on

    def reset(self) -> int:
        count, self.count = self.count, 0
        return count


def find(db: Path, **kw) -> list[int]:
    with AuditReader(db) as r:
        return rids(r.search(**kw))


def test_all_in_order(db: Path) -> None:
    assert find(db) == [0, 1, 2, 3, 4, 5, 6, 7]
    assert find(db, order="desc") == [7, 6, 5, 4, 3, 2, 1, 0]
    assert find(db, limit=3) == [0, 1, 2]
    assert find(db, order="desc", limit=2) == [7, 6]
    assert rids(search(db, tenant="globex")) == [3, 4, 5]


def test_row_shape(db: Path) -> None:
    with AuditReader(db) as r:
        row = next(r.search(limit=1))
    assert row == {
        "id": 1, "time": NOW, "kind": "request", "tenant": "acme", "user": "alice", "client": "10.20.0.5:40000",
        "server": "http", "escaper": "direct", "host": "example.com", "port": 443, "method": "GET",
        "path": "/index.html", "status": 200, "bytes_up": 300, "bytes_down": 5000, "duration": 0.25,
        "decision": "allow", "rule": None, "error_side": None, "error_code": None, "request_id": "req-0",
        "conn_id": 0, "sni": None, "protocol": None, "icap": None, "detail": None, "at": datetime.fromtimestamp(NOW, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    }


def test_tenant_and_user(db: Path) -> None:
    assert find(db, tenant="acme") == [0, 1, 2, 6, 7]
    assert find(db, user="alice") == [0, 3, 6, 7]
    assert find(db, tenant="acme", user="alice") == [0, 6, 7]
    assert find(db, tenant="nobody") == []


def test_host_exact(db: Path) -> None:
    assert find(db, host="example.com") == [0, 6]
    assert find(db, host="Example.COM.") == [0, 6]


def test_host_dot_is_the_domain_and_everything_under_it(db: Path) -> None:
    assert find(db, host=".example.com") == [0, 1, 2, 6]  # not badexample.com, not example.com.evil


def test_host_star_is_only_what_is_under_it(db: Path) -> None:
    assert find(db, host="*.example.com") == [1, 2]


def test_time_range_is_since_inclusive_until_exclusive(db: Path) -> None:
    assert find(db, since=NOW + 2) == [2, 3, 4, 5, 6, 7]
    assert find(db, until=NOW + 2) == [0, 1]
    assert find(db, since=NOW + 2, until=NOW + 4) == [2, 3]


def test_blocked_is_deny_or_403_407_429(db: Path) -> None:
    assert find(db, blocked=True) == [1, 2, 3]
    assert find(db, blocked=True, tenant="globex") == [3]


def test_count_and_tail(db: Path) -> None:
    with AuditReader(db) as r:
        assert r.count() == 8
        assert r.count(tenant="acme", blocked=True) == 2
        assert rids(r.tail(3)) == [5, 6, 7]
        assert rids(r.tail(2, tenant="globex")) == [4, 5]
        assert r.tail(0) == []
        assert r.last_id() == 8


def test_the_reader_cannot_write(db: Path) -> None:
    with AuditReader(db) as r, pytest.raises(sqlite3.OperationalError, match="readonly"):
        r._conn.execute("DELETE FROM events")


def test_no_file_is_not_found_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as info:
        AuditReader(tmp_path / "audit.db")
    assert info.value.message == f"no audit log at {tmp_path / 'audit.db'}"
    assert "--data-dir" in (info.value.hint or "")
    assert not (tmp_path / "audit.db").exists()  # reading never creates it


def test_follow_sees_new_events_once_in_order_and_stops(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    fill(path, [event(i) for i in range(3)])
    sink = AuditSink(path, AuditConfig(retention=1e12, flush_interval=0.01))
    sink.start()
    got: list[dict] = []
    done = threading.Event()
    polls = 0

    def stop() -> bool:
        return done.is_set() or polls > 500

    def sleep(s: float) -> None:
        nonlocal polls
        polls += 1
        if polls == 2:
            for i in range(10, 13):
                sink.emit(event(i, tenant="acme"))
            sink.emit(event(13, tenant="globex"))
            sink.emit(event(14, tenant="acme"))
        done.wait(0.01)

    try:
        with AuditReader(path) as r:
            for row in r.follow(r.last_id(), poll_interval=0.01, stop=stop, sleep=sleep, tenant="acme"):
                got.append(row)
                if len(got) == 4:
                    done.set()
    finally:
        sink.close()
    assert rids(got) == [10, 11, 12, 14]
    assert [row["id"] for row in got] == [4, 5, 6, 8]


def test_follow_pages_through_a_burst(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from arcus.audit import query

    monkeypatch.setattr(query, "FOLLOW_BATCH", 7)
    path = tmp_path / "audit.db"
    fill(path, [event(i) for i in range(30)])
    rows: list[dict] = []
    with AuditReader(path) as r, pytest.raises(_Stop):
        for row in r.follow(5, stop=lambda: False, sleep=_raise_stop):  # sleeps once all is read
            rows.append(row)
    assert [row["id"] for row in rows] == list(range(6, 31))


class _Stop(Exception):
    pass


def _raise_stop(seconds: float) -> None:
    raise _Stop


def test_follow_stops_when_told(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    fill(path, [event(0)])
    with AuditReader(path) as r:
        assert list(r.follow(0, stop=lambda: True)) == []


# -- times ------------------------------------------------------------------------------


def test_parse_when_relative() -> None:
    assert parse_when("1h", now=NOW) == NOW - 3600
    assert parse_when("7d", now=NOW) == NOW - 7 * 86400
    assert parse_when(" 30m ", now=NOW) == NOW - 1800
    assert parse_when("90s", now=NOW) == NOW - 90


def test_parse_when_absolute() -> None:
    assert parse_when("2025-01-31T08:00:00Z") == datetime(2025, 1, 31, 8, tzinfo=timezone.utc).timestamp()
    assert parse_when("2025-01-31T10:00+02:00") == datetime(2025, 1, 31, 8, tzinfo=timezone.utc).timestamp()
    assert parse_when("2025-01-31") == datetime(2025, 1, 31).timestamp()  # local midnight
    assert parse_when("2025-01-31 08:30") == datetime(2025, 1, 31, 8, 30).timestamp()


@pytest.mark.parametrize("text", ["yesterday", "1y", "-1h", "2025-13-01", "", "3600"])
def test_parse_when_refuses_with_the_forms_it_reads(text: str) -> None:
    with pytest.raises(OperatorError) as info:
        parse_when(text)
    assert info.value.message == f"invalid time {text!r}"
    assert "7d" in (info.value.hint or "") and "2025-01-31" in (info.value.hint or "")


def test_a_time_range_no_index_answers_reads_its_range_of_ids(tmp_path: Path) -> None:
    from arcus.audit.query import Filters

    path = tmp_path / "audit.db"
    events = [event(i, time=NOW + 10 * i, host=f"h{i % 3}.example.com") for i in range(3000)]
    events[150].time = NOW + 10 * 150 - 0.5  # emitted a moment out of order: within the slack
    fill(path, events)
    assert Filters(since=1.0).indexed is False and Filters(host=".example.com").indexed is False
    assert Filters(user="u").indexed and Filters(host="a.example").indexed  # a file of schema 7 or older
    with AuditReader(path) as r:
        steps = Steps(r)
        got = rids(r.search(since=NOW + 1000, until=NOW + 1500, host="*.example.com"))
        narrow = steps.reset()
        assert got == list(range(100, 151))  # 150 happened at +1499.5
        assert r.count(since=NOW + 1495, until=NOW + 1510.5) == 2  # 150 (out of order) and 151
        assert rids(r.search(since=NOW + 29990)) == [2999]
        assert rids(r.search(until=NOW + 10)) == [0]
        assert r.count(since=NOW + 30000) == 0
        steps.reset()
        assert len(rids(r.search(host="*.example.com", limit=5000))) == 3000
        assert narrow * 10 < steps.count  # 51 events of 3000 read (and a few probes), not all of them


def test_a_tenants_newest_events_are_read_from_the_end_of_its_index_not_sorted(tmp_path: Path) -> None:
    """The tenant's index is in id order (schema 10): its newest events, and those of a time
    range, are read from the index as they are shown. The index on (tenant, time) made SQLite read
    every event of the tenant and sort them by id for any search or tail with --tenant (20 M
    events: 12 s for the newest 100 of a tenant with 9 M of them)."""
    path = tmp_path / "audit.db"
    fill(path, [event(i, time=NOW + i, tenant="acme" if i % 10 else "globex") for i in range(6000)])
    with AuditReader(path) as r:
        steps = Steps(r)
        assert rids(r.search(limit=5, order="desc")) == [5999, 5998, 5997, 5996, 5995]
        plain = steps.reset()
        assert rids(r.search(tenant="acme", limit=5, order="desc")) == [5999, 5998, 5997, 5996, 5995]
        newest = steps.reset()
        assert rids(r.search(tenant="globex", since=NOW + 3000, until=NOW + 3050)) == [3000, 3010, 3020, 3030, 3040]
        ranged = steps.reset()
        assert rids(r.tail(3, tenant="globex")) == [5970, 5980, 5990]
        tailed = steps.reset()
        assert r.count(tenant="acme") == 5400
        everything = steps.reset()
    assert max(newest, ranged, tailed) <= plain + 5 and everything > 20 * (plain + 5), (plain, newest, ranged, tailed, everything)


# -- the host map (schema 8): a host filter reads the batches that can hold the host ----------


@pytest.fixture(scope="module")
def spread(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """1,800 events in batches of 100 over a few hosts, some batches without a given host, one
    host with a comma in it (a SOCKS client may send any name)."""
    path = tmp_path_factory.mktemp("spread") / "audit.db"
    names = ["a.example", "www.a.example", "b.example", "x.b.example", "a,b.example", "c.example"]
    events = []
    for i in range(1800):
        batch = i // 100
        host = names[i % 6] if batch % 3 else names[2 + i % 2]  # every third batch: b.example and x.b.example only
        if i % 50 == 7:
            host = ""  # a connection's record
        user = [None, "alice", "bob", "a,b", "carol"][i % 5] if batch % 4 else None  # every fourth batch anonymous
        events.append(event(i, tenant="acme" if i % 4 else "globex", host=host, user=user))
    fill(path, events, batch=100)
    return path, events


def _matches(host: str, pattern: str) -> bool:
    """Whether a stored ``host`` matches a --host ``pattern``, said plainly (lower case, no
    trailing dot, as both are compared): what the map and the events' condition must agree on."""
    text = pattern.strip().lower().rstrip(".")
    if text.startswith("*."):
        return len(host) > len(text) - 1 and host.endswith(text[1:])
    if text.startswith("."):
        return host == text[1:] or (len(host) > len(text) and host.endswith(text))
    return host == text


@pytest.mark.parametrize("pattern", ["a.example", ".a.example", "*.a.example", "b.example", ".b.example",
                                     "*.example", "a,b.example", "a", "b.example,", "nowhere.example"])
def test_a_host_filter_through_the_map_finds_exactly_the_events_of_a_scan(spread, pattern: str) -> None:
    path, events = spread
    want = [i for i, e in enumerate(events) if e.host and _matches(e.host, pattern)]
    with AuditReader(path) as r:
        assert rids(r.search(host=pattern, limit=5000)) == want
        assert rids(r.search(host=pattern, order="desc", limit=5000)) == want[::-1]
        assert r.count(host=pattern) == len(want)
        assert rids(r.tail(5, host=pattern)) == want[-5:]
        since = [i for i in want if 650 <= i < 1420]
        assert rids(r.search(host=pattern, since=NOW + 650, until=NOW + 1420)) == since
        acme = [i for i in want if events[i].tenant == "acme"]
        assert rids(r.search(host=pattern, tenant="acme", limit=5000)) == acme
        assert rids(r.search(host=pattern, after_id=300, upto_id=1200, limit=5000)) == [i for i in want if 300 <= i < 1200]


@pytest.mark.parametrize("user", ["alice", "a,b", "a", "b", "carol", "nobody"])
def test_a_user_filter_through_the_map_finds_exactly_the_events_of_a_scan(spread, user: str) -> None:
    path, events = spread
    want = [i for i, e in enumerate(events) if e.user == user]
    with AuditReader(path) as r:
        assert rids(r.search(user=user, limit=5000)) == want
        assert rids(r.search(user=user, order="desc", limit=5000)) == want[::-1]
        assert r.count(user=user) == len(want)
        assert rids(r.tail(3, user=user)) == want[-3:]
        assert rids(r.search(user=user, since=NOW + 650, until=NOW + 1420)) == [i for i in want if 650 <= i < 1420]
        both = [i for i in want if events[i].host == "c.example" and events[i].tenant == "acme"]
        assert rids(r.search(user=user, host="c.example", tenant="acme", limit=5000)) == both


def test_the_map_has_a_line_per_batch_and_a_host_search_reads_only_the_lines_that_can_match(spread) -> None:
    path, _ = spread
    conn = sqlite3.connect(path)
    lines = conn.execute("SELECT lo, hi, hosts FROM event_batches ORDER BY lo").fetchall()
    conn.close()
    assert [(lo, hi) for lo, hi, _ in lines] == [(1 + 100 * b, 100 * (b + 1)) for b in range(18)]
    assert lines[0][2].split(",")[1:-1] and set(lines[0][2].strip(",").split(",")) == {"b.example", "x.b.example"}
    with AuditReader(path) as r:
        source, params = r._where(Filters(host="c.example", tenant="acme"))
        plan = [row[3] for row in r._conn.execute(f"EXPLAIN QUERY PLAN SELECT id {source}", params)]
    # the map's lines, then each line's ids by the key: no index built on the fly, no tenant index
    assert plan[0].startswith("SCAN b") and "INTEGER PRIMARY KEY" in plan[1], plan


_HOST_CHARS = "ab.,-*é_%"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hosts=st.lists(st.text(_HOST_CHARS, max_size=6), min_size=1, max_size=40),
    batch=st.integers(1, 7),
    picks=st.lists(st.tuples(st.sampled_from(["", ".", "*."]), st.text(_HOST_CHARS, max_size=5)), max_size=6),
)
def test_any_host_filter_through_the_map_equals_a_scan(hosts: list[str], batch: int, picks) -> None:
    """Hostile names (commas, stars, dots, percent signs, non-ASCII, empty) in batches of any
    size: every form of --host finds what a scan of the stored hosts finds, nothing more."""
    events = [event(i, host=h) for i, h in enumerate(hosts)]
    stored = [h.lower().rstrip(".") for h in hosts]
    patterns = [prefix + text for prefix, text in picks] + [hosts[0], "." + hosts[-1]]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.db"
        fill(path, events, batch=batch)
        with AuditReader(path) as r:
            for pattern in patterns:
                want = [i for i, h in enumerate(stored) if _matches(h, pattern)]
                assert rids(r.search(host=pattern, limit=1000)) == want, pattern
                assert r.count(host=pattern) == len(want), pattern


def test_a_time_range_bounds_what_a_search_through_the_map_reads_with_a_tenant_too(spread) -> None:
    path, events = spread
    with AuditReader(path) as r:
        steps = Steps(r)
        whole = rids(r.search(host="c.example", user="carol", tenant="acme", limit=5000))
        everything = steps.reset()
        recent = rids(r.search(host="c.example", user="carol", tenant="acme", since=NOW + 1700, limit=5000))
        narrow = steps.reset()
    assert recent == [i for i in whole if i >= 1700] and recent
    assert narrow * 5 < everything, (narrow, everything)  # the last batch's line, not all eighteen


# -- decision and status ------------------------------------------------------------------


def test_decision_is_the_policys_word(db: Path) -> None:
    assert find(db, decision="allow") == [0, 4, 5, 6]
    assert find(db, decision="deny") == [1]
    assert find(db, decision="deny", tenant="globex") == []
    assert find(db, decision="report") == []
    with AuditReader(db) as r:
        assert r.count(decision="allow", tenant="acme") == 2


def test_status_is_one_status_or_a_class(db: Path) -> None:
    assert find(db, status=(404, 404)) == [4]
    assert find(db, status=(400, 499)) == [1, 2, 3, 4]
    assert find(db, status=(500, 599)) == [5]
    assert find(db, status=(200, 299), user="alice") == [0, 6]  # not the connection's record (status 0)
    assert find(db, status=(400, 499), decision="allow", host=".example.org") == [4]
    with AuditReader(db) as r:
        assert rids(r.tail(2, status=(400, 499))) == [3, 4]


@pytest.mark.parametrize(("text", "expected"), [("404", (404, 404)), ("4xx", (400, 499)), ("5XX", (500, 599)),
                                                (" 200 ", (200, 200)), ("1xx", (100, 199)), ("599", (599, 599))])
def test_parse_status(text: str, expected: tuple[int, int]) -> None:
    assert parse_status(text) == expected


@pytest.mark.parametrize("text", ["", "40", "4000", "600", "0", "099", "4x", "4xxx", "x4x", "abc", "-404", "4 04"])
def test_parse_status_refuses_with_the_forms_it_reads(text: str) -> None:
    with pytest.raises(OperatorError) as info:
        parse_status(text)
    assert info.value.message == f"invalid --status {text!r}"
    assert info.value.hint == "give an HTTP status (404) or a class of them (4xx), from 100 to 599"


def test_check_decision() -> None:
    assert [check_decision(d) for d in ("allow", "deny", "redirect", "report")] == ["allow", "deny", "redirect", "report"]
    for bad in ("DENY", "block", "", "allow "):
        with pytest.raises(OperatorError) as info:
            check_decision(bad)
        assert (info.value.message, info.value.hint) == (f"invalid --decision {bad!r}",
                                                         "give one of allow, deny, redirect, report")


@pytest.mark.parametrize("filters", [Filters(), Filters(tenant="acme"), Filters(decision="allow"),
                                     Filters(status=(400, 499)), Filters(tenant="globex", status=(404, 404)),
                                     Filters(tenant="acme", decision="deny", status=(403, 403))])
def test_matches_agrees_with_the_sql(db: Path, filters: Filters) -> None:
    """What a live stream is checked against (tail -f through the daemon) selects what the query does."""
    with AuditReader(db) as r:
        every = list(r.search())
        wanted = [row["id"] for row in r.search(**{f: getattr(filters, f) for f in Filters.__dataclass_fields__})]
    assert [row["id"] for row in every if filters.matches(row)] == wanted


# -- the newest N, oldest first ------------------------------------------------------------


def newest(r: AuditReader, limit: int, **filters) -> tuple[list[int], bool]:
    """What `audit search` shows, the way it reads it now."""
    with r.snapshot():
        start = r.window_start(limit, **filters)
        return rids(r.search(after_id=start, **filters)), start is not None


@pytest.mark.parametrize("filters", [{}, {"tenant": "acme"}, {"user": "alice"}, {"host": ".example.com"},
                                     {"host": "example.com", "status": (200, 299)}, {"blocked": True},
                                     {"since": NOW + 2, "until": NOW + 7}, {"decision": "nothing"}])
def test_the_newest_window_is_what_reading_all_newest_first_and_reversing_shows(db: Path, filters) -> None:
    with AuditReader(db) as r:
        every = find(db, **filters)
        for limit in range(1, 10):
            old = rids(r.search(limit=limit + 1, order="desc", **filters))  # how search read them before
            assert newest(r, limit, **filters) == (old[:limit][::-1], len(old) > limit) == (every[-limit:], len(every) > limit)


@pytest.mark.parametrize("pattern", ["a.example", ".b.example", "*.example"])
def test_the_newest_window_through_the_map(spread, pattern: str) -> None:
    path, events = spread
    want = [i for i, e in enumerate(events) if e.host and _matches(e.host, pattern) and e.tenant == "acme"]
    with AuditReader(path) as r:
        for limit in (1, 99, 100, 101, 250, len(want) - 1, len(want), len(want) + 1):
            assert newest(r, limit, host=pattern, tenant="acme") == (want[-limit:], len(want) > limit)


def test_the_window_reads_from_the_newest_end_only(tmp_path: Path) -> None:
    """Where the newest 10 start is found from the end, and only those 10 are read after it: a
    little work, not a pass over the 1,500 matches."""
    path = tmp_path / "audit.db"
    fill(path, [event(i, time=NOW + i, status=404 if i % 2 else 200) for i in range(3000)])
    with AuditReader(path) as r, r.snapshot():
        steps = Steps(r)
        start = r.window_start(10, status=(404, 404))
        window = [row["id"] for row in r.search(after_id=start, status=(404, 404))]
        narrow = steps.reset()
        assert r.count(status=(404, 404)) == 1500
        everything = steps.reset()
    assert start == 2980  # the 11th newest 404 is request 2979, id 2980
    assert window == list(range(2982, 3001, 2))
    assert narrow * 10 < everything, (narrow, everything)
