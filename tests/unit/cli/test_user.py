"""`arcus user`: every command with no daemon (the store directly) and through a real control
server whose handlers record what they were sent. The promises checked everywhere: the password
is hashed in the CLI, and neither a password nor a hash is ever printed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from arcus.auth import secrets
from arcus.auth.secrets import identify_secret, verify_secret
from arcus.cli import user as user_cli
from arcus.control import protocol as p
from arcus.store import Store
from arcus.testing.control import TenancyDaemon
from tests.unit.cli.harness import SHA256_CRYPT, SHA256_PW, cheap_hash, js, run

USER_KEYS = {"tenant", "name", "secret_scheme", "blocked", "expires_at", "max_conns", "rps", "bandwidth", "created_at"}
PW = "Tr0ub4dor&3-horse"
PW2 = "correct-horse-battery"


@pytest.fixture(autouse=True)
def fast_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(user_cli, "hash_secret", cheap_hash)


@pytest.fixture(autouse=True)
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """CliRunner's stdin is no terminal: stand in for one, so the hidden prompt is asked (the
    tests without a terminal run ``arcus`` in a process of its own, with no controlling tty)."""
    monkeypatch.setattr(user_cli, "interactive", lambda: True)


def user(sock: Path, data_dir: Path, *args: str, input: str | None = None) -> Result:
    return run(sock, data_dir, "user", *args, input=input)


def stored(data_dir: Path, tenant: str, name: str) -> Any:
    with Store.open(data_dir / "arcus.db") as store:
        return store.get_user(tenant, name)


def no_secret_in(result: Result, *secrets: str) -> None:
    for s in secrets:
        assert s not in result.output
    assert "$scrypt$" not in result.output and '"secret"' not in result.stdout


@pytest.fixture
def acme(sock: Path, data_dir: Path) -> None:
    assert run(sock, data_dir, "tenant", "add", "acme").exit_code == 0


def add_alice(sock: Path, data_dir: Path, *extra: str) -> Result:
    result = user(sock, data_dir, "add", "acme", "alice", "--password-stdin", *extra, input=PW + "\n")
    assert result.exit_code == 0, result.output
    return result


# -- add --------------------------------------------------------------------------------------


def test_add_prompts_twice_hidden_and_stores_only_a_hash(sock: Path, data_dir: Path, acme: None) -> None:
    result = user(sock, data_dir, "add", "acme", "alice", input=f"{PW}\n{PW}\n")
    assert result.exit_code == 0, result.output
    # CliRunner's stand-in for getpass writes each (hidden) answer's newline to stdout.
    assert result.stdout == " \n \nadded user alice to tenant acme\n"
    # Prompts go to stderr (stdout stays for --json); the space after each goes to the terminal.
    assert result.stderr.startswith("password for alice@acme:same password again:")
    assert result.stderr.endswith(f"note: no daemon running at {sock}; changed the store at {data_dir / 'arcus.db'} directly\n")
    no_secret_in(result, PW)
    u = stored(data_dir, "acme", "alice")
    assert u.secret.startswith("$scrypt$") and verify_secret(u.secret, PW)
    assert (u.blocked, u.expires_at) == (False, None)


def test_passwords_that_differ_are_refused(sock: Path, data_dir: Path, acme: None) -> None:
    result = user(sock, data_dir, "add", "acme", "alice", input=f"{PW}\n{PW2}\n")
    assert result.exit_code == 1
    assert result.stdout.strip() == ""
    assert result.stderr.endswith(
        "again:error: the two passwords differ\nhint: run the command again and type the same password twice\n"
    )
    no_secret_in(result, PW, PW2)
    assert js(user(sock, data_dir, "list", "acme", "--json")) == []


def test_an_empty_password_is_refused(sock: Path, data_dir: Path, acme: None) -> None:
    result = user(sock, data_dir, "add", "acme", "alice", input="\n\n")
    assert result.exit_code == 1
    assert result.stderr == "password for alice@acme:error: the password is empty\nhint: choose a non-empty password\n"
    result = user(sock, data_dir, "add", "acme", "alice", "--password-stdin", input="\n")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "error: no password on standard input"
    assert result.stderr.splitlines()[1].startswith("hint: ")
    result = user(sock, data_dir, "add", "acme", "alice", "--password-stdin", input="")
    assert result.stderr.splitlines()[0] == "error: no password on standard input"
    assert js(user(sock, data_dir, "list", "acme", "--json")) == []


def test_password_stdin_reads_one_line_exactly(sock: Path, data_dir: Path, acme: None) -> None:
    result = user(sock, data_dir, "add", "acme", "alice", "--password-stdin", input=f" {PW} \r\nignored\n")
    assert result.exit_code == 0, result.output
    assert "password for" not in result.stderr  # no prompt
    assert verify_secret(stored(data_dir, "acme", "alice").secret, f" {PW} ")  # spaces kept, CRLF dropped


def test_add_with_the_real_scrypt_parameters(sock: Path, data_dir: Path, acme: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(user_cli, "hash_secret", secrets.hash_secret)
    add_alice(sock, data_dir)
    secret = stored(data_dir, "acme", "alice").secret
    assert secret.startswith("$scrypt$ln=15,r=8,p=1$") and verify_secret(secret, PW)


def test_add_json_shape_has_no_secret(sock: Path, data_dir: Path, acme: None) -> None:
    result = user(sock, data_dir, "add", "acme", "alice", "--password-stdin", "--expires", "2027-01-31", "--json",
                  input=PW + "\n")
    out = js(result)
    assert set(out) == USER_KEYS
    assert out["secret_scheme"] == "scrypt"
    assert out["expires_at"] == "2027-01-31T00:00:00Z"
    no_secret_in(result, PW)


def test_add_text_names_the_expiry(sock: Path, data_dir: Path, acme: None) -> None:
    result = add_alice(sock, data_dir, "--expires", "2031-06-01T18:00:00+02:00")
    assert result.stdout == "added user alice to tenant acme, expires 2031-06-01T16:00:00Z\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-01-31", "2027-01-31T00:00:00Z"),
        ("2027-01-31T18:30", "2027-01-31T18:30:00Z"),
        ("2027-01-31T18:30:00Z", "2027-01-31T18:30:00Z"),
        ("2027-01-31 01:00:00+02:00", "2027-01-30T23:00:00Z"),
        ("never", None),
        ("NEVER", None),
    ],
)
def test_parse_expiry(text: str, expected: str | None) -> None:
    assert user_cli.parse_expiry(text) == expected


@pytest.mark.parametrize("text", ["tomorrow", "2027-13-01", "31/01/2027", "", "1960-01-01"])
def test_bad_expiry_is_one_line_and_a_hint_before_any_prompt(sock: Path, data_dir: Path, acme: None, text: str) -> None:
    result = user(sock, data_dir, "add", "acme", "alice", "--expires", text, input=f"{PW}\n{PW}\n")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2, lines  # no prompt: checked first
    assert lines[0].startswith(f"error: invalid expiry date {text!r}")
    assert lines[1].startswith("hint: write a date such as 2027-01-31")


def test_add_twice_and_unknown_tenant(sock: Path, data_dir: Path, acme: None) -> None:
    add_alice(sock, data_dir)
    result = user(sock, data_dir, "add", "acme", "alice", "--password-stdin", input=PW + "\n")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[:2] == [
        "error: user 'alice' of tenant 'acme' already exists",
        "hint: choose another name, or change it with `arcus user passwd acme alice`",
    ]
    result = user(sock, data_dir, "add", "ghost", "alice", "--password-stdin", input=PW + "\n")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[:2] == ["error: tenant 'ghost' does not exist", "hint: see `arcus tenant list`"]


@pytest.mark.parametrize("command", ["add", "show", "rm", "passwd", "block", "unblock"])
@pytest.mark.parametrize(("tenant", "name", "kind"), [("bad tenant", "alice", "tenant"), ("acme", "bad/user", "user")])
def test_bad_names_are_refused_before_anything(sock: Path, data_dir: Path, command: str, tenant: str, name: str,
                                               kind: str) -> None:
    result = user(sock, data_dir, command, tenant, name, input=f"{PW}\n{PW}\n")
    assert result.exit_code == 1
    bad = tenant if kind == "tenant" else name
    assert result.stderr.splitlines() == [
        f"error: invalid {kind} name {bad!r}",
        "hint: use 1-63 characters from A-Z a-z 0-9 . _ - starting with a letter or digit",
    ]
    assert not data_dir.exists()


# -- list, show ---------------------------------------------------------------------------------


def test_list(sock: Path, data_dir: Path, acme: None) -> None:
    assert user(sock, data_dir, "list", "acme").stdout == "tenant acme has no users\n"
    add_alice(sock, data_dir, "--expires", "2001-01-01")
    result = user(sock, data_dir, "list", "acme")
    assert result.exit_code == 0
    row = next(line for line in result.stdout.splitlines() if "│ alice " in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[:7] == ["alice", "scrypt", "no", "2001-01-01T00:00:00Z (expired)", "unlimited", "unlimited",
                         "unlimited"]
    no_secret_in(result, PW)
    out = js(user(sock, data_dir, "list", "acme", "--json"))
    assert [set(u) for u in out] == [USER_KEYS] and out[0]["name"] == "alice"


def test_show(sock: Path, data_dir: Path, acme: None) -> None:
    add_alice(sock, data_dir)
    result = user(sock, data_dir, "show", "acme", "alice")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[:5] == ["user       alice", "tenant     acme", "secret     scrypt", "blocked    no", "expires    never"]
    assert lines[-3:] == ["connections unlimited", "rate limit  unlimited", "bandwidth   unlimited"]
    no_secret_in(result, PW)
    assert set(js(user(sock, data_dir, "show", "acme", "alice", "--json"))) == USER_KEYS


@pytest.mark.parametrize("command", ["show", "rm", "block", "unblock"])
def test_unknown_user(sock: Path, data_dir: Path, acme: None, command: str) -> None:
    result = user(sock, data_dir, command, "acme", "ghost")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[:2] == [
        "error: user 'ghost' of tenant 'acme' does not exist",
        "hint: see `arcus user list acme`",
    ]


# -- rm, passwd, block, set ------------------------------------------------------------------


def test_rm(sock: Path, data_dir: Path, acme: None) -> None:
    add_alice(sock, data_dir)
    result = user(sock, data_dir, "rm", "acme", "alice")
    assert result.stdout == "removed user alice from tenant acme\n"
    add_alice(sock, data_dir)
    assert js(user(sock, data_dir, "rm", "acme", "alice", "--json")) == {"removed": "alice"}
    assert js(user(sock, data_dir, "list", "acme", "--json")) == []


def test_passwd(sock: Path, data_dir: Path, acme: None) -> None:
    add_alice(sock, data_dir)
    result = user(sock, data_dir, "passwd", "acme", "alice", input=f"{PW2}\n{PW2}\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == " \n \nchanged the password of user alice of tenant acme\n"
    no_secret_in(result, PW, PW2)
    secret = stored(data_dir, "acme", "alice").secret
    assert verify_secret(secret, PW2) and not verify_secret(secret, PW)
    out = js(user(sock, data_dir, "passwd", "acme", "alice", "--password-stdin", "--json", input=PW + "\n"))
    assert set(out) == USER_KEYS
    assert verify_secret(stored(data_dir, "acme", "alice").secret, PW)


def test_passwd_mismatch_changes_nothing(sock: Path, data_dir: Path, acme: None) -> None:
    add_alice(sock, data_dir)
    result = user(sock, data_dir, "passwd", "acme", "alice", input=f"{PW2}\nother\n")
    assert result.exit_code == 1
    assert verify_secret(stored(data_dir, "acme", "alice").secret, PW)


def test_block_unblock(sock: Path, data_dir: Path, acme: None) -> None:
    add_alice(sock, data_dir)
    result = user(sock, data_dir, "block", "acme", "alice")
    assert result.stdout == (
        "blocked user alice of tenant acme: its logins are refused until `arcus user unblock acme alice`\n"
    )
    assert stored(data_dir, "acme", "alice").blocked is True
    assert js(user(sock, data_dir, "block", "acme", "alice", "--json"))["blocked"] is True
    assert user(sock, data_dir, "unblock", "acme", "alice").stdout == "unblocked user alice of tenant acme\n"
    assert js(user(sock, data_dir, "unblock", "acme", "alice", "--json"))["blocked"] is False
    assert verify_secret(stored(data_dir, "acme", "alice").secret, PW)  # the password is kept


def test_set(sock: Path, data_dir: Path, acme: None) -> None:
    add_alice(sock, data_dir, "--expires", "2030-01-01")
    result = user(sock, data_dir, "set", "acme", "alice", "--max-conns", "10", "--rps", "5", "--bandwidth", "8M",
                  "--expires", "never")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "changed user alice of tenant acme: expires never, max conns 10, rate limit 5 req/s, "
        "bandwidth 8Mbit/s each way\n"
    )
    u = stored(data_dir, "acme", "alice")
    assert (u.expires_at, u.max_conns, u.rps, u.bandwidth) == (None, 10, 5.0, 1_000_000.0)
    shown = user(sock, data_dir, "show", "acme", "alice").stdout.splitlines()
    assert shown[-3:] == ["connections 10", "rate limit  5 req/s", "bandwidth   8Mbit/s each way"]
    out = js(user(sock, data_dir, "set", "acme", "alice", "--max-conns", "unlimited", "--json"))
    assert set(out) == USER_KEYS and out["max_conns"] is None and out["rps"] == 5.0


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((), "error: nothing to change"),
        (("--max-conns", "0"), "error: invalid connection limit '0': it must be more than 0"),
        (("--rps", "fast"), "error: invalid request rate 'fast'"),
        (("--bandwidth", "50mb"), "error: ambiguous bandwidth '50mb': lowercase 'b' may mean bits or bytes"),
        (("--expires", "soon"), "error: invalid expiry date 'soon'"),
    ],
)
def test_set_errors(sock: Path, data_dir: Path, args: tuple[str, ...], error: str) -> None:
    result = user(sock, data_dir, "set", "acme", "alice", *args)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0] == error and lines[1].startswith("hint: ")
    assert not data_dir.exists()  # refused before the store was opened


# -- import -------------------------------------------------------------------------------------


def write(tmp_path: Path, data: Any, name: str = "users.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def g3_token(password: str, salt_hex: str = "d950eeffd53f7189") -> dict[str, str]:
    data = password.encode() + bytes.fromhex(salt_hex)
    return {"salt": salt_hex, "md5": hashlib.md5(data).hexdigest(), "sha1": hashlib.sha1(data).hexdigest()}


def test_import_every_form(sock: Path, data_dir: Path, acme: None, tmp_path: Path) -> None:
    path = write(tmp_path, [
        {"name": "alice", "password": PW},
        {"name": "bob", "hash": SHA256_CRYPT, "expires": "2030-01-31"},
        {"name": "carol", "token": g3_token(PW2)},
        {"name": "dave", "token": {"type": "xcrypt_hash", "value": SHA256_CRYPT}},
        {"name": "erin", "password": PW2, "expires": None},
    ])
    result = user(sock, data_dir, "import", "acme", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == "imported 5 users into tenant acme\n"
    no_secret_in(result, PW, PW2, SHA256_CRYPT)
    with Store.open(data_dir / "arcus.db") as store:
        users = {u.name: u for u in store.list_users("acme")}
    assert verify_secret(users["alice"].secret, PW) and users["alice"].secret.startswith("$scrypt$")
    assert users["bob"].secret == SHA256_CRYPT and verify_secret(users["bob"].secret, SHA256_PW)
    assert users["bob"].expires_at == "2030-01-31T00:00:00Z"
    assert identify_secret(users["carol"].secret) == "g3-md5-sha1" and verify_secret(users["carol"].secret, PW2)
    assert not verify_secret(users["carol"].secret, PW)
    assert verify_secret(users["dave"].secret, SHA256_PW)
    assert verify_secret(users["erin"].secret, PW2)


def test_import_json_and_replace(sock: Path, data_dir: Path, acme: None, tmp_path: Path) -> None:
    add_alice(sock, data_dir)
    path = write(tmp_path, [{"name": "alice", "password": PW2}, {"name": "bob", "hash": SHA256_CRYPT}])
    result = user(sock, data_dir, "import", "acme", str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "error: user import entry 1: user 'alice' of tenant 'acme' already exists"
    assert [u["name"] for u in js(user(sock, data_dir, "list", "acme", "--json"))] == ["alice"]  # all or nothing
    assert js(user(sock, data_dir, "import", "acme", str(path), "--replace", "--json")) == {"imported": 2}
    assert verify_secret(stored(data_dir, "acme", "alice").secret, PW2)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ('{"name": "alice"}', "users.json: expected a JSON list of users, got a JSON object"),
        ("[]", "users.json holds no users"),
        ('[{"name": "alice", "password": "x",]', "users.json is not valid JSON (line 1, column 36): "
                                                  "Expecting property name enclosed in double quotes"),
        ([PW], "users.json: entry 1: expected an object, got a JSON string"),
        ([{"password": PW}], "users.json: entry 1: 'name' is missing or not text"),
        ([{"name": "ok", "password": PW}, {"name": "bad name", "password": PW}],
         "users.json: entry 2: invalid user name 'bad name'"),
        ([{"name": "alice", "password": PW}, {"name": "alice", "hash": SHA256_CRYPT}],
         "users.json: entry 2 (alice): user given again (first as entry 1)"),
        ([{"name": "alice", "passwd": PW}], "users.json: entry 1 (alice): unknown key 'passwd'"),
        ([{"name": "alice"}], "users.json: entry 1 (alice): give one of 'password', 'hash' or 'token'"),
        ([{"name": "alice", "password": PW, "hash": SHA256_CRYPT}],
         "users.json: entry 1 (alice): give only one of 'password', 'hash' or 'token'"),
        ([{"name": "alice", "password": ""}], "users.json: entry 1 (alice): 'password' must be non-empty text"),
        ([{"name": "alice", "password": 1234}], "users.json: entry 1 (alice): 'password' must be non-empty text"),
        ([{"name": "alice", "hash": PW}],
         "users.json: entry 1 (alice): not a hashed secret: it does not start with a $scheme$ prefix"),
        ([{"name": "alice", "hash": "$hunter2$x"}],
         "users.json: entry 1 (alice): unknown secret format: its $scheme$ prefix is not one Arcus reads"),
        ([{"name": "alice", "hash": "$2b$12$abcdefghijklmnopqrstuv"}],
         "users.json: entry 1 (alice): unsupported secret format: bcrypt ($2b$)"),
        ([{"name": "alice", "token": {"salt": "d950eeffd53f7189", "blake3": "00"}}],
         "users.json: entry 1 (alice): G3 fast_hash token: only a blake3 digest, which Arcus cannot verify"),
        ([{"name": "alice", "token": PW}],
         "users.json: entry 1 (alice): a G3 string token must be a crypt $1$, $5$ or $6$ string"),
        ([{"name": "alice", "password": PW, "expires": "someday"}],
         "users.json: entry 1 (alice): invalid expiry date 'someday'"),
    ],
)
def test_import_errors_name_the_entry_and_never_a_password(
    sock: Path, data_dir: Path, acme: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: Any, error: str
) -> None:
    write(tmp_path, data)
    monkeypatch.chdir(tmp_path)  # errors name the file as the operator typed it
    result = user(sock, data_dir, "import", "acme", "users.json")
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {error}"
    assert len(lines) == 2 and lines[1].startswith("hint: ")
    assert PW not in result.stderr and "hunter2" not in result.stderr
    assert [u["name"] for u in js(user(sock, data_dir, "list", "acme", "--json"))] == []


def test_import_missing_file(sock: Path, data_dir: Path, tmp_path: Path) -> None:
    result = user(sock, data_dir, "import", "acme", str(tmp_path / "nope.json"))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: cannot read {tmp_path / 'nope.json'}: No such file or directory",
        "hint: give the path of a JSON file",
    ]


def test_import_a_bad_password_stops_before_the_store(sock: Path, data_dir: Path, acme: None, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(user_cli, "hash_secret", secrets.hash_secret)  # its length limit
    path = write(tmp_path, [{"name": "alice", "password": PW}, {"name": "bob", "password": "x" * 1025}])
    result = user(sock, data_dir, "import", "acme", str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"error: {path}: entry 2 (bob): the password is longer than 1024 bytes"
    assert "xxxx" not in result.output
    assert js(user(sock, data_dir, "list", "acme", "--json")) == []


# -- through the daemon ---------------------------------------------------------------------------


USAGE = {"conns_total": 7, "conns_active": 2, "requests": 30, "bytes_up": 0, "bytes_down": 0, "errors": {}}


@pytest.fixture
def daemon(daemon: TenancyDaemon) -> Iterator[TenancyDaemon]:
    daemon.seed(lambda st: st.add_tenant("acme", None, []))
    yield daemon


def test_daemon_path_every_command_and_only_hashes_on_the_wire(
    daemon: TenancyDaemon, sock: Path, data_dir: Path, tmp_path: Path
) -> None:
    added = js(user(sock, data_dir, "add", "acme", "alice", "--expires", "2030-01-01", "--json",
                    input=f"{PW}\n{PW}\n"))
    assert set(added) == USER_KEYS and added["expires_at"] == "2030-01-01T00:00:00Z"
    cmd, args = daemon.calls[-1]
    assert cmd == "user.add" and set(args) == {"tenant", "name", "secret", "expires_at"}
    assert verify_secret(args["secret"], PW)
    assert [u["name"] for u in js(user(sock, data_dir, "list", "acme", "--json"))] == ["alice"]
    live = daemon.shared.user_counters.get("acme/alice")
    live.conns_active, live.conns_total, live.requests = 2, 7, 30
    shown = user(sock, data_dir, "show", "acme", "alice")
    assert shown.exit_code == 0 and shown.stderr == ""
    assert "connections 2 / unlimited" in shown.stdout.splitlines()
    rows = [[c.strip() for c in line.strip("│ ").split("│")] for line in shown.stdout.splitlines() if "│" in line]
    assert ["7", "2", "30", "0 B", "0 B", "-"] in rows
    assert js(user(sock, data_dir, "show", "acme", "alice", "--json"))["usage"] == USAGE
    assert js(user(sock, data_dir, "passwd", "acme", "alice", "--password-stdin", "--json",
                   input=PW2 + "\n"))["name"] == "alice"
    assert verify_secret(daemon.calls[-1][1]["secret"], PW2)
    assert js(user(sock, data_dir, "block", "acme", "alice", "--json"))["blocked"] is True
    assert js(user(sock, data_dir, "unblock", "acme", "alice", "--json"))["blocked"] is False
    out = js(user(sock, data_dir, "set", "acme", "alice", "--rps", "unlimited", "--bandwidth", "1MB",
                  "--expires", "never", "--json"))
    assert (out["rps"], out["bandwidth"], out["expires_at"]) == (None, 1_000_000.0, None)
    assert daemon.calls[-1][1] == {"tenant": "acme", "name": "alice", "expires_at": None, "rps": None,
                                   "bandwidth": 1_000_000.0}
    path = write(tmp_path, [{"name": "bob", "password": PW}, {"name": "carol", "hash": SHA256_CRYPT,
                                                              "expires": "2030-02-01"}])
    assert js(user(sock, data_dir, "import", "acme", str(path), "--json")) == {"imported": 2}
    cmd, args = daemon.calls[-1]
    assert cmd == "user.import" and args["replace"] is False
    assert [set(u) for u in args["users"]] == [{"name", "secret"}, {"name", "secret", "expires_at"}]
    assert verify_secret(args["users"][0]["secret"], PW) and args["users"][1]["secret"] == SHA256_CRYPT
    assert js(user(sock, data_dir, "rm", "acme", "alice", "--json")) == {"removed": "alice"}
    assert [c for c, _ in daemon.calls] == [
        "tenant.show", "user.add", "user.list", "user.show", "user.show", "user.show", "user.passwd", "user.block",
        "user.unblock", "user.set", "tenant.show", "user.import", "user.rm",
    ]
    assert PW not in json.dumps([a for _, a in daemon.calls]) and PW2 not in json.dumps([a for _, a in daemon.calls])
    assert daemon.refreshes == 7  # every change, none of the reads
    assert not data_dir.exists()


def test_daemon_path_errors_are_one_line(daemon: TenancyDaemon, sock: Path, data_dir: Path) -> None:
    result = user(sock, data_dir, "show", "acme", "ghost")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["error: user 'ghost' of tenant 'acme' does not exist",
                                          "hint: see `arcus user list acme`"]


def test_an_import_too_large_for_the_socket_is_refused_with_a_hint(
    daemon: TenancyDaemon, sock: Path, data_dir: Path, tmp_path: Path
) -> None:
    count = p.MAX_LINE // len(SHA256_CRYPT) + 10
    path = write(tmp_path, [{"name": f"u{i}", "hash": SHA256_CRYPT} for i in range(count)])
    result = user(sock, data_dir, "import", "acme", str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: the request is larger than the control socket takes (1 MiB)",
        "hint: split the input into smaller parts, or stop the daemon to write the store directly",
    ]
    assert [c for c, _ in daemon.calls] == ["tenant.show"]  # it exists: then the file is hashed


def test_a_large_import_without_a_daemon_goes_to_the_store(sock: Path, data_dir: Path, acme: None,
                                                           tmp_path: Path) -> None:
    count = p.MAX_LINE // len(SHA256_CRYPT) + 10
    path = write(tmp_path, [{"name": f"u{i}", "hash": SHA256_CRYPT} for i in range(count)])
    assert js(user(sock, data_dir, "import", "acme", str(path), "--json")) == {"imported": count}
