"""The wire format, without sockets: what the daemon accepts, refuses, and sends back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arcus.control import protocol as p
from arcus.errors import NotFound, OperatorError


def test_request_encodes_as_one_json_line() -> None:
    line = p.Request(7, "tenant.add", {"name": "acme"}).encode()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"v": 1, "id": 7, "cmd": "tenant.add", "args": {"name": "acme"}}


def test_request_round_trips() -> None:
    req = p.Request(3, "kill", {"id": 12})
    assert p.decode_request(req.encode()) == req


def test_request_without_args_or_v_gets_defaults() -> None:
    assert p.decode_request(b'{"id": 1, "cmd": "health"}') == p.Request(1, "health", {})
    assert p.decode_request(b'{"id": 1, "cmd": "health", "args": null}').args == {}


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (b"\xff\xfe\n", "UTF-8"),
        (b"{not json}\n", "not JSON"),
        (b"   \n", "empty"),
        (b"[1, 2]\n", "object, not list"),
        (b'"health"\n', "object, not str"),
        (b'{"id": 1, "cmd": "x", "args": {"a": NaN}}\n', "not JSON"),
        (b'{"cmd": "health"}\n', '"id"'),
        (b'{"id": "7", "cmd": "health"}\n', '"id"'),
        (b'{"id": true, "cmd": "health"}\n', '"id"'),
        (b'{"id": 1}\n', '"cmd"'),
        (b'{"id": 1, "cmd": ""}\n', '"cmd"'),
        (b'{"id": 1, "cmd": 5}\n', '"cmd"'),
        (b'{"v": 2, "id": 1, "cmd": "health"}\n', "version 2"),
        (b'{"v": true, "id": 1, "cmd": "health"}\n', "version True"),
        (b'{"id": 1, "cmd": "health", "args": [1]}\n', '"args"'),
        (b"[" * 100_000 + b"\n", "not JSON"),
    ],
)
def test_malformed_requests_are_bad_request(line: bytes, words: str) -> None:
    with pytest.raises(p.ControlError) as info:
        p.decode_request(line)
    assert info.value.code == p.BAD_REQUEST
    assert words in info.value.message
    assert info.value.hint  # says what a request looks like


def test_request_id_is_kept_for_error_replies_only_when_usable() -> None:
    assert p.request_id({"id": 5}) == 5
    assert p.request_id({"id": "5"}) is None
    assert p.request_id({"id": False}) is None
    assert p.request_id({}) is None


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_raise_only_control_error(data: bytes) -> None:
    try:
        req = p.decode_request(data)
    except p.ControlError as exc:
        assert exc.code == p.BAD_REQUEST
    else:
        assert isinstance(req.id, int) and isinstance(req.cmd, str) and isinstance(req.args, dict)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3),
                    max_leaves=10))
@settings(max_examples=200, deadline=None)
def test_arbitrary_json_values_raise_only_control_error(value: object) -> None:
    try:
        p.decode_request(json.dumps(value).encode())
    except p.ControlError as exc:
        assert exc.code == p.BAD_REQUEST


def test_success_reply_round_trips() -> None:
    reply = p.decode_reply(p.encode_result(7, {"killed": 3}))
    assert reply == p.Reply(7, True, {"killed": 3}, None, None)
    assert reply.unwrap() == {"killed": 3}


def test_error_reply_carries_code_message_and_hint() -> None:
    line = p.encode_error(7, NotFound("tenant 'x' does not exist", hint="see `arcus tenant list`"))
    assert json.loads(line) == {
        "id": 7,
        "ok": False,
        "error": {"code": "not_found", "message": "tenant 'x' does not exist", "hint": "see `arcus tenant list`"},
    }
    reply = p.decode_reply(line)
    assert not reply.ok
    with pytest.raises(p.ControlError) as info:
        reply.unwrap()
    assert (info.value.code, info.value.message, info.value.hint) == (
        "not_found",
        "tenant 'x' does not exist",
        "see `arcus tenant list`",
    )


def test_error_reply_without_hint_omits_it() -> None:
    assert "hint" not in json.loads(p.encode_error(None, OperatorError("bad")))["error"]


def test_stream_markers() -> None:
    assert p.decode_reply(p.encode_result(1, {"n": 1}, more=True)).more is True
    assert p.decode_reply(p.encode_result(1, None, more=False)).more is False
    assert "more" not in json.loads(p.encode_result(1, None))


def test_result_that_is_not_json_is_refused_at_encoding() -> None:
    with pytest.raises(TypeError):
        p.encode_result(1, object())
    with pytest.raises(ValueError):
        p.encode_result(1, float("nan"))


@pytest.mark.parametrize(
    "line",
    [b"\xff\n", b"[]\n", b'{"id": 1}\n', b'{"id": 1, "ok": "yes"}\n'],
)
def test_malformed_reply_is_internal_error(line: bytes) -> None:
    with pytest.raises(p.ControlError) as info:
        p.decode_reply(line)
    assert info.value.code == p.INTERNAL


def test_malformed_error_object_still_gives_a_control_error() -> None:
    reply = p.decode_reply(b'{"id": 1, "ok": false, "error": "boom"}\n')
    assert reply.error is not None and reply.error.code == p.INTERNAL
    reply = p.decode_reply(b'{"id": 1, "ok": false, "error": {"code": "", "message": 5}}\n')
    assert reply.error is not None and reply.error.code == p.INTERNAL


def test_control_error_is_an_operator_error() -> None:
    exc = p.ControlError(p.NOT_FOUND, "gone", "look elsewhere")
    assert isinstance(exc, OperatorError)
    assert (exc.code, exc.message, exc.hint) == ("not_found", "gone", "look elsewhere")
    assert p.ControlError.from_dict(exc.to_dict()).to_dict() == exc.to_dict()


def test_every_documented_command_has_a_description() -> None:
    expected = {"help", "health", "stats", "reload", "conns", "kill", "shutdown",
                "tenant.add", "tenant.list", "tenant.show", "tenant.rm", "tenant.suspend", "tenant.resume"}
    assert expected <= set(p.COMMANDS)
    assert all(desc.strip() for desc in p.COMMANDS.values())


class TestArg:
    def test_required_present(self) -> None:
        assert p.arg({"name": "acme"}, "name", str) == "acme"

    def test_required_missing(self) -> None:
        with pytest.raises(p.ControlError) as info:
            p.arg({}, "name", str)
        assert info.value.code == p.BAD_REQUEST and '"name"' in info.value.message

    def test_default(self) -> None:
        assert p.arg({}, "graceful", bool, False) is False
        assert p.arg({"graceful": None}, "graceful", bool, False) is False

    def test_wrong_type_names_both_types(self) -> None:
        with pytest.raises(p.ControlError) as info:
            p.arg({"id": "3"}, "id", int)
        assert info.value.message == 'argument "id" must be an integer, not a string'

    def test_bool_is_not_an_int(self) -> None:
        with pytest.raises(p.ControlError):
            p.arg({"id": True}, "id", int)
        assert p.arg({"x": True}, "x", bool) is True

    def test_list_of_str(self) -> None:
        assert p.arg_list_of_str({"s": ["a"]}, "s") == ["a"]
        assert p.arg_list_of_str({}, "s", []) == []
        with pytest.raises(p.ControlError):
            p.arg_list_of_str({"s": ["a", 1]}, "s")
