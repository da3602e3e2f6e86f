"""`arcus audit index` and `arcus audit search --text`: the full-text index from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.audit.factory import event, fill
from tests.unit.cli.harness import invoke

EVENTS = [
    event(0, host="www.casino.example", path="/play"),
    event(1, host="news.example.org", path="/casino/odds"),
    event(2, host="mail.example.com", path="/login", tenant="globex"),
    event(3, host="mail.example.com", path="/inbox"),
]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    fill(tmp_path / "audit.db", EVENTS)
    return tmp_path


def audit(data: Path, *args: str):
    return invoke("audit", *args, "--data-dir", str(data))


def rids(stdout: str) -> list[str]:
    return [json.loads(line)["request_id"] for line in stdout.splitlines()]


def test_search_text_without_the_index_is_one_line_and_changes_nothing(data: Path) -> None:
    before = (data / "audit.db").read_bytes()
    result = audit(data, "search", "--text", "casino")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: the audit log {data / 'audit.db'} has no full-text index",
        "hint: build it once with `arcus audit index` (the daemon may keep running); later searches keep it up to date",
    ]
    assert (data / "audit.db").read_bytes() == before


def test_index_then_search_finds_a_host_and_a_path_and_not_the_others(data: Path) -> None:
    built = audit(data, "index")
    assert built.exit_code == 0, built.output
    assert built.stderr == "created the full-text index; indexed 4 events\n"
    assert rids(audit(data, "search", "--text", "casino", "--json").stdout) == ["req-0", "req-1"]
    assert rids(audit(data, "search", "--text", "login", "--json").stdout) == ["req-2"]
    assert rids(audit(data, "search", "--text", "mail", "--tenant", "acme", "--json").stdout) == ["req-3"]
    none = audit(data, "search", "--text", "absent")
    assert none.exit_code == 0 and none.stdout == "no matching events\n"
    people = audit(data, "search", "--text", "casino")
    assert people.stdout.splitlines()[0].split()[:2] == ["TIME", "TENANT"]
    assert "www.casino.example:443/play" in people.stdout and "mail.example.com" not in people.stdout
    again = audit(data, "index")
    assert again.exit_code == 0 and again.stderr == "indexed 0 events\n"


def test_a_search_indexes_what_was_written_since_and_says_when_there_are_more(data: Path) -> None:
    assert audit(data, "index").exit_code == 0
    fill(data / "audit.db", [event(10 + i, host=f"late{i}.casino.example") for i in range(3)])
    result = audit(data, "search", "--text", "casino", "--limit", "4", "--json")
    assert result.exit_code == 0
    assert rids(result.stdout) == ["req-1", "req-10", "req-11", "req-12"]  # the newest 4, oldest first
    assert "note: showing the newest 4 matching events" in result.stderr


def test_quotes_in_the_text_are_no_syntax_error(data: Path) -> None:
    assert audit(data, "index").exit_code == 0
    for text in ('"', '"casino', 'casino"" play'):
        result = audit(data, "search", "--text", text, "--json")
        assert result.exit_code in (0, 1) and "syntax error" not in result.stderr, (text, result.stderr)
    assert rids(audit(data, "search", "--text", '"casino', "--json").stdout) == ["req-0", "req-1"]
    assert audit(data, "search", "--text", '"').stderr.splitlines()[0] == "error: --text needs at least one word"


def test_empty_text_and_drop(data: Path) -> None:
    assert audit(data, "index").exit_code == 0
    empty = audit(data, "search", "--text", " ")
    assert empty.exit_code == 1 and empty.stderr.splitlines()[0] == "error: --text needs at least one word"
    dropped = audit(data, "index", "--drop")
    assert dropped.exit_code == 0 and dropped.stderr == f"dropped the full-text index of {data / 'audit.db'}\n"
    assert audit(data, "search", "--text", "casino").exit_code == 1
    again = audit(data, "index", "--drop")
    assert again.exit_code == 0 and again.stderr == f"{data / 'audit.db'} has no full-text index\n"


def test_index_without_an_audit_log(tmp_path: Path) -> None:
    result = audit(tmp_path, "index")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"error: no audit log at {tmp_path / 'audit.db'}"
    assert not (tmp_path / "audit.db").exists()


def test_search_text_takes_decision_and_status_and_shows_the_newest_oldest_first(data: Path) -> None:
    assert audit(data, "index").exit_code == 0
    fill(data / "audit.db", [event(10 + i, host=f"late{i}.casino.example", status=(404, 200, 403)[i % 3],
                                   decision="deny" if i % 3 == 2 else "allow") for i in range(6)])
    blocked = audit(data, "search", "--text", "casino", "--status", "4xx", "--limit", "3", "--json")
    assert blocked.exit_code == 0, blocked.output
    assert rids(blocked.stdout) == ["req-12", "req-13", "req-15"]  # of 10, 12, 13, 15: the newest 3, oldest first
    assert "note: showing the newest 3 matching events" in blocked.stderr
    denied = audit(data, "search", "--text", "casino", "--decision", "deny", "--json")
    assert denied.exit_code == 0 and denied.stderr == ""
    assert rids(denied.stdout) == ["req-12", "req-15"]
    bad = audit(data, "search", "--text", "casino", "--status", "4")
    assert (bad.exit_code, bad.stdout) == (1, "")
    assert bad.stderr.splitlines()[0] == "error: invalid --status '4'"
