"""`arcus audit`: tail, search, export against an audit.db we fill; tail -f and stats through a
real control server (the daemon's stream over a real sink) and without a daemon (polling)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from arcus.audit import export as export_formats
from arcus.audit.feed import follow_sink
from arcus.audit.sink import AuditSink
from arcus.cli import audit as audit_cli
from arcus.config.schema import AuditConfig
from arcus.control import protocol as p
from arcus.errors import OperatorError
from tests.unit.audit.factory import event, fill
from arcus.testing.control import ServerThread
from tests.unit.cli.harness import invoke

NOW = time.time()
HOUR = 3600.0


EVENTS = [
    event(0, time=NOW - 3 * HOUR, tenant="acme", user="alice", host="example.com", path="/a"),
    event(1, time=NOW - 2 * HOUR, tenant="acme", user="bob", host="www.example.com", path="/b", status=403,
          decision="deny", rule="no-www", bytes_up=0, bytes_down=512),
    event(2, time=NOW - 50 * 60, tenant="globex", user=None, host="example.org", path=None, method="CONNECT",
          status=407, decision=None),
    event(3, time=NOW - 30 * 60, tenant="globex", user="carol", host="api.example.com", status=502,
          error_side="upstream", error_code="upstream_connect", bytes_down=0, duration=12.5),
    event(4, time=NOW - 10 * 60, tenant="acme", user="alice", host="example.net", path="/c", status=200,
          bytes_down=3 * 1024 * 1024, duration=1.5),
    event(5, time=NOW - 60, kind="connection", tenant="acme", user="alice", host="", port=0, method=None, path=None,
          status=0, decision=None, bytes_up=1024, bytes_down=4 * 1024 * 1024, duration=75.0),
]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    fill(tmp_path / "audit.db", EVENTS)
    return tmp_path


def audit(sock: Path, data: Path, *args: str) -> Result:
    extra = [] if args[0] == "stats" else ["--data-dir", str(data)]
    if args[0] in ("tail", "stats"):
        extra += ["--socket", str(sock)]
    return invoke("audit", *args, *extra)


def json_rids(text: str) -> list[int]:
    return [int(json.loads(line)["request_id"].split("-")[1]) for line in text.splitlines()]


def columns(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def local(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


# -- tail ---------------------------------------------------------------------------------


def test_no_audit_log_is_one_line_and_a_hint(sock: Path, tmp_path: Path) -> None:
    result = audit(sock, tmp_path, "tail")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"error: no audit log at {tmp_path / 'audit.db'}"
    assert result.stderr.splitlines()[1].startswith("hint: ")
    assert result.stdout == ""


def test_tail_for_people(sock: Path, data: Path) -> None:
    result = audit(sock, data, "tail", "-n", "3")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert columns(lines[0]) == ["TIME", "TENANT", "USER", "CLIENT", "METHOD", "TARGET", "STATUS", "UP", "DOWN",
                                 "DURATION", "DECISION", "ERROR"]
    assert len(lines) == 4
    assert columns(lines[1]) == [local(NOW - 30 * 60), "globex", "carol", "10.20.0.5:40003", "GET",
                                 "api.example.com:443/index.html", "502", "300 B", "0 B", "12s", "allow",
                                 "upstream:upstream_connect"]
    assert columns(lines[2])[5:] == ["example.net:443/c", "200", "300 B", "3.0 MiB", "1.5s", "allow", "-"]
    assert columns(lines[3])[1:] == ["acme", "alice", "10.20.0.5:40005", "-", "-", "-", "1.0 KiB", "4.0 MiB",
                                     "1m15s", "-", "-"]


def test_tail_json_lines_and_tenant(sock: Path, data: Path) -> None:
    result = audit(sock, data, "tail", "-n", "2", "--tenant", "acme", "--json")
    assert result.exit_code == 0
    assert json_rids(result.stdout) == [4, 5]
    first = json.loads(result.stdout.splitlines()[0])
    assert first["id"] == 5 and first["path"] == "/c" and first["tenant"] == "acme"
    assert first["at"].endswith("Z")


def test_tail_of_a_tenant_without_events(sock: Path, data: Path) -> None:
    result = audit(sock, data, "tail", "--tenant", "initech")
    assert (result.exit_code, result.stdout) == (0, "no audit events for tenant initech\n")


def test_control_characters_are_escaped_for_people(sock: Path, tmp_path: Path) -> None:
    fill(tmp_path / "audit.db", [event(0, path="/\x1b[2Jx")])
    result = audit(sock, tmp_path, "tail")
    assert "\x1b" not in result.stdout
    assert "/\\x1b[2Jx" in result.stdout
    assert json.loads(audit(sock, tmp_path, "tail", "--json").stdout)["path"] == "/\x1b[2Jx"


# -- search -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], [0, 1, 2, 3, 4, 5]),
        (["--tenant", "acme"], [0, 1, 4, 5]),
        (["--user", "alice"], [0, 4, 5]),
        (["--tenant", "globex", "--user", "carol"], [3]),
        (["--host", "example.com"], [0]),
        (["--host", ".example.com"], [0, 1, 3]),
        (["--host", "*.example.com"], [1, 3]),
        (["--since", "1h"], [2, 3, 4, 5]),
        (["--since", "1h", "--until", "20m"], [2, 3]),
        (["--until", datetime.fromtimestamp(NOW - HOUR).isoformat()], [0, 1]),
        (["--blocked"], [1, 2]),
        (["--blocked", "--tenant", "acme"], [1]),
    ],
)
def test_search_filters(sock: Path, data: Path, args: list[str], expected: list[int]) -> None:
    result = audit(sock, data, "search", *args, "--json")
    assert result.exit_code == 0, result.output
    assert json_rids(result.stdout) == expected
    assert result.stderr == ""


def test_search_shows_the_newest_in_order_and_says_when_there_are_more(sock: Path, data: Path) -> None:
    result = audit(sock, data, "search", "--limit", "2", "--json")
    assert json_rids(result.stdout) == [4, 5]
    assert "showing the newest 2 matching events" in result.stderr
    assert audit(sock, data, "search", "--limit", "6", "--json").stderr == ""


def test_search_for_people(sock: Path, data: Path) -> None:
    result = audit(sock, data, "search", "--blocked")
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert columns(lines[1])[5:] == ["www.example.com:443/b", "403", "0 B", "512 B", "0.25s", "deny:no-www", "-"]
    assert columns(lines[2])[2:7] == ["-", "10.20.0.5:40002", "CONNECT", "example.org:443", "407"]
    assert audit(sock, data, "search", "--tenant", "nobody").stdout == "no matching events\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "error: invalid time 'yesterday'"),
        (["--until", "2025-02-30"], "error: invalid time '2025-02-30'"),
        (["--since", "1h", "--until", "2h"], "error: --since 1h is not before --until 2h"),
        (["--host", "~casino"], "error: invalid --host '~casino'"),
        (["--host", "bad host"], "error: invalid --host 'bad host'"),
        (["--host", "http://a.example/"], "error: invalid --host 'http://a.example/'"),
        (["--host", "a*.example"], "error: invalid --host 'a*.example'"),
        (["--tenant", "bad name"], "error: invalid tenant name 'bad name'"),
        (["--user", "x" * 70], f"error: invalid user name '{'x' * 70}'"),
    ],
)
def test_search_refuses_bad_times(sock: Path, data: Path, args: list[str], message: str) -> None:
    result = audit(sock, data, "search", *args)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == message
    assert result.stderr.splitlines()[1].startswith("hint: ")


FILTERED = [
    (["--decision", "allow"], [0, 3, 4]),
    (["--decision", "deny"], [1]),
    (["--decision", "redirect"], []),
    (["--status", "200"], [0, 4]),
    (["--status", "4xx"], [1, 2]),
    (["--status", "5XX"], [3]),
    (["--status", "403", "--decision", "deny"], [1]),
    (["--status", "2xx", "--tenant", "acme", "--since", "1h"], [4]),
    (["--decision", "allow", "--host", ".example.com"], [0, 3]),
]


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [(c, a, e) for c in ("search", "export", "tail") for a, e in FILTERED
     if c != "tail" or not {"--since", "--host"} & set(a)],  # tail's filters: --tenant, --decision, --status
)
def test_decision_and_status_select_exactly_their_events(
    sock: Path, data: Path, command: str, args: list[str], expected: list[int]
) -> None:
    result = audit(sock, data, command, *args, *(["--json"] if command != "export" else []))
    assert result.exit_code == 0, result.output
    assert json_rids(result.stdout) == expected


@pytest.mark.parametrize(
    ("args", "lines"),
    [
        (["--decision", "block"], ["error: invalid --decision 'block'", "hint: give one of allow, deny, redirect, report"]),
        (["--decision", "DENY"], ["error: invalid --decision 'DENY'", "hint: give one of allow, deny, redirect, report"]),
        (["--status", "4x"], ["error: invalid --status '4x'",
                              "hint: give an HTTP status (404) or a class of them (4xx), from 100 to 599"]),
        (["--status", "600"], ["error: invalid --status '600'",
                               "hint: give an HTTP status (404) or a class of them (4xx), from 100 to 599"]),
        (["--status", "forbidden"], ["error: invalid --status 'forbidden'",
                                     "hint: give an HTTP status (404) or a class of them (4xx), from 100 to 599"]),
    ],
)
@pytest.mark.parametrize("command", [["search"], ["export"], ["tail"], ["tail", "-f"]])
def test_a_bad_decision_or_status_is_one_line_and_a_hint(
    sock: Path, data: Path, command: list[str], args: list[str], lines: list[str]
) -> None:
    result = audit(sock, data, *command, *args)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.splitlines() == lines


WIDE = [
    event(i, time=NOW - 1000 + i, tenant="acme" if i % 3 else "globex-corporation", host=f"h{i}.example.com",
          path="/" + "p" * (i * 7 % 61), status=(200, 404, 503)[i % 3], decision=("allow", "deny")[i % 2 if i % 5 else 0])
    for i in range(40)
]


def old_search(data: Path, limit: int, as_json: bool, **filters: Any) -> tuple[str, bool]:
    """What `audit search` printed before it streamed: every row of the window read newest
    first, reversed, the table's widths measured over them all."""
    with audit_cli.AuditReader(data / "audit.db") as reader:
        rows = list(reader.search(limit=limit + 1, order="desc", **filters))
    more = len(rows) > limit
    rows = rows[:limit][::-1]
    if as_json:
        return "".join(export_formats.json_line(r) for r in rows), more
    if not rows:
        return "no matching events\n", more
    texts = [audit_cli.cells(r) for r in rows]
    lines = audit_cli.Lines(texts)
    return "\n".join([lines.header(), *(lines.line(t) for t in texts)]) + "\n", more


