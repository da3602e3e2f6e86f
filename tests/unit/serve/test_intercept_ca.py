"""The interception service's CA cache: read again every CA_TTL seconds, and a CA whose files
can no longer be read does not stop interception (the one loaded before keeps signing)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from arcus.errors import OperatorError
from arcus.serve import intercept
from arcus.tls.ca import KEY_FILE
from arcus.tls.castore import CAStore


def test_a_damaged_ca_key_keeps_the_ca_loaded_before_and_says_so(tmp_path: Path, monkeypatch, caplog) -> None:
    first = CAStore(tmp_path).init(None)
    svc = intercept.Interception(tmp_path, workers=1)
    monkeypatch.setattr(intercept, "CA_TTL", 0.0)  # every call reads the files again
    try:
        loaded = asyncio.run(svc.ca("acme"))
        assert loaded.cert == first.cert
        (first.directory / KEY_FILE).write_text("garbage\n")
        with caplog.at_level(logging.ERROR, logger="arcus.serve"):
            again = asyncio.run(svc.ca("acme"))
        assert again is loaded and svc.ca_failures == 1  # ctl health reports ca_unreadable for a minute
        assert "cannot be read again" in caplog.text and "still signing with the one loaded before" in caplog.text
        # with nothing loaded before, the failure is the caller's (the tunnel is refused, its record says why)
        fresh = intercept.Interception(tmp_path, workers=1)
        try:
            with pytest.raises(OperatorError):
                asyncio.run(fresh.ca("acme"))
            assert fresh.ca_failures == 1
        finally:
            fresh.close()
    finally:
        svc.close()


def test_the_ca_watch_finds_a_damaged_ca_before_any_tunnel_and_says_so_once(tmp_path: Path, caplog) -> None:
    """A CA damaged while the daemon was down (or while nothing was intercepted) is found by the
    watch at once: logged once, counted at every look while it stays damaged (``ctl health``),
    and said readable again once mended."""
    box = CAStore(tmp_path).init(None)
    own = CAStore(tmp_path).init("acme")
    good_key = (own.directory / KEY_FILE).read_bytes()
    (own.directory / KEY_FILE).write_text("garbage\n")
    svc = intercept.Interception(tmp_path, workers=1)
    try:
        assert list(svc.check_cas()) == ["acme"]  # the box's CA is intact

        async def until(n: int) -> None:
            for _ in range(10_000):  # bounded: each look is one thread hop
                if svc.ca_failures >= n:
                    return
                await asyncio.sleep(0.001)

        async def scenario() -> tuple[str, str]:
            task = asyncio.create_task(svc.watch_cas(interval=0.0))
            try:
                await until(3)
                first = caplog.text
                caplog.clear()
                (own.directory / KEY_FILE).write_bytes(good_key)  # mended
                (box.directory / KEY_FILE).write_text("garbage\n")  # and the box's damaged
                await until(svc.ca_failures + 3)
                return first, caplog.text
            finally:
                task.cancel()

        with caplog.at_level(logging.INFO, logger="arcus.serve"):
            first, then = asyncio.run(scenario())
        assert svc.ca_failures >= 6
        assert first.count("cannot be read") == 1 and "the CA of tenant 'acme' cannot be read" in first
        assert then.count("cannot be read") == 1 and "the CA of the box cannot be read" in then
        assert "the CA of tenant 'acme' can be read again" in then
    finally:
        svc.close()


def test_no_ca_at_all_is_no_problem_for_the_watch(tmp_path: Path) -> None:
    svc = intercept.Interception(tmp_path, workers=1)
    try:
        assert svc.check_cas() == {}
    finally:
        svc.close()
