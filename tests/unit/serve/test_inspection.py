"""A tunnel's Inspection (arcus.serve.inspection) with a stand-in tunnel and policy check: what
it notes, when it asks the policy, what a refusal does, its time bound. The end-to-end behaviour
through the proxy is tests/integration/test_protocol_inspection.py."""

from __future__ import annotations

from collections import Counter
from typing import Any

from arcus.errors import ErrorCode
from arcus.policy import Decision
from arcus.serve.inspection import Inspection
from tests.unit.proto.sniff_captures import CAPTURED


class Stats:
    def __init__(self) -> None:
        self.errors: Counter = Counter()


class Owner:
    def __init__(self, check: Any = None) -> None:
        self.tunnel_check = check
        self.srv_stats, self.ten_stats = Stats(), Stats()


class FakeTunnel:
    def __init__(self, check: Any = None) -> None:
        self.owner = Owner(check)
        self.sni: str | None = None
        self.ended = 0

    def refused(self) -> None:
        self.ended += 1


class Check:
    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        self.asked: list[tuple[str, str | None]] = []

    def __call__(self, protocol: str, sni: str | None) -> Decision:
        self.asked.append((protocol, sni))
        return self.decision


def test_without_a_check_it_only_notes_the_protocol_and_the_sni() -> None:
    tunnel = FakeTunnel()
    insp = Inspection(tunnel)
    assert insp.client(CAPTURED["curl_https"]) is False
    assert not insp.watching and tunnel.sni == "api.example.org"
    assert (insp.protocol, insp.sni, insp.refusal) == ("tls", "api.example.org", None)


def test_a_deny_on_the_first_bytes_refuses_counts_and_ends_the_tunnel() -> None:
    check = Check(Decision("deny", "no-ssh", "denied by rule 'no-ssh'"))
    tunnel = FakeTunnel(check)
    insp = Inspection(tunnel)
    assert insp.server(b"SSH-2.0-OpenSSH_9.2p1\r\n") is True  # the greeting is not passed on
    assert check.asked == [("ssh", None)]
    assert insp.refusal is not None and insp.refusal.code is ErrorCode.DENIED and insp.refusal.rule == "no-ssh"
    assert insp.refusal.message == "denied by rule 'no-ssh' (the tunnel carries ssh)"
    assert tunnel.ended == 1
    assert tunnel.owner.srv_stats.errors[ErrorCode.DENIED] == tunnel.owner.ten_stats.errors[ErrorCode.DENIED] == 1


def test_an_allow_with_reports_is_kept_for_the_record_and_a_redirect_is_a_deny() -> None:
    insp = Inspection(FakeTunnel(Check(Decision("allow", None, "ok", reports=("watch-tls",)))))
    assert insp.client(CAPTURED["openssl_s_client"]) is False
    assert insp.reports == ("watch-tls",)
    insp = Inspection(FakeTunnel(Check(Decision("redirect", "r", "redirected", redirect_to="https://x.example/"))))
    assert insp.client(CAPTURED["curl_http1"]) is True and insp.refusal is not None and insp.refusal.rule == "r"


def test_undecided_bytes_wait_for_more_until_the_time_bound() -> None:
    check = Check(Decision("deny", "no-unknown", "denied"))
    insp = Inspection(FakeTunnel(check))
    assert insp.client(b"G") is False and insp.client(b"E") is False
    assert insp.watching and check.asked == []  # "GE" could still become a request line
    insp.until = 0.0  # the watch's time is up (WATCH_SECONDS after the tunnel started)
    assert insp.client(b"T") is True  # "GET" still undecided, but named at the bound: unknown
    assert insp.protocol == "unknown"
    assert check.asked == [("unknown", None)]


def test_a_tunnel_that_carried_nothing_has_no_protocol() -> None:
    insp = Inspection(FakeTunnel())
    assert insp.protocol is None and insp.sni is None
    insp = Inspection(FakeTunnel())
    insp.client(b"\x00\x01")
    assert insp.protocol == "unknown" and not insp.watching  # settled at the tunnel's end