@pytest.mark.parametrize(
    ("args", "filters"),
    [([], {}), (["--tenant", "acme"], {"tenant": "acme"}), (["--status", "4xx"], {"status": (400, 499)}),
     (["--decision", "deny", "--host", ".example.com"], {"decision": "deny", "host": ".example.com"})],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_search_prints_what_it_printed_before_for_any_window(
    sock: Path, tmp_path: Path, args: list[str], filters: dict[str, Any], as_json: bool
) -> None:
    """The newest --limit, oldest first, byte for byte as before -- the table's widths those of
    the rows shown (the long paths of older events widen nothing) -- and the note when there are more."""
    fill(tmp_path / "audit.db", WIDE)
    for limit in (1, 3, 9, 14, 27, 40, 41):
        result = audit(sock, tmp_path, "search", *args, "--limit", str(limit), *(["--json"] if as_json else []))
        assert result.exit_code == 0, result.output
        before, more = old_search(tmp_path, limit, as_json, **filters)
        assert result.stdout == before, (limit, args)
        assert result.stderr == (f"note: showing the newest {limit} matching events; --limit N shows more, "
                                 "`arcus audit export` all\n" if more else "")


@pytest.mark.parametrize("as_json", [False, True])
def test_search_streams_the_window_and_never_reads_all_newest_first(
    sock: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    """Each event is printed as it is read (JSON; the table after a first pass that measures
    its columns): the window is read in id order, once per pass, never as a list of everything
    newest first (what held 300,000 rows in memory for --limit 300000)."""
    fill(tmp_path / "audit.db", WIDE)
    calls: list[dict[str, Any]] = []
    read: list[int] = []
    printed_after: list[int] = []  # how many rows had been read when each line was written
    search = audit_cli.AuditReader.search

    def spy(self: Any, **kw: Any) -> Any:
        calls.append(kw)
        for row in search(self, **kw):
            read.append(row["id"])
            yield row

    def printing(real: Any) -> Any:
        def wrapper(row: dict[str, Any]) -> Any:
            printed_after.append(len(read))
            return real(row)
        return wrapper

    monkeypatch.setattr(audit_cli.AuditReader, "search", spy)
    monkeypatch.setattr(audit_cli, "_json_line", printing(audit_cli._json_line))
    monkeypatch.setattr(audit_cli, "cells", printing(audit_cli.cells))
    result = audit(sock, tmp_path, "search", "--status", "4xx", "--limit", "5", *(["--json"] if as_json else []))
    assert result.exit_code == 0, result.output
    window = [i + 1 for i in range(40) if i % 3 == 1][-5:]
    passes = 1 if as_json else 2
    assert read == window * passes
    assert printed_after == list(range(1, 5 * passes + 1))
    assert all(c.get("order", "asc") == "asc" and c.get("limit") is None for c in calls) and len(calls) == passes


# -- export -------------------------------------------------------------------------------


def test_export_to_stdout_is_json_lines_oldest_first(sock: Path, data: Path) -> None:
    result = audit(sock, data, "export")
    assert result.exit_code == 0
    assert json_rids(result.stdout) == [0, 1, 2, 3, 4, 5]
    assert result.stderr == "exported 6 events\n"
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert set(rows[0]) == {"id", "at", "time", "kind", "tenant", "user", "client", "server", "escaper", "host",
                            "port", "method", "path", "status", "bytes_up", "bytes_down", "duration", "decision",
                            "rule", "error_side", "error_code", "request_id", "conn_id", "sni", "protocol", "icap", "detail"}


def test_export_to_a_private_file_with_filters(sock: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "acme.jsonl"
    out.parent.mkdir()
    old = os.umask(0)
    try:
        result = audit(sock, data, "export", "--tenant", "acme", "--limit", "3", "-o", str(out))
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == f"exported 3 events to {out}\n"
    assert json_rids(out.read_text()) == [0, 1, 4]
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600


def test_export_round_trips_in_every_format(sock: Path, data: Path, tmp_path: Path) -> None:
    nl = audit(sock, data, "export", "--format", "nl")
    assert nl.exit_code == 0 and nl.stderr == "exported 6 events\n"
    assert len(nl.stdout.splitlines()) == 6
    events = [json.loads(line) for line in nl.stdout.splitlines()]

    as_json = audit(sock, data, "export", "--format", "json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == events  # one array, the same objects

    out = tmp_path / "events.csv"
    as_csv = audit(sock, data, "export", "--format", "csv", "-o", str(out))
    assert as_csv.exit_code == 0 and as_csv.stderr == f"exported 6 events to {out}\n"
    with out.open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == export_formats.COLUMNS
        parsed = list(reader)
    assert [int(r["id"]) for r in parsed] == [e["id"] for e in events]
    for row, exported in zip(parsed, events):  # every value as text; null as an empty cell
        assert row == {k: "" if exported[k] is None else str(exported[k]) for k in export_formats.COLUMNS}
    assert parsed[2]["user"] == "" and parsed[1]["decision"] == "deny" and parsed[0]["path"] == "/a"


def test_export_formats_take_the_filters(sock: Path, data: Path) -> None:
    result = audit(sock, data, "export", "--format", "csv", "--tenant", "globex")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["request_id"] for r in rows] == ["req-2", "req-3"]
    empty = audit(sock, data, "export", "--format", "json", "--tenant", "nobody")
    assert empty.exit_code == 0 and json.loads(empty.stdout) == []
    header_only = audit(sock, data, "export", "--format", "csv", "--tenant", "nobody")
    assert header_only.stdout.splitlines() == [",".join(export_formats.COLUMNS)]


def test_an_unknown_format_is_one_line_and_creates_nothing(sock: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.xml"
    result = audit(sock, data, "export", "--format", "xml", "-o", str(out))
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: unknown export format 'xml'",
        "hint: use --format nl (JSON lines), json or csv",
    ]
    assert not out.exists()


def test_no_progress_bar_when_not_on_a_terminal(sock: Path, data: Path, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setattr(audit_cli, "PROGRESS_THRESHOLD", 1)
    result = audit(sock, data, "export", "-o", str(tmp_path / "all.jsonl"))
    assert result.exit_code == 0
    assert result.stderr == f"exported 6 events to {tmp_path / 'all.jsonl'}\n"  # the summary only


def test_export_to_an_unwritable_place(sock: Path, data: Path, tmp_path: Path) -> None:
    result = audit(sock, data, "export", "-o", str(tmp_path / "missing" / "x.jsonl"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot write {tmp_path / 'missing' / 'x.jsonl'}")


# -- tail -f ------------------------------------------------------------------------------


def test_follow_through_the_daemon_stream(sock: Path, data: Path) -> None:
    """A real sink, the real follow_sink behind a real control server; the CLI prints the backlog
    and then the live events of its tenant, in order, and exits when the stream ends."""
    sink = AuditSink(data / "audit.db", AuditConfig(retention=1e12, flush_interval=0.01))
    sink.start()
    asked: list[dict[str, Any]] = []

    async def tail(args: dict[str, Any]) -> Any:
        asked.append(args)
        inner = follow_sink(sink, n=p.arg(args, "n", int, 0), tenant=p.arg(args, "tenant", str, None))

        async def first_four():
            try:
                got = 0
                async for item in inner:
                    if got == 0:  # subscribed and the backlog read: now the box serves on
                        for i in (10, 11, 12):
                            sink.emit(event(i, time=time.time(), tenant="globex" if i == 11 else "acme"))
                    yield item
                    got += 1
                    if got == 4:
                        return  # the daemon ends the stream (as at shutdown)
            finally:
                await inner.aclose()

        return first_four()

    try:
        with ServerThread(sock, {"audit.tail": tail}):
            result = audit(sock, data, "tail", "-f", "-n", "2", "--tenant", "acme", "--json")
    finally:
        sink.close()
    assert result.exit_code == 0, result.output
    assert json_rids(result.stdout) == [4, 5, 10, 12]
    assert asked == [{"n": 2, "tenant": "acme"}]
    assert result.stderr == "note: the daemon ended the audit stream (the audit log was turned off)\n"


def test_follow_for_people_prints_a_header_once_and_notes_skips(sock: Path, data: Path) -> None:
    rows = [json.loads(line) for line in audit(sock, data, "export").stdout.splitlines()]

    async def tail(args: dict[str, Any]) -> Any:
        async def items():
            yield rows[0]
            yield {"skipped": 7}
            yield rows[1]

        return items()

    with ServerThread(sock, {"audit.tail": tail}):
        result = audit(sock, data, "tail", "-f")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert columns(lines[0])[0] == "TIME" and len(lines) == 3
    assert "7 event(s) skipped" in result.stderr


def test_follow_when_the_daemon_has_audit_off(sock: Path, data: Path) -> None:
    async def tail(args: dict[str, Any]) -> Any:
        raise OperatorError("the audit log is disabled in this daemon's profile", code="invalid",
                            hint="set audit.enabled: true in the profile and reload")

    with ServerThread(sock, {"audit.tail": tail}):
        result = audit(sock, data, "tail", "-f")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: the audit log is disabled in this daemon's profile",
        "hint: set audit.enabled: true in the profile and reload",
    ]


class CtrlC:
    """Stands in for the wait between polls: adds events at the first, Ctrl-C at the third."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.calls = 0

    def __call__(self, seconds: float) -> None:
        self.calls += 1
        if self.calls == 1:
            fill(self.data / "audit.db", [event(20, time=time.time()), event(21, time=time.time(), tenant="globex")])
        elif self.calls >= 3:
            raise KeyboardInterrupt


def test_follow_without_a_daemon_polls_the_file_until_ctrl_c(
    sock: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctrl_c = CtrlC(data)
    monkeypatch.setattr(audit_cli, "_sleep", ctrl_c)
    result = audit(sock, data, "tail", "-f", "-n", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json_rids(result.stdout) == [5, 20, 21]
    assert result.stderr.startswith(f"note: no daemon running at {sock}; following the audit log file")
    assert ctrl_c.calls == 3


def test_follow_falls_back_to_the_file_when_the_daemon_has_no_stream(
    sock: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_cli, "_sleep", CtrlC(data))
    with ServerThread(sock, {}):
        result = audit(sock, data, "tail", "-f", "-n", "0", "--tenant", "acme", "--json")
    assert result.exit_code == 0, result.output
    assert json_rids(result.stdout) == [20]
    assert "no audit stream" in result.stderr


def test_follow_with_decision_or_status_through_the_daemon_stream(sock: Path, data: Path) -> None:
    """The daemon's stream selects by tenant only: the backlog comes from the file (the last
    matching events), the stream's own backlog overlaps it and is not printed again, and of the
    live events only the matching ones are printed, each once."""
    sink = AuditSink(data / "audit.db", AuditConfig(retention=1e12, flush_interval=0.01))
    sink.start()
    asked: list[dict[str, Any]] = []
    now = time.time()
    runs = iter([  # the live events of each run; the stream ends after the last one
        [event(10, time=now, decision="deny", status=403), event(11, time=now),
         event(12, time=now, decision="deny", tenant="globex", status=403)],
        [event(13, time=now, tenant="globex", status=404), event(14, time=now, tenant="globex", status=200)],
    ])

    async def tail(args: dict[str, Any]) -> Any:
        asked.append(args)
        live = next(runs)
        inner = follow_sink(sink, n=p.arg(args, "n", int, 0), tenant=p.arg(args, "tenant", str, None))

        async def until_the_last_live_one():
            try:
                first = True
                async for item in inner:
                    if first:  # subscribed and the backlog read: now the box serves on
                        first = False
                        for e in live:
                            sink.emit(e)
                    yield item
                    if item.get("request_id") == live[-1].request_id:
                        return
            finally:
                await inner.aclose()

        return until_the_last_live_one()

    try:
        with ServerThread(sock, {"audit.tail": tail}):
            by_decision = audit(sock, data, "tail", "-f", "-n", "1", "--decision", "deny", "--json")
            by_status = audit(sock, data, "tail", "-f", "-n", "5", "--status", "4xx", "--tenant", "globex", "--json")
    finally:
        sink.close()
    assert by_decision.exit_code == 0, by_decision.output
    assert json_rids(by_decision.stdout) == [1, 10, 12]
    assert by_status.exit_code == 0, by_status.output
    assert json_rids(by_status.stdout) == [2, 12, 13]
    assert asked == [{"n": audit_cli.FOLLOW_OVERLAP, "tenant": None}, {"n": audit_cli.FOLLOW_OVERLAP, "tenant": "globex"}]


def test_follow_with_status_without_a_daemon_polls_the_file(
    sock: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_cli, "_sleep", CtrlC(data))  # adds 20 (acme, 200) and 21 (globex, 200)
    result = audit(sock, data, "tail", "-f", "-n", "3", "--status", "2xx", "--json")
    assert result.exit_code == 0, result.output
    assert json_rids(result.stdout) == [0, 4, 20, 21]
    none_new = audit(sock, data, "tail", "-f", "-n", "0", "--status", "5xx", "--json")
    assert none_new.exit_code == 0 and none_new.stdout == ""


# -- stats --------------------------------------------------------------------------------


def test_stats(sock: Path, data: Path) -> None:
    answer: dict[str, Any] = {"enabled": True, "written": 1200, "dropped": 3, "queued": 7, "db_bytes": 5 * 1024 * 1024}

    async def stats(args: dict[str, Any]) -> Any:
        return answer

    with ServerThread(sock, {"audit.stats": stats}):
        human = audit(sock, data, "stats")
        as_json = audit(sock, data, "stats", "--json")
        answer = {"enabled": False, "written": 0, "dropped": 0, "queued": 0, "db_bytes": 0}
        off = audit(sock, data, "stats")
    assert human.stdout == "1200 written, 3 dropped, 7 queued, 5.0 MiB on disk\n"
    assert json.loads(as_json.stdout)["dropped"] == 3
    assert off.stdout == "the audit log is disabled in the daemon's profile (audit.enabled: false)\n"


def test_stats_without_a_daemon_exits_3(sock: Path, data: Path) -> None:
    result = audit(sock, data, "stats")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: arcus is not running")
